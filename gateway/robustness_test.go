package gateway_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/dtls/v3"
	dtlsnet "github.com/pion/dtls/v3/pkg/net"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pinwall/pinwall/accept"
	"github.com/pinwall/pinwall/failure"
	"github.com/pinwall/pinwall/gateway"
	"github.com/pinwall/pinwall/hostnet"
	"github.com/pinwall/pinwall/internal/syncbuf"
	"github.com/pinwall/pinwall/pki"
	"github.com/pinwall/pinwall/resolve"
	"github.com/pinwall/pinwall/tunnel"
)

// The test network: a gateway, a laptop and an echo origin on a hostnet.Sim.
const (
	gatewayName = "gateway.test"
	gatewayAddr = "203.0.113.10:443"
	echoHost    = "echo.test"
	echoPort    = 7

	headerTimeout    = 200 * time.Millisecond
	handshakeTimeout = time.Second
	maxStreams       = 16
)

var (
	gatewayIP = netip.MustParseAddr("203.0.113.10")
	laptopIP  = netip.MustParseAddr("10.10.10.100")
	originIP  = netip.MustParseAddr("192.0.2.10")
)

var transports = []tunnel.Transport{tunnel.TransportTLS, tunnel.TransportDTLS}

// echoServer echoes each TCP connection until the peer half-closes.
type echoServer struct {
	l  net.Listener
	wg sync.WaitGroup

	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

func startEcho(t testing.TB, stack hostnet.Stack) *echoServer {
	t.Helper()
	l, err := stack.Listen(context.Background(), "tcp", netip.AddrPortFrom(originIP, echoPort).String())
	require.NoError(t, err)
	// The origin survives a descriptor shortage like every pinwall listener
	// (TestGatewaySurvivesDescriptorExhaustion runs the process out).
	e := &echoServer{l: accept.Wrap(l, accept.Config{Name: "echo origin"}), conns: map[net.Conn]struct{}{}}
	e.wg.Add(1)
	go e.acceptLoop()
	t.Cleanup(e.close)
	return e
}

func (e *echoServer) acceptLoop() {
	defer e.wg.Done()
	for {
		c, err := e.l.Accept()
		if err != nil {
			return
		}
		e.mu.Lock()
		e.conns[c] = struct{}{}
		e.mu.Unlock()
		e.wg.Add(1)
		go e.echo(c)
	}
}

func (e *echoServer) echo(c net.Conn) {
	defer e.wg.Done()
	defer func() {
		e.mu.Lock()
		delete(e.conns, c)
		e.mu.Unlock()
		c.Close()
	}()
	if _, err := io.Copy(c, c); err == nil {
		_ = c.(interface{ CloseWrite() error }).CloseWrite()
	}
}

func (e *echoServer) close() {
	e.l.Close()
	e.mu.Lock()
	for c := range e.conns {
		c.Close()
	}
	e.mu.Unlock()
	e.wg.Wait()
}

// world is a started gateway with a laptop to attack it from.
type world struct {
	sim    *hostnet.Sim
	pki    *pki.Set
	gw     *gateway.Gateway
	cfg    gateway.Config
	laptop *hostnet.Host
	device *tls.Certificate
	log    *syncbuf.Buffer
}

// newWorld starts a gateway with a short header deadline and a small stream
// limit; tweak may change its configuration before it starts.
func newWorld(t testing.TB, tweak func(*gateway.Config)) *world {
	t.Helper()
	set, err := pki.NewSet(pki.Config{}, "acme")
	require.NoError(t, err)
	serverCert, err := set.ServerCert(gatewayName)
	require.NoError(t, err)
	device, err := set.DeviceCert("acme", "alice@acme.test", "LAPTOP-0001")
	require.NoError(t, err)

	sim := hostnet.NewSim(nil)
	gwHost, err := sim.AddHost("gateway", gatewayIP)
	require.NoError(t, err)
	laptop, err := sim.AddHost("laptop", laptopIP)
	require.NoError(t, err)
	originHost, err := sim.AddHost("origin", originIP)
	require.NoError(t, err)
	startEcho(t, originHost)
	zone, err := resolve.NewZone(resolve.Record{Name: echoHost, Addrs: []netip.Addr{originIP}})
	require.NoError(t, err)

	w := &world{sim: sim, pki: set, laptop: laptop, device: device, log: &syncbuf.Buffer{}}
	w.cfg = gateway.Config{
		Name:             "gw-test",
		Addr:             netip.MustParseAddrPort("0.0.0.0:443"),
		Certificate:      serverCert,
		ClientCAs:        set.Tenant.Pool(),
		Stack:            gwHost,
		Resolver:         zone,
		Log:              w.log,
		MaxStreams:       maxStreams,
		HeaderTimeout:    headerTimeout,
		HandshakeTimeout: handshakeTimeout,
	}
	if tweak != nil {
		tweak(&w.cfg)
	}
	w.gw, err = gateway.New(w.cfg)
	require.NoError(t, err)
	require.NoError(t, w.gw.Start(context.Background())) // stopped by the cleanup
	t.Cleanup(func() { require.NoError(t, w.gw.Close()) })
	return w
}

func testCtx(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// dialTLS runs a device's TLS handshake with the gateway and reads its
// greeting.
func (w *world) dialTLS(ctx context.Context) (*tls.Conn, error) {
	raw, err := w.laptop.DialContext(ctx, "tcp", gatewayAddr)
	if err != nil {
		return nil, err
	}
	conn := tls.Client(raw, &tls.Config{
		ServerName:   gatewayName,
		RootCAs:      w.pki.Internet.Pool(),
		Certificates: []tls.Certificate{*w.device},
		MinVersion:   tls.VersionTLS13,
		NextProtos:   []string{tunnel.ALPN},
	})
	stop := context.AfterFunc(ctx, func() { _ = raw.SetDeadline(time.Now()) })
	defer stop()
	if err := conn.HandshakeContext(ctx); err != nil {
		conn.Close()
		return nil, err
	}
	if _, err := tunnel.ReadGreeting(conn); err != nil {
		conn.Close()
		return nil, err
	}
	_ = raw.SetDeadline(time.Time{})
	return conn, nil
}

// dialDTLS runs a device's DTLS handshake with the gateway and reads its
// greeting, as the client does.
func (w *world) dialDTLS(ctx context.Context) (*dtls.Conn, error) {
	uc, err := w.laptop.DialContext(ctx, "udp", gatewayAddr)
	if err != nil {
		return nil, err
	}
	conn, err := dtls.ClientWithOptions(dtlsnet.PacketConnFromConn(uc), uc.RemoteAddr(),
		dtls.WithServerName(gatewayName),
		dtls.WithRootCAs(w.pki.Internet.Pool()),
		dtls.WithCertificates(*w.device),
		dtls.WithExtendedMasterSecret(dtls.RequireExtendedMasterSecret),
		dtls.WithSupportedProtocols(tunnel.ALPN),
	)
	if err != nil {
		uc.Close()
		return nil, err
	}
	if err := conn.HandshakeContext(ctx); err != nil {
		conn.Close()
		return nil, err
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.SetReadDeadline(time.Now()) })
	defer stop()
	if _, err := tunnel.ReadGreeting(conn); err != nil {
		conn.Close()
		return nil, err
	}
	_ = conn.SetReadDeadline(time.Time{})
	return conn, nil
}

// openTunnel brings a tunnel up over tr; it is closed when the test ends.
func (w *world) openTunnel(t testing.TB, ctx context.Context, tr tunnel.Transport) tunnel.Session {
	t.Helper()
	var (
		sess tunnel.Session
		err  error
	)
	switch tr {
	case tunnel.TransportTLS:
		var conn *tls.Conn
		conn, err = w.dialTLS(ctx)
		require.NoError(t, err)
		sess, err = tunnel.NewTLSSession(context.Background(), conn, tunnel.RoleClient, tunnel.Config{})
	case tunnel.TransportDTLS:
		var conn *dtls.Conn
		conn, err = w.dialDTLS(ctx)
		require.NoError(t, err)
		sess, err = tunnel.NewDTLSSession(ctx, conn, tunnel.RoleClient, tunnel.Config{})
	}
	require.NoError(t, err)
	t.Cleanup(func() { sess.Close() })
	return sess
}

// exchange opens a stream, writes payload (half-closing after it when
// closeWrite), and reads the gateway's reply.
func exchange(ctx context.Context, sess tunnel.Session, payload []byte, closeWrite bool) (tunnel.Stream, tunnel.Reply, error) {
	st, err := sess.Open(ctx)
	if err != nil {
		return nil, tunnel.Reply{}, err
	}
	stop := context.AfterFunc(ctx, func() { _ = st.SetDeadline(time.Now()) })
	defer stop()
	if len(payload) > 0 {
		if _, err := st.Write(payload); err != nil {
			st.Close()
			return nil, tunnel.Reply{}, fmt.Errorf("write: %w", err)
		}
	}
	if closeWrite {
		if err := st.CloseWrite(); err != nil {
			st.Close()
			return nil, tunnel.Reply{}, fmt.Errorf("close write: %w", err)
		}
	}
	rep, err := tunnel.ReadReply(st)
	if err != nil {
		st.Close()
		return nil, tunnel.Reply{}, fmt.Errorf("read reply: %w", err)
	}
	return st, rep, nil
}

func echoRequest(t testing.TB, flowID uint64) []byte {
	t.Helper()
	b, err := tunnel.AppendRequest(nil, tunnel.Request{Host: echoHost, Port: echoPort, FlowID: flowID})
	require.NoError(t, err)
	return b
}

// holdFlow opens a flow to the echo origin, proves it relays and leaves it
// open: a flow that never finishes.
func holdFlow(ctx context.Context, sess tunnel.Session, flowID uint64) (tunnel.Stream, error) {
	req, err := tunnel.AppendRequest(nil, tunnel.Request{Host: echoHost, Port: echoPort, FlowID: flowID})
	if err != nil {
		return nil, err
	}
	st, rep, err := exchange(ctx, sess, req, false)
	if err != nil {
		return nil, err
	}
	if rep.Status != tunnel.StatusOK {
		st.Close()
		return nil, fmt.Errorf("flow %d: %v", flowID, rep.Err(echoHost))
	}
	stop := context.AfterFunc(ctx, func() { _ = st.SetDeadline(time.Now()) })
	defer stop()
	var b [1]byte
	if _, err := st.Write([]byte{'x'}); err != nil {
		st.Close()
		return nil, err
	}
	if _, err := io.ReadFull(st, b[:]); err != nil {
		st.Close()
		return nil, err
	}
	return st, nil
}

// requireEcho proves the tunnel (and the gateway) still carries flows.
func requireEcho(t testing.TB, ctx context.Context, sess tunnel.Session, flowID uint64) {
	t.Helper()
	st, rep, err := exchange(ctx, sess, echoRequest(t, flowID), false)
	require.NoError(t, err)
	defer st.Close()
	require.Equal(t, tunnel.StatusOK, rep.Status, "reply: %+v", rep)
	stop := context.AfterFunc(ctx, func() { _ = st.SetDeadline(time.Now()) })
	defer stop()
	msg := fmt.Sprintf("ping %d", flowID)
	_, err = st.Write([]byte(msg))
	require.NoError(t, err)
	require.NoError(t, st.CloseWrite())
	got, err := io.ReadAll(st)
	require.NoError(t, err)
	require.Equal(t, msg, string(got))
}

// waitEvents waits until at least n events match and returns them all.
func (w *world) waitEvents(t *testing.T, n int, match func(gateway.Event) bool) []gateway.Event {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		var got []gateway.Event
		for _, e := range w.gw.Events() {
			if match(e) {
				got = append(got, e)
			}
		}
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			require.Failf(t, "events not logged", "want %d matching events, have %d; all events: %+v", n, len(got), w.gw.Events())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// requireWrittenLog checks the JSON-lines log holds every event kept in
// memory: each refusal is logged, not only counted.
func (w *world) requireWrittenLog(t *testing.T) {
	t.Helper()
	// Kept first: an event is written and kept under one lock, so the
	// written log holds at least these, in order.
	kept := w.gw.Events()
	written, err := gateway.ReadEvents(bytes.NewReader(w.log.Bytes()))
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(written), len(kept))
	for i := range kept {
		assert.Equal(t, kept[i].Event, written[i].Event)
		assert.Equal(t, kept[i].Reason, written[i].Reason)
		assert.Equal(t, kept[i].Cause, written[i].Cause)
	}
}

// rawRequest encodes a request header by hand, bypassing Validate.
func rawRequest(version, cmd byte, port uint16, hostLen int, host string) []byte {
	b := []byte{'P', 'W', version, cmd}
	b = binary.BigEndian.AppendUint16(b, port)
	b = append(b, byte(hostLen))
	b = append(b, host...)
	return binary.BigEndian.AppendUint64(b, 42)
}

// TestMalformedStreamsRefused feeds one tunnel per transport every kind of
// bad stream header: each is refused with StatusBadRequest and logged with
// its reason, and the tunnel keeps carrying good flows after each.
func TestMalformedStreamsRefused(t *testing.T) {
	tests := []struct {
		name    string
		payload []byte
		// closeWrite half-closes the stream after the payload.
		closeWrite bool
		// reason is a regular expression the logged reason must match.
		reason string
		// slow marks a refusal that waits for the header deadline.
		slow bool
		// tlsOnly: an SCTP stream exists for the gateway only once it
		// carries data, so an empty stream never reaches it on DTLS.
		tlsOnly bool
	}{
		{name: "garbage", payload: []byte("GET / HTTP/1.1\r\nHost: www.social.test\r\n\r\n"), reason: `bad request magic "GE"`},
		{name: "binary garbage", payload: bytes.Repeat([]byte{0xff, 0x00, 0x16, 0x03}, 64), reason: `bad request magic`},
		{name: "wrong version", payload: rawRequest(2, tunnel.CmdConnect, 443, 9, echoHost), reason: `version 2, want 1`},
		{name: "unknown command", payload: rawRequest(tunnel.Version, 9, 443, 9, echoHost), reason: `command 9`},
		{name: "oversized host length 254", payload: rawRequest(tunnel.Version, tunnel.CmdConnect, 443, 254, strings.Repeat("a", 254)), reason: `host length 254 exceeds 253`},
		{name: "oversized host length 255", payload: rawRequest(tunnel.Version, tunnel.CmdConnect, 443, 255, ""), reason: `host length 255 exceeds 253`},
		{name: "empty host", payload: rawRequest(tunnel.Version, tunnel.CmdConnect, 443, 0, ""), reason: `host length 0`},
		{name: "control byte in host", payload: rawRequest(tunnel.Version, tunnel.CmdConnect, 443, 9, "echo\x00test"), reason: `host has byte 0x00`},
		{name: "port zero", payload: rawRequest(tunnel.Version, tunnel.CmdConnect, 0, 9, echoHost), reason: `port 0`},
		{name: "truncated fixed part then close", payload: []byte("PW\x01\x01\x01"), closeWrite: true, reason: `unexpected EOF`},
		{name: "truncated host then close", payload: rawRequest(tunnel.Version, tunnel.CmdConnect, 443, 200, "only-a-little")[:20], closeWrite: true, reason: `unexpected EOF`},
		{name: "closed before any byte", closeWrite: true, reason: `EOF`, tlsOnly: true},
		{name: "partial header then silence", payload: []byte("PW\x01"), reason: `deadline|timeout`, slow: true},
		{name: "no header at all", reason: `deadline|timeout`, slow: true, tlsOnly: true},
	}
	for _, tr := range transports {
		t.Run(string(tr), func(t *testing.T) {
			w := newWorld(t, nil)
			ctx := testCtx(t, time.Minute)
			sess := w.openTunnel(t, ctx, tr)
			flowID := uint64(1000)
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					if tt.tlsOnly && tr == tunnel.TransportDTLS {
						t.Skip("an SCTP stream without data never reaches the gateway")
					}
					start := time.Now()
					st, rep, err := exchange(ctx, sess, tt.payload, tt.closeWrite)
					require.NoError(t, err)
					st.Close()
					assert.Equal(t, tunnel.StatusBadRequest, rep.Status, "reply %+v", rep)
					assert.NotEmpty(t, rep.Message, "the reply says why")
					if tt.slow {
						assert.GreaterOrEqual(t, time.Since(start), headerTimeout, "refused at the header deadline, not before")
					}

					evs := w.waitEvents(t, 1, func(e gateway.Event) bool {
						return e.Event == gateway.EventStreamRefused && e.StreamID == st.ID()
					})
					require.Len(t, evs, 1)
					e := evs[0]
					assert.Regexp(t, tt.reason, e.Reason)
					assert.Contains(t, e.Reason, "bad stream header")
					assert.Equal(t, failure.CauseProtocol, e.Cause)
					assert.Equal(t, tunnel.StatusBadRequest.String(), e.Result)
					assert.Equal(t, string(tr), e.Transport)
					require.NotNil(t, e.Device)
					assert.Equal(t, "alice@acme.test", e.Device.User)

					// The tunnel and the gateway carry on.
					flowID++
					requireEcho(t, ctx, sess, flowID)
					select {
					case <-sess.Done():
						t.Fatalf("the tunnel died: %v", sess.Err())
					default:
					}
				})
			}
			assert.Equal(t, 1, w.gw.Tunnels())
			for _, e := range w.gw.Events() {
				assert.NotEqual(t, gateway.EventTunnelClose, e.Event, "no tunnel was torn down")
				if e.Event == gateway.EventFlow {
					assert.Equal(t, "ok", e.Result, "the good flows: %+v", e)
				}
			}
			w.requireWrittenLog(t)
		})
	}
}

