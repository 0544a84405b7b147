package client

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/pion/dtls/v3"
	dtlsnet "github.com/pion/dtls/v3/pkg/net"

	"github.com/pinwall/pinwall/failure"
	"github.com/pinwall/pinwall/hostnet"
	"github.com/pinwall/pinwall/pki"
	"github.com/pinwall/pinwall/tunnel"
)

// attempt is the outcome of one connection attempt to one gateway.
type attempt struct {
	gateway   string
	addr      netip.AddrPort
	transport tunnel.Transport
	sess      tunnel.Session
	tunnelID  string
	// seen is what the client saw of a failed handshake, if it got that far.
	seen *failure.Handshake
	// via is the upstream proxy of a TLS attempt, or "".
	via  string
	err  error
	took time.Duration
}

// TLS alert descriptions the client interprets.
const (
	alertHandshakeFailure    = 40
	alertNoCertificate       = 41
	alertBadCertificate      = 42
	alertCertificateUnknown  = 46
	alertUnknownCA           = 48
	alertAccessDenied        = 49
	alertCertificateRequired = 116
)

// verifier checks the gateway's chain the way the client is configured to,
// and records what the client saw of the handshake for its error reports.
type verifier struct {
	c          *Client
	serverName string
	// presented records the chain for error reports.
	presented atomic.Pointer[[]*x509.Certificate]
	pinned    atomic.Bool
	// certRequested and certChosen record the peer's certificate request
	// and whether the device certificate answers it; accepted that the
	// peer's chain passed, so the answer went out (pion/dtls picks the
	// certificate before it verifies the peer's chain, crypto/tls after).
	certRequested, certChosen, accepted atomic.Bool
}

func (v *verifier) verify(rawCerts [][]byte) error {
	err := v.check(rawCerts)
	v.accepted.Store(err == nil)
	return err
}

