package origin

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"html"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// exchange is one request in flight: what the access record needs.
type exchange struct {
	rec  Record
	body *bodyMeter
	w    *responseMeter
}

// fail answers with status and a plain-text message, and records it.
func (x *exchange) fail(status int, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	x.rec.Error = msg
	x.w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	x.w.Header().Set("X-Content-Type-Options", "nosniff")
	x.w.WriteHeader(status)
	io.WriteString(x.w, msg+"\n")
}

func (s *Server) serveHTTP(l *listener, w http.ResponseWriter, r *http.Request) {
	s.active.add()
	defer s.active.done()

	start := s.now()
	body := &bodyMeter{rc: r.Body, h: sha256.New()}
	r.Body = body
	x := &exchange{
		body: body,
		w:    &responseMeter{ResponseWriter: w},
		rec: Record{
			Time:   start,
			Peer:   r.RemoteAddr,
			Local:  l.addr.String(),
			TLS:    tlsInfo(r.TLS),
			Proto:  r.Proto,
			Method: r.Method,
			Path:   r.URL.Path,
			Query:  r.URL.RawQuery,
		},
	}
	defer func() {
		x.rec.BytesIn = body.n
		if body.eof {
			x.rec.RequestSHA256 = hex.EncodeToString(body.h.Sum(nil))
		}
		x.rec.BytesOut = x.w.n
		x.rec.Status = x.w.status
		if x.rec.Status == 0 {
			x.rec.Status = http.StatusOK
		}
		x.rec.DurationMS = float64(s.now().Sub(start).Microseconds()) / 1000
		s.access.add(x.rec)
	}()

	host := hostOnly(r.Host)
	x.rec.Site = host
	st := l.sites[host]
	if st == nil {
		x.fail(http.StatusMisdirectedRequest, "origin: no site %q on %s (serving %s)", host, l.addr, strings.Join(l.siteNames(), ", "))
		return
	}
	if r.TLS != nil && canonicalName(r.TLS.ServerName) != host {
		x.fail(http.StatusMisdirectedRequest, "origin: Host %q does not match the TLS server name %q", host, r.TLS.ServerName)
		return
	}
	x.w.Header().Set(HeaderSite, st.name)

	switch r.URL.Path {
	case "/":
		if allow(x, r, http.MethodGet, http.MethodHead) {
			s.index(x, r, st)
		}
	case "/payload":
		if allow(x, r, http.MethodGet, http.MethodHead) {
			s.payload(x, r)
		}
	case "/flow":
		if allow(x, r, http.MethodPost) {
			s.flow(x, r)
		}
	case "/echo":
		if allow(x, r, http.MethodPost) {
			s.echo(x, r)
		}
	default:
		x.fail(http.StatusNotFound, "origin: no such path %q (try /, /payload, /flow, /echo)", r.URL.Path)
	}
}

// allow answers 405 unless r's method is one of methods.
func allow(x *exchange, r *http.Request, methods ...string) bool {
	for _, m := range methods {
		if r.Method == m {
			return true
		}
	}
	x.w.Header().Set("Allow", strings.Join(methods, ", "))
	x.fail(http.StatusMethodNotAllowed, "origin: method %s not allowed on %s (allowed: %s)", r.Method, r.URL.Path, strings.Join(methods, ", "))
	return false
}

func hostOnly(hostport string) string {
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		hostport = h
	}
	return canonicalName(hostport)
}

func (s *Server) index(x *exchange, r *http.Request, st *site) {
	name := html.EscapeString(st.name)
	via := r.Proto
	if r.TLS != nil {
		via += ", " + tlsInfo(r.TLS).Version
	}
	page := fmt.Sprintf(`<!doctype html>
<html><head><meta charset="utf-8"><title>%s</title></head>
<body><h1>%s</h1>
<p>pinwall simulated origin <b>%s</b>, answering %s over %s.</p>
<p>Try /payload?size=1024&amp;seed=1, POST /flow?resp=1024&amp;seed=1, POST /echo.</p>
</body></html>
`, name, name, name, html.EscapeString(r.RemoteAddr), html.EscapeString(via))
	x.w.Header().Set("Content-Type", "text/html; charset=utf-8")
	x.w.Header().Set("Content-Length", strconv.Itoa(len(page)))
	x.w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		io.WriteString(x.w, page)
	}
}

