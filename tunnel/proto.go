package tunnel

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strings"

	"github.com/pinwall/pinwall/failure"
)

// Transport names how a tunnel is carried.
type Transport string

// Transports.
const (
	TransportDTLS Transport = "dtls"
	TransportTLS  Transport = "tls"
)

// ALPN is the application protocol the tunnel negotiates on TLS.
const ALPN = "pinwall-tunnel/1"

// Protocol constants.
const (
	Version       = 1
	CmdConnect    = 1
	MaxHostLen    = 253
	MaxMessageLen = 200
)

var (
	requestMagic = [2]byte{'P', 'W'}
	replyMagic   = [2]byte{'P', 'R'}
)

// ErrProtocol reports a malformed tunnel message.
var ErrProtocol = errors.New("tunnel: protocol error")

// Request opens an inner flow.
type Request struct {
	// Host is the destination name (or IP literal) the gateway resolves.
	Host string
	Port uint16
	// FlowID is the client's identifier for the flow, echoed in logs.
	FlowID uint64
}

// Destination returns "host:port".
func (r Request) Destination() string {
	if strings.Contains(r.Host, ":") {
		return fmt.Sprintf("[%s]:%d", r.Host, r.Port)
	}
	return fmt.Sprintf("%s:%d", r.Host, r.Port)
}

// Validate checks the request can be encoded and makes sense.
func (r Request) Validate() error {
	if r.Host == "" || len(r.Host) > MaxHostLen {
		return fmt.Errorf("%w: host length %d (want 1..%d)", ErrProtocol, len(r.Host), MaxHostLen)
	}
	for i := 0; i < len(r.Host); i++ {
		c := r.Host[i]
		if c <= ' ' || c >= 0x7f {
			return fmt.Errorf("%w: host has byte 0x%02x at %d", ErrProtocol, c, i)
		}
	}
	if r.Port == 0 {
		return fmt.Errorf("%w: port 0", ErrProtocol)
	}
	return nil
}

// AppendRequest encodes r after b.
func AppendRequest(b []byte, r Request) ([]byte, error) {
	if err := r.Validate(); err != nil {
		return b, err
	}
	b = append(b, requestMagic[0], requestMagic[1], Version, CmdConnect)
	b = binary.BigEndian.AppendUint16(b, r.Port)
	b = append(b, byte(len(r.Host)))
	b = append(b, r.Host...)
	b = binary.BigEndian.AppendUint64(b, r.FlowID)
	return b, nil
}

// ReadRequest reads exactly one Request from rd.
func ReadRequest(rd io.Reader) (Request, error) {
	var fixed [7]byte
	if _, err := io.ReadFull(rd, fixed[:]); err != nil {
		return Request{}, fmt.Errorf("tunnel: read request: %w", err)
	}
	if fixed[0] != requestMagic[0] || fixed[1] != requestMagic[1] {
		return Request{}, fmt.Errorf("%w: bad request magic %q", ErrProtocol, fixed[:2])
	}
	if fixed[2] != Version {
		return Request{}, fmt.Errorf("%w: version %d, want %d", ErrProtocol, fixed[2], Version)
	}
	if fixed[3] != CmdConnect {
		return Request{}, fmt.Errorf("%w: command %d", ErrProtocol, fixed[3])
	}
	r := Request{Port: binary.BigEndian.Uint16(fixed[4:6])}
	hl := int(fixed[6])
	if hl > MaxHostLen {
		return Request{}, fmt.Errorf("%w: host length %d exceeds %d", ErrProtocol, hl, MaxHostLen)
	}
	rest := make([]byte, hl+8)
	if _, err := io.ReadFull(rd, rest); err != nil {
		return Request{}, fmt.Errorf("tunnel: read request: %w", err)
	}
	r.Host = string(rest[:hl])
	r.FlowID = binary.BigEndian.Uint64(rest[hl:])
	if err := r.Validate(); err != nil {
		return Request{}, err
	}
	return r, nil
}

// Status is the gateway's verdict on a Request.
type Status byte