func (v *verifier) check(rawCerts [][]byte) error {
	certs := make([]*x509.Certificate, 0, len(rawCerts))
	for _, raw := range rawCerts {
		cert, err := x509.ParseCertificate(raw)
		if err != nil {
			return failure.New(failure.LegClientGateway, failure.CauseHandshakeFailed, "verify gateway", v.serverName, err)
		}
		certs = append(certs, cert)
	}
	v.presented.Store(&certs)
	if len(certs) == 0 {
		return failure.New(failure.LegClientGateway, failure.CauseHandshakeFailed, "verify gateway", v.serverName, errors.New("no certificate presented"))
	}
	cfg := &v.c.cfg
	leaf := certs[0]
	if len(cfg.Pins) > 0 {
		if cfg.Pins.Match(certs) {
			v.pinned.Store(true)
			return nil
		}
		// The gateway's key is pinned: a chain without it was presented by
		// something between the laptop and the gateway, on the laptop's
		// side of it (the gateway's log can show otherwise: stale pins).
		pm := &failure.PinMismatchError{ServerName: v.serverName, Issuer: leaf.Issuer.String(), Leaf: failure.CertOf(leaf), Pins: cfg.Pins.Strings()}
		for _, c := range certs {
			pm.Presented = append(pm.Presented, string(pki.SPKIPin(c)))
		}
		return failure.New(failure.LegClientFirewall, failure.CausePinMismatch, "verify gateway", v.serverName, pm)
	}
	if cfg.RootCAs == nil {
		return nil // InsecureSkipVerify
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	_, err := leaf.Verify(x509.VerifyOptions{DNSName: v.serverName, Roots: cfg.RootCAs, Intermediates: inter, CurrentTime: cfg.Now()})
	if err == nil {
		return nil
	}
	ce := &failure.CertificateError{ServerName: v.serverName, Issuer: leaf.Issuer.String(), Subject: leaf.Subject.String(),
		KeyType: failure.KeyType(leaf.PublicKey), SPKI: string(pki.SPKIPin(leaf)), Err: err}
	cause, leg := failure.CauseCertificateInvalid, failure.LegClientGateway
	var ua x509.UnknownAuthorityError
	if errors.As(err, &ua) {
		// The gateway's chain is issued by a CA the laptop trusts: an
		// issuer it does not trust is an interceptor's.
		cause, leg = failure.CauseUnknownAuthority, failure.LegClientFirewall
	}
	return failure.New(leg, cause, "verify gateway", v.serverName, ce)
}

// clientCertificate answers the peer's certificate request with the device
// certificate when the request allows it (as crypto/tls and pion/dtls do
// with a static certificate list), and records the request.
func (v *verifier) clientCertificate(supported func(*tls.Certificate) error) (*tls.Certificate, error) {
	v.certRequested.Store(true)
	if dc := v.c.cfg.DeviceCert; dc != nil && supported(dc) == nil {
		v.certChosen.Store(true)
		return dc, nil
	}
	return &tls.Certificate{}, nil
}

// handshake is what the client saw of a handshake that ended with err.
func (v *verifier) handshake(err error) *failure.Handshake {
	h := &failure.Handshake{Pinned: v.pinned.Load(), CertRequested: v.certRequested.Load(), CertSent: v.certChosen.Load() && v.accepted.Load()}
	if p := v.presented.Load(); p != nil {
		for _, c := range *p {
			h.Chain = append(h.Chain, failure.CertOf(c))
		}
	}
	if leaf := deviceLeaf(v.c.cfg.DeviceCert); leaf != nil {
		d := failure.CertOf(leaf)
		h.Device = &d
	}
	if desc, ok := failure.RemoteAlert(err); ok {
		h.Alert = failure.AlertName(desc)
	}
	return h
}

// deviceLeaf is the device certificate's leaf, or nil.
func deviceLeaf(dc *tls.Certificate) *x509.Certificate {
	if dc == nil || len(dc.Certificate) == 0 {
		return nil
	}
	if dc.Leaf != nil {
		return dc.Leaf
	}
	leaf, err := x509.ParseCertificate(dc.Certificate[0])
	if err != nil {
		return nil
	}
	return leaf
}

// connectTLS dials addr (directly or through the upstream proxy), runs the
// TLS 1.3 handshake, waits for the greeting and starts a yamux session.
func (c *Client) connectTLS(ctx context.Context, name string, addr netip.AddrPort) (tunnel.Session, string, *failure.Handshake, error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.HandshakeTimeout)
	defer cancel()
	target := addr.String()
	raw, err := c.dialTCPForTunnel(ctx, name, addr)
	if err != nil {
		return nil, "", nil, err
	}
	v := &verifier{c: c, serverName: name}
	cfg := &tls.Config{
		ServerName:         name,
		MinVersion:         tls.VersionTLS13,
		NextProtos:         []string{tunnel.ALPN},
		InsecureSkipVerify: true, // verification is the verifier's: pins or chain
		VerifyPeerCertificate: func(rawCerts [][]byte, _ [][]*x509.Certificate) error {
			return v.verify(rawCerts)
		},
		KeyLogWriter: c.cfg.KeyLogWriter,
		GetClientCertificate: func(cri *tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return v.clientCertificate(cri.SupportsCertificate)
		},
	}
	conn := tls.Client(tunnel.WriteQueue(raw), cfg)
	stop := context.AfterFunc(ctx, func() { _ = raw.SetDeadline(time.Now()) })
	defer stop()
	if err := conn.HandshakeContext(ctx); err != nil {
		conn.Close()
		if errors.Is(context.Cause(ctx), errUnansweredAtShutdown) {
			return nil, "", nil, failure.New(failure.LegClientGateway, failure.CauseClosed, "dtls handshake", target, errUnansweredAtShutdown)
		}
		return nil, "", v.handshake(err), c.classify("tls handshake", target, err, ctx)
	}
	// In TLS 1.3 the client's handshake ends with its certificate: a
	// refusal of it arrives as an alert on the first read, the greeting.
	g, err := tunnel.ReadGreeting(conn)
	if err != nil {
		conn.Close()
		return nil, "", v.handshake(err), c.classify("tls tunnel greeting", target, err, ctx)
	}
	_ = raw.SetDeadline(time.Time{})
	sess, err := tunnel.NewTLSSession(ctx, conn, tunnel.RoleClient, c.cfg.Session)
	if err != nil {
		conn.Close()
		if ctx.Err() != nil {
			return nil, "", nil, c.classify("tls session", target, err, ctx)
		}
		return nil, "", nil, failure.New(failure.LegClientGateway, failure.CauseProtocol, "tls session", target, err)
	}
	return sess, g.TunnelIDString(), nil, nil
}