// TestStreamLimit holds MaxStreams flows that never finish on one tunnel and
// opens many more: every extra stream is refused with StatusStreamLimit and
// logged, goroutines stay bounded by the limit rather than by the number of
// streams, and everything returns to the baseline once the flows end.
func TestStreamLimit(t *testing.T) {
	tests := []struct {
		tr    tunnel.Transport
		extra int
	}{
		{tunnel.TransportTLS, 2000},
		{tunnel.TransportDTLS, 300},
	}
	for _, tt := range tests {
		t.Run(string(tt.tr), func(t *testing.T) {
			w := newWorld(t, nil)
			ctx := testCtx(t, 2*time.Minute)
			sess := w.openTunnel(t, ctx, tt.tr)
			requireEcho(t, ctx, sess, 1)
			baseline := settledGoroutines()
			var heapBefore runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&heapBefore)

			held := make([]tunnel.Stream, 0, maxStreams)
			for i := range maxStreams {
				st, err := holdFlow(ctx, sess, uint64(100+i))
				require.NoError(t, err, "flow %d within the limit", i)
				held = append(held, st)
			}
			assert.Equal(t, maxStreams, w.gw.ActiveFlows())
			withHeld := runtime.NumGoroutine()

			// The extra streams, from a fixed pool of workers so that the
			// goroutines counted are the gateway's.
			const workers = 16
			jobs := make(chan int)
			results := make(chan error, tt.extra)
			var wg sync.WaitGroup
			for range workers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range jobs {
						results <- extraStream(ctx, sess, uint64(10000+i))
					}
				}()
			}
			peak := 0
			for i := range tt.extra {
				jobs <- i
				if i%50 == 0 {
					peak = max(peak, runtime.NumGoroutine())
				}
			}
			close(jobs)
			wg.Wait()
			close(results)
			for err := range results {
				require.NoError(t, err)
			}

			refused := w.waitEvents(t, tt.extra, func(e gateway.Event) bool {
				return e.Event == gateway.EventStreamRefused && e.Cause == failure.CauseStreamLimit
			})
			assert.Len(t, refused, tt.extra, "each extra stream is logged once")
			for _, e := range refused[:3] {
				assert.Equal(t, tunnel.StatusStreamLimit.String(), e.Result)
				assert.Contains(t, e.Reason, fmt.Sprintf("(limit %d)", maxStreams))
			}
			assert.Equal(t, maxStreams, w.gw.ActiveFlows(), "the held flows are intact")

			// Bounded: the extra streams cost no lasting goroutine, and the
			// peak while refusing them is bounded by the workers, not by
			// their number (generous margins: the runtime has its own).
			t.Logf("goroutines: %d before, %d with %d flows held, peak %d while refusing %d streams", baseline, withHeld, maxStreams, peak, tt.extra)
			perFlow := 8
			bound := baseline + maxStreams*perFlow + 2*workers + 50
			assert.Less(t, withHeld, bound, "goroutines with %d flows held", maxStreams)
			assert.Less(t, peak, bound+workers*perFlow, "goroutines while refusing %d streams", tt.extra)
			assert.Less(t, settledGoroutinesBelow(withHeld+10), withHeld+10, "refused streams left goroutines behind")
			var heapAfter runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&heapAfter)
			assert.Less(t, int64(heapAfter.HeapInuse)-int64(heapBefore.HeapInuse), int64(64<<20), "heap after %d refused streams", tt.extra)

			// A held flow still relays.
			_, err := held[0].Write([]byte{'y'})
			require.NoError(t, err)
			var b [1]byte
			_, err = io.ReadFull(held[0], b[:])
			require.NoError(t, err)

			for _, st := range held {
				require.NoError(t, st.CloseWrite())
			}
			for _, st := range held {
				_, _ = io.Copy(io.Discard, st)
				st.Close()
			}
			require.Eventually(t, func() bool { return w.gw.ActiveFlows() == 0 }, 15*time.Second, 5*time.Millisecond)
			assert.LessOrEqual(t, settledGoroutinesBelow(baseline+10), baseline+10, "goroutines return to the baseline")

			// The slots are free again.
			for i := range maxStreams {
				st, err := holdFlow(ctx, sess, uint64(200+i))
				require.NoError(t, err, "flow %d after the storm", i)
				defer st.Close()
			}
			w.requireWrittenLog(t)
		})
	}
}

