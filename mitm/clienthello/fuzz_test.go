package clienthello_test

import (
	"errors"
	"testing"

	"github.com/pinwall/pinwall/mitm/clienthello"
)

// fuzzSeeds are the real captures, some cut or split, as fuzz seeds.
func fuzzSeeds(f *testing.F) (tlsSeeds, dtlsSeeds [][]byte) {
	for _, name := range []string{"chrome143.hex", "go-tls13.hex", "openssl.hex"} {
		b := readHex(f, name)
		tlsSeeds = append(tlsSeeds, b, b[:len(b)/2], b[:5])
	}
	msg := tlsMessage(ja4SpecExample("h2", "http/1.1").body())
	tlsSeeds = append(tlsSeeds,
		tlsRecords(msg, 0x0301, 3, 1, 200),
		tlsRecords(tlsMessage(helloSpec{legacyVersion: 0x0301, ciphers: []uint16{0x2f}, noExtensions: true}.body()), 0x0300),
		[]byte("GET / HTTP/1.1\r\n\r\n"),
		[]byte{22, 3, 1, 0x40, 0, 1, 0xff, 0xff, 0xff},
	)
	pion := readHex(f, "pion-dtls.hex")
	dtlsSeeds = append(dtlsSeeds, pion, pion[:40], pion[:13])
	return tlsSeeds, dtlsSeeds
}

// checkResult checks what holds for any input: exactly one error class,
// a Len within the input, fingerprints that do not panic.
func checkResult(t *testing.T, in []byte, info *clienthello.Info, err error) {
	t.Helper()
	if err != nil {
		if info != nil {
			t.Fatalf("info with error %v", err)
		}
		classes := 0
		for _, s := range []error{clienthello.ErrIncomplete, clienthello.ErrNotTLS, clienthello.ErrMalformed, clienthello.ErrTooLarge} {
			if errors.Is(err, s) {
				classes++
			}
		}
		if classes != 1 {
			t.Fatalf("error %q matches %d sentinels", err, classes)
		}
		var inc *clienthello.IncompleteError
		if errors.As(err, &inc) && inc.Need < 1 {
			t.Fatalf("Need %d", inc.Need)
		}
		var perr *clienthello.ParseError
		if errors.As(err, &perr) && (perr.Offset < 0 || perr.Offset > len(in)) {
			t.Fatalf("offset %d outside a %d-byte input", perr.Offset, len(in))
		}
		return
	}
	if info.Len <= 0 || info.Len > len(in) {
		t.Fatalf("Len %d, input %d bytes", info.Len, len(in))
	}
	_ = info.JA3Hash()
	_ = info.JA4()
	_ = info.JA4Raw()
	_ = clienthello.TLSVersionName(info.MaxVersion())
}

func FuzzParse(f *testing.F) {
	tlsSeeds, _ := fuzzSeeds(f)
	for _, s := range tlsSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		info, err := clienthello.Parse(in)
		checkResult(t, in, info, err)
		if err != nil {
			var inc *clienthello.IncompleteError
			if errors.As(err, &inc) && inc.Need > clienthello.MaxHelloSize*2 {
				t.Fatalf("Need %d is beyond any hello", inc.Need)
			}
			return
		}
		// The hello's own records parse alike, and any prefix of them is
		// incomplete, never wrong.
		again, err := clienthello.Parse(in[:info.Len])
		if err != nil || again.JA4() != info.JA4() || again.ServerName != info.ServerName {
			t.Fatalf("re-parse of in[:Len]: %v", err)
		}
		cut := info.Len / 2
		if _, err := clienthello.Parse(in[:cut]); !errors.Is(err, clienthello.ErrIncomplete) {
			t.Fatalf("prefix of %d/%d bytes: %v", cut, info.Len, err)
		}
	})
}

func FuzzParseDTLS(f *testing.F) {
	_, dtlsSeeds := fuzzSeeds(f)
	for _, s := range dtlsSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		info, err := clienthello.ParseDTLS(in)
		checkResult(t, in, info, err)
		if err == nil && clienthello.Classify(in) != clienthello.AppDTLS {
			t.Fatalf("a parsed DTLS ClientHello classifies as %q", clienthello.Classify(in))
		}
	})
}

func FuzzClassify(f *testing.F) {
	tlsSeeds, dtlsSeeds := fuzzSeeds(f)
	for _, s := range append(tlsSeeds, dtlsSeeds...) {
		f.Add(s)
	}
	f.Add(append([]byte{0xc3, 0, 0, 0, 1, 8, 1, 2, 3, 4, 5, 6, 7, 8, 0}, make([]byte, 1185)...))
	f.Add([]byte{0x80, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, in []byte) {
		if clienthello.IsDTLSHandshake(in) && (clienthello.Classify(in) != clienthello.AppDTLS || in[0] != 22 || in[3] != 0 || in[4] != 0) {
			t.Fatalf("%x taken for a DTLS handshake of epoch 0", in)
		}
		switch app := clienthello.Classify(in); app {
		case clienthello.AppDTLS:
			if len(in) < 13 || in[1] != 0xfe {
				t.Fatalf("%x classified as DTLS", in)
			}
		case clienthello.AppQUIC:
			if len(in) < 7 || in[0]&0x80 == 0 {
				t.Fatalf("%x classified as QUIC", in)
			}
		case clienthello.AppUnknownUDP:
		default:
			t.Fatalf("unexpected app %q", app)
		}
	})
}
