package socks5

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"golang.org/x/net/proxy"

	"github.com/pinwall/pinwall/failure"
	"github.com/pinwall/pinwall/internal/syncbuf"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// logBuffer is a concurrency-safe slog sink for assertions on log lines.
type logBuffer struct{ syncbuf.Buffer }

func (b *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// eventually polls cond, for log lines written after the client saw the reply.
func (b *logBuffer) waitFor(t *testing.T, substr ...string) {
	t.Helper()
	assert.Eventually(t, func() bool {
		s := b.String()
		for _, x := range substr {
			if !strings.Contains(s, x) {
				return false
			}
		}
		return true
	}, 10*time.Second, 5*time.Millisecond, "log lacks %q:\n%s", substr, b.String())
}

// startServer runs srv on a loopback listener until the test ends, then
// checks that Close stops Serve cleanly.
func startServer(t testing.TB, srv *Server) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(context.Background(), l) }()
	t.Cleanup(func() {
		require.NoError(t, srv.Close())
		select {
		case err := <-done:
			assert.NoError(t, err)
		case <-time.After(5 * time.Second):
			t.Error("Serve did not return after Close")
		}
	})
	return l.Addr().String()
}

// echoServer echoes every connection, half-closing after the client's EOF.
type echoServer struct {
	l  net.Listener
	wg sync.WaitGroup
}

func newEchoServer(t testing.TB) *echoServer {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	e := &echoServer{l: l}
	e.wg.Add(1)
	go e.serve()
	t.Cleanup(func() {
		l.Close()
		e.wg.Wait()
	})
	return e
}

func (e *echoServer) serve() {
	defer e.wg.Done()
	for {
		c, err := e.l.Accept()
		if err != nil {
			return
		}
		e.wg.Add(1)
		go func() {
			defer e.wg.Done()
			defer c.Close()
			io.Copy(c, c)
			c.(*net.TCPConn).CloseWrite()
		}()
	}
}

func (e *echoServer) addr() string { return e.l.Addr().String() }

// recordingDial sends every destination to target and records what it was asked.
type recordingDial struct {
	target string
	mu     sync.Mutex
	asked  []string
}

func (d *recordingDial) dial(ctx context.Context, network, address string) (net.Conn, error) {
	d.mu.Lock()
	d.asked = append(d.asked, network+" "+address)
	d.mu.Unlock()
	var nd net.Dialer
	return nd.DialContext(ctx, "tcp", d.target)
}

func (d *recordingDial) last() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.asked) == 0 {
		return ""
	}
	return d.asked[len(d.asked)-1]
}

// forward is the dialer x/net/proxy uses to reach the SOCKS server; it
// keeps the raw TCP connection, since the proxy's wrapper hides CloseWrite.
type forward struct{ raw *net.TCPConn }

func (f *forward) Dial(network, address string) (net.Conn, error) {
	return f.DialContext(context.Background(), network, address)
}

func (f *forward) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, network, address)
	if err != nil {
		return nil, err
	}
	f.raw = c.(*net.TCPConn)
	return c, nil
}

// socksConn is a connection made through golang.org/x/net/proxy.
type socksConn struct {
	net.Conn
	raw *net.TCPConn
}

func (c socksConn) CloseWrite() error { return c.raw.CloseWrite() }

// socksDial connects to dst through the SOCKS5 server at addr with
// golang.org/x/net/proxy, a third-party client.
func socksDial(ctx context.Context, addr string, auth *proxy.Auth, dst string) (socksConn, error) {
	fwd := &forward{}
	d, err := proxy.SOCKS5("tcp", addr, auth, fwd)
	if err != nil {
		return socksConn{}, err
	}
	c, err := d.(proxy.ContextDialer).DialContext(ctx, "tcp", dst)
	if err != nil {
		return socksConn{}, err
	}
	return socksConn{Conn: c, raw: fwd.raw}, nil
}

