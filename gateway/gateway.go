package gateway

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/dtls/v3"

	"github.com/pinwall/pinwall/failure"
	"github.com/pinwall/pinwall/pki"
	"github.com/pinwall/pinwall/tunnel"
)

// Gateway is a running cloud gateway. Create it with New, start it with
// Start and stop it with Close.
type Gateway struct {
	cfg Config
	log *eventLog

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex
	tcp      net.Listener
	mux      *tunnel.UDPMux   // the first UDP socket's
	muxes    []*tunnel.UDPMux // every UDP socket's
	sessions map[string]tunnel.Session
	started  bool

	tunnels   atomic.Int64
	flows     atomic.Int64 // flows in progress across tunnels
	closeOnce sync.Once
}

// New validates cfg and returns a Gateway that is not yet listening.
func New(cfg Config) (*Gateway, error) {
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("gateway: config: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Gateway{
		cfg:      cfg,
		log:      newEventLog(cfg.Log, cfg.KeepEvents),
		ctx:      ctx,
		cancel:   cancel,
		sessions: make(map[string]tunnel.Session),
	}, nil
}

// Start opens the TCP and UDP listeners and serves until Close.
func (g *Gateway) Start(ctx context.Context) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.started {
		return errors.New("gateway: already started")
	}
	if g.ctx.Err() != nil {
		return errors.New("gateway: closed")
	}
	addr := g.cfg.Addr.String()
	l, err := g.cfg.Stack.Listen(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("gateway: listen tcp %s: %w", addr, err)
	}
	// One UDP socket per address when UDPAddrs says so: a socket bound to
	// the wildcard answers from the kernel's preferred source, which on a
	// host holding a pool of addresses is not the one the client sent to.
	udpAddrs := []string{addr}
	if len(g.cfg.UDPAddrs) > 0 {
		udpAddrs = udpAddrs[:0]
		for _, a := range g.cfg.UDPAddrs {
			udpAddrs = append(udpAddrs, netip.AddrPortFrom(a, g.cfg.Addr.Port()).String())
		}
	}
	for _, ua := range udpAddrs {
		pc, err := g.cfg.Stack.ListenPacket(ctx, "udp", ua)
		if err != nil {
			l.Close()
			for _, m := range g.muxes {
				m.Close()
			}
			g.muxes = nil
			return fmt.Errorf("gateway: listen udp %s: %w", ua, err)
		}
		// The mux's own peer limit sits above MaxTunnels so that admit,
		// which logs a tunnel-refused event, refuses tunnels beyond the
		// limit; the mux refuses (and only counts) what exceeds even the
		// headroom.
		g.muxes = append(g.muxes, tunnel.NewUDPMux(pc, tunnel.UDPMuxConfig{MaxPeers: g.cfg.MaxTunnels + udpPeerHeadroom, Logger: g.cfg.Logger}))
	}
	g.tcp = l
	g.mux = g.muxes[0]
	g.started = true
	g.wg.Add(1 + len(g.muxes))
	go g.acceptTLS()
	for _, m := range g.muxes {
		go g.acceptDTLS(m)
	}
	g.cfg.Logger.Info("gateway listening", "name", g.cfg.Name, "addr", addr, "transports", "tls+dtls")
	return nil
}

// Addr returns the listening address (logical, with its real port number).
func (g *Gateway) Addr() netip.AddrPort {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.tcp == nil {
		return g.cfg.Addr
	}
	return g.tcp.Addr().(*net.TCPAddr).AddrPort()
}

// Events returns the events kept in memory, oldest first.
func (g *Gateway) Events() []Event { return g.log.snapshot() }

// ActiveFlows counts inner flows still being relayed (or refused); zero
// means every flow so far has its event in the log.
func (g *Gateway) ActiveFlows() int { return int(g.flows.Load()) }

// Tunnels counts live tunnels.
func (g *Gateway) Tunnels() int { return int(g.tunnels.Load()) }

// UDPRefused counts datagrams the UDP listener dropped without starting a
// DTLS handshake: from an unknown peer and not a DTLS ClientHello, or beyond
// the peer limit. Zero before Start.
func (g *Gateway) UDPRefused() int64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	var n int64
	for _, m := range g.muxes {
		n += m.Refused()
	}
	return n
}

