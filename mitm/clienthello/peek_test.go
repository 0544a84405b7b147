package clienthello_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pinwall/pinwall/mitm/clienthello"
)

// pipeClient returns the firewall's end of a net.Pipe whose client end runs
// send in a goroutine; the goroutine is waited for at cleanup, after both
// ends are closed.
func pipeClient(t *testing.T, send func(c net.Conn)) net.Conn {
	t.Helper()
	client, server := net.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		send(client)
	}()
	t.Cleanup(func() {
		server.Close()
		client.Close()
		<-done
	})
	return server
}

// writeAll writes chunks in turn (each a separate Write), then closes c
// if closeAfter is set. Errors end it quietly: the peer may hang up first.
func writeAll(chunks [][]byte, closeAfter bool) func(net.Conn) {
	return func(c net.Conn) {
		for _, ch := range chunks {
			if _, err := c.Write(ch); err != nil {
				return
			}
		}
		if closeAfter {
			c.Close()
		}
	}
}

func bytewise(b []byte) [][]byte {
	out := make([][]byte, len(b))
	for i := range b {
		out[i] = b[i : i+1]
	}
	return out
}

func TestPeekReplaysExactly(t *testing.T) {
	chrome := readHex(t, "chrome143.hex")
	goHello := readHex(t, "go-tls13.hex")
	twoRecords := tlsRecords(tlsMessage(chrome143().body()), 0x0301, 700)
	after := []byte("\x14\x03\x03\x00\x01\x01\x17\x03\x03\x00\x05early")
	big := func() []byte { // a padded hello filling a whole 16 KiB record
		h := ja4SpecExample("h2")
		h.exts = append(h.exts, ext{0xffce, make([]byte, 16384-4-len(h.body())-4)})
		return h.tls()
	}()
	require.Len(t, big, 5+16384)

	tests := []struct {
		name   string
		hello  []byte
		chunks [][]byte
	}{
		{"one write with data after", chrome, [][]byte{append(bytes.Clone(chrome), after...)}},
		{"hello then data", goHello, [][]byte{goHello, after}},
		{"one byte a write", goHello, append(bytewise(goHello), after)},
		{"two records", twoRecords, [][]byte{twoRecords[:705], twoRecords[705:], after}},
		{"two records, one byte a write", twoRecords, bytewise(append(bytes.Clone(twoRecords), after...))},
		{"a full 16 KiB record", big, [][]byte{big[:3000], big[3000:], after}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var sent []byte
			for _, ch := range tt.chunks {
				sent = append(sent, ch...)
			}
			conn := pipeClient(t, writeAll(tt.chunks, true))

			info, pc, err := clienthello.Peek(conn, clienthello.PeekOptions{Timeout: 10 * time.Second})
			require.NoError(t, err)
			assert.Equal(t, len(tt.hello), info.Len)
			assert.Equal(t, tt.hello, pc.Buffered()[:info.Len])
			assert.Same(t, conn, pc.Unwrap())

			got, err := io.ReadAll(pc)
			require.NoError(t, err)
			assert.Equal(t, sent, got, "the reader of the peeked conn sees every byte the client sent")
		})
	}
}