// TestProxyClientAddressTypes drives the server with golang.org/x/net/proxy,
// a third-party client, for each address type.
func TestProxyClientAddressTypes(t *testing.T) {
	echo := newEchoServer(t)
	rd := &recordingDial{target: echo.addr()}
	addr := startServer(t, &Server{Dial: rd.dial})

	tests := []struct {
		name, dst, want string
	}{
		{"domain name passed unresolved", "www.social.test:443", "tcp www.social.test:443"},
		{"ipv4", "192.0.2.10:80", "tcp 192.0.2.10:80"},
		{"ipv6", "[2001:db8::10]:443", "tcp [2001:db8::10]:443"},
		{"name that does not exist anywhere", "nowhere.invalid:8443", "tcp nowhere.invalid:8443"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			c, err := socksDial(ctx, addr, nil, tt.dst)
			require.NoError(t, err)
			defer c.Close()
			assert.Equal(t, tt.want, rd.last())

			msg := []byte("hello through " + tt.dst)
			_, err = c.Write(msg)
			require.NoError(t, err)
			require.NoError(t, c.CloseWrite())
			got, err := io.ReadAll(c)
			require.NoError(t, err)
			assert.Equal(t, msg, got)
		})
	}
}

// TestProxyClientOfferingCredentials: x/net/proxy with credentials offers
// both no-auth and username/password; the server picks no-auth.
func TestProxyClientOfferingCredentials(t *testing.T) {
	echo := newEchoServer(t)
	addr := startServer(t, &Server{Dial: (&recordingDial{target: echo.addr()}).dial})
	c, err := socksDial(context.Background(), addr, &proxy.Auth{User: "u", Password: "p"}, "www.social.test:443")
	require.NoError(t, err)
	c.Close()
}

// rawHandshake does the no-auth greeting and sends req, returning the conn.
func rawHandshake(t *testing.T, addr string, req []byte) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(5 * time.Second))
	_, err = c.Write([]byte{5, 1, 0})
	require.NoError(t, err)
	var m [2]byte
	_, err = io.ReadFull(c, m[:])
	require.NoError(t, err)
	require.Equal(t, [2]byte{5, 0}, m)
	_, err = c.Write(req)
	require.NoError(t, err)
	return c
}

func readReply(t *testing.T, c net.Conn) []byte {
	t.Helper()
	b := make([]byte, 10)
	_, err := io.ReadFull(c, b)
	require.NoError(t, err)
	return b
}

func TestReplyCodesPerCause(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	tests := []struct {
		name      string
		err       error
		want      Reply
		wantCause string
	}{
		{"refused (attributed)", failure.New(failure.LegGatewayOrigin, failure.CauseConnectionRefused, "dial", "192.0.2.10:443", nil), ReplyConnectionRefused, "connection-refused"},
		{"refused (plain syscall error)", refused, ReplyConnectionRefused, "connection-refused"},
		{"dns", failure.New(failure.LegGatewayOrigin, failure.CauseDNS, "resolve", "x.test", nil), ReplyHostUnreachable, "dns-failure"},
		{"dns (plain)", &net.DNSError{Err: "no such host", Name: "x.test", IsNotFound: true}, ReplyHostUnreachable, "dns-failure"},
		{"policy block", failure.New(failure.LegClientFirewall, failure.CausePolicyBlock, "dial", "", nil), ReplyNotAllowed, "policy-block"},
		{"tunnel down (fail-close)", fmt.Errorf("client.Dial: %w", failure.New(failure.LegClientGateway, failure.CauseTunnelDown, "dial", "", nil)), ReplyNotAllowed, "tunnel-down"},
		{"timeout", failure.New(failure.LegClientGateway, failure.CauseTimeout, "open stream", "", nil), ReplyHostUnreachable, "timeout"},
		{"deadline (plain)", context.DeadlineExceeded, ReplyHostUnreachable, "timeout"},
		{"pin mismatch", failure.New(failure.LegClientGateway, failure.CausePinMismatch, "tls", "", nil), ReplyGeneralFailure, "pin-mismatch"},
		{"unknown", errors.New("boom"), ReplyGeneralFailure, "cause=unclassified"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, ReplyFor(tt.err))

			var logs logBuffer
			addr := startServer(t, &Server{
				Dial:   func(context.Context, string, string) (net.Conn, error) { return nil, tt.err },
				Logger: logs.logger(),
			})
			c := rawHandshake(t, addr, []byte{5, 1, 0, 3, 6, 'x', '.', 't', 'e', 's', 't', 1, 187})
			assert.Equal(t, []byte{5, byte(tt.want), 0, 1, 0, 0, 0, 0, 0, 0}, readReply(t, c))
			_, err := c.Read(make([]byte, 1))
			assert.ErrorIs(t, err, io.EOF, "server closes after a refusal")
			logs.waitFor(t, "socks5: refused", "dst=x.test:443", "reply=\""+tt.want.String()+"\"", tt.wantCause)
		})
	}
	assert.Equal(t, ReplySucceeded, ReplyFor(nil))
}

