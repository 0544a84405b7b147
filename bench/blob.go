package bench

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pinwall/pinwall/accept"
)

// The blob protocol is the smallest HTTP/1.1 that every path under test
// carries (mitmproxy parses HTTP): "GET /blob/N HTTP/1.1" is answered with N
// bytes and a Content-Length. Without "Connection: close" the connection
// stays open for the next request, so a bulk figure can reuse one
// connection or flow and leave its setup out.
const (
	// MaxBlob bounds one response.
	MaxBlob = 1 << 30
	// blobChunk is the size of the origin's writes and the client's reads.
	blobChunk = 256 << 10
	// maxHead bounds a request or response head.
	maxHead = 8 << 10
)

// blobBody is what every response is cut from: not all zeros, so nothing on
// the way could take a shortcut.
var blobBody = func() []byte {
	b := make([]byte, blobChunk)
	for i := range b {
		b[i] = byte(i*7 + i>>8)
	}
	return b
}()

// BlobServer is the origin of the measurements: it answers blob requests on
// a listener, in TLS when given a tls.Config. Close stops it.
type BlobServer struct {
	ln  net.Listener
	tls *tls.Config

	wg        sync.WaitGroup
	mu        sync.Mutex
	conns     map[net.Conn]struct{}
	closed    bool
	closeOnce sync.Once
}

// ServeBlob serves blob requests on ln until Close; cfg, if not nil, makes
// every connection a TLS server with it. The server owns ln.
func ServeBlob(ln net.Listener, cfg *tls.Config) *BlobServer {
	s := &BlobServer{ln: accept.Wrap(ln, accept.Config{Name: "bench blob"}), tls: cfg, conns: map[net.Conn]struct{}{}}
	s.wg.Add(1)
	go s.acceptLoop()
	return s
}

// Addr is the listener's address.
func (s *BlobServer) Addr() net.Addr { return s.ln.Addr() }

// Close stops listening, closes every connection and waits for them. It is
// idempotent.
func (s *BlobServer) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		s.ln.Close()
		for c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
	return nil
}

func (s *BlobServer) acceptLoop() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return // temporary errors are retried by accept.Listener
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			return
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go s.serveConn(c)
	}
}

func (s *BlobServer) serveConn(raw net.Conn) {
	defer s.wg.Done()
	defer func() {
		s.mu.Lock()
		delete(s.conns, raw)
		s.mu.Unlock()
		raw.Close()
	}()
	var c net.Conn = raw
	if s.tls != nil {
		tc := tls.Server(raw, s.tls)
		_ = raw.SetDeadline(time.Now().Add(10 * time.Second))
		if err := tc.Handshake(); err != nil {
			return
		}
		_ = raw.SetDeadline(time.Time{})
		c = tc
	}
	br := bufio.NewReaderSize(c, 4096)
	head := make([]byte, 0, 256)
	for {
		n, keep, err := readBlobRequest(br)
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				_, _ = io.WriteString(c, "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
			}
			return
		}
		head = append(head[:0], "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: "...)
		head = strconv.AppendInt(head, n, 10)
		if !keep {
			head = append(head, "\r\nConnection: close"...)
		}
		head = append(head, "\r\n\r\n"...)
		// A small response leaves in one write, as a real server's would.
		var first int64
		if n <= 16<<10 {
			head = append(head, blobBody[:n]...)
			first = n
		}
		if _, err := c.Write(head); err != nil {
			return
		}
		for left := n - first; left > 0; {
			k := min(left, blobChunk)
			if _, err := c.Write(blobBody[:k]); err != nil {
				return
			}
			left -= k
		}
		if !keep {
			if cw, ok := c.(interface{ CloseWrite() error }); ok {
				_ = cw.CloseWrite()
			}
			return
		}
	}
}

