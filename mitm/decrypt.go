package mitm

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"sync/atomic"
	"syscall"
	"time"

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
	untrusted := dec.Options.UntrustedCert
	var verifyErr error
	var verified [][]*x509.Certificate
	upCfg := &tls.Config{
		ServerName: serverName,
		// The chain is verified below, so that an untrusted one can be
		// answered as the rule says rather than only refused.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			verified, verifyErr = verifyUpstream(cs, serverName, f.cfg.Roots, f.cfg.Now())
			if verifyErr != nil && untrusted == policy.UntrustedCertBlock {
				return verifyErr
			}
			return nil
		},
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
		KeyLogWriter:       f.cfg.KeyLogWriter,
		ClientSessionCache: f.upstreamSessions(&requested),
	}
	upBatch := newBatchConn(upRaw)
	up := tls.Client(upBatch, upCfg)
	hctx, cancel := context.WithTimeout(ctx, f.cfg.HandshakeTimeout)
	err = up.HandshakeContext(hctx)
	cancel()
	st := up.ConnectionState()
	recordLeg(d, st, false)
	if err != nil {
		f.upstreamHandshakeFailed(s, err)
		rejectClient(client)
		return
	}
	leaf := st.PeerCertificates[0]
	recordUpstreamCert(d, leaf, verified)
	d.ChainStatus = fwlog.ChainTrusted
	d.ServerStage = "firewall-server: handshake completed"
	d.ServerMessage = "Finished"
	d.UpstreamKeyExchange = groupName(st.CurveID)

	if requested.Load() {
		if f.upSessions != nil {
			f.upSessions.Put(serverName, nil)
		}
		d.ServerMessage = "Certificate_Request"
		f.clientCertRequested(ctx, s, client, up, dec)
		return
	}

	forge := f.forger.Forge
	if verifyErr != nil {
		d.ChainStatus = fwlog.ChainUntrusted
		d.ErrorIndex = fwlog.ErrorIndexCertificate
		if untrusted == policy.UntrustedCertUntrustedCA {
			forge = f.forger.ForgeUntrusted
			d.Reason = "server certificate not trusted (" + verifyErr.Error() + "): presented a leaf from the untrusted CA"
		} else {
			d.Reason = "server certificate not trusted (" + verifyErr.Error() + "): ignored, forged with the enterprise CA"
		}
		f.cfg.Logger.Info("mitm: untrusted server certificate", "dst", s.rec.Dst.String(), "sni", sni, "action", string(untrusted), "err", verifyErr)
	}
	forged, err := forge(ctx, sni, leaf)
	if err != nil {
		s.fail(failure.LegClientFirewall, failure.CauseHandshakeFailed, fwlog.EndDecryptError, fwlog.ErrorIndexResource, "forging a certificate: "+err.Error())
		rejectClient(client)
		return
	}
	d.ForgedFingerprint, d.ForgedKey = forged.Fingerprint, string(forged.Key)
	d.ForgedBy = fwlog.ForgedByTrust
	if forged.Untrusted {
		d.ForgedBy = fwlog.ForgedByUntrust
	}
	srvCfg := &tls.Config{
		Certificates: []tls.Certificate{*forged.Certificate},
		MinVersion:   tls.VersionTLS12,
		KeyLogWriter: f.cfg.KeyLogWriter,
	}
	if st.NegotiatedProtocol != "" {
		srvCfg.NextProtos = []string{st.NegotiatedProtocol}
	}
	tail := &alertTail{Conn: client}
	clientBatch := newBatchConn(tail)
	cs := tls.Server(clientBatch, srvCfg)
	hctx, cancel = context.WithTimeout(ctx, f.cfg.HandshakeTimeout)
	err = cs.HandshakeContext(hctx)
	cancel()
	if err != nil {
		recordLeg(d, cs.ConnectionState(), true)
		f.clientRejected(s, err, dec, tail.alert())
		return
	}
	tail.done.Store(true)
	cst := cs.ConnectionState()
	recordLeg(d, cst, true)
	d.Outcome = fwlog.OutcomeDecrypted
	if d.Reason == "" {
		d.Reason = "decrypt rule " + dec.RuleName
	}
	d.ClientStage = "client-firewall: handshake completed"
	d.ClientMessage = "Finished"
	d.ALPN = cst.NegotiatedProtocol
	d.KeyExchange = groupName(cst.CurveID)

	// Relay the plaintext, identifying the application from the client's
	// first bytes.
	sn := &sniffer{max: 64}
	upBatch.startBatching()
	clientBatch.startBatching()
	res := relay.PipeCopying(ctx, &sniffConn{Conn: cs, s: sn}, up, func(dst, src net.Conn) (int64, error) {
		if dst == net.Conn(up) {
			return copyRecords(dst, upBatch, src)
		}
		return copyRecords(dst, clientBatch, src)
	})
	s.account(res)
	s.rec.App = Identify(sn.buf)
	if len(sn.buf) == 0 {
		s.rec.App = fwlog.AppSSL
	}
}

// verifyUpstream verifies the server's chain against the firewall's trust
// store for name, as crypto/tls would.
func verifyUpstream(cs tls.ConnectionState, name string, roots *x509.CertPool, now time.Time) ([][]*x509.Certificate, error) {
	if len(cs.PeerCertificates) == 0 {
		return nil, errors.New("the server sent no certificate")
	}
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	opts := x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: now, DNSName: name}
	if a, err := netip.ParseAddr(name); err == nil {
		opts.DNSName = a.String()
	}
	return cs.PeerCertificates[0].Verify(opts)
}