// extraStream opens a stream past the limit and expects StatusStreamLimit.
func extraStream(ctx context.Context, sess tunnel.Session, flowID uint64) error {
	req, err := tunnel.AppendRequest(nil, tunnel.Request{Host: echoHost, Port: echoPort, FlowID: flowID})
	if err != nil {
		return err
	}
	st, rep, err := exchange(ctx, sess, req, false)
	if err != nil {
		return fmt.Errorf("extra flow %d: %w", flowID, err)
	}
	st.Close()
	if rep.Status != tunnel.StatusStreamLimit {
		return fmt.Errorf("extra flow %d: status %v, want %v", flowID, rep.Status, tunnel.StatusStreamLimit)
	}
	return nil
}

// settledGoroutines lets goroutines that are finishing finish, then counts.
func settledGoroutines() int {
	n := runtime.NumGoroutine()
	for range 20 {
		time.Sleep(10 * time.Millisecond)
		m := runtime.NumGoroutine()
		if m >= n {
			return m
		}
		n = m
	}
	return n
}

// settledGoroutinesBelow waits up to 10s for the goroutine count to drop
// below limit and returns the last count.
func settledGoroutinesBelow(limit int) int {
	deadline := time.Now().Add(10 * time.Second)
	for {
		n := runtime.NumGoroutine()
		if n < limit || time.Now().After(deadline) {
			return n
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestTunnelRefusals attacks the gateway port below the tunnel: garbage
// instead of TLS or DTLS, a peer that never speaks, a handshake that never
// finishes, a multiplexer that never starts. Each attempt is refused and
// logged (or, for datagrams that start no handshake, counted), and the
// gateway then accepts a good tunnel on both transports.
func TestTunnelRefusals(t *testing.T) {
	tests := []struct {
		name string
		// attack runs against the gateway and returns when done.
		attack func(t *testing.T, ctx context.Context, w *world)
		// transport, cause and reason describe the tunnel-refused event
		// expected; an empty transport means none may be logged.
		transport tunnel.Transport
		cause     failure.Cause
		reason    string
		// minWait is how long the refusal must not come before.
		minWait time.Duration
		// udpRefused is the least number of datagrams counted as refused.
		udpRefused int64
	}{
		{
			name: "garbage tcp",
			attack: func(t *testing.T, ctx context.Context, w *world) {
				c, err := w.laptop.DialContext(ctx, "tcp", gatewayAddr)
				require.NoError(t, err)
				defer c.Close()
				_, err = c.Write([]byte("GET / HTTP/1.1\r\nHost: gateway.test\r\n\r\n"))
				require.NoError(t, err)
				requireClosedByPeer(t, c)
			},
			transport: tunnel.TransportTLS, cause: failure.CauseHandshakeFailed, reason: `does not look like a TLS handshake`,
		},
		{
			name: "tls client hello then garbage",
			attack: func(t *testing.T, ctx context.Context, w *world) {
				c, err := w.laptop.DialContext(ctx, "tcp", gatewayAddr)
				require.NoError(t, err)
				defer c.Close()
				// A handshake record header announcing a ClientHello, then junk.
				_, err = c.Write(append([]byte{0x16, 0x03, 0x01, 0x00, 0x40, 0x01, 0x00, 0x00, 0x3c}, bytes.Repeat([]byte{0xee}, 60)...))
				require.NoError(t, err)
				requireClosedByPeer(t, c)
			},
			transport: tunnel.TransportTLS, cause: failure.CauseHandshakeFailed, reason: `tls: error decoding message`,
		},
		{
			name: "silent tcp",
			attack: func(t *testing.T, ctx context.Context, w *world) {
				c, err := w.laptop.DialContext(ctx, "tcp", gatewayAddr)
				require.NoError(t, err)
				defer c.Close()
				requireClosedByPeer(t, c)
			},
			transport: tunnel.TransportTLS, cause: failure.CauseHandshakeTimeout, reason: `handshake timed out`, minWait: handshakeTimeout,
		},
		{
			name: "garbage udp",
			attack: func(t *testing.T, ctx context.Context, w *world) {
				c, err := w.laptop.DialContext(ctx, "udp", gatewayAddr)
				require.NoError(t, err)
				defer c.Close()
				for _, d := range [][]byte{[]byte("hello"), bytes.Repeat([]byte{0x17}, 1200), {22, 0xfe, 0xfd}} {
					_, err = c.Write(d)
					require.NoError(t, err)
				}
				require.Eventually(t, func() bool { return w.gw.UDPRefused() >= 3 }, 10*time.Second, 5*time.Millisecond)
			},
			udpRefused: 3,
		},
		{
			name: "dtls hello header then garbage",
			attack: func(t *testing.T, ctx context.Context, w *world) {
				c, err := w.laptop.DialContext(ctx, "udp", gatewayAddr)
				require.NoError(t, err)
				defer c.Close()
				// Admitted by the demultiplexer (a handshake record of
				// epoch 0), undecodable for DTLS.
				d := append([]byte{22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 40}, bytes.Repeat([]byte{0xee}, 40)...)
				_, err = c.Write(d)
				require.NoError(t, err)
			},
			transport: tunnel.TransportDTLS, cause: failure.CauseHandshakeTimeout, reason: `handshake timed out`, minWait: handshakeTimeout,
		},
		{
			name: "dtls handshake but no sctp",
			attack: func(t *testing.T, ctx context.Context, w *world) {
				conn, err := w.dialDTLS(ctx)
				require.NoError(t, err)
				defer conn.Close()
				// Hold the connection until the gateway gives up on it.
				w.waitEvents(t, 1, func(e gateway.Event) bool { return e.Event == gateway.EventTunnelRefused })
			},
			transport: tunnel.TransportDTLS, cause: failure.CauseProtocol, reason: `multiplexer setup`, minWait: handshakeTimeout,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld(t, nil)
			ctx := testCtx(t, 30*time.Second)
			start := time.Now()
			tt.attack(t, ctx, w)

			if tt.transport != "" {
				evs := w.waitEvents(t, 1, func(e gateway.Event) bool { return e.Event == gateway.EventTunnelRefused })
				e := evs[0]
				assert.Equal(t, string(tt.transport), e.Transport)
				assert.Equal(t, tt.cause, e.Cause, "reason: %s", e.Reason)
				assert.Regexp(t, tt.reason, e.Reason)
				assert.Equal(t, laptopIP.String(), netip.MustParseAddrPort(e.Client).Addr().String())
				assert.GreaterOrEqual(t, time.Since(start), tt.minWait)
			}
			assert.GreaterOrEqual(t, w.gw.UDPRefused(), tt.udpRefused)
			require.Eventually(t, func() bool { return w.gw.Tunnels() == 0 }, 10*time.Second, 5*time.Millisecond, "the refused attempt holds no tunnel slot")

			// The gateway stays up on both transports.
			for i, tr := range transports {
				sess := w.openTunnel(t, ctx, tr)
				requireEcho(t, ctx, sess, uint64(i+1))
			}
			for _, e := range w.gw.Events() {
				if tt.transport == "" {
					assert.NotEqual(t, gateway.EventTunnelRefused, e.Event, "%+v", e)
				}
			}
			w.requireWrittenLog(t)
		})
	}
}

// requireClosedByPeer waits (generously) for the gateway to close c.
func requireClosedByPeer(t *testing.T, c net.Conn) {
	t.Helper()
	require.NoError(t, c.SetReadDeadline(time.Now().Add(20*time.Second)))
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the gateway did not close the connection: %v", err)
	}
}

// TestMaxTunnels fills the tunnel limit and then tries one more tunnel over
// each transport: the gateway refuses it and logs why, and accepts a tunnel
// again once one has closed.
func TestMaxTunnels(t *testing.T) {
	const limit = 2
	tests := []struct {
		name    string
		holders tunnel.Transport
		extra   tunnel.Transport
	}{
		{"tls beyond tls tunnels", tunnel.TransportTLS, tunnel.TransportTLS},
		{"dtls beyond tls tunnels", tunnel.TransportTLS, tunnel.TransportDTLS},
		{"tls beyond dtls tunnels", tunnel.TransportDTLS, tunnel.TransportTLS},
		{"dtls beyond dtls tunnels", tunnel.TransportDTLS, tunnel.TransportDTLS},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld(t, func(c *gateway.Config) { c.MaxTunnels = limit })
			ctx := testCtx(t, 30*time.Second)
			var held []tunnel.Session
			for range limit {
				held = append(held, w.openTunnel(t, ctx, tt.holders))
			}
			require.Equal(t, limit, w.gw.Tunnels())

			actx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			var err error
			switch tt.extra {
			case tunnel.TransportTLS:
				var c *tls.Conn
				if c, err = w.dialTLS(actx); err == nil {
					c.Close()
				}
			case tunnel.TransportDTLS:
				var c *dtls.Conn
				if c, err = w.dialDTLS(actx); err == nil {
					c.Close()
				}
			}
			require.Error(t, err, "no tunnel beyond the limit")

			evs := w.waitEvents(t, 1, func(e gateway.Event) bool { return e.Event == gateway.EventTunnelRefused })
			e := evs[0]
			assert.Equal(t, string(tt.extra), e.Transport)
			assert.Equal(t, failure.CauseStreamLimit, e.Cause)
			assert.Equal(t, fmt.Sprintf("tunnel limit %d reached", limit), e.Reason)
			assert.Equal(t, laptopIP.String(), netip.MustParseAddrPort(e.Client).Addr().String())

			// The held tunnels are untouched; closing one frees a slot.
			requireEcho(t, ctx, held[0], 1)
			held[1].Close()
			require.Eventually(t, func() bool { return w.gw.Tunnels() < limit }, 15*time.Second, 5*time.Millisecond)
			requireEcho(t, ctx, w.openTunnel(t, ctx, tt.extra), 2)
			w.requireWrittenLog(t)
		})
	}
}