func TestPeekErrors(t *testing.T) {
	chrome := readHex(t, "chrome143.hex")
	httpReq := []byte("GET / HTTP/1.1\r\nHost: www.social.test\r\n\r\n")

	tests := []struct {
		name     string
		send     func(net.Conn)
		opts     clienthello.PeekOptions
		target   error
		buffered []byte // nil: do not check
		timeout  bool
	}{
		{
			name:     "plain HTTP",
			send:     writeAll([][]byte{httpReq}, false),
			target:   clienthello.ErrNotTLS,
			buffered: httpReq,
		},
		{
			name:     "garbage after a handshake record header",
			send:     writeAll([][]byte{{22, 3, 1, 0, 5, 2, 0, 0, 1, 0}}, false),
			target:   clienthello.ErrMalformed,
			buffered: []byte{22, 3, 1, 0, 5, 2, 0, 0, 1, 0},
		},
		{
			name:   "declared length 2^24-1",
			send:   writeAll([][]byte{{22, 3, 1, 0x40, 0, 1, 0xff, 0xff, 0xff}}, false),
			target: clienthello.ErrTooLarge,
		},
		{
			name:   "more than MaxBytes",
			send:   writeAll([][]byte{chrome}, false),
			opts:   clienthello.PeekOptions{MaxBytes: 1024},
			target: clienthello.ErrTooLarge,
		},
		{
			name:   "records beyond MaxBytes, one byte at a time",
			send:   writeAll(bytewise(tlsRecords(tlsMessage(chrome143().body()), 0x0301, 100, 100, 100, 100, 100, 100)), false),
			opts:   clienthello.PeekOptions{MaxBytes: 300},
			target: clienthello.ErrTooLarge,
		},
		{
			name:     "truncated, then closed",
			send:     writeAll([][]byte{chrome[:100]}, true),
			target:   io.ErrUnexpectedEOF,
			buffered: chrome[:100],
		},
		{
			name:     "closed before a byte",
			send:     writeAll(nil, true),
			target:   io.EOF,
			buffered: []byte{},
		},
		{
			name:     "stalls mid-hello",
			send:     writeAll([][]byte{chrome[:3]}, false),
			opts:     clienthello.PeekOptions{Timeout: 100 * time.Millisecond},
			target:   os.ErrDeadlineExceeded,
			buffered: chrome[:3],
			timeout:  true,
		},
		{
			name: "dribbles a byte every 20 ms",
			send: func(c net.Conn) {
				for _, b := range chrome {
					if _, err := c.Write([]byte{b}); err != nil {
						return
					}
					time.Sleep(20 * time.Millisecond)
				}
			},
			opts:    clienthello.PeekOptions{Timeout: 100 * time.Millisecond},
			target:  os.ErrDeadlineExceeded,
			timeout: true,
		},
	}
	sentinels := []error{clienthello.ErrNotTLS, clienthello.ErrMalformed, clienthello.ErrTooLarge,
		io.EOF, io.ErrUnexpectedEOF, os.ErrDeadlineExceeded, clienthello.ErrIncomplete}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn := pipeClient(t, tt.send)
			if tt.opts.Timeout == 0 {
				tt.opts.Timeout = 10 * time.Second // fail, don't hang, if Peek waits when it should not
			}
			start := time.Now()
			info, pc, err := clienthello.Peek(conn, tt.opts)
			elapsed := time.Since(start)

			assert.Nil(t, info)
			require.NotNil(t, pc, "Peek returns the conn with what it buffered")
			require.ErrorIs(t, err, tt.target)
			for _, s := range sentinels {
				if s != tt.target {
					assert.NotErrorIs(t, err, s)
				}
			}
			assert.Contains(t, err.Error(), "clienthello: ")
			if tt.buffered != nil {
				assert.Equal(t, tt.buffered, pc.Buffered())
			}
			var ne net.Error
			if tt.timeout {
				require.ErrorAs(t, err, &ne)
				assert.True(t, ne.Timeout())
				assert.GreaterOrEqual(t, elapsed, tt.opts.Timeout)
			} else {
				assert.Less(t, elapsed, 5*time.Second, "Peek must not wait for a timeout it does not need")
			}
		})
	}
}

// TestPeekPeerGoneBeforePeek: a client that hung up before the firewall
// got to peek is io.EOF, not a deadline error (net.Pipe refuses deadlines
// once either end is closed).
func TestPeekPeerGoneBeforePeek(t *testing.T) {
	client, server := net.Pipe()
	defer server.Close()
	require.NoError(t, client.Close())
	info, pc, err := clienthello.Peek(server, clienthello.PeekOptions{Timeout: time.Second})
	assert.Nil(t, info)
	require.NotNil(t, pc)
	require.ErrorIs(t, err, io.EOF)
	assert.NotContains(t, err.Error(), "deadline")
}