func TestMalformedHandshakes(t *testing.T) {
	tests := []struct {
		name string
		send []byte
		// want is what the server answers before closing.
		want []byte
		log  string
	}{
		{"http instead of socks", []byte("GET / HTTP/1.1\r\n\r\n"), nil, "unsupported protocol version"},
		{"socks4", []byte{4, 1, 0, 80, 127, 0, 0, 1, 0}, nil, "unsupported protocol version"},
		{"zero methods", []byte{5, 0}, nil, "no authentication method"},
		{"only gssapi", []byte{5, 1, 1}, []byte{5, 0xFF}, "no acceptable authentication method"},
		{"only username/password", []byte{5, 1, 2}, []byte{5, 0xFF}, "methods=02"},
		{"truncated greeting", []byte{5, 3, 0}, nil, "cause=truncated"},
		{"closed at once", nil, nil, `cause="closed before handshake"`},
		{"bind", []byte{5, 1, 0, 5, 2, 0, 1, 10, 0, 0, 1, 0, 21}, []byte{5, 0, 5, 7, 0, 1, 0, 0, 0, 0, 0, 0}, "cause=\"command not supported\""},
		{"udp associate", []byte{5, 1, 0, 5, 3, 0, 1, 0, 0, 0, 0, 0, 0}, []byte{5, 0, 5, 7, 0, 1, 0, 0, 0, 0, 0, 0}, "cmd=udp-associate"},
		{"unknown address type", []byte{5, 1, 0, 5, 1, 0, 9, 1, 2}, []byte{5, 0, 5, 8, 0, 1, 0, 0, 0, 0, 0, 0}, "address type not supported"},
		{"reserved byte set", []byte{5, 1, 0, 5, 1, 7, 1, 1, 2, 3, 4, 0, 80}, []byte{5, 0, 5, 1, 0, 1, 0, 0, 0, 0, 0, 0}, "reserved byte"},
		{"empty name", []byte{5, 1, 0, 5, 1, 0, 3, 0, 0, 80}, []byte{5, 0, 5, 1, 0, 1, 0, 0, 0, 0, 0, 0}, "empty domain name"},
		{"control byte in name", []byte{5, 1, 0, 5, 1, 0, 3, 2, 'a', '\n', 0, 80}, []byte{5, 0, 5, 1, 0, 1, 0, 0, 0, 0, 0, 0}, "invalid domain name"},
		{"truncated request", []byte{5, 1, 0, 5, 1, 0, 3, 30, 'a', 'b'}, []byte{5, 0}, "cause=truncated"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logs logBuffer
			rd := &recordingDial{target: "127.0.0.1:1"}
			addr := startServer(t, &Server{Dial: rd.dial, Logger: logs.logger()})
			c, err := net.DialTimeout("tcp", addr, 5*time.Second)
			require.NoError(t, err)
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			_, err = c.Write(tt.send)
			require.NoError(t, err)
			c.(*net.TCPConn).CloseWrite()
			got, err := io.ReadAll(c)
			require.NoError(t, err, "the server must close, not hang")
			assert.Equal(t, string(tt.want), string(got))
			logs.waitFor(t, tt.log)
			assert.Empty(t, rd.last(), "nothing dialed")
		})
	}
}