// BenchmarkGatewayFlowOpen measures opening one inner flow to the echo
// origin through a tunnel and completing a ping round trip over it.
func BenchmarkGatewayFlowOpen(b *testing.B) {
	for _, tr := range transports {
		b.Run(string(tr), func(b *testing.B) {
			w := newWorld(b, nil)
			ctx := testCtx(b, 10*time.Minute)
			sess := w.openTunnel(b, ctx, tr)
			var id uint64
			for b.Loop() {
				id++
				requireEcho(b, ctx, sess, id)
			}
		})
	}
}

// stallResolver answers like next, except that looking up stallHost waits
// for its context (announcing each wait on started).
type stallResolver struct {
	next    resolve.Resolver
	started chan struct{}
}

const stallHost = "stall.test"

func (r *stallResolver) Lookup(ctx context.Context, host string) (resolve.Answer, error) {
	if host != stallHost {
		return r.next.Lookup(ctx, host)
	}
	r.started <- struct{}{}
	<-ctx.Done()
	return resolve.Answer{}, ctx.Err()
}

// TestClosingGatewayBlamesNoOrigin: a flow whose origin dial the gateway's
// own shutdown cut short gets no verdict on the origin (no dns-failure or
// unreachable reply the client would take for the destination's fault): the
// stream just ends with the tunnel, and the log says the tunnel closed.
func TestClosingGatewayBlamesNoOrigin(t *testing.T) {
	for _, tr := range transports {
		t.Run(string(tr), func(t *testing.T) {
			sr := &stallResolver{started: make(chan struct{}, 1)}
			w := newWorld(t, func(c *gateway.Config) {
				sr.next = c.Resolver
				c.Resolver = sr
			})
			ctx := testCtx(t, 20*time.Second)
			sess := w.openTunnel(t, ctx, tr)
			req, err := tunnel.AppendRequest(nil, tunnel.Request{Host: stallHost, Port: 443, FlowID: 1})
			require.NoError(t, err)
			got := make(chan error, 1)
			go func() {
				st, rep, err := exchange(ctx, sess, req, false)
				if err == nil {
					st.Close()
					err = rep.Err(stallHost)
				}
				got <- err
			}()
			select {
			case <-sr.started:
			case <-ctx.Done():
				t.Fatal("the gateway never looked the destination up")
			}
			require.NoError(t, w.gw.Close())
			err = <-got
			require.Error(t, err)
			assert.NotEqual(t, failure.LegGatewayOrigin, failure.LegOf(err), "the origin is not to blame: %v", err)
			var se *tunnel.StatusError
			assert.False(t, errors.As(err, &se), "no status reply: %v", err)
			evs := w.waitEvents(t, 1, func(e gateway.Event) bool { return e.Event == gateway.EventFlow && e.Host == stallHost })
			assert.Equal(t, "tunnel-closed", evs[0].Result)
		})
	}
}

