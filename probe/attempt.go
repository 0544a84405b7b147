package probe

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
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/pinwall/pinwall/failure"
	"github.com/pinwall/pinwall/tunnel"
)

// Outcome of one TLS attempt.
type Outcome string

// Outcomes.
const (
	// Pinned: the handshake completed and the chain holds the pinned key.
	Pinned Outcome = "pinned"
	// Forged: the chain presented is not the pinned one (interception);
	// the probe refused it with a bad_certificate alert.
	Forged Outcome = "forged"
	// Failed: no chain came; Cause says how it ended.
	Failed Outcome = "failed"
)

// Chain describes a presented chain that is not the pinned one.
type Chain struct {
	// Leaf and Issuer describe the forged leaf and the certificate that
	// signed it (the issuer's own certificate when the chain holds it).
	Leaf   failure.Cert `json:"leaf"`
	Issuer string       `json:"issuer"`
	// IssuerCert describes the issuer's certificate when the chain has it.
	IssuerCert *failure.Cert `json:"issuer_cert,omitempty"`
	// NotBefore and NotAfter are the forged leaf's validity.
	NotBefore time.Time `json:"not_before"`
	NotAfter  time.Time `json:"not_after"`
	// DNSNames are the forged leaf's SANs.
	DNSNames []string `json:"dns_names,omitempty"`
	// MimicsSubject: the leaf's subject common name is the gateway's;
	// MimicsSANs: its SANs are the gateway certificate's.
	MimicsSubject bool `json:"mimics_subject"`
	MimicsSANs    bool `json:"mimics_sans"`
}

// Attempt is one TLS connection the probe made.
type Attempt struct {
	// Key names the attempt ("A" ... ) and What says what it tries.
	Key  string `json:"key"`
	What string `json:"what"`
	// Addr and SNI are where it went and the name it sent ("" for none).
	Addr netip.AddrPort `json:"addr"`
	SNI  string         `json:"sni"`
	// Via is the proxy it went through, "" for none.
	Via     string    `json:"via,omitempty"`
	Start   time.Time `json:"start"`
	TookMS  int64     `json:"took_ms"`
	Outcome Outcome   `json:"outcome"`
	// Chain is set when Outcome is Forged.
	Chain *Chain `json:"chain,omitempty"`
	// CertRequested: the server asked for a client certificate (the
	// device certificate was sent in answer).
	CertRequested bool `json:"cert_requested"`
	// Tunnel: the gateway greeted the probe with a tunnel id (it accepted
	// the device certificate); TunnelID is that id.
	Tunnel   bool   `json:"tunnel"`
	TunnelID string `json:"tunnel_id,omitempty"`
	// Leg and Cause classify a failure, Error says it in full.
	Leg   failure.Leg   `json:"leg,omitempty"`
	Cause failure.Cause `json:"cause,omitempty"`
	Error string        `json:"error,omitempty"`
}

// Passed reports an attempt that reached the gateway undecrypted.
func (a Attempt) Passed() bool { return a.Outcome == Pinned }

// Intercepted reports an attempt the firewall decrypted (a forged chain).
func (a Attempt) Intercepted() bool { return a.Outcome == Forged }

// errForged ends a handshake whose chain is not pinned.
var errForged = errors.New("probe: the chain presented is not the pinned one")

// ProxyError is a proxy that refused the probe's CONNECT.
type ProxyError struct {
	Proxy  string
	Target string
	Status string
}

func (e *ProxyError) Error() string {
	msg := fmt.Sprintf("proxy %s refused CONNECT %s: %s", e.Proxy, e.Target, e.Status)
	if strings.HasPrefix(e.Status, "407") {
		msg += " (the proxy wants credentials: give them in --proxy http://user:pass@host:port)"
	}
	return msg
}

// NotTLSError is an answer that is not TLS (a captive portal answering
// HTTP on 443, say).
type NotTLSError struct {
	Addr  netip.AddrPort
	First string
}

func (e *NotTLSError) Error() string {
	return fmt.Sprintf("%s answered with bytes that are not TLS (%q…): a captive portal or a proxy that speaks HTTP on 443?", e.Addr, e.First)
}

// dialTCP connects to addr, through the proxy when there is one.
func (r *runner) dialTCP(ctx context.Context, addr netip.AddrPort) (net.Conn, error) {
	if r.proxy == nil {
		return r.guard.DialContext(ctx, "tcp", addr.String())
	}
	c, err := r.guard.DialContext(ctx, "tcp", r.proxyAddr.String())
	if err != nil {
		return nil, err
	}
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Now()) })
	defer stop()
	req := fmt.Sprintf("CONNECT %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: pinwall-probe\r\n", addr, addr)
	if u := r.proxy.User; u != nil {
		p, _ := u.Password()
		req += "Proxy-Authorization: Basic " + basicAuth(u.Username(), p) + "\r\n"
	}
	if _, err := io.WriteString(c, req+"\r\n"); err != nil {
		c.Close()
		return nil, err
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("proxy %s: CONNECT %s: %w", r.proxy.Redacted(), addr, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		c.Close()
		return nil, &ProxyError{Proxy: r.proxy.Redacted(), Target: addr.String(), Status: resp.Status}
	}
	if br.Buffered() > 0 {
		c.Close()
		return nil, fmt.Errorf("proxy %s sent data before the TLS handshake", r.proxy.Redacted())
	}
	return c, nil
}