// Statuses.
const (
	StatusOK Status = iota
	StatusDNSFailure
	StatusRefused
	StatusTimeout
	StatusUnreachable
	StatusPolicyDenied
	StatusStreamLimit
	StatusBadRequest
	statusMax
)

var statusNames = [...]string{"ok", "dns-failure", "refused", "timeout", "unreachable", "policy-denied", "stream-limit", "bad-request"}

func (s Status) String() string {
	if s < statusMax {
		return statusNames[s]
	}
	return fmt.Sprintf("status(%d)", byte(s))
}

// Cause maps a status to the failure cause the client reports.
func (s Status) Cause() failure.Cause {
	switch s {
	case StatusOK:
		return failure.CauseNone
	case StatusDNSFailure:
		return failure.CauseDNS
	case StatusRefused:
		return failure.CauseConnectionRefused
	case StatusTimeout:
		return failure.CauseTimeout
	case StatusPolicyDenied:
		return failure.CausePolicyBlock
	case StatusStreamLimit:
		return failure.CauseStreamLimit
	case StatusBadRequest:
		return failure.CauseProtocol
	default:
		return failure.CauseConnectionRefused
	}
}

// StatusFor maps a cause (from dialing the origin) to a Status.
func StatusFor(c failure.Cause) Status {
	switch c {
	case failure.CauseNone:
		return StatusOK
	case failure.CauseDNS:
		return StatusDNSFailure
	case failure.CauseConnectionRefused:
		return StatusRefused
	case failure.CauseTimeout, failure.CauseHandshakeTimeout:
		return StatusTimeout
	case failure.CausePolicyBlock:
		return StatusPolicyDenied
	case failure.CauseStreamLimit:
		return StatusStreamLimit
	case failure.CauseProtocol:
		return StatusBadRequest
	default:
		return StatusUnreachable
	}
}

// Reply answers a Request.
type Reply struct {
	Status Status
	// Addr is the origin address the gateway connected to (zero unless OK).
	Addr netip.AddrPort
	// Message explains a failure; at most MaxMessageLen bytes are sent.
	Message string
}

// Err returns nil for StatusOK, else an *failure.Error on the gateway-origin leg.
func (r Reply) Err(dest string) error {
	if r.Status == StatusOK {
		return nil
	}
	return failure.New(r.Status.Leg(), r.Status.Cause(), "gateway dial", dest, &StatusError{Status: r.Status, Message: r.Message})
}

// Leg is the leg a non-OK status blames: the tunnel itself (client-gateway)
// for a request the gateway would not take (stream-limit, bad-request), the
// gateway's leg to the origin for everything that happened dialling it.
func (s Status) Leg() failure.Leg {
	switch s {
	case StatusOK:
		return ""
	case StatusStreamLimit, StatusBadRequest:
		return failure.LegClientGateway
	default:
		return failure.LegGatewayOrigin
	}
}

// StatusError carries a non-OK Reply.
type StatusError struct {
	Status  Status
	Message string
}

func (e *StatusError) Error() string {
	if e.Message == "" {
		return "gateway: " + e.Status.String()
	}
	return "gateway: " + e.Status.String() + ": " + e.Message
}

// AppendReply encodes r after b, truncating the message to MaxMessageLen.
func AppendReply(b []byte, r Reply) []byte {
	b = append(b, replyMagic[0], replyMagic[1], Version, byte(r.Status))
	switch a := r.Addr.Addr().Unmap(); {
	case a.Is4():
		b = append(b, 4)
		a4 := a.As4()
		b = append(b, a4[:]...)
		b = binary.BigEndian.AppendUint16(b, r.Addr.Port())
	case a.Is6():
		b = append(b, 6)
		a16 := a.As16()
		b = append(b, a16[:]...)
		b = binary.BigEndian.AppendUint16(b, r.Addr.Port())
	default:
		b = append(b, 0)
	}
	msg := r.Message
	if len(msg) > MaxMessageLen {
		msg = msg[:MaxMessageLen]
	}
	b = append(b, byte(len(msg)))
	return append(b, msg...)
}

