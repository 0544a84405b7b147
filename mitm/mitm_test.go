package mitm

import (
	"testing"

	"github.com/stretchr/testify/assert"
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