// TestPeekNotTLSIsReplayable: after ErrNotTLS the caller can still forward
// or inspect the stream from its first byte.
func TestPeekNotTLSIsReplayable(t *testing.T) {
	req := []byte("GET /index.html HTTP/1.1\r\nHost: www.social.test\r\nUser-Agent: pinwall\r\n\r\n")
	conn := pipeClient(t, writeAll([][]byte{req[:10], req[10:]}, true))
	_, pc, err := clienthello.Peek(conn, clienthello.PeekOptions{})
	require.ErrorIs(t, err, clienthello.ErrNotTLS)
	got, err := io.ReadAll(pc)
	require.NoError(t, err)
	assert.Equal(t, req, got)
}

func TestPeekClearsDeadline(t *testing.T) {
	hello := readHex(t, "go-tls13.hex")
	release := make(chan struct{})
	conn := pipeClient(t, func(c net.Conn) {
		if _, err := c.Write(hello); err != nil {
			return
		}
		<-release
		_, _ = c.Write([]byte("later"))
	})
	_, pc, err := clienthello.Peek(conn, clienthello.PeekOptions{Timeout: 50 * time.Millisecond})
	require.NoError(t, err)
	time.Sleep(100 * time.Millisecond) // past the peek timeout
	close(release)
	got := make([]byte, len(hello)+5)
	_, err = io.ReadFull(pc, got)
	require.NoError(t, err, "the peek deadline must not outlive Peek")
	assert.Equal(t, append(bytes.Clone(hello), "later"...), got)
}

// TestPeekThenTerminate: a TLS server reading the peeked conn completes the
// handshake the client started, as the firewall does when it decrypts.
func TestPeekThenTerminate(t *testing.T) {
	cert, pool := selfSigned(t, "www.social.test")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()

	type result struct {
		info   *clienthello.Info
		state  tls.ConnectionState
		echoed string
		err    error
	}
	results := make(chan result, 1)
	var wg sync.WaitGroup
	defer func() {
		ln.Close()
		wg.Wait()
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		var r result
		defer func() { results <- r }()
		conn, err := ln.Accept()
		if r.err = err; err != nil {
			return
		}
		defer conn.Close()
		info, pc, err := clienthello.Peek(conn, clienthello.PeekOptions{})
		if r.info, r.err = info, err; err != nil {
			return
		}
		srv := tls.Server(pc, &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2"}})
		if r.err = srv.Handshake(); r.err != nil {
			return
		}
		r.state = srv.ConnectionState()
		buf := make([]byte, 4)
		if _, r.err = io.ReadFull(srv, buf); r.err != nil {
			return
		}
		r.echoed = string(buf)
		_, r.err = srv.Write([]byte("pong"))
	}()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	d := tls.Dialer{Config: &tls.Config{ServerName: "www.social.test", RootCAs: pool, NextProtos: []string{"h2", "http/1.1"}}}
	c, err := d.DialContext(ctx, "tcp", ln.Addr().String())
	require.NoError(t, err)
	defer c.Close()
	_, err = c.Write([]byte("ping"))
	require.NoError(t, err)
	reply := make([]byte, 4)
	_, err = io.ReadFull(c, reply)
	require.NoError(t, err)
	assert.Equal(t, "pong", string(reply))

	r := <-results
	require.NoError(t, r.err)
	assert.Equal(t, "www.social.test", r.info.ServerName)
	assert.Equal(t, []string{"h2", "http/1.1"}, r.info.ALPN)
	assert.Equal(t, "h2", r.state.NegotiatedProtocol)
	assert.Equal(t, uint16(tls.VersionTLS13), r.state.Version)
	assert.Equal(t, "ping", r.echoed)
}

// TestPeekThenSplice: the firewall peeks, then relays the TCP stream to the
// real server untouched; the client's handshake with that server succeeds
// and the server receives exactly the client's bytes.
func TestPeekThenSplice(t *testing.T) {
	cert, pool := selfSigned(t, "gateway-acme.sse.test")

	// The upstream server records the raw bytes it reads.
	upLn, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer upLn.Close()
	var upRaw bytes.Buffer
	upDone := make(chan error, 1)
	go func() {
		conn, err := upLn.Accept()
		if err != nil {
			upDone <- err
			return
		}
		defer conn.Close()
		srv := tls.Server(recordingConn{Conn: conn, w: &upRaw}, &tls.Config{Certificates: []tls.Certificate{cert}})
		if err := srv.Handshake(); err != nil {
			upDone <- err
			return
		}
		_, err = io.Copy(srv, srv) // echo until the client closes
		upDone <- err
	}()

	fwLn, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer fwLn.Close()
	fwDone := make(chan error, 1)
	var peeked *clienthello.Info
	go func() {
		conn, err := fwLn.Accept()
		if err != nil {
			fwDone <- err
			return
		}
		defer conn.Close()
		info, pc, err := clienthello.Peek(conn, clienthello.PeekOptions{})
		if err != nil {
			fwDone <- err
			return
		}
		peeked = info
		up, err := net.Dial("tcp", upLn.Addr().String())
		if err != nil {
			fwDone <- err
			return
		}
		defer up.Close()
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _ = io.Copy(pc, up) // Conn.ReadFrom
			_ = pc.CloseWrite()
		}()
		_, err = io.Copy(up, pc) // Conn.WriteTo
		_ = up.(*net.TCPConn).CloseWrite()
		wg.Wait()
		fwDone <- err
	}()

	raw, err := net.Dial("tcp", fwLn.Addr().String())
	require.NoError(t, err)
	var clientRaw bytes.Buffer
	c := tls.Client(recordingConn{Conn: raw, w: &clientRaw, writes: true}, &tls.Config{ServerName: "gateway-acme.sse.test", RootCAs: pool})
	require.NoError(t, c.Handshake())
	msg := bytes.Repeat([]byte("tunnel frame "), 4096)
	wrote := make(chan error, 1)
	go func() {
		_, err := c.Write(msg)
		wrote <- err
	}()
	got := make([]byte, len(msg))
	_, err = io.ReadFull(c, got)
	require.NoError(t, <-wrote)
	require.NoError(t, err)
	assert.Equal(t, msg, got)
	require.NoError(t, c.CloseWrite())
	require.NoError(t, raw.(*net.TCPConn).CloseWrite())
	_, _ = io.Copy(io.Discard, raw)
	require.NoError(t, c.Close())

	require.NoError(t, <-fwDone)
	require.NoError(t, <-upDone)
	assert.Equal(t, "gateway-acme.sse.test", peeked.ServerName)
	assert.Equal(t, clientRaw.Bytes(), upRaw.Bytes(), "upstream read exactly what the client wrote")
}