// upstreamSessions is the session cache of one upstream handshake, nil
// without Config.UpstreamSessions. A server that asked for a client
// certificate gets no session kept, and loses the one it had: a resumed
// handshake carries no CertificateRequest, and the firewall must keep
// noticing the request to answer the client as the rule says.
func (f *Firewall) upstreamSessions(requested *atomic.Bool) tls.ClientSessionCache {
	if f.upSessions == nil {
		return nil
	}
	return sessionGate{f.upSessions, requested}
}

type sessionGate struct {
	tls.ClientSessionCache
	requested *atomic.Bool
}

func (g sessionGate) Put(key string, cs *tls.ClientSessionState) {
	if g.requested.Load() {
		cs = nil // removes the key's entry
	}
	g.ClientSessionCache.Put(key, cs)
}

// recordLeg records what a handshake negotiated: the version and cipher
// suite of the leg the Decryption log describes (the client's when it got
// far enough, else the server's).
func recordLeg(d *fwlog.Decryption, st tls.ConnectionState, clientLeg bool) {
	if st.Version != 0 && (clientLeg || d.TLSVersion == "") {
		d.TLSVersion = tlsVersionName(st.Version)
	}
	if st.CipherSuite != 0 && (clientLeg || d.CipherSuite == "") {
		d.CipherSuite = tls.CipherSuiteName(st.CipherSuite)
	}
	if clientLeg && st.CurveID != 0 {
		d.KeyExchange = groupName(st.CurveID)
	}
}

// recordUpstreamCert records the server's real leaf and the root it was
// verified to.
func recordUpstreamCert(d *fwlog.Decryption, leaf *x509.Certificate, verified [][]*x509.Certificate) {
	d.UpstreamFingerprint, d.UpstreamIssuer, d.UpstreamSubject = pki.Fingerprint(leaf), leaf.Issuer.String(), leaf.Subject.String()
	d.UpstreamSerial = leaf.SerialNumber.Text(16)
	d.UpstreamNotBefore, d.UpstreamNotAfter = leaf.NotBefore.UTC(), leaf.NotAfter.UTC()
	switch k := leaf.PublicKey.(type) {
	case *rsa.PublicKey:
		d.UpstreamKeyType, d.UpstreamKeyBits = "RSA", k.N.BitLen()
	case *ecdsa.PublicKey:
		d.UpstreamKeyType, d.UpstreamKeyBits = "ECDSA", k.Curve.Params().BitSize
	case ed25519.PublicKey:
		d.UpstreamKeyType, d.UpstreamKeyBits = "Ed25519", 256
	}
	if len(verified) > 0 && len(verified[0]) > 0 {
		d.UpstreamRoot = verified[0][len(verified[0])-1].Subject.CommonName
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
	d.ClientMessage = "Client_Hello" // the client's hello, never answered
	d.ServerMessage = "Client_Hello" // inferred: nothing beyond the firewall's own hello
	var ua x509.UnknownAuthorityError
	var hn x509.HostnameError
	var ci x509.CertificateInvalidError
	switch {
	case errors.As(err, &ua):
		d.ChainStatus, d.ServerMessage = fwlog.ChainUntrusted, "Certificate"
		s.fail(failure.LegFirewallGateway, failure.CauseUnknownAuthority, fwlog.EndDecryptCertValidation, fwlog.ErrorIndexCertificate, "server certificate issuer is not trusted: "+err.Error())
	case errors.As(err, &hn), errors.As(err, &ci):
		d.ChainStatus, d.ServerMessage = fwlog.ChainUntrusted, "Certificate"
		s.fail(failure.LegFirewallGateway, failure.CauseCertificateInvalid, fwlog.EndDecryptCertValidation, fwlog.ErrorIndexCertificate, "server certificate invalid: "+err.Error())
	default:
		if a, ok := failure.RemoteAlert(err); ok {
			if name, cert := certificateAlerts[a]; cert || a == 116 {
				if a == 116 {
					name = "certificate_required"
				}
				d.Alert, d.AlertFrom, d.ServerMessage = name, "server", "Certificate_Request"
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
		d.ChainStatus, d.ExemptBy = fwlog.ChainUninspected, fwlog.ExemptClientCert
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
	// The client refused the firewall's first flight: its last message was
	// ServerHelloDone in TLS 1.2 (a real PAN-OS line shows
	// Server_Hello_Done / Client_Hello for a client's fatal alert); TLS 1.3
	// sends the certificate in the same flight (inferred: Certificate).
	d.ClientMessage, d.ServerMessage = "Server_Hello_Done", "Client_Hello"
	if d.TLSVersion == "TLS1.3" {
		d.ClientMessage = "Certificate"
	}
	a, ok := failure.RemoteAlert(err)
	if !ok && plainAlert >= 0 {
		a, ok = uint8(plainAlert), true
	}
	if ok {
		if name, cert := certificateAlerts[a]; cert {
			s.fail(failure.LegClientFirewall, failure.CauseForgedCertRejected, fwlog.EndDecryptCertValidation, fwlog.ErrorIndexCertificate,
				"client rejected the forged certificate: "+name)
			d.Alert, d.AlertFrom = name, "client"
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
