package mitm

import (
	"crypto/tls"
	"io"
	"net"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/pinwall/pinwall/mitm/fwlog"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestIdentify(t *testing.T) {
	tests := []struct {
		in   string
		want fwlog.App
	}{
		{"", fwlog.AppIncomplete},
		{"GET / HTTP/1.1\r\n", fwlog.AppWebBrowsing},
		{"POST /flow HTTP/1.1\r\n", fwlog.AppWebBrowsing},
		{"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", fwlog.AppHTTP2},
		{"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x12\x04", fwlog.AppHTTP2},
		{"\x00\x00\x00\x01\x00\x00\x00\x00", fwlog.AppUnknownTCP}, // a yamux frame
		{"GETX", fwlog.AppUnknownTCP},
		{"PRI", fwlog.AppUnknownTCP},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, Identify([]byte(tt.in)), "%q", tt.in)
	}
}

func FuzzIdentify(f *testing.F) {
	f.Add([]byte("GET / HTTP/1.1\r\n"))
	f.Add([]byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"))
	f.Add([]byte{0, 0, 0, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		app := Identify(b)
		if len(b) == 0 && app != fwlog.AppIncomplete {
			t.Fatal("empty input must be incomplete")
		}
		if len(b) > 0 && app == fwlog.AppIncomplete {
			t.Fatal("non-empty input cannot be incomplete")
		}
	})
}

func TestAlertTailReadsAPlaintextAlert(t *testing.T) {
	tests := []struct {
		name  string
		reads [][]byte
		want  int
	}{
		{"one read", [][]byte{{22, 3, 3, 0, 1, 1, 21, 3, 3, 0, 2, 2, 48}}, 48},
		{"split", [][]byte{{21, 3}, {3, 0, 2}, {2, 42}}, 42},
		{"not an alert", [][]byte{{23, 3, 3, 0, 2, 2, 48}}, -1},
		{"warning level", [][]byte{{21, 3, 3, 0, 2, 1, 0}}, -1},
		{"too short", [][]byte{{2, 48}}, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := net.Pipe()
			defer a.Close()
			defer b.Close()
			tail := &alertTail{Conn: b}
			go func() {
				for _, r := range tt.reads {
					_, _ = a.Write(r)
				}
			}()
			buf := make([]byte, 64)
			for range tt.reads {
				_, err := tail.Read(buf)
				require.NoError(t, err)
			}
			assert.Equal(t, tt.want, tail.alert())
		})
	}
}

// chunkConn hands out its chunks one per Read.
type chunkConn struct {
	net.Conn
	chunks [][]byte
}

func (c *chunkConn) Read(p []byte) (int, error) {
	if len(c.chunks) == 0 {
		return 0, io.EOF
	}
	n := copy(p, c.chunks[0])
	if c.chunks[0] = c.chunks[0][n:]; len(c.chunks[0]) == 0 {
		c.chunks = c.chunks[1:]
	}
	return n, nil
}

// FuzzAlertTail: however the bytes arrive, the tail finds a fatal alert
// exactly when the last seven bytes read are one.
func FuzzAlertTail(f *testing.F) {
	f.Add([]byte{22, 3, 3, 0, 1, 1, 21, 3, 3, 0, 2, 2, 48}, []byte{3, 1})
	f.Add([]byte{21, 3, 3, 0, 2, 2, 42}, []byte{2, 3, 2})
	f.Add([]byte{23, 3, 3, 0, 2, 2, 48}, []byte{})
	f.Fuzz(func(t *testing.T, data, cuts []byte) {
		var chunks [][]byte
		rest := data
		for _, c := range cuts {
			if len(rest) == 0 {
				break
			}
			n := min(int(c)%8+1, len(rest))
			chunks = append(chunks, rest[:n])
			rest = rest[n:]
		}
		if len(rest) > 0 {
			chunks = append(chunks, rest)
		}
		tail := &alertTail{Conn: &chunkConn{chunks: chunks}}
		buf := make([]byte, 5) // smaller than the tail: reads split records too
		for {
			if _, err := tail.Read(buf); err != nil {
				break
			}
		}
		want := -1
		if n := len(data); n >= 7 {
			b := data[n-7:]
			if b[0] == 21 && b[1] == 3 && b[3] == 0 && b[4] == 2 && b[5] == 2 {
				want = int(b[6])
			}
		}
		if got := tail.alert(); got != want {
			t.Fatalf("alert() = %d, want %d for % x in %d chunks", got, want, data, len(chunks))
		}
	})
}

func TestMirrorGroups(t *testing.T) {
	tests := []struct {
		name    string
		offered []uint16
		want    []tls.CurveID
	}{
		{"chrome-like with GREASE", []uint16{0x0a0a, 4588, 29, 23, 24}, []tls.CurveID{tls.X25519MLKEM768, tls.X25519, tls.CurveP256, tls.CurveP384}},
		{"order kept", []uint16{23, 29}, []tls.CurveID{tls.CurveP256, tls.X25519}},
		{"duplicates once", []uint16{29, 29}, []tls.CurveID{tls.X25519}},
		{"only finite-field groups: crypto/tls defaults", []uint16{256, 257}, nil},
		{"none offered", nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, mirrorGroups(tt.offered))
		})
	}
}
