package mitm

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"time"

	"github.com/pinwall/pinwall/failure"
	"github.com/pinwall/pinwall/mitm/clienthello"
	"github.com/pinwall/pinwall/mitm/fwlog"
	"github.com/pinwall/pinwall/mitm/policy"
	"github.com/pinwall/pinwall/relay"
)

// session is one TCP session's state while it is handled.
type session struct {
	f     *Firewall
	rec   fwlog.Record
	hello *clienthello.Info
	// early is the connection to the destination started before the
	// hello was read (nil: none, or already taken).
	early *earlyDial
	start time.Time
	segs  segCounts
}

func (f *Firewall) newSession(o origin, proto fwlog.Proto) *session {
	now := f.cfg.Now()
	return &session{f: f, start: time.Now(), rec: fwlog.Record{
		Start: now, SessionID: f.sessionID.Add(1), Src: o.src, Dst: o.dst,
		Proto: proto, HostnameHint: o.hint,
	}}
}

// finish logs the session's record. Every path through handleTCP sets
// what it knows; finish fills what is still unknown with the vocabulary's
// "unknown" values, so that the log's validator never refuses a record and
// no session goes unlogged.
func (s *session) finish() {
	s.rec.DurationMS = time.Since(s.start).Milliseconds()
	if s.rec.App == "" {
		s.rec.App = fwlog.AppIncomplete
	}
	if s.rec.Action == "" {
		s.rec.Action = fwlog.ActionAllow
	}
	if s.rec.EndReason == "" {
		s.rec.EndReason = fwlog.EndUnknown
	}
	if s.segs.counted.Load() {
		s.rec.PacketsSent, s.rec.PacketsReceived = s.segs.fromClient.Load(), s.segs.fromServer.Load()
		s.rec.PacketsSource = "tcp_info"
	}
	if d := s.rec.Decryption; d != nil && d.Outcome == "" {
		// A decryption that started and never reached an outcome is a bug
		// in the path that left it; the session is still logged, as failed.
		s.f.cfg.Logger.Error("mitm: session ended with no decryption outcome, logging it as failed", "session", s.rec.SessionID, "end", s.rec.EndReason)
		d.Outcome, d.Leg, d.Cause, d.ErrorIndex = fwlog.OutcomeFailed, failure.LegNone, failure.CauseNone, fwlog.ErrorIndexGeneral
		if d.Reason == "" {
			d.Reason = "decryption did not complete (" + string(s.rec.EndReason) + ")"
		}
	}
	if err := s.f.log.Log(s.rec); err != nil {
		s.f.cfg.Logger.Error("mitm: session record refused", "err", err, "session", s.rec.SessionID)
	}
}

// shuttingDown reports whether the firewall is closing, which closes every
// session's connections itself.
func (s *session) shuttingDown() bool { return s.f.ctx.Err() != nil }

// reasonShutdown is the Reason of a session the firewall's own shutdown ended.
const reasonShutdown = "firewall shut down during the session"

func (s *session) decryption() *fwlog.Decryption {
	if s.rec.Decryption == nil {
		s.rec.Decryption = &fwlog.Decryption{}
		if s.hello != nil {
			if len(s.hello.ALPN) > 0 {
				s.rec.Decryption.ALPN = s.hello.ALPN[0]
			}
		}
	}
	return s.rec.Decryption
}

// setHello records the session's ClientHello (TLS or DTLS): its SNI and
// fingerprints.
func (s *session) setHello(info *clienthello.Info) {
	s.hello = info
	s.rec.SNI = info.ServerName
	s.rec.JA3, s.rec.JA4 = info.JA3Hash(), info.JA4()
}

// fail records a decryption failure.
func (s *session) fail(leg failure.Leg, cause failure.Cause, end fwlog.EndReason, idx fwlog.ErrorIndex, reason string) {
	d := s.decryption()
	d.Outcome, d.Leg, d.Cause, d.Reason, d.ErrorIndex = fwlog.OutcomeFailed, leg, cause, reason, idx
	s.rec.EndReason = end
	s.rec.Action = fwlog.ActionResetBoth
}

