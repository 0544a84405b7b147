package origin

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/pinwall/pinwall/failure"
)

// responseSeedMask derives a flow's reply seed from its seed, so that the two
// directions of a flow carry different bytes.
const responseSeedMask = 0x9e3779b97f4a7c15

// Flow is one unit of the workload: a POST /flow whose request and reply
// payloads are both verified by SHA-256.
type Flow struct {
	// Site is the origin's name (www.social.test). Required.
	Site string
	// Port is the origin's port; 0 means the scheme's default.
	Port int
	// Scheme is "https" or "http"; empty means "https".
	Scheme string
	// ReqSize is the request body size, ReqSize ≥ 0 (the origin caps it,
	// 64 MiB by default). RespSize is the reply size, in [0, MaxPayloadSize].
	ReqSize, RespSize int64
	// Seed determines both payloads (see RequestSeed and ResponseSeed).
	Seed uint64
	// Leg is the leg a failure is attributed to when the error carries none
	// of its own; empty means failure.LegClientGateway.
	Leg failure.Leg
}

// RequestSeed is the seed of the request body: Seed.
func (f Flow) RequestSeed() uint64 { return f.Seed }

// ResponseSeed is the seed of the reply: Seed XOR 0x9e3779b97f4a7c15.
func (f Flow) ResponseSeed() uint64 { return f.Seed ^ responseSeedMask }

func (f Flow) leg() failure.Leg {
	if f.Leg == failure.LegNone {
		return failure.LegClientGateway
	}
	return f.Leg
}

func (f Flow) scheme() string {
	if f.Scheme == "" {
		return "https"
	}
	return f.Scheme
}

// URL returns the flow's request URL.
func (f Flow) URL() string {
	host := f.Site
	if f.Port != 0 {
		host = net.JoinHostPort(f.Site, strconv.Itoa(f.Port))
	}
	u := url.URL{
		Scheme:   f.scheme(),
		Host:     host,
		Path:     "/flow",
		RawQuery: "resp=" + strconv.FormatInt(f.RespSize, 10) + "&seed=" + strconv.FormatUint(f.ResponseSeed(), 10),
	}
	return u.String()
}

// Validate rejects a flow RunFlow cannot run.
func (f Flow) Validate() error {
	switch {
	case f.Site == "":
		return errors.New("origin: Flow.Site is empty")
	case f.Scheme != "" && f.Scheme != "http" && f.Scheme != "https":
		return fmt.Errorf("origin: Flow.Scheme %q is neither http nor https", f.Scheme)
	case f.Port < 0 || f.Port > 65535:
		return fmt.Errorf("origin: Flow.Port %d out of range", f.Port)
	case f.ReqSize < 0:
		return fmt.Errorf("origin: Flow.ReqSize %d is negative", f.ReqSize)
	case f.RespSize < 0 || f.RespSize > MaxPayloadSize:
		return fmt.Errorf("origin: Flow.RespSize %d out of [0, %d]", f.RespSize, MaxPayloadSize)
	case !f.Leg.Valid():
		return fmt.Errorf("origin: Flow.Leg %q is not a leg", f.Leg)
	}
	return nil
}

// FlowResult is what RunFlow measured.
type FlowResult struct {
	Flow Flow
	// Status and Proto are the reply's; zero when no reply came.
	Status int
	Proto  string
	// BytesSent counts request body bytes handed to the transport (of the
	// last attempt, if the transport retried); BytesReceived reply body bytes.
	BytesSent, BytesReceived int64
	// RequestSHA256 is the hex hash of the body sent; ResponseSHA256 of the
	// reply body received.
	RequestSHA256, ResponseSHA256 string
	// Latency is the time from sending the request to the reply's headers;
	// Duration to the end of the reply body.
	Latency, Duration time.Duration
	// Verified reports that the origin confirmed the request hash and the
	// reply matched its expected payload: the flow went through intact.
	Verified bool
}

// MismatchError details a payload that did not arrive intact. RunFlow wraps
// it in a *failure.Error with failure.CausePayloadMismatch.
type MismatchError struct {
	// What names the check: "request body at origin", "reply body",
	// "reply length", "request hash echoed by origin", "reply hash header".
	What string
	Want string
	Got  string
}