// dialTCPForTunnel connects to the gateway, through the upstream proxy when configured.
func (c *Client) dialTCPForTunnel(ctx context.Context, name string, addr netip.AddrPort) (net.Conn, error) {
	if c.cfg.UpstreamProxy == nil {
		conn, err := c.cfg.Stack.DialContext(ctx, "tcp", addr.String())
		if err != nil {
			return nil, c.classify("tcp connect", addr.String(), err, ctx)
		}
		return conn, nil
	}
	proxy := c.cfg.UpstreamProxy
	host, port := proxy.Hostname(), proxy.Port()
	if port == "" {
		port = "8080"
	}
	ip, err := c.resolveOne(ctx, host)
	if err != nil {
		return nil, failure.New(failure.LegClientFirewall, failure.CauseDNS, "resolve proxy", host, err)
	}
	dest, err := c.proxyTarget(name, addr)
	if err != nil {
		return nil, err
	}
	paddr := net.JoinHostPort(ip.String(), port)
	conn, err := c.cfg.Stack.DialContext(ctx, "tcp", paddr)
	if err != nil {
		return nil, withLeg(c.classify("proxy connect", paddr, err, ctx), failure.LegClientFirewall)
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Now()) })
	defer stop()
	// The operation names the proxy and the target; the error needs no
	// address of its own.
	op := "proxy " + proxy.Redacted() + " CONNECT " + dest
	req := fmt.Sprintf("CONNECT %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: pinwall-client\r\n\r\n", dest, dest)
	if _, err := io.WriteString(conn, req); err != nil {
		conn.Close()
		return nil, withLeg(c.classify(op, "", err, ctx), failure.LegClientFirewall)
	}
	br := bufio.NewReaderSize(conn, 4096)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		conn.Close()
		return nil, withLeg(c.classify(op, "", err, ctx), failure.LegClientFirewall)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		conn.Close()
		return nil, failure.New(failure.LegClientFirewall, failure.CauseProxyRefused, op, "", fmt.Errorf("proxy answered %s", resp.Status))
	}
	if br.Buffered() > 0 {
		conn.Close()
		return nil, failure.New(failure.LegClientFirewall, failure.CauseProtocol, op, "", errors.New("proxy sent data before the TLS handshake"))
	}
	return conn, nil
}

// proxyTarget is what the CONNECT request names for the gateway name at
// addr: its address, or its name, with the port the proxy reaches it on.
func (c *Client) proxyTarget(name string, addr netip.AddrPort) (string, error) {
	reach := addr
	if c.cfg.ProxyReach != nil {
		r, ok := c.cfg.ProxyReach(addr)
		if !ok {
			return "", failure.New(failure.LegClientGateway, failure.CauseConnectionRefused, "proxy CONNECT target", addr.String(),
				errors.New("the gateway address has no stand-in the proxy can reach"))
		}
		reach = r
	}
	if c.cfg.ProxyConnect == ProxyConnectName {
		return net.JoinHostPort(name, strconv.Itoa(int(reach.Port()))), nil
	}
	return reach.String(), nil
}