// handleTCP runs one TCP session to its end.
func (f *Firewall) handleTCP(conn net.Conn, o origin) {
	s := f.newSession(o, fwlog.ProtoTCP)
	defer s.finish()
	conn = countSegments(conn, func(n uint64) { s.segs.fromClient.Add(n); s.segs.counted.Store(true) })
	defer conn.Close()
	s.early = f.startEarlyDial(o.dst)
	defer s.early.discard() // unless the session took it

	info, pc, err := clienthello.Peek(conn, clienthello.PeekOptions{MaxBytes: f.cfg.PeekMaxBytes, Timeout: f.cfg.PeekTimeout})
	ps := policy.Session{Src: o.src, Dst: o.dst, Proto: policy.ProtoTCP}
	isTLS := err == nil
	switch {
	case err == nil:
		s.setHello(info)
		ps.SNI, ps.HasSNI, ps.App = info.ServerName, info.HasSNI, policy.AppSSL
	case errors.Is(err, clienthello.ErrNotTLS):
		// Not TLS: decided without SNI, identified from its first bytes.
		s.rec.App = Identify(pc.Buffered())
		if s.rec.App != fwlog.AppIncomplete {
			ps.App = policy.App(s.rec.App)
		}
	case s.shuttingDown() || errors.Is(err, net.ErrClosed):
		// The firewall closed the connection itself (Close): not the
		// client's doing, and not a malformed hello.
		s.rec.App, s.rec.EndReason = fwlog.AppIncomplete, fwlog.EndAgedOut
		s.rec.Reason = "firewall shut down before the client's hello was complete"
		s.rec.BytesSent = uint64(len(pc.Buffered()))
		return
	case errors.Is(err, os.ErrDeadlineExceeded):
		s.rec.App, s.rec.EndReason = fwlog.AppIncomplete, fwlog.EndAgedOut
		f.cfg.Logger.Info("mitm: client never finished its hello", "src", o.src.String(), "dst", o.dst.String(), "buffered", len(pc.Buffered()))
		return
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		// The client closed (FIN) before finishing its hello.
		s.rec.App, s.rec.EndReason = fwlog.AppIncomplete, fwlog.EndTCPFin
		return
	case failure.Classify(err) == failure.CauseConnectionReset:
		// The client reset before finishing its hello: not a malformed one.
		s.rec.App, s.rec.EndReason = fwlog.AppIncomplete, fwlog.EndTCPRSTFromClient
		return
	default:
		// Malformed or oversized hello: refuse it as a real box refuses
		// an unsupported handshake.
		s.rec.App, s.rec.Action, s.rec.EndReason = fwlog.AppSSL, fwlog.ActionResetBoth, fwlog.EndDecryptUnsupportParam
		s.rec.BytesSent = uint64(len(pc.Buffered()))
		f.cfg.Logger.Info("mitm: refused a malformed ClientHello", "src", o.src.String(), "dst", o.dst.String(), "err", err)
		resetConn(conn)
		return
	}

	ctx, cancel := context.WithCancel(f.ctx)
	defer cancel()
	dec := f.engine.Decide(ctx, ps)
	s.rec.Rule, s.rec.RuleID = dec.RuleName, dec.Number()
	if isTLS {
		s.rec.App = fwlog.AppSSL
	}

	action := dec.Action
	if action == policy.ActionDecrypt && !isTLS {
		action = policy.ActionAllow // nothing to decrypt
	}
	if action == policy.ActionDecrypt {
		if ex, ok := f.excl.lookup(o.dst); ok {
			d := s.decryption()
			d.Outcome, d.Reason = fwlog.OutcomeExcluded, "decryption exclusion cache: "+ex.Reason
			d.ChainStatus, d.ExemptBy = fwlog.ChainUninspected, fwlog.ExemptCache
			s.undecryptedMessages()
			f.splice(ctx, s, pc)
			return
		}
	}
	switch action {
	case policy.ActionBlock:
		s.rec.Action, s.rec.EndReason = fwlog.ActionResetBoth, fwlog.EndPolicyDeny
		s.rec.BytesSent = uint64(len(pc.Buffered()))
		resetConn(conn)
	case policy.ActionDecrypt:
		f.decrypt(ctx, s, pc, dec)
	default:
		if isTLS && action == policy.ActionNoDecrypt {
			d := s.decryption()
			d.Outcome, d.Reason, d.ChainStatus = fwlog.OutcomeNotDecrypted, "no-decrypt rule "+dec.RuleName, fwlog.ChainUninspected
			d.TLSVersion = clienthello.TLSVersionName(info.MaxVersion())
			d.ExemptBy = exemptionOf(dec.Rule)
			s.undecryptedMessages()
			if dec.Options.SNICertCheck == policy.SNICertCheckStrict {
				if !f.checkServerCert(ctx, s) {
					resetConn(conn)
					return
				}
			}
		}
		f.splice(ctx, s, pc)
	}
}