func (e *MismatchError) Error() string {
	return fmt.Sprintf("%s: want %s, got %s", e.What, e.Want, e.Got)
}

// errorBodyLimit bounds how much of a non-200 reply is read for the error.
const errorBodyLimit = 4 << 10

// RunFlow sends f through client and verifies both directions: the origin
// must confirm the request body's hash (X-Pinwall-Request-Sha256, or 422 if it
// saw otherwise) and the reply must be exactly Payload(f.ResponseSeed(),
// f.RespSize), as its X-Pinwall-Sha256 says. The client's transport decides
// how the origin is reached (directly, through a tunnel, a proxy); RunFlow
// only speaks HTTP.
//
// Failures are *failure.Error values: a payload that did not arrive intact has
// failure.CausePayloadMismatch (wrapping a *MismatchError) on f.Leg; a transport
// error already attributed (a *failure.Error from the tunnel's dialer) is
// returned as is, wrapped; any other is classified on f.Leg. The FlowResult is
// filled as far as the flow got, also on error.
func RunFlow(ctx context.Context, client *http.Client, f Flow) (FlowResult, error) {
	res := FlowResult{Flow: f}
	if err := f.Validate(); err != nil {
		return res, err
	}
	if client == nil {
		return res, errors.New("origin: RunFlow needs an http.Client")
	}
	u := f.URL()
	reqSum, err := payloadSHA256(ctx, f.RequestSeed(), f.ReqSize)
	if err != nil {
		return res, attribute(f, u, err)
	}
	res.RequestSHA256 = hex.EncodeToString(reqSum[:])

	var sent atomic.Int64
	newBody := func() io.ReadCloser {
		sent.Store(0)
		return io.NopCloser(&countingReader{r: Payload(f.RequestSeed(), f.ReqSize), n: &sent})
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, newBody())
	if err != nil {
		return res, fmt.Errorf("origin: RunFlow: %w", err)
	}
	req.ContentLength = f.ReqSize
	if f.ReqSize == 0 {
		req.Body = http.NoBody
	}
	req.GetBody = func() (io.ReadCloser, error) { return newBody(), nil }
	req.Header.Set(HeaderSHA256, res.RequestSHA256)
	req.Header.Set("Content-Type", "application/octet-stream")

	start := time.Now()
	resp, err := client.Do(req)
	res.BytesSent = sent.Load()
	if err != nil {
		res.Duration = time.Since(start)
		return res, attribute(f, u, err)
	}
	defer resp.Body.Close()
	res.Latency = time.Since(start)
	res.Status, res.Proto = resp.StatusCode, resp.Proto

	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, errorBodyLimit))
		res.Duration = time.Since(start)
		if resp.StatusCode == http.StatusUnprocessableEntity {
			return res, failure.New(f.leg(), failure.CausePayloadMismatch, "origin flow", u, &MismatchError{
				What: "request body at origin",
				Want: res.RequestSHA256,
				Got:  resp.Header.Get(HeaderRequestSHA256),
			})
		}
		return res, failure.New(f.leg(), failure.CauseProtocol, "origin flow", u,
			fmt.Errorf("origin replied %s: %s", resp.Status, trimMessage(msg)))
	}

	// The reply is hashed (for the header check and the result) and compared
	// with the expected payload as it streams in, which is cheaper than
	// hashing the expected payload and locates the first damaged byte.
	h := sha256.New()
	cmp := newPayloadComparer(f.ResponseSeed(), f.RespSize)
	n, err := io.Copy(io.MultiWriter(h, cmp), io.LimitReader(resp.Body, f.RespSize+1))
	res.BytesReceived = n
	res.ResponseSHA256 = hex.EncodeToString(h.Sum(nil))
	res.Duration = time.Since(start)
	if err != nil {
		return res, attribute(f, u, err)
	}
	res.BytesSent = sent.Load()

	mismatch := func(what, want, got string) error {
		return failure.New(f.leg(), failure.CausePayloadMismatch, "origin flow", u, &MismatchError{What: what, Want: want, Got: got})
	}
	if got := resp.Header.Get(HeaderRequestSHA256); got != res.RequestSHA256 {
		return res, mismatch("request hash echoed by origin", res.RequestSHA256, got)
	}
	if n != f.RespSize {
		return res, mismatch("reply length", strconv.FormatInt(f.RespSize, 10), strconv.FormatInt(n, 10))
	}
	if cmp.firstDiff >= 0 {
		wantSum, err := payloadSHA256(ctx, f.ResponseSeed(), f.RespSize)
		if err != nil {
			return res, attribute(f, u, err)
		}
		return res, mismatch("reply body", hex.EncodeToString(wantSum[:]),
			res.ResponseSHA256+" (first differing byte at offset "+strconv.FormatInt(cmp.firstDiff, 10)+")")
	}
	if got := resp.Header.Get(HeaderSHA256); got != res.ResponseSHA256 {
		return res, mismatch("reply hash header", res.ResponseSHA256, got)
	}
	res.Verified = true
	return res, nil
}

