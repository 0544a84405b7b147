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
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/dtls/v3"

	"github.com/pinwall/pinwall/accept"
	"github.com/pinwall/pinwall/failure"
	"github.com/pinwall/pinwall/hostnet"
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
	tcp      *accept.Listener
	mux      *tunnel.UDPMux   // the first UDP socket's
	muxes    []*tunnel.UDPMux // every UDP socket's
	sessions map[string]tunnel.Session
	started  bool
	// stopWatch stops Start's watch on its context.
	stopWatch func() bool

	// Handshakes in progress per transport (pre-authentication limits)
	// and the refusals they and the UDP muxes count.
	tlsPre, dtlsPre *preAuth
	refusals        *refusalLog

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
		tlsPre:   newPreAuth(cfg.MaxHandshakesPerSource, cfg.MaxHandshakes),
		dtlsPre:  newPreAuth(cfg.MaxHandshakesPerSource, cfg.MaxHandshakes),
		refusals: newRefusalLog(cfg.Now()),
	}, nil
}

// Start opens the TCP and UDP listeners and serves them. ctx is the
// gateway's lifetime: when it is done the gateway closes as if Close were
// called. Start may be called once.
func (g *Gateway) Start(ctx context.Context) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.started {
		return errors.New("gateway: already started")
	}
	if g.ctx.Err() != nil {
		return errors.New("gateway: closed")
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("gateway: start: %w", err)
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
		// The mux holds the authenticated tunnels and the handshakes in
		// progress; the handshakes are bounded per source and in all by
		// dtlsPre (Admit), and before their cookie by MaxUnverified.
		g.muxes = append(g.muxes, tunnel.NewUDPMux(pc, tunnel.UDPMuxConfig{
			MaxPeers:      g.cfg.MaxTunnels + g.cfg.MaxHandshakes,
			MaxUnverified: g.cfg.MaxUnverified,
			CookieTimeout: g.cfg.CookieTimeout,
			Admit: func(peer netip.AddrPort) (func(), error) {
				return g.dtlsPre.acquire(peer.Addr())
			},
			Refused: g.datagramRefused,
			Logger:  g.cfg.Logger,
		}))
	}
	g.tcp = accept.Wrap(l, accept.Config{Name: "gateway " + g.cfg.Name + " tls " + addr, Logger: g.cfg.Logger})
	g.mux = g.muxes[0]
	g.started = true
	g.stopWatch = context.AfterFunc(ctx, func() { _ = g.Close() })
	g.wg.Add(2 + len(g.muxes))
	go g.summarizeRefusals()
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

// AcceptFailures counts the temporary errors (such as "too many open
// files") the TLS listener survived; zero before Start.
func (g *Gateway) AcceptFailures() int64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.tcp == nil {
		return 0
	}
	return g.tcp.Failures()
}

// Stats is a snapshot of a gateway's load and what it refused.
type Stats struct {
	// Tunnels counts authenticated tunnels.
	Tunnels int
	// TLSHandshakes and DTLSHandshakes count handshakes in progress.
	TLSHandshakes, DTLSHandshakes int
	// UDPPeers counts the DTLS peers the UDP sockets hold (tunnels and
	// handshakes); UDPUnverified those that have not returned their cookie.
	UDPPeers, UDPUnverified int
	// UDPRefused counts datagrams from new peers dropped without a
	// handshake.
	UDPRefused int64
	// AcceptFailures counts temporary errors the TLS listener survived.
	AcceptFailures int64
	// EventsLogged counts every event written; EventsKept those in memory.
	EventsLogged, EventsKept int
}

// Stats returns a snapshot of the gateway's counters.
func (g *Gateway) Stats() Stats {
	st := Stats{
		Tunnels:       g.Tunnels(),
		TLSHandshakes: g.tlsPre.inProgress(), DTLSHandshakes: g.dtlsPre.inProgress(),
		AcceptFailures: g.AcceptFailures(),
	}
	st.EventsLogged, st.EventsKept = g.log.counts()
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, m := range g.muxes {
		st.UDPPeers += m.Peers()
		st.UDPUnverified += m.Unverified()
		st.UDPRefused += m.Refused()
	}
	return st
}

// Close stops listening, ends every tunnel, waits for all goroutines and
// logs the last refusal summaries. It is idempotent and safe before Start.
func (g *Gateway) Close() error {
	g.closeOnce.Do(func() {
		g.cancel()
		g.mu.Lock()
		if g.stopWatch != nil {
			g.stopWatch()
		}
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
		g.flushRefusals()
	})
	return nil
}

// summarizeRefusals logs the refusal summaries every RefusalSummary.
func (g *Gateway) summarizeRefusals() {
	defer g.wg.Done()
	t := time.NewTicker(g.cfg.RefusalSummary)
	defer t.Stop()
	for {
		select {
		case <-g.ctx.Done():
			return
		case <-t.C:
			g.flushRefusals()
		}
	}
}

