package tunnel

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/pion/dtls/v3"
	dtlsnet "github.com/pion/dtls/v3/pkg/net"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/stretchr/testify/suite"
	"go.uber.org/goleak"

	"github.com/pinwall/pinwall/failure"
	"github.com/pinwall/pinwall/hostnet"
	"github.com/pinwall/pinwall/pki"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// kcp-go, which only BenchmarkDTLSMux uses, starts a process-wide
		// timer scheduler when its package loads and a process-wide pool of
		// packet workers with its first session; neither ever ends.
		goleak.IgnoreAnyFunction("github.com/xtaci/kcp-go/v5.(*TimedSched).run"),
		goleak.IgnoreAnyFunction("github.com/xtaci/kcp-go/v5.postProcessWorker"),
	)
}

// pair is a connected client and gateway session.
type pair struct {
	client, gateway Session
	cleanup         func()
	impair          func(hostnet.Impairment)
}

func tlsPair(t testing.TB, cfg Config) pair {
	t.Helper()
	set, err := pki.NewSet(pki.Config{}, "acme")
	require.NoError(t, err)
	cert, err := set.ServerCert("gw.test")
	require.NoError(t, err)
	l, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{*cert}, MinVersion: tls.VersionTLS13, NextProtos: []string{ALPN}})
	require.NoError(t, err)
	defer l.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			close(accepted)
			return
		}
		if err := c.(*tls.Conn).Handshake(); err != nil {
			c.Close()
			close(accepted)
			return
		}
		accepted <- c
	}()
	cc, err := tls.Dial("tcp", l.Addr().String(), &tls.Config{RootCAs: set.Internet.Pool(), ServerName: "gw.test", NextProtos: []string{ALPN}})
	require.NoError(t, err)
	sc := <-accepted
	require.NotNil(t, sc)
	cs, err := NewTLSSession(context.Background(), cc, RoleClient, cfg)
	require.NoError(t, err)
	gs, err := NewTLSSession(context.Background(), sc, RoleGateway, cfg)
	require.NoError(t, err)
	return pair{client: cs, gateway: gs, cleanup: func() { cs.Close(); gs.Close() }}
}

func dtlsPair(t testing.TB, cfg Config, impair *hostnet.Impairment) pair {
	t.Helper()
	dp := dialDTLS(t, cfg, impair, true)
	cs, gs := dtlsSessions(t, dp.client, dp.gateway, cfg)
	return pair{client: cs, gateway: gs, impair: dp.impair, cleanup: func() {
		cs.Close()
		gs.Close()
		dp.mux.Close()
	}}
}

// dtlsSessions runs the SCTP association's handshake over a DTLS
// connection pair, both ends at once.
func dtlsSessions(t testing.TB, client, gateway net.Conn, cfg Config) (cs, gs Session) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	type res struct {
		s   Session
		err error
	}
	srv := make(chan res, 1)
	go func() {
		s, err := NewDTLSSession(ctx, gateway, RoleGateway, cfg)
		srv <- res{s, err}
	}()
	cs, err := NewDTLSSession(ctx, client, RoleClient, cfg)
	require.NoError(t, err)
	r := <-srv
	require.NoError(t, r.err)
	return cs, r.s
}

// dtlsConns is a DTLS connection pair over the in-process network and the
// gateway's UDP mux, each on a record path (as the client and the gateway
// run them) if records is set.
type dtlsConns struct {
	client, gateway net.Conn
	mux             *UDPMux
	impair          func(hostnet.Impairment)
}

func dialDTLS(t testing.TB, cfg Config, impair *hostnet.Impairment, records bool) dtlsConns {
	t.Helper()
	hp := handshakeDTLS(t, cfg, impair, false)
	dp := dtlsConns{client: hp.client, gateway: hp.gateway, mux: hp.mux, impair: hp.impair}
	if records {
		var err error
		dp.client, err = hp.clientPath.Attach(hp.client, cfg.logger())
		require.NoError(t, err)
		dp.gateway, err = hp.gatewayPath.Attach(hp.gateway, cfg.logger())
		require.NoError(t, err)
	}
	return dp
}

// dtlsHandshaken is a DTLS connection pair, handshake done, each on a
// record path not yet attached (the client on none if plainClient: a DTLS
// peer that is not pinwall's).
type dtlsHandshaken struct {
	client, gateway         *dtls.Conn
	clientPath, gatewayPath *RecordPath
	mux                     *UDPMux
	impair                  func(hostnet.Impairment)
}