// dialUpstream connects to the session's destination from the outside leg,
// or takes the connection its early dial made; the connection's segments
// count as the session's packets received.
func (f *Firewall) dialUpstream(ctx context.Context, s *session) (net.Conn, error) {
	var (
		c   net.Conn
		err error
	)
	if d := s.early; d != nil {
		s.early = nil
		if c, err = d.take(ctx); err == nil {
			s.rec.NATSrc = addrPortOf(c.LocalAddr())
		}
	} else {
		c, err = f.dialProbe(ctx, s)
	}
	if err != nil {
		return nil, err
	}
	return countSegments(c, func(n uint64) { s.segs.fromServer.Add(n); s.segs.counted.Store(true) }), nil
}

// dialProbe connects to the session's destination without counting its
// segments (a certificate probe is not the session's traffic).
func (f *Firewall) dialProbe(ctx context.Context, s *session) (net.Conn, error) {
	dctx, cancel := context.WithTimeout(ctx, f.cfg.DialTimeout)
	defer cancel()
	c, err := f.cfg.Outside.DialContext(dctx, "tcp", s.rec.Dst.String())
	if err != nil {
		return nil, err
	}
	s.rec.NATSrc = addrPortOf(c.LocalAddr())
	return c, nil
}

// exemptionOf says what a no-decrypt rule matched on: the server's name
// (SNI patterns or expressions), its address, or neither.
func exemptionOf(r *policy.Rule) fwlog.Exemption {
	switch {
	case r == nil:
		return fwlog.ExemptPolicy
	case len(r.Match.SNI) > 0 || len(r.Match.SNIRegex) > 0:
		return fwlog.ExemptName
	case len(r.Match.Dst) > 0 || len(r.Match.DstFQDN) > 0:
		return fwlog.ExemptAddress
	}
	return fwlog.ExemptPolicy
}

// undecryptedMessages sets the handshake stages of a session the firewall
// passes undecrypted: the last message it can see in the clear, the
// server's Certificate for TLS 1.2 (as a real PAN-OS no-decrypt line
// shows), its ServerHello for TLS 1.3, which encrypts the certificate
// (inferred).
func (s *session) undecryptedMessages() {
	d := s.decryption()
	msg := "Certificate"
	if s.hello != nil && s.hello.MaxVersion() >= tls.VersionTLS13 {
		msg = "Server_Hello"
	}
	d.ClientMessage, d.ServerMessage = msg, msg
}

// upstreamFailed records a failed connection to the destination: refused
// (the server's RST: tcp-rst-from-server) or unanswered (aged-out, as PAN-OS
// ends a session whose SYN got no answer). A session under a decryption
// rule that had no outcome yet failed on the firewall's leg to the server.
//
// Inferred: an inline PAN-OS box would see the unanswered SYN before any
// ClientHello and write no DECRYPTION log; pinwall's firewall, like a
// transparent proxy (squid, sslsplit), has accepted the client and takes
// its connection's result (an early dial's too) only after reading its
// hello, so it logs the decryption that could not start.
func (s *session) upstreamFailed(err error) {
	cause := failure.Classify(err)
	reason := "destination unreachable: " + err.Error()
	switch {
	case s.shuttingDown():
		cause, reason = failure.CauseClosed, reasonShutdown
		s.rec.EndReason = fwlog.EndAgedOut
	case errors.Is(err, syscall.ECONNREFUSED):
		s.rec.EndReason = fwlog.EndTCPRSTFromServer
	default:
		s.rec.EndReason = fwlog.EndAgedOut
		if cause == failure.CauseNone {
			cause = failure.CauseTimeout
		}
	}
	s.rec.Action = fwlog.ActionAllow
	s.rec.Reason = reason
	if d := s.rec.Decryption; d != nil {
		d.ServerStage = "firewall-server: TCP connection failed"
		if d.Outcome == "" {
			d.Outcome, d.Leg, d.Cause, d.Reason = fwlog.OutcomeFailed, failure.LegFirewallGateway, cause, reason
			d.ErrorIndex = fwlog.ErrorIndexGeneral // inferred: no PAN-OS index names a connection failure
		}
	}
	s.f.cfg.Logger.Info("mitm: destination unreachable", "dst", s.rec.Dst.String(), "err", err)
}

