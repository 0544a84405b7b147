package pcapng

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

// FuzzReader feeds arbitrary bytes to the Reader: it returns blocks or an
// error, never panics, and never claims more data than the file holds.
func FuzzReader(f *testing.F) {
	var buf bytes.Buffer
	w, _ := NewWriter(&buf, Section{Application: "seed"})
	_, _ = w.AddInterface(Interface{LinkType: LinkRaw, Name: "leg"})
	_ = w.WriteSecrets(Secrets{Type: SecretsTLSKeyLog, Data: []byte("CLIENT_RANDOM a b\n")})
	_ = w.WritePacket(Packet{Data: udpPacket, Comment: "c", Direction: DirInbound})
	f.Add(buf.Bytes())
	f.Add(buf.Bytes()[:40])
	f.Add([]byte{0x0a, 0x0d, 0x0d, 0x0a, 0, 0, 0, 28, 0x1a, 0x2b, 0x3c, 0x4d, 0, 1, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 28})
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := NewReader(bytes.NewReader(data))
		if err != nil {
			return
		}
		for range 10000 {
			b, err := r.Next()
			if err != nil {
				if !errors.Is(err, io.EOF) && !errors.Is(err, ErrTruncated) && !errors.Is(err, ErrFormat) {
					t.Fatalf("unexpected error type: %v", err)
				}
				return
			}
			switch v := b.(type) {
			case *Packet:
				if len(v.Data) > len(data) {
					t.Fatalf("packet of %d bytes from a file of %d", len(v.Data), len(data))
				}
			case *Secrets:
				if len(v.Data) > len(data) {
					t.Fatalf("secrets of %d bytes from a file of %d", len(v.Data), len(data))
				}
			}
		}
	})
}
