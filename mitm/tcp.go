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
	"github.com/pinwall/pinwall/pki"
	"github.com/pinwall/pinwall/relay"
)

// session is one TCP session's state while it is handled.
type session struct {
	f     *Firewall
	rec   fwlog.Record
	hello *clienthello.Info
	start time.Time
}

func (f *Firewall) newSession(o origin, proto fwlog.Proto) *session {
	now := f.cfg.Now()
	return &session{f: f, start: time.Now(), rec: fwlog.Record{
		Start: now, SessionID: f.sessionID.Add(1), Src: o.src, Dst: o.dst,
		Proto: proto, HostnameHint: o.hint,
	}}
}

// finish logs the session's record.
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
	if err := s.f.log.Log(s.rec); err != nil {
		s.f.cfg.Logger.Warn("mitm: session record refused", "err", err, "session", s.rec.SessionID)
	}
}

func (s *session) decryption() *fwlog.Decryption {
	if s.rec.Decryption == nil {
		s.rec.Decryption = &fwlog.Decryption{}
		if s.hello != nil {
			s.rec.Decryption.JA3 = s.hello.JA3Hash()
			s.rec.Decryption.JA4 = s.hello.JA4()
			if len(s.hello.ALPN) > 0 {
				s.rec.Decryption.ALPN = s.hello.ALPN[0]
			}
		}
	}
	return s.rec.Decryption
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
	defer conn.Close()

	info, pc, err := clienthello.Peek(conn, clienthello.PeekOptions{MaxBytes: f.cfg.PeekMaxBytes, Timeout: f.cfg.PeekTimeout})
	ps := policy.Session{Src: o.src, Dst: o.dst, Proto: policy.ProtoTCP}
	isTLS := err == nil
	switch {
	case err == nil:
		s.hello = info
		s.rec.SNI = info.ServerName
		ps.SNI, ps.HasSNI = info.ServerName, info.HasSNI
	case errors.Is(err, clienthello.ErrNotTLS):
		// Not TLS: decided without SNI, identified from its first bytes.
		s.rec.App = Identify(pc.Buffered())
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
	s.rec.Rule = dec.RuleName
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
			d.ChainStatus = fwlog.ChainUninspected
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

// dialUpstream connects to the session's destination from the outside leg.
func (f *Firewall) dialUpstream(ctx context.Context, s *session) (net.Conn, error) {
	dctx, cancel := context.WithTimeout(ctx, f.cfg.DialTimeout)
	defer cancel()
	c, err := f.cfg.Outside.DialContext(dctx, "tcp", s.rec.Dst.String())
	if err != nil {
		return nil, err
	}
	s.rec.NATSrc = addrPortOf(c.LocalAddr())
	return c, nil
}

// upstreamFailed records a failed connection to the destination.
func (s *session) upstreamFailed(err error) {
	if errors.Is(err, syscall.ECONNREFUSED) {
		s.rec.EndReason = fwlog.EndTCPRSTFromServer
	} else {
		s.rec.EndReason = fwlog.EndAgedOut
	}
	s.rec.Action = fwlog.ActionAllow
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
	probe, err := f.dialUpstream(ctx, s)
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
		d.UpstreamFingerprint, d.UpstreamIssuer, d.UpstreamSubject = pki.Fingerprint(leaf), leaf.Issuer.String(), leaf.Subject.String()
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