// via names the path of a TLS tunnel: the upstream proxy's URL, or "".
func (c *Client) via(tr tunnel.Transport) string {
	if c.cfg.UpstreamProxy == nil || tr != tunnel.TransportTLS {
		return ""
	}
	return c.cfg.UpstreamProxy.Redacted()
}

func withLeg(err error, leg failure.Leg) error {
	if fe, ok := failure.As(err); ok {
		fe.Leg = leg
	}
	return err
}

// rxCounter counts datagrams received, to tell "UDP unanswered" from a
// handshake that started and then timed out.
type rxCounter struct {
	net.PacketConn
	n atomic.Int64
}

func (r *rxCounter) ReadFrom(b []byte) (int, net.Addr, error) {
	n, a, err := r.PacketConn.ReadFrom(b)
	if err == nil {
		r.n.Add(1)
	}
	return n, a, err
}

// errUnansweredAtShutdown ends a DTLS attempt that nothing had answered
// when the client began to shut down.
var errUnansweredAtShutdown = errors.New("client: shutting down, and no datagram had come back")

// connectDTLS runs the DTLS handshake within timeout, waits for the greeting
// and starts an SCTP session.
func (c *Client) connectDTLS(ctx context.Context, name string, addr netip.AddrPort, timeout time.Duration) (tunnel.Session, string, *failure.Handshake, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	target := addr.String()
	uc, err := c.cfg.Stack.DialContext(ctx, "udp", target)
	if err != nil {
		return nil, "", nil, c.classify("udp socket", target, err, ctx)
	}
	pc := &rxCounter{PacketConn: dtlsnet.PacketConnFromConn(uc)}
	// A shutdown lets an attempt in flight finish, but an attempt nothing
	// has answered yet has nothing left to finish: the datagrams it sent
	// are what the firewall and the gateway see of it whether it waits out
	// its timeout or not (pion/dtls retransmits a flight only after 1 s).
	// It ends at once, so a shutdown does not wait out the silence.
	ctx, cut := context.WithCancelCause(ctx)
	defer cut(nil)
	watched := make(chan struct{})
	defer close(watched)
	go func() {
		select {
		case <-c.stopping:
			if pc.n.Load() == 0 {
				cut(errUnansweredAtShutdown)
			}
		case <-ctx.Done():
		case <-watched:
		}
	}()
	v := &verifier{c: c, serverName: name}
	opts := []dtls.ClientOption{
		dtls.WithServerName(name),
		dtls.WithInsecureSkipVerify(true), // verification is the verifier's
		dtls.WithVerifyPeerCertificate(func(rawCerts [][]byte, _ [][]*x509.Certificate) error {
			return v.verify(rawCerts)
		}),
		dtls.WithExtendedMasterSecret(dtls.RequireExtendedMasterSecret),
		dtls.WithSupportedProtocols(tunnel.ALPN),
		dtls.WithLoggerFactory(tunnel.PionLoggerFactory(c.cfg.Logger)),
		dtls.WithGetClientCertificate(func(cri *dtls.CertificateRequestInfo) (*tls.Certificate, error) {
			return v.clientCertificate(cri.SupportsCertificate)
		}),
	}
	if c.cfg.KeyLogWriter != nil {
		opts = append(opts, dtls.WithKeyLogWriter(c.cfg.KeyLogWriter))
	}
	// pion/dtls runs the handshake; the record path carries the
	// tunnel's records once it is done (tunnel.RecordPath).
	rp := tunnel.NewRecordPath(pc)
	conn, err := dtls.ClientWithOptions(rp, uc.RemoteAddr(), opts...)
	if err != nil {
		uc.Close()
		return nil, "", nil, failure.New(failure.LegClientGateway, failure.CauseHandshakeFailed, "dtls setup", target, err)
	}
	if err := conn.HandshakeContext(ctx); err != nil {
		conn.Close()
		if errors.Is(context.Cause(ctx), errUnansweredAtShutdown) {
			return nil, "", nil, failure.New(failure.LegClientGateway, failure.CauseClosed, "dtls handshake", target, errUnansweredAtShutdown)
		}
		if ctx.Err() != nil && pc.n.Load() == 0 && c.ctx.Err() == nil {
			return nil, "", nil, failure.New(failure.LegClientGateway, failure.CauseUDPUnanswered, "dtls handshake", target,
				fmt.Errorf("no datagram came back within %v", timeout))
		}
		return nil, "", v.handshake(err), c.classify("dtls handshake", target, err, ctx)
	}
	// From the greeting on, the record path carries the records.
	rc, err := rp.Attach(conn, c.cfg.Logger)
	if err != nil {
		conn.Close()
		return nil, "", nil, c.classify("dtls record path", target, err, ctx)
	}
	stop := context.AfterFunc(ctx, func() { _ = rc.SetReadDeadline(time.Now()) })
	g, err := tunnel.ReadGreeting(rc)
	stop()
	if err != nil {
		rc.Close()
		return nil, "", v.handshake(err), c.classify("dtls tunnel greeting", target, err, ctx)
	}
	_ = rc.SetReadDeadline(time.Time{})
	scfg := sessionForPath(c.cfg.Session, c.cfg.Stack, addr.Addr())
	c.cfg.Logger.Debug("client: dtls session", "gateway", target, "sctp_mtu", scfg.MTU)
	sess, err := tunnel.NewDTLSSession(ctx, rc, tunnel.RoleClient, scfg)
	if err != nil {
		rc.Close()
		return nil, "", nil, c.classify("dtls session", target, err, ctx)
	}
	return sess, g.TunnelIDString(), nil, nil
}

