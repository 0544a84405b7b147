package origin

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"io"
	"log/slog"
	"sync"
	"time"
)

// Record is one request as the origin saw it: one JSON line of the access log.
type Record struct {
	Time time.Time `json:"time"`
	// Site is the Host the request named (without port).
	Site string `json:"site"`
	// Peer is the client's address as the origin's Stack reports it (logical).
	Peer string `json:"peer"`
	// Local is the listening address (logical) the request arrived on.
	Local string   `json:"local"`
	TLS   *TLSInfo `json:"tls,omitempty"`
	// Proto is the HTTP version ("HTTP/1.1", "HTTP/2.0").
	Proto  string `json:"proto"`
	Method string `json:"method"`
	Path   string `json:"path"`
	Query  string `json:"query,omitempty"`
	// BytesIn counts request body bytes received; BytesOut response body bytes sent.
	BytesIn  int64 `json:"bytes_in"`
	BytesOut int64 `json:"bytes_out"`
	// RequestSHA256 is the hex SHA-256 of the request body as received, set
	// when the body was read to its end.
	RequestSHA256 string `json:"request_sha256,omitempty"`
	// ClaimedSHA256 is the request's X-Pinwall-Sha256 header, when it sent one.
	ClaimedSHA256 string `json:"claimed_sha256,omitempty"`
	// Verified reports that the received body matched ClaimedSHA256.
	Verified bool `json:"verified"`
	// ResponseSHA256 is the hex SHA-256 of a payload reply (the X-Pinwall-Sha256 sent).
	ResponseSHA256 string  `json:"response_sha256,omitempty"`
	Status         int     `json:"status"`
	DurationMS     float64 `json:"duration_ms"`
	// Error says why a request failed (bad parameter, mismatch, client gone).
	Error string `json:"error,omitempty"`
}

// TLSInfo describes a request's TLS connection.
type TLSInfo struct {
	Version string `json:"version"`
	SNI     string `json:"sni"`
	ALPN    string `json:"alpn,omitempty"`
	Cipher  string `json:"cipher,omitempty"`
}

func tlsInfo(cs *tls.ConnectionState) *TLSInfo {
	if cs == nil {
		return nil
	}
	return &TLSInfo{
		Version: tls.VersionName(cs.Version),
		SNI:     cs.ServerName,
		ALPN:    cs.NegotiatedProtocol,
		Cipher:  tls.CipherSuiteName(cs.CipherSuite),
	}
}

// accessLog writes records as JSON lines and keeps the most recent ones.
type accessLog struct {
	w   io.Writer // may be nil
	log *slog.Logger

	mu      sync.Mutex
	ring    []Record
	next    int // ring index of the next record
	full    bool
	failed  bool // a write failed; logged once
	written int64
}

func newAccessLog(w io.Writer, keep int, log *slog.Logger) *accessLog {
	return &accessLog{w: w, log: log, ring: make([]Record, keep)}
}

func (a *accessLog) add(r Record) {
	var line []byte
	if a.w != nil {
		var b bytes.Buffer
		enc := json.NewEncoder(&b)
		enc.SetEscapeHTML(false) // keep "&" in queries readable
		if err := enc.Encode(r); err == nil {
			line = b.Bytes()
		}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.ring[a.next] = r
	a.next++
	if a.next == len(a.ring) {
		a.next, a.full = 0, true
	}
	a.written++
	if line != nil {
		if _, err := a.w.Write(line); err != nil && !a.failed {
			a.failed = true
			a.log.Error("origin: access log write failed; further failures are not logged", "err", err)
		}
	}
}

// records returns the kept records, oldest first.
func (a *accessLog) records() []Record {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.full {
		return append([]Record(nil), a.ring[:a.next]...)
	}
	out := make([]Record, 0, len(a.ring))
	out = append(out, a.ring[a.next:]...)
	return append(out, a.ring[:a.next]...)
}

func (a *accessLog) total() int64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.written
}