func basicAuth(user, pass string) string {
	return base64Std(user + ":" + pass)
}

// tlsAttempt makes one TLS connection to addr naming sni and says what
// came back.
func (r *runner) tlsAttempt(ctx context.Context, key, what string, addr netip.AddrPort, sni string) (a Attempt) {
	a = Attempt{Key: key, What: what, Addr: addr, SNI: sni, Start: r.now()}
	if r.proxy != nil {
		a.Via = r.proxy.Redacted()
	}
	start := time.Now()
	defer func() { a.TookMS = time.Since(start).Milliseconds() }()
	ctx, cancel := context.WithTimeout(ctx, r.cfg.StepTimeout)
	defer cancel()
	raw, err := r.dialTCP(ctx, addr)
	if err != nil {
		r.fail(&a, failure.LegClientFirewall, err)
		return a
	}
	defer raw.Close()
	var chain []*x509.Certificate
	pins := r.id.Pins
	if r.b.Decoy != nil && addr == *r.b.Decoy {
		pins = r.id.DecoyPins
	}
	cfg := &tls.Config{
		ServerName:         sni,
		InsecureSkipVerify: true, // the pin decides, in VerifyPeerCertificate
		NextProtos:         []string{tunnel.ALPN},
		MinVersion:         tls.VersionTLS12,
		KeyLogWriter:       r.keyLog,
		VerifyPeerCertificate: func(rawCerts [][]byte, _ [][]*x509.Certificate) error {
			for _, rc := range rawCerts {
				c, err := x509.ParseCertificate(rc)
				if err != nil {
					return err
				}
				chain = append(chain, c)
			}
			if pins.Match(chain) {
				return nil
			}
			return errForged
		},
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			a.CertRequested = true
			return r.id.Device, nil
		},
	}
	conn := tls.Client(raw, cfg)
	err = conn.HandshakeContext(ctx)
	if errors.Is(err, errForged) {
		a.Outcome = Forged
		a.Chain = r.describe(chain)
		a.Leg, a.Cause = failure.LegClientFirewall, failure.CausePinMismatch
		a.Error = fmt.Sprintf("%s presented %s, not the pinned key", addr, a.Chain.Leaf)
		return a
	}
	if err != nil {
		var rh tls.RecordHeaderError
		if errors.As(err, &rh) {
			err = &NotTLSError{Addr: addr, First: string(rh.RecordHeader[:])}
			a.Outcome, a.Leg, a.Cause, a.Error = Failed, failure.LegClientFirewall, failure.CauseProtocol, err.Error()
			return a
		}
		r.fail(&a, failure.LegClientFirewall, err)
		return a
	}
	a.Outcome = Pinned
	// A gateway that accepted the device certificate greets with the
	// tunnel's id; the control name, or a refused device, gets no greeting.
	_ = conn.SetReadDeadline(time.Now().Add(r.cfg.StepTimeout))
	if g, err := tunnel.ReadGreeting(conn); err == nil {
		a.Tunnel, a.TunnelID = true, g.TunnelIDString()
	}
	_ = conn.Close()
	return a
}

func (r *runner) fail(a *Attempt, leg failure.Leg, err error) {
	a.Outcome = Failed
	a.Error = err.Error()
	var pe *ProxyError
	switch {
	case errors.As(err, &pe):
		a.Leg, a.Cause = failure.LegClientFirewall, failure.CauseProxyRefused
	default:
		if fe, ok := failure.As(err); ok {
			a.Leg, a.Cause = fe.Leg, fe.Cause
			return
		}
		a.Leg, a.Cause = leg, failure.Classify(err)
		if a.Cause == failure.CauseNone || a.Cause == failure.CauseClosed {
			a.Cause = failure.CauseHandshakeFailed
		}
	}
}

// describe describes a chain that is not the pinned one, beside the
// gateway's own certificate.
func (r *runner) describe(chain []*x509.Certificate) *Chain {
	if len(chain) == 0 {
		return &Chain{}
	}
	leaf, gw := chain[0], r.id.Gateway
	c := &Chain{
		Leaf: failure.CertOf(leaf), Issuer: leaf.Issuer.String(),
		NotBefore: leaf.NotBefore, NotAfter: leaf.NotAfter, DNSNames: leaf.DNSNames,
		MimicsSubject: leaf.Subject.CommonName == gw.Subject.CommonName,
		MimicsSANs:    len(leaf.DNSNames) > 0 && sameSet(leaf.DNSNames, gw.DNSNames),
	}
	if len(chain) > 1 {
		ic := failure.CertOf(chain[1])
		c.IssuerCert = &ic
	}
	return c
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// proxyURL checks a --proxy URL.
func proxyURL(u *url.URL) error {
	if u == nil {
		return nil
	}
	if u.Scheme != "http" {
		return fmt.Errorf("probe: proxy %s: only http:// proxies (CONNECT) are supported", u.Redacted())
	}
	if u.Port() == "" {
		return fmt.Errorf("probe: proxy %s: no port", u.Redacted())
	}
	return nil
}