func TestHandshakeDeadlineForSlowPeer(t *testing.T) {
	var logs logBuffer
	addr := startServer(t, &Server{
		Dial:             (&recordingDial{target: "127.0.0.1:1"}).dial,
		Logger:           logs.logger(),
		HandshakeTimeout: 150 * time.Millisecond,
	})
	for _, send := range [][]byte{nil, {5}, {5, 1, 0, 5, 1, 0, 3, 200}} {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		require.NoError(t, err)
		c.SetDeadline(time.Now().Add(5 * time.Second))
		start := time.Now()
		_, err = c.Write(send) // and then stall without closing
		require.NoError(t, err)
		_, err = io.ReadAll(c)
		elapsed := time.Since(start)
		c.Close()
		require.NoError(t, err, "server closed the stalled peer")
		assert.Less(t, elapsed, 5*time.Second)
		assert.GreaterOrEqual(t, elapsed, 100*time.Millisecond)
	}
	logs.waitFor(t, "cause=timeout")
}

func TestHalfCloseRelay(t *testing.T) {
	// The upstream reads until EOF, then answers with what it counted: this
	// only works if the client's CloseWrite reaches it through the relay.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		n, _ := io.Copy(io.Discard, c)
		fmt.Fprintf(c, "got %d bytes", n)
	}()
	t.Cleanup(func() { l.Close(); wg.Wait() })

	addr := startServer(t, &Server{Dial: (&recordingDial{target: l.Addr().String()}).dial})
	c, err := socksDial(context.Background(), addr, nil, "app.files.test:443")
	require.NoError(t, err)
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	_, err = c.Write(make([]byte, 100_000))
	require.NoError(t, err)
	require.NoError(t, c.CloseWrite())
	got, err := io.ReadAll(c)
	require.NoError(t, err)
	assert.Equal(t, "got 100000 bytes", string(got))
}

func TestConcurrentRelays(t *testing.T) {
	const conns = 200
	echo := newEchoServer(t)
	addr := startServer(t, &Server{Dial: (&recordingDial{target: echo.addr()}).dial})

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	errs := make(chan error, conns)
	var wg sync.WaitGroup
	for i := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- roundTrip(ctx, addr, fmt.Sprintf("site%d.test:443", i), 1+i*97)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		assert.NoError(t, err)
	}
}

// roundTrip sends size random bytes through the proxy and checks the echo.
func roundTrip(ctx context.Context, addr, dst string, size int) error {
	c, err := socksDial(ctx, addr, nil, dst)
	if err != nil {
		return err
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	msg := make([]byte, size)
	rand.Read(msg)
	werr := make(chan error, 1)
	go func() {
		_, err := c.Write(msg)
		if err == nil {
			err = c.CloseWrite()
		}
		werr <- err
	}()
	got, err := io.ReadAll(c)
	if err := <-werr; err != nil {
		return fmt.Errorf("%s: write: %w", dst, err)
	}
	if err != nil {
		return fmt.Errorf("%s: read: %w", dst, err)
	}
	if !bytes.Equal(got, msg) {
		return fmt.Errorf("%s: echoed %d bytes, sent %d (or content differs)", dst, len(got), len(msg))
	}
	return nil
}

func TestMaxConns(t *testing.T) {
	echo := newEchoServer(t)
	var logs logBuffer
	addr := startServer(t, &Server{Dial: (&recordingDial{target: echo.addr()}).dial, MaxConns: 1, Logger: logs.logger()})
	first, err := socksDial(context.Background(), addr, nil, "a.test:80")
	require.NoError(t, err)
	defer first.Close()

	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	require.NoError(t, err)
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	_, err = io.ReadAll(c)
	require.NoError(t, err, "the extra connection is closed at once")
	logs.waitFor(t, "too many connections", "max_conns=1")

	// The first relay still works; once it ends, a slot frees up.
	_, err = first.Write([]byte("ping"))
	require.NoError(t, err)
	b := make([]byte, 4)
	_, err = io.ReadFull(first, b)
	require.NoError(t, err)
	assert.Equal(t, "ping", string(b))
	first.Close()
	assert.Eventually(t, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		return roundTrip(ctx, addr, "b.test:80", 10) == nil
	}, 5*time.Second, 20*time.Millisecond)
}