func handshakeDTLS(t testing.TB, cfg Config, impair *hostnet.Impairment, plainClient bool) dtlsHandshaken {
	t.Helper()
	set, err := pki.NewSet(pki.Config{}, "acme")
	require.NoError(t, err)
	cert, err := set.ServerCert("gw.test")
	require.NoError(t, err)

	sim := hostnet.NewSim(nil)
	gwHost, err := sim.AddHost("gw", mustAddr("203.0.113.10"))
	require.NoError(t, err)
	cHost, err := sim.AddHost("laptop", mustAddr("10.10.10.100"))
	require.NoError(t, err)
	if impair != nil {
		cHost.Impair(*impair)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	pc, err := gwHost.ListenPacket(ctx, "udp", "203.0.113.10:443")
	require.NoError(t, err)
	mux := NewUDPMux(pc, UDPMuxConfig{})

	type res struct {
		c   *dtls.Conn
		rp  *RecordPath
		err error
	}
	srv := make(chan res, 1)
	go func() {
		peer, raddr, err := mux.Accept(ctx)
		if err != nil {
			srv <- res{err: err}
			return
		}
		rp := NewRecordPath(peer)
		dc, err := dtls.ServerWithOptions(rp, raddr,
			dtls.WithCertificates(*cert),
			dtls.WithExtendedMasterSecret(dtls.RequireExtendedMasterSecret),
			dtls.WithLoggerFactory(PionLoggerFactory(cfg.logger())),
		)
		if err == nil {
			err = dc.HandshakeContext(ctx)
		}
		srv <- res{dc, rp, err}
	}()
	uc, err := cHost.DialContext(ctx, "udp", "203.0.113.10:443")
	require.NoError(t, err)
	var (
		rp    *RecordPath
		under net.PacketConn = dtlsnet.PacketConnFromConn(uc)
	)
	if !plainClient {
		rp = NewRecordPath(under)
		under = rp
	}
	dc, err := dtls.ClientWithOptions(under, uc.RemoteAddr(),
		dtls.WithRootCAs(set.Internet.Pool()),
		dtls.WithServerName("gw.test"),
		dtls.WithExtendedMasterSecret(dtls.RequireExtendedMasterSecret),
		dtls.WithLoggerFactory(PionLoggerFactory(cfg.logger())),
	)
	require.NoError(t, err)
	require.NoError(t, dc.HandshakeContext(ctx))
	r := <-srv
	require.NoError(t, r.err)
	return dtlsHandshaken{client: dc, gateway: r.c, clientPath: rp, gatewayPath: r.rp, mux: mux, impair: cHost.Impair}
}

// rawDTLSPair is dtlsPair's DTLS connections without the sessions: on
// record paths if records is set, pion/dtls's own connections if not.
func rawDTLSPair(t testing.TB, records bool) (client, gateway net.Conn, cleanup func()) {
	t.Helper()
	dp := dialDTLS(t, Config{}, nil, records)
	return dp.client, dp.gateway, func() { dp.client.Close(); dp.gateway.Close(); dp.mux.Close() }
}

func mustAddr(s string) netipAddr { return mustParseAddr(s) }

// echoServer answers every accepted stream with the SHA-256 of what it read.
func echoServer(ctx context.Context, s Session, wg *sync.WaitGroup) {
	defer wg.Done()
	var inner sync.WaitGroup
	defer inner.Wait()
	for {
		st, err := s.Accept(ctx)
		if err != nil {
			return
		}
		inner.Add(1)
		go func() {
			defer inner.Done()
			defer st.Close()
			h := sha256.New()
			if _, err := io.Copy(h, st); err != nil {
				return
			}
			_, _ = st.Write(h.Sum(nil))
			_ = st.CloseWrite()
			_, _ = io.Copy(io.Discard, st)
		}()
	}
}

type SessionSuite struct {
	suite.Suite
	transport Transport
	impair    *hostnet.Impairment
	flows     int
	sizes     []int
	p         pair
	ctx       context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup
}

func (s *SessionSuite) SetupTest() {
	cfg := Config{KeepAliveInterval: time.Second}
	if s.transport == TransportTLS {
		s.p = tlsPair(s.T(), cfg)
	} else {
		s.p = dtlsPair(s.T(), cfg, s.impair)
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.wg.Add(1)
	go echoServer(s.ctx, s.p.gateway, &s.wg)
}

func (s *SessionSuite) TearDownTest() {
	s.cancel()
	s.p.cleanup()
	s.wg.Wait()
}

func (s *SessionSuite) TestConcurrentStreamsVerified() {
	sizes := s.sizes
	if sizes == nil {
		sizes = []int{0, 1, 1000, 64 << 10, 1 << 20}
	}
	flows := s.flows
	if flows == 0 {
		flows = 40
	}
	var wg sync.WaitGroup
	errs := make(chan error, flows)
	for i := 0; i < flows; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			errs <- roundTrip(s.ctx, s.p.client, sizes[i%len(sizes)], uint64(i))
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		s.Require().NoError(err)
	}
	s.Equal(s.transport, s.p.client.Transport())
}

func roundTrip(ctx context.Context, sess Session, size int, seed uint64) error {
	st, err := sess.Open(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	payload := make([]byte, size)
	rng := rand.New(rand.NewPCG(seed, 1))
	for i := range payload {
		payload[i] = byte(rng.Uint32())
	}
	want := sha256.Sum256(append([]byte{'>'}, payload...))
	werr := make(chan error, 1)
	go func() {
		// An SCTP stream exists for the peer only once it carries data, as
		// every real flow does (its Request), so each flow starts with a
		// one-byte marker counted in the hash.
		_, err := st.Write([]byte{'>'})
		if err == nil {
			_, err = st.Write(payload)
		}
		if err == nil {
			err = st.CloseWrite()
		}
		werr <- err
	}()
	got, err := io.ReadAll(st)
	if err != nil {
		return fmt.Errorf("read: %w", err)
	}
	if err := <-werr; err != nil {
		return fmt.Errorf("write: %w", err)
	}
	if string(got) != string(want[:]) {
		return fmt.Errorf("flow %d (%d bytes): sha mismatch", seed, size)
	}
	return nil
}

func (s *SessionSuite) TestCloseEndsSession() {
	s.Require().NoError(roundTrip(s.ctx, s.p.client, 10, 1))
	s.Require().NoError(s.p.gateway.Close())
	select {
	case <-s.p.client.Done():
	case <-time.After(10 * time.Second):
		s.Fail("client session did not notice the gateway closing")
	}
	s.Require().Error(s.p.client.Err())
	s.Require().ErrorIs(s.p.client.Err(), ErrSessionClosed)
	_, err := s.p.client.Open(s.ctx)
	s.Require().Error(err)
	s.Require().NoError(s.p.client.Close(), "Close is idempotent after death")
}

// TestCloseTwice: Close is idempotent on a live session and ends it at
// once.
func (s *SessionSuite) TestCloseTwice() {
	s.Require().NoError(s.p.client.Close())
	s.Require().NoError(s.p.client.Close())
	select {
	case <-s.p.client.Done():
	default:
		s.Fail("Done is not closed after Close")
	}
	s.Require().ErrorIs(s.p.client.Err(), ErrSessionClosed)
}

// TestGatewayGoneMidFlowIsNotEOF: a flow whose tunnel dies under it must
// not read a clean end of stream (an application would take a truncated
// reply for a whole one) but a typed connection reset on the tunnel.
func (s *SessionSuite) TestGatewayGoneMidFlowIsNotEOF() {
	st, err := s.p.client.Open(s.ctx)
	s.Require().NoError(err)
	defer st.Close()
	_, err = st.Write([]byte(">half a request"))
	s.Require().NoError(err)
	read := make(chan error, 1)
	go func() {
		_, err := io.ReadAll(st) // the echo server answers only at EOF: this waits
		read <- err
	}()
	s.Require().NoError(s.p.gateway.Close())
	select {
	case err = <-read:
	case <-time.After(10 * time.Second):
		s.FailNow("the flow's read never ended")
	}
	s.Require().Error(err, "a clean EOF would pass a truncated flow off as complete")
	s.Equal(failure.CauseConnectionReset, failure.CauseOf(err), "%v", err)
	s.Equal(failure.LegClientGateway, failure.LegOf(err))
}

// TestPeerCloseWriteIsEOF: the peer's orderly end of its direction is a
// clean io.EOF, with the session alive.
func (s *SessionSuite) TestPeerCloseWriteIsEOF() {
	s.Require().NoError(roundTrip(s.ctx, s.p.client, 1000, 7))
	s.Nil(s.p.client.Err())
}

func TestTLSSession(t *testing.T) { suite.Run(t, &SessionSuite{transport: TransportTLS}) }

func TestDTLSSession(t *testing.T) { suite.Run(t, &SessionSuite{transport: TransportDTLS}) }

func TestDTLSSessionWithLoss(t *testing.T) {
	// pion/sctp's minimum RTO is a fixed second, so every loss that fast
	// retransmit cannot repair stalls the association; keep the volume modest.
	suite.Run(t, &SessionSuite{
		transport: TransportDTLS,
		impair:    &hostnet.Impairment{Loss: 0.05, Seed: 42},
		flows:     16,
		sizes:     []int{0, 1, 1000, 64 << 10},
	})
}

func TestDTLSKeepaliveDetectsSilentPeer(t *testing.T) {
	p := dtlsPair(t, Config{KeepAliveInterval: 100 * time.Millisecond}, nil)
	defer p.cleanup()
	// The gateway vanishes without a word: every datagram is lost.
	p.impair(hostnet.Impairment{Loss: 1})
	select {
	case <-p.client.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("keepalive never fired")
	}
	assert.Error(t, p.client.Err())
}

// TestDTLSKeepaliveDetectsSilentPeerUnderLoad: when the gateway vanishes
// while a flow is sending, the unacknowledged data fills the association's
// window and blocks every write, pings included; the session must still die
// of the keepalive, not wait on a write forever.
func TestDTLSKeepaliveDetectsSilentPeerUnderLoad(t *testing.T) {
	p := dtlsPair(t, Config{KeepAliveInterval: 100 * time.Millisecond}, nil)
	defer p.cleanup()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := p.client.Open(ctx)
	require.NoError(t, err)
	defer st.Close()
	p.impair(hostnet.Impairment{Loss: 1})
	writeDone := make(chan error, 1)
	go func() {
		chunk := make([]byte, 32<<10)
		for {
			if _, err := st.Write(chunk); err != nil {
				writeDone <- err
				return
			}
		}
	}()
	select {
	case <-p.client.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("keepalive never fired while a write was blocked")
	}
	require.ErrorIs(t, p.client.Err(), ErrKeepaliveTimeout)
	select {
	case err := <-writeDone:
		assert.Error(t, err, "the blocked write ends with the session")
	case <-time.After(10 * time.Second):
		t.Fatal("the flow's write stayed blocked after the session died")
	}
}

// TestNewTLSSessionContextDone: a setup context already done fails the
// setup, as it does for DTLS.
func TestNewTLSSessionContextDone(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := NewTLSSession(ctx, a, RoleClient, Config{})
	require.ErrorIs(t, err, context.Canceled)
}

// TestUDPMuxCloseTwice: Close is idempotent, closes the socket, and
// Accept then reports the mux closed.
func TestUDPMuxCloseTwice(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	require.NoError(t, err)
	m := NewUDPMux(pc, UDPMuxConfig{})
	require.NoError(t, m.Close())
	require.NoError(t, m.Close())
	_, _, err = m.Accept(context.Background())
	require.ErrorIs(t, err, net.ErrClosed)
	_, err = pc.WriteTo([]byte{0}, pc.LocalAddr())
	require.ErrorIs(t, err, net.ErrClosed, "the mux closed its socket")
}

// TestDTLSGatewayEndsSilentTunnel: when the client's path dies silently
// (a firewall that restarted and forgot the UDP flow), the gateway's side
// ends the tunnel after its keepalive timeout instead of keeping it, and
// its flows, open until the UDP mux's idle timeout.
func TestDTLSGatewayEndsSilentTunnel(t *testing.T) {
	p := dtlsPair(t, Config{KeepAliveInterval: 100 * time.Millisecond}, nil)
	defer p.cleanup()
	// A while of normal traffic (the client's pings) keeps it alive.
	select {
	case <-p.gateway.Done():
		t.Fatalf("the gateway ended a live tunnel: %v", p.gateway.Err())
	case <-time.After(500 * time.Millisecond):
	}
	p.impair(hostnet.Impairment{Loss: 1})
	start := time.Now()
	select {
	case <-p.gateway.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the gateway kept a silent tunnel")
	}
	require.ErrorIs(t, p.gateway.Err(), ErrKeepaliveTimeout)
	assert.Contains(t, p.gateway.Err().Error(), "nothing from the client")
	t.Logf("gateway ended the silent tunnel after %v (timeout 300ms)", time.Since(start).Round(time.Millisecond))
}

func TestConfigValidate(t *testing.T) {
	assert.NoError(t, Config{}.Validate())
	assert.Error(t, Config{KeepAliveInterval: time.Second, KeepAliveTimeout: time.Millisecond}.Validate())
	assert.Error(t, Config{MTU: 100}.Validate())
	assert.Error(t, Config{StreamWindow: 1024}.Validate())
}

var _ = errors.Is

// TestPathMTUPacket: the SCTP packet fills one datagram of the path, less
// the IP, UDP and DTLS record headers, within the bounds the tunnel takes.
func TestPathMTUPacket(t *testing.T) {
	tests := []struct {
		name    string
		pathMTU int
		ipv6    bool
		want    uint32
	}{
		{"Ethernet IPv4", 1500, false, 1500 - 20 - 8 - 37},
		{"Ethernet IPv6", 1500, true, 1500 - 40 - 8 - 37},
		{"VXLAN overlay", 1450, false, 1385},
		{"IPv6 minimum", 1280, true, 1195},
		{"below 576 is raised", 600, false, 576},
		{"loopback is capped at what pion/dtls reads", 65536, false, maxMTU},
		{"jumbo frames", 9000, false, maxMTU},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := PathMTUPacket(tt.pathMTU, tt.ipv6)
			assert.Equal(t, tt.want, got)
			assert.NoError(t, Config{MTU: got}.Validate())
		})
	}
}