// splice relays the client's untouched bytes (replaying the peeked hello)
// to the destination.
func (f *Firewall) splice(ctx context.Context, s *session, client net.Conn) {
	up, err := f.dialUpstream(ctx, s)
	if err != nil {
		s.upstreamFailed(err)
		resetConn(client)
		return
	}
	defer up.Close()
	res := relay.Pipe(ctx, client, up)
	s.account(res)
}

// account fills bytes and end reason from a relay.
func (s *session) account(res relay.Result) {
	s.rec.BytesSent, s.rec.BytesReceived = uint64(max(res.Up, 0)), uint64(max(res.Down, 0))
	switch {
	case res.UpErr != nil && failure.Classify(res.UpErr) == failure.CauseConnectionReset:
		s.rec.EndReason = fwlog.EndTCPRSTFromClient
	case res.DownErr != nil && failure.Classify(res.DownErr) == failure.CauseConnectionReset:
		s.rec.EndReason = fwlog.EndTCPRSTFromServer
	case errors.Is(res.Err(), context.Canceled):
		s.rec.EndReason = fwlog.EndAgedOut
		if s.shuttingDown() {
			s.rec.Reason = reasonShutdown
		}
	default:
		s.rec.EndReason = fwlog.EndTCPFin
	}
}

// checkServerCert implements sni-cert-check strict for an undecrypted
// session: a probe handshake fetches the server's certificate for the SNI;
// unless it chains to the firewall's trust store and covers the SNI, the
// session is blocked.
func (f *Firewall) checkServerCert(ctx context.Context, s *session) bool {
	d := s.decryption()
	probe, err := f.dialProbe(ctx, s)
	if err != nil {
		s.upstreamFailed(err)
		return false
	}
	defer probe.Close()
	hctx, cancel := context.WithTimeout(ctx, f.cfg.HandshakeTimeout)
	defer cancel()
	var leaf *x509.Certificate
	tc := tls.Client(probe, &tls.Config{
		ServerName:         s.rec.SNI,
		InsecureSkipVerify: true,
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) > 0 {
				leaf, _ = x509.ParseCertificate(raw[0])
			}
			return nil
		},
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &tls.Certificate{}, nil },
		KeyLogWriter:         f.cfg.KeyLogWriter,
	})
	herr := tc.HandshakeContext(hctx)
	var reason string
	switch {
	case leaf == nil:
		reason = fmt.Sprintf("sni-cert-check strict: no certificate from %s for %q: %v", s.rec.Dst, s.rec.SNI, herr)
	default:
		recordUpstreamCert(d, leaf, nil)
		if s.rec.SNI == "" {
			reason = "sni-cert-check strict: no SNI to check"
		} else if err := leaf.VerifyHostname(s.rec.SNI); err != nil {
			reason = fmt.Sprintf("sni-cert-check strict: certificate of %s does not cover %q", s.rec.Dst, s.rec.SNI)
		} else if _, err := leaf.Verify(x509.VerifyOptions{DNSName: s.rec.SNI, Roots: f.cfg.Roots, CurrentTime: f.cfg.Now()}); err != nil {
			reason = fmt.Sprintf("sni-cert-check strict: certificate of %s does not chain to the trust store", s.rec.Dst)
		}
	}
	if reason == "" {
		d.ChainStatus = fwlog.ChainTrusted
		return true
	}
	d.ChainStatus = fwlog.ChainUntrusted
	s.fail(failure.LegFirewallGateway, failure.CauseCertificateInvalid, fwlog.EndDecryptCertValidation, fwlog.ErrorIndexCertificate, reason)
	d.Outcome = fwlog.OutcomeNotDecrypted
	s.rec.Action = fwlog.ActionResetBoth
	f.cfg.Logger.Info("mitm: blocked by sni-cert-check", "src", s.rec.Src.String(), "dst", s.rec.Dst.String(), "sni", s.rec.SNI, "reason", reason)
	return false
}