// sessionForPath is cfg with its SCTP packet size set from the stack's path
// MTU towards dst, unless cfg sets one or the stack cannot tell (MTU stays
// zero: the tunnel's default).
func sessionForPath(cfg tunnel.Config, stack hostnet.Stack, dst netip.Addr) tunnel.Config {
	mtu, _ := hostnet.PathMTU(stack, dst)
	return cfg.WithPathMTU(mtu, dst.Unmap().Is6())
}

// classify turns a tunnel establishment error into a *failure.Error.
func (c *Client) classify(op, addr string, err error, ctx context.Context) error {
	if fe, ok := failure.As(err); ok {
		if fe.Addr == "" {
			fe.Addr = addr
		}
		return err
	}
	leg := failure.LegClientGateway
	if desc, ok := failure.RemoteAlert(err); ok {
		cause := failure.CauseHandshakeFailed
		switch desc {
		case alertCertificateRequired, alertNoCertificate:
			cause = failure.CauseClientCertRequired
		case alertBadCertificate, alertUnknownCA, alertCertificateUnknown, alertAccessDenied, alertHandshakeFailure:
			// Without a certificate of our own, any certificate complaint
			// means the gateway wanted one.
			if c.cfg.DeviceCert == nil {
				cause = failure.CauseClientCertRequired
			} else if desc != alertHandshakeFailure {
				cause = failure.CauseClientCertRejected
			}
		}
		return failure.New(leg, cause, op, addr, err)
	}
	if ctx != nil && ctx.Err() != nil && c.ctx.Err() == nil {
		return failure.New(leg, failure.CauseHandshakeTimeout, op, addr, err)
	}
	cause := failure.Classify(err)
	switch {
	case cause == failure.CauseClosed && c.ctx.Err() == nil,
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		cause = failure.CauseConnectionReset
	case cause == failure.CauseTimeout && op != "tcp connect":
		cause = failure.CauseHandshakeTimeout
	case cause == failure.CauseNone:
		cause = failure.CauseHandshakeFailed
	}
	return failure.New(leg, cause, op, addr, err)
}
