package mitm

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sync/atomic"
	"syscall"

	"github.com/pinwall/pinwall/failure"
	"github.com/pinwall/pinwall/mitm/clienthello"
	"github.com/pinwall/pinwall/mitm/fwlog"
	"github.com/pinwall/pinwall/mitm/policy"
	"github.com/pinwall/pinwall/pki"
	"github.com/pinwall/pinwall/relay"
)

// TLS alerts that mean "I do not accept your certificate".
var certificateAlerts = map[uint8]string{
	42: "bad_certificate", 43: "unsupported_certificate", 44: "certificate_revoked",
	45: "certificate_expired", 46: "certificate_unknown", 48: "unknown_ca", 49: "access_denied",
}

// decrypt terminates the client's TLS with a forged certificate and
// re-originates it to the destination.
func (f *Firewall) decrypt(ctx context.Context, s *session, client *clienthello.Conn, dec policy.Decision) {
	d := s.decryption()
	sni := s.rec.SNI
	upRaw, err := f.dialUpstream(ctx, s)
	if err != nil {
		s.upstreamFailed(err)
		resetConn(client)
		return
	}
	defer upRaw.Close()

	// Upstream first: the forged leaf mimics the real one, and a server
	// that demands a client certificate must be noticed before the client
	// is answered.
	var requested atomic.Bool
	serverName := sni
	if serverName == "" {
		serverName = s.rec.Dst.Addr().String()
	}
	upCfg := &tls.Config{
		ServerName: serverName,
		RootCAs:    f.cfg.Roots,
		MinVersion: tls.VersionTLS12,
		NextProtos: s.hello.ALPN,
		// Offer the server the key exchanges the client offered: decryption
		// neither adds post-quantum protection the client did not ask for
		// nor strips what it did.
		CurvePreferences: mirrorGroups(s.hello.Groups),
		Time:             f.cfg.Now,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			requested.Store(true)
			return &tls.Certificate{}, nil // the firewall has no device certificate to give
		},
		KeyLogWriter: f.cfg.KeyLogWriter,
	}
	up := tls.Client(upRaw, upCfg)
	hctx, cancel := context.WithTimeout(ctx, f.cfg.HandshakeTimeout)
	err = up.HandshakeContext(hctx)
	cancel()
	if err != nil {
		f.upstreamHandshakeFailed(s, err)
		rejectClient(client)
		return
	}
	st := up.ConnectionState()
	leaf := st.PeerCertificates[0]
	d.UpstreamFingerprint, d.UpstreamIssuer, d.UpstreamSubject = pki.Fingerprint(leaf), leaf.Issuer.String(), leaf.Subject.String()
	d.ChainStatus = fwlog.ChainTrusted
	d.ServerStage = "firewall-server: handshake completed"
	d.UpstreamKeyExchange = groupName(st.CurveID)

	if requested.Load() {
		f.clientCertRequested(ctx, s, client, up, dec)
		return
	}

	forged, err := f.forger.Forge(ctx, sni, leaf)
	if err != nil {
		s.fail(failure.LegClientFirewall, failure.CauseHandshakeFailed, fwlog.EndDecryptError, fwlog.ErrorIndexResource, "forging a certificate: "+err.Error())
		rejectClient(client)
		return
	}
	d.ForgedFingerprint = forged.Fingerprint
	srvCfg := &tls.Config{
		Certificates: []tls.Certificate{*forged.Certificate},
		MinVersion:   tls.VersionTLS12,
		KeyLogWriter: f.cfg.KeyLogWriter,
	}
	if st.NegotiatedProtocol != "" {
		srvCfg.NextProtos = []string{st.NegotiatedProtocol}
	}
	tail := &alertTail{Conn: client}
	cs := tls.Server(tail, srvCfg)
	hctx, cancel = context.WithTimeout(ctx, f.cfg.HandshakeTimeout)
	err = cs.HandshakeContext(hctx)
	cancel()
	if err != nil {
		f.clientRejected(s, err, dec, tail.alert())
		return
	}
	tail.done.Store(true)
	cst := cs.ConnectionState()
	d.Outcome = fwlog.OutcomeDecrypted
	d.Reason = "decrypt rule " + dec.RuleName
	d.TLSVersion = tlsVersionName(cst.Version)
	d.ClientStage = "client-firewall: handshake completed"
	d.ALPN = cst.NegotiatedProtocol
	d.KeyExchange = groupName(cst.CurveID)

	// Relay the plaintext, identifying the application from the client's
	// first bytes.
	sn := &sniffer{max: 64}
	res := relay.PipeCounting(ctx, &sniffConn{Conn: cs, s: sn}, up, nil)
	s.account(res)
	s.rec.App = Identify(sn.buf)
	if len(sn.buf) == 0 {
		s.rec.App = fwlog.AppSSL
	}
}