// Close stops listening, ends every tunnel and waits for all goroutines. It
// is idempotent.
func (g *Gateway) Close() error {
	g.closeOnce.Do(func() {
		g.cancel()
		g.mu.Lock()
		if g.tcp != nil {
			g.tcp.Close()
		}
		for _, m := range g.muxes {
			m.Close()
		}
		for _, s := range g.sessions {
			s.Close()
		}
		g.mu.Unlock()
		g.wg.Wait()
	})
	return nil
}

func (g *Gateway) event(e Event) {
	e.Time = g.cfg.Now()
	e.Gateway = g.cfg.Name
	g.log.add(e)
}

func (g *Gateway) admit() bool {
	if g.tunnels.Add(1) > int64(g.cfg.MaxTunnels) {
		g.tunnels.Add(-1)
		return false
	}
	return true
}

func (g *Gateway) acceptTLS() {
	defer g.wg.Done()
	for {
		c, err := g.tcp.Accept()
		if err != nil {
			if g.ctx.Err() == nil {
				g.cfg.Logger.Warn("gateway: accept", "err", err)
			}
			return
		}
		if !g.admit() {
			g.event(Event{Event: EventTunnelRefused, Transport: string(tunnel.TransportTLS), Client: c.RemoteAddr().String(),
				Reason: fmt.Sprintf("tunnel limit %d reached", g.cfg.MaxTunnels), Cause: failure.CauseStreamLimit})
			c.Close()
			continue
		}
		g.wg.Add(1)
		go func() {
			defer g.wg.Done()
			defer g.tunnels.Add(-1)
			g.serveTLS(c)
		}()
	}
}

func (g *Gateway) acceptDTLS(mux *tunnel.UDPMux) {
	defer g.wg.Done()
	for {
		pc, raddr, err := mux.Accept(g.ctx)
		if err != nil {
			return
		}
		if !g.admit() {
			g.event(Event{Event: EventTunnelRefused, Transport: string(tunnel.TransportDTLS), Client: raddr.String(),
				Reason: fmt.Sprintf("tunnel limit %d reached", g.cfg.MaxTunnels), Cause: failure.CauseStreamLimit})
			pc.Close()
			continue
		}
		g.wg.Add(1)
		go func() {
			defer g.wg.Done()
			defer g.tunnels.Add(-1)
			g.serveDTLS(pc, raddr)
		}()
	}
}

// udpPeerHeadroom is how many DTLS peers beyond MaxTunnels the UDP mux
// admits at once, each to be refused (and logged) by admit and forgotten.
const udpPeerHeadroom = 64

// authState records what one handshake's peer presented.
type authState struct {
	// helloDone is set once the peer's ClientHello was accepted and the
	// gateway picked its certificate, i.e. asked for the device's.
	helloDone atomic.Bool
	presented *CertInfo
	identity  *Identity
	verifyErr error
}

// verify checks a device certificate chain against the tenant CA.
func (g *Gateway) verify(st *authState, rawCerts [][]byte) error {
	if len(rawCerts) == 0 {
		if g.cfg.AllowAnonymous {
			return nil
		}
		st.verifyErr = errors.New("no device certificate presented")
		return st.verifyErr
	}
	certs := make([]*x509.Certificate, 0, len(rawCerts))
	for _, raw := range rawCerts {
		c, err := x509.ParseCertificate(raw)
		if err != nil {
			st.verifyErr = fmt.Errorf("unparsable certificate: %w", err)
			return st.verifyErr
		}
		certs = append(certs, c)
	}
	leaf := certs[0]
	st.presented = &CertInfo{Subject: leaf.Subject.String(), Issuer: leaf.Issuer.String(), SPKI: string(pki.SPKIPin(leaf))}
	if g.cfg.ClientCAs == nil {
		// Anonymous gateway without a tenant CA: record, do not judge.
		return nil
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{
		Roots:         g.cfg.ClientCAs,
		Intermediates: inter,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		CurrentTime:   g.cfg.Now(),
	}); err != nil {
		st.verifyErr = fmt.Errorf("device certificate not accepted: %w", err)
		return st.verifyErr
	}
	st.identity = &Identity{User: leaf.Subject.CommonName, Device: leaf.Subject.SerialNumber}
	if len(leaf.Subject.Organization) > 0 {
		st.identity.Tenant = leaf.Subject.Organization[0]
	}
	return nil
}

