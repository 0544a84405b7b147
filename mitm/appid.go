package mitm

import (
	"bytes"

	"github.com/pinwall/pinwall/mitm/fwlog"
)

var httpMethods = [][]byte{
	[]byte("GET "), []byte("POST "), []byte("HEAD "), []byte("PUT "), []byte("DELETE "),
	[]byte("OPTIONS "), []byte("PATCH "), []byte("CONNECT "), []byte("TRACE "),
}

var h2Preface = []byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")

// Identify names the application of a cleartext TCP stream from its first
// bytes: HTTP/1.x is web-browsing, the HTTP/2 preface is http2, anything
// else unknown-tcp, and nothing at all incomplete. It never pretends to
// parse a multiplexed tunnel protocol.
func Identify(first []byte) fwlog.App {
	if len(first) == 0 {
		return fwlog.AppIncomplete
	}
	if bytes.HasPrefix(first, h2Preface[:min(len(first), len(h2Preface))]) && len(first) >= 4 {
		return fwlog.AppHTTP2
	}
	for _, m := range httpMethods {
		if bytes.HasPrefix(first, m) {
			return fwlog.AppWebBrowsing
		}
	}
	return fwlog.AppUnknownTCP
}

// sniffer records the first bytes read through it.
type sniffer struct {
	buf []byte
	max int
}

func (s *sniffer) see(p []byte) {
	if len(s.buf) < s.max {
		s.buf = append(s.buf, p[:min(len(p), s.max-len(s.buf))]...)
	}
}