// recordingConn copies what is read (or, with writes, what is written)
// to w.
type recordingConn struct {
	net.Conn
	w      *bytes.Buffer
	writes bool
}

func (r recordingConn) Read(p []byte) (int, error) {
	n, err := r.Conn.Read(p)
	if !r.writes {
		r.w.Write(p[:n])
	}
	return n, err
}

func (r recordingConn) Write(p []byte) (int, error) {
	n, err := r.Conn.Write(p)
	if r.writes {
		r.w.Write(p[:n])
	}
	return n, err
}

func TestConnRelayDelegates(t *testing.T) {
	hello := readHex(t, "go-tls13.hex")

	// WriteTo replays, then hands the rest of the stream to io.Copy, which
	// prefers the underlying conn's own WriteTo (splice, on TCP).
	spy := &copySpy{Conn: pipeClient(t, writeAll([][]byte{[]byte("rest")}, true))}
	pc := peekedOver(t, spy, hello)
	var sink bytes.Buffer
	n, err := pc.WriteTo(&sink)
	require.NoError(t, err)
	assert.True(t, spy.writeTo, "underlying WriteTo used")
	assert.Equal(t, int64(len(hello)+4), n)
	assert.Equal(t, append(bytes.Clone(hello), "rest"...), sink.Bytes())

	// ReadFrom goes to the underlying conn's ReadFrom.
	var upstream bytes.Buffer
	spy = &copySpy{Conn: nopConn{}, dst: &upstream}
	pc = peekedOver(t, spy, hello)
	n, err = pc.ReadFrom(bytes.NewReader([]byte("from upstream")))
	require.NoError(t, err)
	assert.Equal(t, int64(13), n)
	assert.True(t, spy.readFrom, "underlying ReadFrom used")
	assert.Equal(t, "from upstream", upstream.String())
}