// sniffConn records the first bytes read from a decrypted client.
type sniffConn struct {
	net.Conn
	s *sniffer
}

func (c *sniffConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.s.see(p[:n])
	}
	return n, err
}

func (c *sniffConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Conn.Close()
}

// rejectClient answers a waiting client with a fatal handshake_failure alert.
func rejectClient(c net.Conn) {
	_, _ = c.Write([]byte{21, 3, 3, 0, 2, 2, 40})
	resetConn(c)
}

func tlsVersionName(v uint16) string { return clienthello.TLSVersionName(v) }

// mirrorGroups is the client's supported_groups, in its order, limited to
// what crypto/tls implements (the groups named in groupNames); nil
// (crypto/tls's defaults) when none is.
func mirrorGroups(offered []uint16) []tls.CurveID {
	var out []tls.CurveID
	for _, g := range offered {
		if _, ok := groupNames[tls.CurveID(g)]; ok && !slices.Contains(out, tls.CurveID(g)) {
			out = append(out, tls.CurveID(g))
		}
	}
	return out
}

// groupNames are the IANA TLS Supported Groups registry's names.
var groupNames = map[tls.CurveID]string{
	tls.X25519: "x25519", tls.CurveP256: "secp256r1", tls.CurveP384: "secp384r1", tls.CurveP521: "secp521r1",
	tls.X25519MLKEM768: "X25519MLKEM768", tls.SecP256r1MLKEM768: "SecP256r1MLKEM768", tls.SecP384r1MLKEM1024: "SecP384r1MLKEM1024",
}

// groupName names a negotiated key exchange as IANA does; empty when there
// was none (TLS 1.2 with RSA key transport).
func groupName(id tls.CurveID) string {
	if id == 0 {
		return ""
	}
	if n, ok := groupNames[id]; ok {
		return n
	}
	return id.String()
}

// upstreamHandshakeFailed records why the firewall's own handshake with
// the destination failed.
func (f *Firewall) upstreamHandshakeFailed(s *session, err error) {
	d := s.decryption()
	d.ServerStage = "firewall-server: handshake failed"
	var ua x509.UnknownAuthorityError
	var hn x509.HostnameError
	var ci x509.CertificateInvalidError
	switch {
	case errors.As(err, &ua):
		d.ChainStatus = fwlog.ChainUntrusted
		s.fail(failure.LegFirewallGateway, failure.CauseUnknownAuthority, fwlog.EndDecryptCertValidation, fwlog.ErrorIndexCertificate, "server certificate issuer is not trusted: "+err.Error())
	case errors.As(err, &hn), errors.As(err, &ci):
		d.ChainStatus = fwlog.ChainUntrusted
		s.fail(failure.LegFirewallGateway, failure.CauseCertificateInvalid, fwlog.EndDecryptCertValidation, fwlog.ErrorIndexCertificate, "server certificate invalid: "+err.Error())
	default:
		if a, ok := failure.RemoteAlert(err); ok {
			if name, cert := certificateAlerts[a]; cert || a == 116 {
				if a == 116 {
					name = "certificate_required"
				}
				s.fail(failure.LegFirewallGateway, failure.CauseClientCertRequired, fwlog.EndDecryptCertValidation, fwlog.ErrorIndexCertificate, "server refused the handshake: "+name)
				return
			}
		}
		cause := failure.Classify(err)
		if cause == failure.CauseNone || cause == failure.CauseClosed {
			cause = failure.CauseHandshakeFailed
		}
		s.fail(failure.LegFirewallGateway, cause, fwlog.EndDecryptError, fwlog.ErrorIndexProtocol, "handshake with server failed: "+err.Error())
	}
}