// clientAuth asks for a device certificate only when one is required: a
// gateway with device authentication off sends no CertificateRequest at all
// (which is what a TLS-intercepting firewall would notice).
func (g *Gateway) clientAuth() tls.ClientAuthType {
	if g.cfg.AllowAnonymous {
		return tls.NoClientCert
	}
	return tls.RequireAnyClientCert
}

func (g *Gateway) serveTLS(raw net.Conn) {
	st := &authState{}
	cfg := &tls.Config{
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			st.helloDone.Store(true)
			return g.cfg.Certificate, nil
		},
		MinVersion: tls.VersionTLS13,
		NextProtos: []string{tunnel.ALPN},
		ClientAuth: g.clientAuth(),
		VerifyPeerCertificate: func(rawCerts [][]byte, _ [][]*x509.Certificate) error {
			return g.verify(st, rawCerts)
		},
		KeyLogWriter: g.cfg.KeyLogWriter,
	}
	conn := tls.Server(raw, cfg)
	ctx, cancel := context.WithTimeout(g.ctx, g.cfg.HandshakeTimeout)
	err := conn.HandshakeContext(ctx)
	cancel()
	if err != nil {
		g.refuse(tunnel.TransportTLS, raw.RemoteAddr(), st, err, errors.Is(ctx.Err(), context.DeadlineExceeded))
		conn.Close()
		return
	}
	g.serveTunnel(conn, tunnel.TransportTLS, st, func(c net.Conn) (tunnel.Session, error) {
		return tunnel.NewTLSSession(c, tunnel.RoleGateway, g.cfg.Session)
	})
}

func (g *Gateway) serveDTLS(pc net.PacketConn, raddr net.Addr) {
	st := &authState{}
	clientAuth := dtls.RequireAnyClientCert
	if g.cfg.AllowAnonymous {
		clientAuth = dtls.NoClientCert
	}
	opts := []dtls.ServerOption{
		dtls.WithGetCertificate(func(*dtls.ClientHelloInfo) (*tls.Certificate, error) {
			st.helloDone.Store(true)
			return g.cfg.Certificate, nil
		}),
		dtls.WithClientAuth(clientAuth),
		dtls.WithVerifyPeerCertificate(func(rawCerts [][]byte, _ [][]*x509.Certificate) error {
			return g.verify(st, rawCerts)
		}),
		dtls.WithExtendedMasterSecret(dtls.RequireExtendedMasterSecret),
		dtls.WithSupportedProtocols(tunnel.ALPN),
		dtls.WithLoggerFactory(tunnel.PionLoggerFactory(g.cfg.Logger)),
	}
	if g.cfg.KeyLogWriter != nil {
		opts = append(opts, dtls.WithKeyLogWriter(g.cfg.KeyLogWriter))
	}
	conn, err := dtls.ServerWithOptions(pc, raddr, opts...)
	if err != nil {
		pc.Close()
		g.cfg.Logger.Warn("gateway: dtls server", "err", err)
		return
	}
	ctx, cancel := context.WithTimeout(g.ctx, g.cfg.HandshakeTimeout)
	err = conn.HandshakeContext(ctx)
	cancel()
	if err != nil {
		g.refuse(tunnel.TransportDTLS, raddr, st, err, errors.Is(ctx.Err(), context.DeadlineExceeded))
		conn.Close()
		return
	}
	g.serveTunnel(conn, tunnel.TransportDTLS, st, func(c net.Conn) (tunnel.Session, error) {
		sctx, scancel := context.WithTimeout(g.ctx, g.cfg.HandshakeTimeout)
		defer scancel()
		return tunnel.NewDTLSSession(sctx, c, tunnel.RoleGateway, g.cfg.Session)
	})
}