// ReadReply reads exactly one Reply from rd.
func ReadReply(rd io.Reader) (Reply, error) {
	var fixed [5]byte
	if _, err := io.ReadFull(rd, fixed[:]); err != nil {
		return Reply{}, fmt.Errorf("tunnel: read reply: %w", err)
	}
	if fixed[0] != replyMagic[0] || fixed[1] != replyMagic[1] {
		return Reply{}, fmt.Errorf("%w: bad reply magic %q", ErrProtocol, fixed[:2])
	}
	if fixed[2] != Version {
		return Reply{}, fmt.Errorf("%w: reply version %d", ErrProtocol, fixed[2])
	}
	r := Reply{Status: Status(fixed[3])}
	if r.Status >= statusMax {
		return Reply{}, fmt.Errorf("%w: status %d", ErrProtocol, fixed[3])
	}
	var alen int
	switch fixed[4] {
	case 0:
	case 4:
		alen = 4
	case 6:
		alen = 16
	default:
		return Reply{}, fmt.Errorf("%w: address family %d", ErrProtocol, fixed[4])
	}
	buf := make([]byte, alen+3)
	n := alen + 1
	if alen > 0 {
		n = alen + 3
	} else {
		buf = buf[:1]
	}
	if _, err := io.ReadFull(rd, buf[:n]); err != nil {
		return Reply{}, fmt.Errorf("tunnel: read reply: %w", err)
	}
	if alen > 0 {
		var ip netip.Addr
		if alen == 4 {
			ip = netip.AddrFrom4([4]byte(buf[:4]))
		} else {
			ip = netip.AddrFrom16([16]byte(buf[:16]))
		}
		r.Addr = netip.AddrPortFrom(ip, binary.BigEndian.Uint16(buf[alen:alen+2]))
	}
	ml := int(buf[n-1])
	if ml > MaxMessageLen {
		return Reply{}, fmt.Errorf("%w: message length %d exceeds %d", ErrProtocol, ml, MaxMessageLen)
	}
	if ml > 0 {
		msg := make([]byte, ml)
		if _, err := io.ReadFull(rd, msg); err != nil {
			return Reply{}, fmt.Errorf("tunnel: read reply: %w", err)
		}
		r.Message = string(msg)
	}
	return r, nil
}

// Greeting is the gateway's first message on a new tunnel, sent after it has
// authenticated the device. In TLS 1.3 the client's handshake completes
// before the server has checked the client certificate, so the client waits
// for the Greeting to learn whether the tunnel was accepted (a refusal
// arrives as an alert instead).
type Greeting struct {
	// TunnelID identifies the tunnel in both ends' logs.
	TunnelID [16]byte
}

var greetingMagic = [4]byte{'P', 'W', 'G', 'W'}

// GreetingLen is the encoded size of a Greeting.
const GreetingLen = 4 + 1 + 16

// AppendGreeting encodes g after b.
func AppendGreeting(b []byte, g Greeting) []byte {
	b = append(b, greetingMagic[:]...)
	b = append(b, Version)
	return append(b, g.TunnelID[:]...)
}

// ReadGreeting reads exactly one Greeting from rd.
func ReadGreeting(rd io.Reader) (Greeting, error) {
	var buf [GreetingLen]byte
	if _, err := io.ReadFull(rd, buf[:]); err != nil {
		return Greeting{}, fmt.Errorf("tunnel: read greeting: %w", err)
	}
	if [4]byte(buf[:4]) != greetingMagic {
		return Greeting{}, fmt.Errorf("%w: bad greeting magic %q", ErrProtocol, buf[:4])
	}
	if buf[4] != Version {
		return Greeting{}, fmt.Errorf("%w: greeting version %d", ErrProtocol, buf[4])
	}
	return Greeting{TunnelID: [16]byte(buf[5:])}, nil
}

// TunnelIDString formats a tunnel id for logs.
func (g Greeting) TunnelIDString() string { return fmt.Sprintf("%x", g.TunnelID[:]) }