func TestCloseEndsRelaysAndServe(t *testing.T) {
	echo := newEchoServer(t)
	srv := &Server{Dial: (&recordingDial{target: echo.addr()}).dial}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(context.Background(), l) }()

	c, err := socksDial(context.Background(), l.Addr().String(), nil, "a.test:80")
	require.NoError(t, err)
	defer c.Close()

	// A second connection stalls in the handshake; Close must not wait for its deadline.
	stalled, err := net.Dial("tcp", l.Addr().String())
	require.NoError(t, err)
	defer stalled.Close()

	require.NoError(t, srv.Close())
	require.NoError(t, <-done)
	require.NoError(t, srv.Close(), "idempotent")
	c.SetDeadline(time.Now().Add(5 * time.Second))
	_, err = io.ReadAll(c)
	assert.NoError(t, err, "relay closed by Close")

	l2, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	assert.ErrorIs(t, srv.Serve(context.Background(), l2), ErrServerClosed)
	_, err = l2.Accept()
	assert.ErrorIs(t, err, net.ErrClosed, "Serve closes its listener")
}

func TestServeStopsWithContext(t *testing.T) {
	srv := &Server{Dial: (&recordingDial{target: "127.0.0.1:1"}).dial}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, l) }()
	cancel()
	select {
	case err := <-done:
		assert.NoError(t, err)
	case <-time.After(5 * time.Second):
		t.Fatal("Serve ignored its context")
	}

	// A listener closed by someone else ends Serve with an error saying so.
	l2, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go func() { done <- srv.Serve(context.Background(), l2) }()
	time.Sleep(10 * time.Millisecond)
	l2.Close()
	err = <-done
	assert.ErrorIs(t, err, net.ErrClosed)
	assert.True(t, strings.HasPrefix(err.Error(), "socks5.Serve: "), err.Error())
	require.NoError(t, srv.Close())
}

func TestServeNeedsDial(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	err = (&Server{}).Serve(context.Background(), l)
	assert.ErrorContains(t, err, "socks5: Server.Dial is nil")
}

func TestDialHonoursConnectTimeoutAndClose(t *testing.T) {
	hang := func(ctx context.Context, _, _ string) (net.Conn, error) {
		<-ctx.Done()
		return nil, failure.New(failure.LegClientGateway, failure.CauseTimeout, "dial", "", ctx.Err())
	}
	var logs logBuffer
	addr := startServer(t, &Server{Dial: hang, ConnectTimeout: 100 * time.Millisecond, Logger: logs.logger()})
	c := rawHandshake(t, addr, []byte{5, 1, 0, 1, 192, 0, 2, 99, 1, 187})
	assert.Equal(t, byte(ReplyHostUnreachable), readReply(t, c)[1])
	logs.waitFor(t, "cause=timeout", "dst=192.0.2.99:443")
}