// sizeAndSeed parses a query of a required size parameter (named sizeKey,
// at most MaxPayloadSize) and an optional seed, refusing any other key.
func sizeAndSeed(raw, sizeKey string) (size, seed uint64, err error) {
	q, err := parseQuery(raw, sizeKey, "seed")
	if err != nil {
		return 0, 0, err
	}
	if size, err = q.uint(sizeKey, true, MaxPayloadSize); err != nil {
		return 0, 0, err
	}
	if seed, err = q.uint("seed", false, 1<<64-1); err != nil {
		return 0, 0, err
	}
	return size, seed, nil
}

// payload answers GET /payload?size=N&seed=S.
func (s *Server) payload(x *exchange, r *http.Request) {
	size, seed, err := sizeAndSeed(r.URL.RawQuery, "size")
	if err != nil {
		x.fail(http.StatusBadRequest, "%v", err)
		return
	}
	s.writePayload(x, r, seed, int64(size))
}

// flow answers POST /flow?resp=N&seed=S: check the body against its claimed
// hash, then reply with the payload.
func (s *Server) flow(x *exchange, r *http.Request) {
	resp, seed, err := sizeAndSeed(r.URL.RawQuery, "resp")
	if err != nil {
		x.fail(http.StatusBadRequest, "%v", err)
		return
	}
	claimed, err := parseSHA256Header(r.Header, HeaderSHA256)
	if err != nil {
		x.fail(http.StatusBadRequest, "%v", err)
		return
	}
	x.rec.ClaimedSHA256 = claimed
	if !s.readBody(x, r) {
		return
	}
	got := hex.EncodeToString(x.body.h.Sum(nil))
	x.w.Header().Set(HeaderRequestSHA256, got)
	if got != claimed {
		s.log.Warn("origin: flow body mismatch", "site", x.rec.Site, "peer", x.rec.Peer,
			"claimed_sha256", claimed, "request_sha256", got, "bytes", x.body.n)
		x.fail(http.StatusUnprocessableEntity,
			"origin: request body SHA-256 mismatch: %s says %s, received %d bytes hashing to %s",
			HeaderSHA256, claimed, x.body.n, got)
		return
	}
	x.rec.Verified = true
	s.writePayload(x, r, seed, int64(resp))
}

// echo answers POST /echo by streaming the body back.
func (s *Server) echo(x *exchange, r *http.Request) {
	if _, err := parseQuery(r.URL.RawQuery); err != nil {
		x.fail(http.StatusBadRequest, "%v", err)
		return
	}
	if r.ContentLength > s.maxBody {
		x.fail(http.StatusRequestEntityTooLarge, "origin: body of %d bytes exceeds the limit of %d", r.ContentLength, s.maxBody)
		return
	}
	// HTTP/1.1 would otherwise stop reading the body once the reply starts.
	http.NewResponseController(x.w).EnableFullDuplex()
	h := x.w.Header()
	h.Set("Content-Type", "application/octet-stream")
	if r.ContentLength >= 0 {
		h.Set("Content-Length", strconv.FormatInt(r.ContentLength, 10))
	}
	x.w.WriteHeader(http.StatusOK)
	_, err := io.Copy(x.w, http.MaxBytesReader(x.w, r.Body, s.maxBody))
	if err != nil {
		// The status is gone; cut the reply so the client sees it is incomplete.
		x.rec.Error = "origin: echo: " + err.Error()
		panic(http.ErrAbortHandler)
	}
}

// readBody reads the body to its end (hashing it through the meter), within
// the body cap. It answers and returns false on failure.
func (s *Server) readBody(x *exchange, r *http.Request) bool {
	if r.ContentLength > s.maxBody {
		x.fail(http.StatusRequestEntityTooLarge, "origin: body of %d bytes exceeds the limit of %d", r.ContentLength, s.maxBody)
		return false
	}
	_, err := io.Copy(io.Discard, http.MaxBytesReader(x.w, r.Body, s.maxBody))
	if err == nil {
		return true
	}
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		x.fail(http.StatusRequestEntityTooLarge, "origin: body exceeds the limit of %d bytes", s.maxBody)
		return false
	}
	x.fail(http.StatusBadRequest, "origin: reading the body after %d bytes: %v", x.body.n, err)
	return false
}

