package failure

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"syscall"
)

// Leg names a stretch of the path between two components.
type Leg string

// The legs of a pinwall topology.
const (
	// LegNone is the zero Leg: the failure has not been attributed.
	LegNone Leg = ""
	// LegClientFirewall is the laptop's access leg, up to the perimeter firewall.
	LegClientFirewall Leg = "client-firewall"
	// LegFirewallGateway is the firewall's outside leg, up to the cloud gateway.
	LegFirewallGateway Leg = "firewall-gateway"
	// LegClientGateway is the client's end-to-end view of its tunnel, used when
	// the side of the firewall is unknown or no firewall is on the path.
	LegClientGateway Leg = "client-gateway"
	// LegGatewayOrigin is the gateway's leg to the SaaS origin.
	LegGatewayOrigin Leg = "gateway-origin"
	// LegClientOrigin is a flow the client sent direct (steering exception or
	// fail-open), failing somewhere between the laptop and the origin.
	LegClientOrigin Leg = "client-origin"
)

// Legs lists every attributable leg, in path order.
var Legs = []Leg{LegClientFirewall, LegFirewallGateway, LegClientGateway, LegGatewayOrigin, LegClientOrigin}

// Valid reports whether l is one of Legs or LegNone.
func (l Leg) Valid() bool {
	if l == LegNone {
		return true
	}
	for _, v := range Legs {
		if v == l {
			return true
		}
	}
	return false
}

// Cause names why a leg failed.
type Cause string

// The causes pinwall distinguishes.
const (
	CauseNone Cause = ""
	// CausePinMismatch: the server's key matched none of the client's pins.
	CausePinMismatch Cause = "pin-mismatch"
	// CauseUnknownAuthority: the server's chain did not verify against the trust store.
	CauseUnknownAuthority Cause = "unknown-authority"
	// CauseCertificateInvalid: the chain verified but does not cover the name, or has expired.
	CauseCertificateInvalid Cause = "certificate-invalid"
	// CauseClientCertRequired: the server demanded a client certificate the peer could not supply.
	CauseClientCertRequired Cause = "client-certificate-required"
	// CauseClientCertRejected: the server refused the client certificate presented.
	CauseClientCertRejected Cause = "client-certificate-rejected"
	// CauseForgedCertRejected: the client refused the firewall's forged certificate (firewall's view).
	CauseForgedCertRejected Cause = "forged-certificate-rejected"
	// CauseHandshakeTimeout: a (D)TLS handshake did not finish in time.
	CauseHandshakeTimeout Cause = "handshake-timeout"
	// CauseHandshakeFailed: the handshake failed for another protocol reason.
	CauseHandshakeFailed Cause = "handshake-failed"
	// CauseUDPUnanswered: datagrams were sent and nothing came back.
	CauseUDPUnanswered Cause = "udp-unanswered"
	// CauseUDPBlocked: a firewall dropped the datagrams by policy (firewall's view).
	CauseUDPBlocked Cause = "udp-blocked"
	// CausePolicyBlock: a firewall rule blocked the session.
	CausePolicyBlock Cause = "policy-block"
	// CauseConnectionReset: the peer or a middlebox reset the connection.
	CauseConnectionReset Cause = "connection-reset"
	// CauseConnectionRefused: nothing listened at the address.
	CauseConnectionRefused Cause = "connection-refused"
	// CauseTimeout: an operation other than a handshake ran out of time.
	CauseTimeout Cause = "timeout"
	// CauseTunnelDown: fail-close refused a flow because no tunnel was up.
	CauseTunnelDown Cause = "tunnel-down"
	// CauseDNS: a name did not resolve.
	CauseDNS Cause = "dns-failure"
	// CauseProxyRefused: an explicit proxy refused the CONNECT request.
	CauseProxyRefused Cause = "proxy-refused"
	// CauseStreamLimit: the tunnel refused a flow because it carries too many.
	CauseStreamLimit Cause = "stream-limit"
	// CauseProtocol: a peer broke the wire protocol.
	CauseProtocol Cause = "protocol-error"
	// CausePayloadMismatch: a flow's SHA-256 did not match at the far end.
	CausePayloadMismatch Cause = "payload-mismatch"
	// CauseClosed: the component was closed while the operation ran.
	CauseClosed Cause = "closed"
)

// Causes lists every cause, for documentation and validation.
var Causes = []Cause{
	CausePinMismatch, CauseUnknownAuthority, CauseCertificateInvalid, CauseClientCertRequired,
	CauseClientCertRejected, CauseForgedCertRejected, CauseHandshakeTimeout, CauseHandshakeFailed,
	CauseUDPUnanswered, CauseUDPBlocked, CausePolicyBlock, CauseConnectionReset,
	CauseConnectionRefused, CauseTimeout, CauseTunnelDown, CauseDNS, CauseProxyRefused,
	CauseStreamLimit, CauseProtocol, CausePayloadMismatch, CauseClosed,
}

// Valid reports whether c is one of Causes or CauseNone.
func (c Cause) Valid() bool {
	if c == CauseNone {
		return true
	}
	for _, v := range Causes {
		if v == c {
			return true
		}
	}
	return false
}

// Error is a failure attributed to a leg and a cause. Op names the operation
// ("dtls handshake", "open stream"), Addr the remote address involved.
type Error struct {
	Leg   Leg
	Cause Cause
	Op    string
	Addr  string
	Err   error
}

// New returns an *Error. err may be nil.
func New(leg Leg, cause Cause, op, addr string, err error) *Error {
	return &Error{Leg: leg, Cause: cause, Op: op, Addr: addr, Err: err}
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.Op)
	if e.Addr != "" {
		b.WriteString(" ")
		b.WriteString(e.Addr)
	}
	fmt.Fprintf(&b, ": %s on leg %s", e.Cause, e.Leg)
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

// Unwrap returns the underlying error.
func (e *Error) Unwrap() error { return e.Err }

// Timeout reports whether the failure was a timeout, so *Error satisfies net.Error.
func (e *Error) Timeout() bool {
	return e.Cause == CauseHandshakeTimeout || e.Cause == CauseTimeout || e.Cause == CauseUDPUnanswered
}

// Temporary is part of net.Error; it reports Timeout.
func (e *Error) Temporary() bool { return e.Timeout() }

var _ net.Error = (*Error)(nil)

// As returns the outermost *Error in err's chain.
func As(err error) (*Error, bool) {
	var fe *Error
	if errors.As(err, &fe) {
		return fe, true
	}
	return nil, false
}

// CauseOf returns the cause of the outermost *Error in err's chain, or CauseNone.
func CauseOf(err error) Cause {
	if fe, ok := As(err); ok {
		return fe.Cause
	}
	return CauseNone
}

// LegOf returns the leg of the outermost *Error in err's chain, or LegNone.
func LegOf(err error) Leg {
	if fe, ok := As(err); ok {
		return fe.Leg
	}
	return LegNone
}

// Classify maps a network-level error to a cause, for errors that are not
// already an *Error: timeouts, resets, refusals, closed connections. It
// returns CauseNone when it cannot tell.
func Classify(err error) Cause {
	if err == nil {
		return CauseNone
	}
	if c := CauseOf(err); c != CauseNone {
		return c
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded):
		return CauseTimeout
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return CauseConnectionReset
	case errors.Is(err, syscall.ECONNREFUSED):
		return CauseConnectionRefused
	case errors.Is(err, net.ErrClosed), errors.Is(err, context.Canceled):
		return CauseClosed
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return CauseDNS
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return CauseTimeout
	}
	return CauseNone
}