func (g *Gateway) flushRefusals() {
	for _, e := range g.refusals.flush(g.cfg.Now()) {
		g.event(e)
		g.cfg.Logger.Warn("gateway: "+e.Reason, "source", e.Client, "transport", e.Transport, "refused", e.Count)
	}
}

// sessionSetupTimeout bounds the multiplexer's setup once the device is
// authenticated: twice the handshake deadline, since an SCTP association
// over a lossy path retransmits its INIT after a second, then two.
func (g *Gateway) sessionSetupTimeout() time.Duration { return 2 * g.cfg.HandshakeTimeout }

// refusal is one refused tunnel attempt before (or at) authentication.
type refusal struct {
	tr   tunnel.Transport
	peer net.Addr
	// kind names the reason in summaries: a failure cause or a limit.
	kind string
	// sample: the attempt may be logged in full (a verified peer); false
	// counts it in the summary only (a datagram, an unverified address).
	sample bool
	event  Event
}

// refuse counts a refused attempt and logs it in full if it is among the
// samples of its source's interval.
func (g *Gateway) refuse(r refusal) {
	src := addrPortOf(r.peer).Addr()
	if !g.refusals.note(src, r.tr, r.kind, r.sample) {
		return
	}
	e := r.event
	e.Event, e.Transport, e.Client = EventTunnelRefused, string(r.tr), r.peer.String()
	g.event(e)
	g.cfg.Logger.Info("gateway: tunnel refused", "peer", e.Client, "transport", r.tr, "cause", e.Cause, "reason", e.Reason)
}

// limitKind names a pre-authentication limit in summaries.
func limitKind(err error) string {
	switch {
	case errors.Is(err, errSourceLimit):
		return "source-limit"
	case errors.Is(err, errHandshakeLimit):
		return "handshake-limit"
	case errors.Is(err, tunnel.ErrNotHello):
		return "not-dtls"
	case errors.Is(err, tunnel.ErrPeerLimit):
		return "peer-limit"
	case errors.Is(err, tunnel.ErrUnverifiedLimit):
		return "unverified-limit"
	case errors.Is(err, tunnel.ErrAcceptBacklog):
		return "backlog-full"
	}
	return "refused"
}

// datagramRefused counts a datagram a UDP mux dropped from a new peer.
func (g *Gateway) datagramRefused(peer netip.AddrPort, err error) {
	g.refusals.note(peer.Addr(), tunnel.TransportDTLS, limitKind(err), false)
}

func addrPortOf(a net.Addr) netip.AddrPort {
	switch v := a.(type) {
	case *net.TCPAddr:
		return v.AddrPort()
	case *net.UDPAddr:
		return v.AddrPort()
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap
}

func (g *Gateway) event(e Event) {
	e.Time = g.cfg.Now()
	e.Gateway = g.cfg.Name
	g.log.add(e)
}

// admit takes a tunnel slot for an authenticated device.
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
				g.cfg.Logger.Error("gateway: TLS listener failed, no more TLS tunnels", "err", err)
			}
			return
		}
		release, err := g.tlsPre.acquire(addrPortOf(c.RemoteAddr()).Addr())
		if err != nil {
			g.refuse(refusal{tr: tunnel.TransportTLS, peer: c.RemoteAddr(), kind: limitKind(err), sample: true,
				event: Event{Reason: err.Error(), Cause: failure.CauseStreamLimit}})
			resetConn(c)
			continue
		}
		g.wg.Add(1)
		go func() {
			defer g.wg.Done()
			g.serveTLS(c, release)
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
		g.wg.Add(1)
		go func() {
			defer g.wg.Done()
			g.serveDTLS(mux, pc, raddr)
		}()
	}
}

// resetConn closes c with a TCP reset where it can, so that a refused
// connection leaves no TIME_WAIT state behind.
func resetConn(c net.Conn) {
	if tc, ok := c.(interface{ SetLinger(int) error }); ok {
		_ = tc.SetLinger(0)
	} else if u, ok := c.(interface{ Unwrap() net.Conn }); ok {
		if tc, ok := u.Unwrap().(interface{ SetLinger(int) error }); ok {
			_ = tc.SetLinger(0)
		}
	}
	_ = c.Close()
}

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