// TestLifecycle: Start takes the gateway's lifetime as a context, Start
// runs once, Close is idempotent before and after Start.
func TestLifecycle(t *testing.T) {
	w := newWorld(t, nil)

	t.Run("close twice before start, then start fails", func(t *testing.T) {
		g, err := gateway.New(w.cfg)
		require.NoError(t, err)
		require.NoError(t, g.Close())
		require.NoError(t, g.Close())
		assert.ErrorContains(t, g.Start(context.Background()), "closed")
	})
	t.Run("start twice fails", func(t *testing.T) {
		assert.ErrorContains(t, w.gw.Start(context.Background()), "already started")
	})
	t.Run("a start context already done", func(t *testing.T) {
		g, err := gateway.New(w.cfg)
		require.NoError(t, err)
		defer g.Close()
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		assert.ErrorIs(t, g.Start(ctx), context.Canceled)
	})
	t.Run("the start context ends the gateway", func(t *testing.T) {
		cfg := w.cfg
		cfg.Addr = netip.AddrPortFrom(netip.IPv4Unspecified(), 8443)
		g, err := gateway.New(cfg)
		require.NoError(t, err)
		defer g.Close()
		ctx, cancel := context.WithCancel(context.Background())
		require.NoError(t, g.Start(ctx))
		addr := netip.AddrPortFrom(gatewayIP, 8443).String()
		dctx := testCtx(t, 10*time.Second)
		c, err := w.laptop.DialContext(dctx, "tcp", addr)
		require.NoError(t, err, "the gateway listens")
		c.Close()
		cancel()
		require.Eventually(t, func() bool {
			c, err := w.laptop.DialContext(dctx, "tcp", addr)
			if err == nil {
				c.Close()
			}
			return err != nil
		}, 10*time.Second, 5*time.Millisecond, "the gateway stopped listening when its context ended")
		require.NoError(t, g.Close())
		require.NoError(t, g.Close())
	})
	t.Run("close twice", func(t *testing.T) {
		require.NoError(t, w.gw.Close())
		require.NoError(t, w.gw.Close())
	})
}