// TestCurlSocks5Hostname runs the real curl through the server: the name is
// resolved by our Dial (as the gateway would), never by curl.
func TestCurlSocks5Hostname(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("curl not found in PATH: skipping the interop test with curl --socks5-hostname")
	}
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from %s", r.Host)
	}))
	t.Cleanup(web.Close)
	target := strings.TrimPrefix(web.URL, "http://")

	var mu sync.Mutex
	var asked []string
	dial := func(ctx context.Context, network, address string) (net.Conn, error) {
		mu.Lock()
		asked = append(asked, address)
		mu.Unlock()
		if address != "www.social.test:80" {
			return nil, failure.New(failure.LegGatewayOrigin, failure.CauseDNS, "resolve", address, nil)
		}
		var d net.Dialer
		return d.DialContext(ctx, network, target)
	}
	addr := startServer(t, &Server{Dial: dial})

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	run := func(url string) (string, error) {
		cmd := exec.CommandContext(ctx, curl, "-sS", "--max-time", "10", "--socks5-hostname", addr, url)
		cmd.Env = []string{"PATH=" + os.Getenv("PATH")} // no proxy variables from the environment
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err := run("http://www.social.test/")
	require.NoError(t, err, out)
	assert.Equal(t, "hello from www.social.test", out)

	out, err = run("http://nope.social.test/")
	require.Error(t, err)
	// curl 7.x prints the reply code, newer versions its name.
	assert.Regexp(t, `\(4\)|(?i)unreachable`, out, "curl reports the SOCKS reply")

	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, []string{"www.social.test:80", "nope.social.test:80"}, asked)
}

// BenchmarkRelay measures bytes echoed through the server: one connection per
// iteration, 1 MiB each way.
func BenchmarkRelay(b *testing.B) {
	echo := newEchoServer(b)
	addr := startServer(b, &Server{Dial: (&recordingDial{target: echo.addr()}).dial})
	const size = 1 << 20
	b.SetBytes(2 * size)
	for b.Loop() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := roundTrip(ctx, addr, "bench.test:443", size)
		cancel()
		if err != nil {
			b.Fatal(err)
		}
	}
}

// tempErr is an accept error the server should retry.
type tempErr struct{}

func (tempErr) Error() string   { return "too many open files (simulated)" }
func (tempErr) Temporary() bool { return true }
func (tempErr) Timeout() bool   { return false }

// flakyListener fails its first Accept with a temporary error.
type flakyListener struct {
	net.Listener
	once sync.Once
}

func (l *flakyListener) Accept() (net.Conn, error) {
	var fail bool
	l.once.Do(func() { fail = true })
	if fail {
		return nil, tempErr{}
	}
	return l.Listener.Accept()
}

func TestAcceptRetriesTemporaryErrors(t *testing.T) {
	echo := newEchoServer(t)
	var logs logBuffer
	srv := &Server{Dial: (&recordingDial{target: echo.addr()}).dial, Logger: logs.logger()}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(context.Background(), &flakyListener{Listener: l}) }()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, roundTrip(ctx, l.Addr().String(), "a.test:80", 100))
	logs.waitFor(t, "accept failed, retrying")
	require.NoError(t, srv.Close())
	require.NoError(t, <-done)
}

// TestRelayWithoutHalfClose: an upstream that cannot half-close (net.Pipe,
// like some tunnel streams) ends the whole relay when either side ends.
func TestRelayWithoutHalfClose(t *testing.T) {
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait)
	dial := func(context.Context, string, string) (net.Conn, error) {
		near, far := net.Pipe()
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer far.Close()
			far.Write([]byte("banner"))
		}()
		return near, nil
	}
	addr := startServer(t, &Server{Dial: dial})
	c := rawHandshake(t, addr, []byte{5, 1, 0, 3, 6, 'p', '.', 't', 'e', 's', 't', 0, 25})
	assert.Equal(t, []byte{5, 0, 0, 1, 0, 0, 0, 0, 0, 0}, readReply(t, c), "a non-TCP upstream binds 0.0.0.0:0")
	got, err := io.ReadAll(c)
	require.NoError(t, err)
	assert.Equal(t, "banner", string(got))
}