// refuse logs a failed tunnel handshake with what the peer presented.
func (g *Gateway) refuse(tr tunnel.Transport, peer net.Addr, st *authState, err error, timedOut bool) {
	e := Event{Event: EventTunnelRefused, Transport: string(tr), Client: peer.String(), Presented: st.presented}
	switch {
	case st.verifyErr != nil && st.presented == nil:
		e.Reason, e.Cause = st.verifyErr.Error(), failure.CauseClientCertRequired
	case st.verifyErr != nil:
		e.Reason, e.Cause = st.verifyErr.Error(), failure.CauseClientCertRejected
	case timedOut:
		e.Reason, e.Cause = "handshake timed out: "+err.Error(), failure.CauseHandshakeTimeout
	case !g.cfg.AllowAnonymous && st.presented == nil && st.helloDone.Load() && isNoClientCert(err):
		e.Reason, e.Cause = "no device certificate presented", failure.CauseClientCertRequired
	default:
		e.Reason, e.Cause = err.Error(), failure.CauseHandshakeFailed
	}
	g.event(e)
	g.cfg.Logger.Info("gateway: tunnel refused", "peer", e.Client, "transport", tr, "cause", e.Cause, "reason", e.Reason)
}

// isNoClientCert reports a handshake that failed because the client sent no
// certificate. crypto/tls and pion/dtls both fail such a handshake with a
// local error before VerifyPeerCertificate runs, so it is told apart from
// the other failures by elimination: not a remote alert, not the peer going
// away, not a timeout. The caller also requires that the handshake got past
// the ClientHello (authState.helloDone): bytes that are not TLS at all fail
// with a local error too.
func isNoClientCert(err error) bool {
	var alertErr tls.AlertError
	if errors.As(err, &alertErr) {
		return false
	}
	var remote interface{ IsFatalOrCloseNotify() bool }
	if errors.As(err, &remote) {
		return false // a pion alert from the peer
	}
	switch failure.Classify(err) {
	case failure.CauseConnectionReset, failure.CauseTimeout, failure.CauseClosed:
		return false
	}
	return !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF)
}

func newTunnelID() [16]byte {
	var id [16]byte
	_, _ = rand.Read(id[:])
	return id
}

func (g *Gateway) serveTunnel(conn net.Conn, tr tunnel.Transport, st *authState, mk func(net.Conn) (tunnel.Session, error)) {
	greeting := tunnel.Greeting{TunnelID: newTunnelID()}
	id := greeting.TunnelIDString()
	_ = conn.SetWriteDeadline(time.Now().Add(g.cfg.HandshakeTimeout))
	if _, err := conn.Write(tunnel.AppendGreeting(nil, greeting)); err != nil {
		conn.Close()
		g.cfg.Logger.Info("gateway: greeting failed", "tunnel", id, "err", err)
		return
	}
	_ = conn.SetWriteDeadline(time.Time{})
	sess, err := mk(conn)
	if err != nil {
		conn.Close()
		g.event(Event{Event: EventTunnelRefused, TunnelID: id, Transport: string(tr), Client: conn.RemoteAddr().String(),
			Device: st.identity, Presented: st.presented, Reason: "multiplexer setup: " + err.Error(), Cause: failure.CauseProtocol})
		return
	}
	g.mu.Lock()
	if g.ctx.Err() != nil {
		g.mu.Unlock()
		sess.Close()
		return
	}
	g.sessions[id] = sess
	g.mu.Unlock()
	defer func() {
		g.mu.Lock()
		delete(g.sessions, id)
		g.mu.Unlock()
	}()

	t := &tunnelState{g: g, id: id, tr: tr, sess: sess, device: st.identity, client: conn.RemoteAddr().String(), local: conn.LocalAddr().String()}
	g.event(Event{Event: EventTunnelOpen, TunnelID: id, Transport: string(tr), Client: t.client, Local: t.local, Device: t.device, Presented: st.presented})
	start := time.Now()
	reason := t.serve()
	g.event(Event{Event: EventTunnelClose, TunnelID: id, Transport: string(tr), Client: t.client, Device: t.device,
		Reason: reason, Flows: int(t.flows.Load()), DurationMS: time.Since(start).Milliseconds()})
}