// clientCertRequested applies the rule's client-cert behaviour to a server
// that asked for a client certificate during the firewall's handshake.
func (f *Firewall) clientCertRequested(ctx context.Context, s *session, client *clienthello.Conn, up *tls.Conn, dec policy.Decision) {
	d := s.decryption()
	// The firewall has no device certificate: whatever it does, this
	// handshake with the server ends here (the server logs the refusal).
	up.Close()
	switch dec.Options.ClientCert {
	case policy.ClientCertBypass:
		d.Outcome = fwlog.OutcomeExcluded
		d.ChainStatus = fwlog.ChainUninspected
		d.Reason = "server requested a client certificate: bypass (session passed undecrypted)"
		f.cfg.Logger.Info("mitm: client-cert bypass", "dst", s.rec.Dst.String(), "sni", s.rec.SNI)
		f.splice(ctx, s, client)
	case policy.ClientCertLearn:
		ttl := dec.Options.ExclusionTTL
		f.excl.add(s.rec.Dst, s.rec.SNI, "client authentication required", ttl)
		s.fail(failure.LegFirewallGateway, failure.CauseClientCertRequired, fwlog.EndDecryptCertValidation, fwlog.ErrorIndexCertificate,
			fmt.Sprintf("server requested a client certificate: session blocked, server added to the decryption exclusion cache for %v", ttl))
		f.cfg.Logger.Info("mitm: learned a decryption exclusion", "server", s.rec.Dst.String(), "sni", s.rec.SNI, "ttl", ttl)
		rejectClient(client)
	default:
		s.fail(failure.LegFirewallGateway, failure.CauseClientCertRequired, fwlog.EndDecryptCertValidation, fwlog.ErrorIndexCertificate,
			"server requested a client certificate: session blocked (client-cert block)")
		rejectClient(client)
	}
}

// clientRejected records a client that refused the forged certificate and,
// when the rule says so, learns an exclusion — only from a certificate
// alert, never from a timeout or reset, which may be transient.
func (f *Firewall) clientRejected(s *session, err error, dec policy.Decision, plainAlert int) {
	d := s.decryption()
	d.ClientStage = "client-firewall: handshake failed"
	a, ok := failure.RemoteAlert(err)
	if !ok && plainAlert >= 0 {
		a, ok = uint8(plainAlert), true
	}
	if ok {
		if name, cert := certificateAlerts[a]; cert {
			s.fail(failure.LegClientFirewall, failure.CauseForgedCertRejected, fwlog.EndDecryptCertValidation, fwlog.ErrorIndexCertificate,
				"client rejected the forged certificate: "+name)
			if dec.Options.LearnOnClientReject {
				ttl := dec.Options.ExclusionTTL
				f.excl.add(s.rec.Dst, s.rec.SNI, "client rejected the forged certificate ("+name+")", ttl)
				d.Reason += fmt.Sprintf("; server added to the decryption exclusion cache for %v", ttl)
			}
			return
		}
	}
	// A client that hangs up before answering (an agent shutting down, an
	// abandoned reconnect) ended the session itself: no decryption error.
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		s.fail(failure.LegClientFirewall, failure.CauseConnectionReset, fwlog.EndTCPFin, fwlog.ErrorIndexProtocol, "client closed the connection during the handshake: "+err.Error())
		return
	case errors.Is(err, syscall.ECONNRESET):
		s.fail(failure.LegClientFirewall, failure.CauseConnectionReset, fwlog.EndTCPRSTFromClient, fwlog.ErrorIndexProtocol, "client reset the connection during the handshake: "+err.Error())
		return
	}
	cause := failure.Classify(err)
	switch cause {
	case failure.CauseTimeout:
		cause = failure.CauseHandshakeTimeout
	case failure.CauseNone, failure.CauseClosed:
		cause = failure.CauseHandshakeFailed
	}
	s.fail(failure.LegClientFirewall, cause, fwlog.EndDecryptError, fwlog.ErrorIndexProtocol, "client handshake failed: "+err.Error())
}

// alertTail remembers the last bytes read from a client during the
// handshake. A TLS 1.3 client built on OpenSSL that rejects the server's
// certificate sends its alert unencrypted (it has not switched to its
// handshake keys yet); crypto/tls, expecting an encrypted record, reports
// "bad record MAC" instead of the alert. The tail lets the firewall read the
// alert itself.
type alertTail struct {
	net.Conn
	buf  [7]byte
	n    int
	done atomic.Bool
}

func (t *alertTail) Read(p []byte) (int, error) {
	n, err := t.Conn.Read(p)
	if n > 0 && !t.done.Load() {
		if n >= len(t.buf) {
			copy(t.buf[:], p[n-len(t.buf):n])
			t.n = len(t.buf)
		} else {
			keep := min(t.n, len(t.buf)-n)
			copy(t.buf[:keep], t.buf[t.n-keep:t.n])
			copy(t.buf[keep:], p[:n])
			t.n = keep + n
		}
	}
	return n, err
}

// alert returns the description of a plaintext fatal alert record that
// ended the bytes read, or -1.
func (t *alertTail) alert() int {
	if t.n < 7 {
		return -1
	}
	b := t.buf
	if b[0] == 21 && b[1] == 3 && b[3] == 0 && b[4] == 2 && b[5] == 2 {
		return int(b[6])
	}
	return -1
}

func (t *alertTail) CloseWrite() error {
	if cw, ok := t.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return t.Conn.Close()
}