func TestWithPathMTU(t *testing.T) {
	assert.Equal(t, uint32(1435), Config{}.WithPathMTU(1500, false).MTU)
	assert.Equal(t, uint32(1000), Config{MTU: 1000}.WithPathMTU(1500, false).MTU, "a configured MTU wins")
	assert.Equal(t, uint32(0), Config{}.WithPathMTU(0, false).MTU, "an unknown path keeps the default")
	assert.Equal(t, uint32(1200), Config{}.WithPathMTU(0, false).mtu())
}

// TestUnsettledUntilPeerCloses: a stream the client closed stays unsettled
// until the gateway has closed its side too, after its last bytes, so that
// a client settling before it closes its tunnel cuts no flow at the
// gateway.
func TestUnsettledUntilPeerCloses(t *testing.T) {
	for _, tr := range []Transport{TransportTLS, TransportDTLS} {
		t.Run(string(tr), func(t *testing.T) {
			cfg := Config{KeepAliveInterval: time.Second}
			var p pair
			if tr == TransportTLS {
				p = tlsPair(t, cfg)
			} else {
				p = dtlsPair(t, cfg, nil)
			}
			defer p.cleanup()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			accepted := make(chan Stream, 1)
			go func() {
				if st, err := p.gateway.Accept(ctx); err == nil {
					accepted <- st
				}
			}()
			assert.Equal(t, 0, p.client.Unsettled(), "no stream yet")
			st, err := p.client.Open(ctx)
			require.NoError(t, err)
			_, err = st.Write([]byte("GET / HTTP/1.1\r\n\r\n"))
			require.NoError(t, err)
			var g Stream
			select {
			case g = <-accepted:
			case <-ctx.Done():
				t.Fatal("the gateway never accepted the stream")
			}
			defer g.Close()
			assert.Equal(t, 1, p.client.Unsettled(), "open")
			// The application is done; the gateway still has its last bytes.
			require.NoError(t, st.Close())
			require.Eventually(t, func() bool {
				_, err := g.Read(make([]byte, 64))
				return errors.Is(err, io.EOF)
			}, 5*time.Second, time.Millisecond, "the gateway reads the client's end")
			assert.Equal(t, 1, p.client.Unsettled(), "closed by the client only")
			_, err = g.Write([]byte("close_notify"))
			require.NoError(t, err)
			require.NoError(t, g.Close())
			require.Eventually(t, func() bool { return p.client.Unsettled() == 0 }, 5*time.Second, 5*time.Millisecond,
				"settled once the gateway closed its side")
			require.NoError(t, p.client.Close())
			assert.Equal(t, 0, p.client.Unsettled(), "a closed session holds nothing")
		})
	}
}