// writePayload sends Payload(seed, size) with its hash.
func (s *Server) writePayload(x *exchange, r *http.Request, seed uint64, size int64) {
	sum, err := s.hashes.sum(r.Context(), seed, size)
	if err != nil {
		x.rec.Error = "origin: client gone while hashing the payload: " + err.Error()
		x.w.status = 499 // nginx's "client closed request", for the record only
		// Returning would let net/http answer "200 OK" with an empty body
		// on a connection still open (the server closing, not the client):
		// abort the connection instead, after the deferred record.
		panic(http.ErrAbortHandler)
	}
	sumHex := hex.EncodeToString(sum[:])
	x.rec.ResponseSHA256 = sumHex
	h := x.w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Content-Length", strconv.FormatInt(size, 10))
	h.Set(HeaderSHA256, sumHex)
	x.w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return
	}
	if _, err := io.Copy(x.w, Payload(seed, size)); err != nil {
		x.rec.Error = "origin: sending the payload: " + err.Error()
	}
}

// query is a parsed query string whose parameter names were checked.
type query map[string]string

// parseQuery parses raw, rejecting names outside known and repeated names.
func parseQuery(raw string, known ...string) (query, error) {
	v, err := url.ParseQuery(raw)
	if err != nil {
		return nil, fmt.Errorf("origin: bad query string: %v", err)
	}
	q := make(query, len(v))
	for name, vals := range v {
		ok := false
		for _, k := range known {
			ok = ok || k == name
		}
		if !ok {
			if len(known) == 0 {
				return nil, fmt.Errorf("origin: unknown parameter %q (this path takes none)", name)
			}
			return nil, fmt.Errorf("origin: unknown parameter %q (valid: %s)", name, strings.Join(known, ", "))
		}
		if len(vals) > 1 {
			return nil, fmt.Errorf("origin: parameter %s given %d times", name, len(vals))
		}
		q[name] = vals[0]
	}
	return q, nil
}

// uint parses a decimal parameter in [0, limit]; absent means 0 unless required.
func (q query) uint(name string, required bool, limit uint64) (uint64, error) {
	s, ok := q[name]
	if !ok {
		if required {
			return 0, fmt.Errorf("origin: parameter %s is required", name)
		}
		return 0, nil
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("origin: parameter %s=%q is not a decimal integer in [0, %d]", name, s, limit)
	}
	if n > limit {
		return 0, fmt.Errorf("origin: parameter %s=%d exceeds the limit %d", name, n, limit)
	}
	return n, nil
}

// parseSHA256Header returns the header's lower-case hex SHA-256.
func parseSHA256Header(h http.Header, name string) (string, error) {
	v := h.Values(name)
	switch {
	case len(v) == 0:
		return "", fmt.Errorf("origin: header %s (the hex SHA-256 of the body) is required", name)
	case len(v) > 1:
		return "", fmt.Errorf("origin: header %s given %d times", name, len(v))
	}
	s := strings.ToLower(strings.TrimSpace(v[0]))
	if b, err := hex.DecodeString(s); err != nil || len(b) != sha256.Size {
		return "", fmt.Errorf("origin: header %s=%q is not a hex SHA-256 (64 hex digits)", name, v[0])
	}
	return s, nil
}

// bodyMeter counts and hashes the request body as the handler reads it.
type bodyMeter struct {
	rc  io.ReadCloser
	h   hash.Hash
	n   int64
	eof bool
}

func (b *bodyMeter) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	b.n += int64(n)
	b.h.Write(p[:n])
	if err == io.EOF {
		b.eof = true
	}
	return n, err
}

func (b *bodyMeter) Close() error { return b.rc.Close() }

// responseMeter records the status and counts the body bytes written.
type responseMeter struct {
	http.ResponseWriter
	status int
	n      int64
}

func (w *responseMeter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *responseMeter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(p)
	w.n += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach the real writer.
func (w *responseMeter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