// peekedOver peeks hello from a conn whose reads come from hello and then
// from under.
func peekedOver(t *testing.T, under net.Conn, hello []byte) *clienthello.Conn {
	t.Helper()
	_, pc, err := clienthello.Peek(&prefixConn{Conn: under, prefix: bytes.Clone(hello)}, clienthello.PeekOptions{Timeout: -1})
	require.NoError(t, err)
	pc2 := pc.Unwrap().(*prefixConn)
	require.Empty(t, pc2.prefix)
	return pc
}

// prefixConn reads prefix first; its WriteTo and ReadFrom are those of
// the conn it wraps, which must have them.
type prefixConn struct {
	net.Conn
	prefix []byte
}

func (p *prefixConn) Read(b []byte) (int, error) {
	if len(p.prefix) > 0 {
		n := copy(b, p.prefix)
		p.prefix = p.prefix[n:]
		return n, nil
	}
	return p.Conn.Read(b)
}

func (p *prefixConn) WriteTo(w io.Writer) (int64, error) {
	return p.Conn.(io.WriterTo).WriteTo(w)
}

func (p *prefixConn) ReadFrom(r io.Reader) (int64, error) {
	return p.Conn.(io.ReaderFrom).ReadFrom(r)
}

// copySpy records whether io.Copy used its WriteTo or ReadFrom.
type copySpy struct {
	net.Conn
	dst               io.Writer
	writeTo, readFrom bool
}

func (s *copySpy) WriteTo(w io.Writer) (int64, error) {
	s.writeTo = true
	return io.Copy(w, struct{ io.Reader }{s.Conn})
}

func (s *copySpy) ReadFrom(r io.Reader) (int64, error) {
	s.readFrom = true
	return io.Copy(s.dst, r)
}

// nopConn is a net.Conn that does nothing.
type nopConn struct{ net.Conn }

func TestConnDelegates(t *testing.T) {
	// net.Pipe: no CloseWrite.
	a, b := net.Pipe()
	defer b.Close()
	pc := clienthelloConn(t, a)
	assert.ErrorIs(t, pc.CloseWrite(), errors.ErrUnsupported)
	assert.Equal(t, a.LocalAddr(), pc.LocalAddr())
	assert.Equal(t, a.RemoteAddr(), pc.RemoteAddr())
	require.NoError(t, pc.SetDeadline(time.Now().Add(time.Hour)))
	require.NoError(t, pc.SetWriteDeadline(time.Now().Add(time.Hour)))
	require.NoError(t, pc.SetReadDeadline(time.Now().Add(-time.Second)))
	_, err := pc.Read(make([]byte, 1))
	assert.ErrorIs(t, err, os.ErrDeadlineExceeded)
	require.NoError(t, pc.Close())
	_, err = pc.Write([]byte("x"))
	assert.ErrorIs(t, err, io.ErrClosedPipe)

	// TCP: CloseWrite half-closes.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	s := <-accepted
	require.NotNil(t, s)
	defer s.Close()
	pc = clienthelloConn(t, c)
	defer pc.Close()
	_, err = pc.Write([]byte("bye"))
	require.NoError(t, err)
	require.NoError(t, pc.CloseWrite())
	got, err := io.ReadAll(s)
	require.NoError(t, err)
	assert.Equal(t, "bye", string(got))
}

// clienthelloConn gets a *clienthello.Conn around c from a Peek that fails
// at once (the deadline has passed), buffering nothing.
func clienthelloConn(t *testing.T, c net.Conn) *clienthello.Conn {
	t.Helper()
	_, pc, err := clienthello.Peek(c, clienthello.PeekOptions{Timeout: time.Nanosecond})
	require.ErrorIs(t, err, os.ErrDeadlineExceeded)
	require.Empty(t, pc.Buffered())
	return pc
}

func TestConnReadDoesNotAllocate(t *testing.T) {
	hello := readHex(t, "chrome143.hex")
	pc := peekedOver(t, nopConn{}, hello)
	buf := make([]byte, 64)
	allocs := testing.AllocsPerRun(20, func() {
		_, _ = pc.Read(buf)
	})
	assert.Zero(t, allocs)
}