// readBlobRequest reads one request head and returns the size asked for and
// whether the client keeps the connection open.
func readBlobRequest(br *bufio.Reader) (n int64, keep bool, err error) {
	line, err := br.ReadSlice('\n')
	if err != nil {
		if errors.Is(err, io.EOF) && len(line) == 0 {
			return 0, false, io.EOF
		}
		return 0, false, fmt.Errorf("bench: request line: %w", err)
	}
	parts := strings.Fields(string(line))
	if len(parts) != 3 || parts[0] != "GET" || !strings.HasPrefix(parts[2], "HTTP/1.") {
		return 0, false, fmt.Errorf("bench: request line %q", line)
	}
	size, ok := strings.CutPrefix(parts[1], "/blob/")
	if !ok {
		return 0, false, fmt.Errorf("bench: path %q is not /blob/N", parts[1])
	}
	n, err = strconv.ParseInt(size, 10, 64)
	if err != nil || n < 0 || n > MaxBlob {
		return 0, false, fmt.Errorf("bench: blob size %q (want 0..%d)", size, MaxBlob)
	}
	keep = parts[2] == "HTTP/1.1"
	for total := len(line); ; {
		line, err = br.ReadSlice('\n')
		if err != nil {
			return 0, false, fmt.Errorf("bench: request header: %w", err)
		}
		if total += len(line); total > maxHead {
			return 0, false, errors.New("bench: request head too large")
		}
		h := bytes.TrimSpace(line)
		if len(h) == 0 {
			return n, keep, nil
		}
		if name, val, ok := bytes.Cut(h, []byte(":")); ok && strings.EqualFold(string(name), "connection") {
			keep = !strings.EqualFold(strings.TrimSpace(string(val)), "close")
		}
	}
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, blobChunk); return &b }}

// FetchBlob sends a request for n bytes on c and reads the response to its
// last byte. It returns when the first byte of the response arrived. With
// close it asks the server to close the connection after the response.
func FetchBlob(c net.Conn, host string, n int64, close bool) (first time.Time, err error) {
	req := make([]byte, 0, 128)
	req = append(req, "GET /blob/"...)
	req = strconv.AppendInt(req, n, 10)
	req = append(req, " HTTP/1.1\r\nHost: "...)
	req = append(req, host...)
	if close {
		req = append(req, "\r\nConnection: close"...)
	}
	req = append(req, "\r\n\r\n"...)
	if _, err := c.Write(req); err != nil {
		return first, fmt.Errorf("bench: send request: %w", err)
	}
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp

	// The head.
	got := 0
	headEnd := -1
	for headEnd < 0 {
		if got == maxHead {
			return first, errors.New("bench: response head too large")
		}
		k, err := c.Read(buf[got:maxHead])
		if k > 0 && first.IsZero() {
			first = time.Now()
		}
		got += k
		if i := bytes.Index(buf[:got], []byte("\r\n\r\n")); i >= 0 {
			headEnd = i + 4
			break
		}
		if err != nil {
			return first, fmt.Errorf("bench: read response head: %w", err)
		}
	}
	length, err := parseBlobResponse(buf[:headEnd])
	if err != nil {
		return first, err
	}
	if length != n {
		return first, fmt.Errorf("bench: asked for %d bytes, response says %d", n, length)
	}
	left := length - int64(got-headEnd)
	if left < 0 {
		return first, fmt.Errorf("bench: %d bytes past the response body", -left)
	}
	for left > 0 {
		k, err := c.Read(buf[:min(int64(len(buf)), left)])
		left -= int64(k)
		if err != nil && left > 0 {
			return first, fmt.Errorf("bench: read body (%d of %d bytes missing): %w", left, length, err)
		}
	}
	return first, nil
}

// parseBlobResponse checks a response head and returns its Content-Length.
func parseBlobResponse(head []byte) (int64, error) {
	lines := strings.Split(string(head), "\r\n")
	status := strings.Fields(lines[0])
	if len(status) < 2 || !strings.HasPrefix(status[0], "HTTP/1.") {
		return 0, fmt.Errorf("bench: response status line %q", lines[0])
	}
	if status[1] != "200" {
		return 0, fmt.Errorf("bench: response status %q", lines[0])
	}
	for _, l := range lines[1:] {
		name, val, ok := strings.Cut(l, ":")
		if !ok {
			continue
		}
		switch {
		case strings.EqualFold(name, "content-length"):
			return strconv.ParseInt(strings.TrimSpace(val), 10, 64)
		case strings.EqualFold(name, "transfer-encoding"):
			return 0, fmt.Errorf("bench: response uses transfer-encoding %q", strings.TrimSpace(val))
		}
	}
	return 0, errors.New("bench: response has no Content-Length")
}

// dialTimeout bounds every connection the measurements open.
const dialTimeout = 10 * time.Second

// opContext bounds one op.
func opContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, time.Minute)
}