func trimMessage(b []byte) string {
	s := string(b)
	for len(s) > 0 && (s[len(s)-1] == '\n' || s[len(s)-1] == '\r') {
		s = s[:len(s)-1]
	}
	return s
}

// attribute turns a transport error into a *failure.Error on f's leg, keeping
// one that is already attributed.
func attribute(f Flow, u string, err error) error {
	if _, ok := failure.As(err); ok {
		return fmt.Errorf("origin.RunFlow %s: %w", u, err)
	}
	return failure.New(f.leg(), classify(err), "origin flow", u, err)
}

// classify extends failure.Classify with TLS and truncation errors.
func classify(err error) failure.Cause {
	if c := failure.Classify(err); c != failure.CauseNone {
		return c
	}
	var (
		unknownAuth x509.UnknownAuthorityError
		hostErr     x509.HostnameError
		invalid     x509.CertificateInvalidError
		alert       tls.AlertError
		record      tls.RecordHeaderError
		verify      *tls.CertificateVerificationError
	)
	switch {
	case errors.As(err, &unknownAuth):
		return failure.CauseUnknownAuthority
	case errors.As(err, &hostErr), errors.As(err, &invalid):
		return failure.CauseCertificateInvalid
	case errors.As(err, &verify):
		return failure.CauseCertificateInvalid
	case errors.As(err, &alert), errors.As(err, &record), isRemoteAlert(err):
		return failure.CauseHandshakeFailed
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return failure.CauseConnectionReset
	}
	return failure.CauseProtocol
}

// isRemoteAlert reports a TLS alert received from the peer, which crypto/tls
// returns as a *net.OpError with Op "remote error".
func isRemoteAlert(err error) bool {
	var oe *net.OpError
	return errors.As(err, &oe) && oe.Op == "remote error"
}

// payloadComparer is a writer checking what is written against a payload.
type payloadComparer struct {
	want      io.Reader
	buf       []byte
	off       int64
	firstDiff int64 // -1 while everything matched
}

func newPayloadComparer(seed uint64, size int64) *payloadComparer {
	return &payloadComparer{want: Payload(seed, size), buf: make([]byte, min(max(size, 1), payloadChunk)), firstDiff: -1}
}

func (c *payloadComparer) Write(p []byte) (int, error) {
	total := len(p)
	for len(p) > 0 && c.firstDiff < 0 {
		chunk := p[:min(len(p), len(c.buf))]
		n, _ := io.ReadFull(c.want, c.buf[:len(chunk)])
		if !bytes.Equal(c.buf[:n], chunk[:n]) {
			for i := range n {
				if c.buf[i] != chunk[i] {
					c.firstDiff = c.off + int64(i)
					break
				}
			}
		}
		if c.firstDiff < 0 && n < len(chunk) {
			c.firstDiff = c.off + int64(n) // longer than the payload
		}
		c.off += int64(len(chunk))
		p = p[len(chunk):]
	}
	return total, nil
}

// countingReader counts what the transport read of a request body.
type countingReader struct {
	r io.Reader
	n *atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}