// serveTLS authenticates a TLS tunnel; release ends its count as a
// handshake in progress.
func (g *Gateway) serveTLS(raw net.Conn, release func()) {
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
	var probeName string
	if len(g.cfg.ProbeNames) > 0 {
		cfg.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
			if !slices.Contains(g.cfg.ProbeNames, hello.ServerName) {
				return nil, nil
			}
			probeName = hello.ServerName
			pc := cfg.Clone()
			pc.GetConfigForClient = nil
			pc.ClientAuth = tls.NoClientCert
			pc.VerifyPeerCertificate = nil
			return pc, nil
		}
	}
	conn := tls.Server(tunnel.WriteQueue(raw), cfg)
	ctx, cancel := context.WithTimeout(g.ctx, g.cfg.HandshakeTimeout)
	err := conn.HandshakeContext(ctx)
	cancel()
	release()
	if err != nil {
		g.handshakeFailed(tunnel.TransportTLS, raw.RemoteAddr(), st, err, errors.Is(ctx.Err(), context.DeadlineExceeded), nil)
		conn.Close()
		return
	}
	if probeName != "" {
		conn.Close()
		g.refuse(refusal{tr: tunnel.TransportTLS, peer: raw.RemoteAddr(), kind: "probe-name", sample: true,
			event: Event{Reason: "probe name " + probeName + ": certificate shown without a certificate request, no tunnel"}})
		return
	}
	g.serveTunnel(conn, tunnel.TransportTLS, st, func(c net.Conn) (tunnel.Session, error) {
		return tunnel.NewTLSSession(g.ctx, c, tunnel.RoleGateway, g.cfg.Session)
	})
}

// serveDTLS authenticates a DTLS tunnel; mux is told once it has.
func (g *Gateway) serveDTLS(mux *tunnel.UDPMux, pc net.PacketConn, raddr net.Addr) {
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
	// pion/dtls runs the handshake; the record path carries the
	// tunnel's records once it is done (tunnel.RecordPath).
	rp := tunnel.NewRecordPath(pc)
	conn, err := dtls.ServerWithOptions(rp, raddr, opts...)
	if err != nil {
		pc.Close()
		g.cfg.Logger.Warn("gateway: dtls server", "err", err)
		return
	}
	ctx, cancel := context.WithTimeout(g.ctx, g.cfg.HandshakeTimeout)
	err = conn.HandshakeContext(ctx)
	cancel()
	if err != nil {
		g.handshakeFailed(tunnel.TransportDTLS, raddr, st, err, errors.Is(ctx.Err(), context.DeadlineExceeded), pc)
		conn.Close()
		return
	}
	mux.Established(pc)
	// From the greeting on, the record path carries the records.
	rc, err := rp.Attach(conn, g.cfg.Logger)
	if err != nil {
		conn.Close()
		g.cfg.Logger.Warn("gateway: dtls record path", "peer", raddr.String(), "err", err)
		return
	}
	g.serveTunnel(rc, tunnel.TransportDTLS, st, func(c net.Conn) (tunnel.Session, error) {
		sctx, scancel := context.WithTimeout(g.ctx, g.sessionSetupTimeout())
		defer scancel()
		// The SCTP packet size follows the path back to the peer, as the
		// client's follows the path to the gateway.
		peer := addrPortOf(raddr).Addr()
		mtu, _ := hostnet.PathMTU(g.cfg.Stack, peer)
		scfg := g.cfg.Session.WithPathMTU(mtu, peer.Unmap().Is6())
		g.cfg.Logger.Debug("gateway: dtls session", "peer", raddr.String(), "sctp_mtu", scfg.MTU)
		return tunnel.NewDTLSSession(sctx, c, tunnel.RoleGateway, scfg)
	})
}

// handshakeFailed counts a failed tunnel handshake and logs it, with what
// the peer presented, if it is among its source's samples. pc is the DTLS
// peer, nil for TLS.
func (g *Gateway) handshakeFailed(tr tunnel.Transport, peer net.Addr, st *authState, err error, timedOut bool, pc net.PacketConn) {
	e := Event{Presented: st.presented}
	if desc, ok := failure.RemoteAlert(err); ok {
		// The peer ended the handshake: bad_certificate here means it
		// refused the gateway's own certificate.
		e.Alert = failure.AlertName(desc)
	}
	var dropped error
	if d, ok := pc.(interface{ Dropped() error }); ok {
		dropped = d.Dropped()
	}
	switch {
	case errors.Is(dropped, tunnel.ErrNoCookie):
		// The address never proved it receives: it may be forged, so it
		// is only counted, never named in an event of its own.
		g.refuse(refusal{tr: tr, peer: peer, kind: "no-cookie"})
		return
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
	g.refuse(refusal{tr: tr, peer: peer, kind: string(e.Cause), sample: true, event: e})
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
	// The tunnel takes its slot now that the device is authenticated, and
	// before the greeting tells the client it is up.
	if !g.admit() {
		conn.Close()
		g.refuse(refusal{tr: tr, peer: conn.RemoteAddr(), kind: "tunnel-limit", sample: true,
			event: Event{Device: st.identity, Presented: st.presented,
				Reason: fmt.Sprintf("tunnel limit %d reached", g.cfg.MaxTunnels), Cause: failure.CauseStreamLimit}})
		return
	}
	defer g.tunnels.Add(-1)
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
