package socks5

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
)

// Version is the protocol version byte of every SOCKS5 message.
const Version = 0x05

// Authentication methods (RFC 1928 section 3).
const (
	// MethodNoAuth is "no authentication required", the only method served.
	MethodNoAuth byte = 0x00
	// MethodNoAcceptable tells the client that none of its methods is served.
	MethodNoAcceptable byte = 0xFF
)

// Wire bounds: a greeting is VER NMETHODS METHODS[1..255]; a request is
// VER CMD RSV ATYP, at most 1+255 address bytes (a length-prefixed name) and
// a two-byte port.
const (
	MaxGreetingLen = 2 + 255
	MaxRequestLen  = 4 + 1 + 255 + 2
)

// Command is the CMD field of a request.
type Command byte

// The commands of RFC 1928 section 4. Only CmdConnect is served.
const (
	CmdConnect      Command = 0x01
	CmdBind         Command = 0x02
	CmdUDPAssociate Command = 0x03
)

func (c Command) String() string {
	switch c {
	case CmdConnect:
		return "connect"
	case CmdBind:
		return "bind"
	case CmdUDPAssociate:
		return "udp-associate"
	}
	return "command(0x" + strconv.FormatUint(uint64(c), 16) + ")"
}

// AddrType is the ATYP field of a request or reply.
type AddrType byte

// The address types of RFC 1928 section 5.
const (
	AddrIPv4   AddrType = 0x01
	AddrDomain AddrType = 0x03
	AddrIPv6   AddrType = 0x04
)

func (a AddrType) String() string {
	switch a {
	case AddrIPv4:
		return "ipv4"
	case AddrDomain:
		return "domain"
	case AddrIPv6:
		return "ipv6"
	}
	return "atyp(0x" + strconv.FormatUint(uint64(a), 16) + ")"
}

// Reply is the REP field of a reply.
type Reply byte

// The reply codes of RFC 1928 section 6.
const (
	ReplySucceeded            Reply = 0x00
	ReplyGeneralFailure       Reply = 0x01
	ReplyNotAllowed           Reply = 0x02
	ReplyNetworkUnreachable   Reply = 0x03
	ReplyHostUnreachable      Reply = 0x04
	ReplyConnectionRefused    Reply = 0x05
	ReplyTTLExpired           Reply = 0x06
	ReplyCommandNotSupported  Reply = 0x07
	ReplyAddrTypeNotSupported Reply = 0x08
)

var replyNames = [...]string{
	ReplySucceeded:            "succeeded",
	ReplyGeneralFailure:       "general SOCKS server failure",
	ReplyNotAllowed:           "connection not allowed by ruleset",
	ReplyNetworkUnreachable:   "network unreachable",
	ReplyHostUnreachable:      "host unreachable",
	ReplyConnectionRefused:    "connection refused",
	ReplyTTLExpired:           "TTL expired",
	ReplyCommandNotSupported:  "command not supported",
	ReplyAddrTypeNotSupported: "address type not supported",
}

func (r Reply) String() string {
	if int(r) < len(replyNames) {
		return replyNames[r]
	}
	return "reply(0x" + strconv.FormatUint(uint64(r), 16) + ")"
}

// Errors returned by ReadGreeting and ReadRequest. Truncated input yields an
// error wrapping io.ErrUnexpectedEOF (or io.EOF when nothing at all was read);
// errors from the reader itself (deadlines, closed connections) are wrapped
// unchanged.
var (
	// ErrVersion: the first byte is not 5.
	ErrVersion = errors.New("socks5: unsupported protocol version")
	// ErrNoMethods: a greeting offering zero methods.
	ErrNoMethods = errors.New("socks5: greeting offers no authentication method")
	// ErrReserved: the request's RSV byte is not zero.
	ErrReserved = errors.New("socks5: reserved byte is not zero")
	// ErrAddrType: the request's ATYP is none of IPv4, domain, IPv6.
	ErrAddrType = errors.New("socks5: address type not supported")
	// ErrEmptyName: a domain-name request with a zero-length name.
	ErrEmptyName = errors.New("socks5: empty domain name")
	// ErrBadName: a domain name with bytes no host name has (controls,
	// spaces, non-ASCII, or a colon outside an IP literal).
	ErrBadName = errors.New("socks5: invalid domain name")
)

// Greeting is the client's method-selection message.
type Greeting struct {
	// Methods lists the authentication methods the client offers, in order.
	Methods []byte
}

// Offers reports whether the greeting offers method m.
func (g Greeting) Offers(m byte) bool {
	for _, x := range g.Methods {
		if x == m {
			return true
		}
	}
	return false
}

// ReadGreeting reads one greeting (VER NMETHODS METHODS) from r, reading
// exactly its bytes.
func ReadGreeting(r io.Reader) (Greeting, error) {
	var hdr [2]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return Greeting{}, fmt.Errorf("socks5: read greeting: %w", err)
	}
	if hdr[0] != Version {
		return Greeting{}, fmt.Errorf("%w: greeting version %d", ErrVersion, hdr[0])
	}
	if hdr[1] == 0 {
		return Greeting{}, ErrNoMethods
	}
	methods := make([]byte, hdr[1])
	if _, err := io.ReadFull(r, methods); err != nil {
		return Greeting{}, fmt.Errorf("socks5: read greeting methods: %w", noEOF(err))
	}
	return Greeting{Methods: methods}, nil
}

// Request is a client's request: what to do and where.
type Request struct {
	Command  Command
	AddrType AddrType
	// Addr is the destination for AddrIPv4 and AddrIPv6; invalid for a name.
	Addr netip.Addr
	// Name is the destination for AddrDomain, exactly as sent (not resolved).
	Name string
	Port uint16
}

// Host returns the destination host: the name, or the IP literal.
func (q Request) Host() string {
	if q.AddrType == AddrDomain {
		return q.Name
	}
	return q.Addr.String()
}

// Address returns the destination as "host:port", the form a dialer takes
// ("[v6]:port" for IPv6, the unresolved name for a domain).
func (q Request) Address() string {
	return net.JoinHostPort(q.Host(), strconv.Itoa(int(q.Port)))
}

// ReadRequest reads one request (VER CMD RSV ATYP DST.ADDR DST.PORT) from r,
// reading exactly its bytes. A request with an unserved command parses
// without error: the server answers it with ReplyCommandNotSupported. An
// unknown address type returns ErrAddrType after the first four bytes, since
// the length of what follows is unknown.
func ReadRequest(r io.Reader) (Request, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return Request{}, fmt.Errorf("socks5: read request: %w", err)
	}
	if hdr[0] != Version {
		return Request{}, fmt.Errorf("%w: request version %d", ErrVersion, hdr[0])
	}
	if hdr[2] != 0 {
		return Request{}, fmt.Errorf("%w: 0x%02x", ErrReserved, hdr[2])
	}
	q := Request{Command: Command(hdr[1]), AddrType: AddrType(hdr[3])}
	var buf [1 + 255 + 2]byte
	switch q.AddrType {
	case AddrIPv4:
		b := buf[:4+2]
		if _, err := io.ReadFull(r, b); err != nil {
			return Request{}, fmt.Errorf("socks5: read ipv4 address: %w", noEOF(err))
		}
		q.Addr = netip.AddrFrom4([4]byte(b[:4]))
		q.Port = uint16(b[4])<<8 | uint16(b[5])
	case AddrIPv6:
		b := buf[:16+2]
		if _, err := io.ReadFull(r, b); err != nil {
			return Request{}, fmt.Errorf("socks5: read ipv6 address: %w", noEOF(err))
		}
		q.Addr = netip.AddrFrom16([16]byte(b[:16]))
		q.Port = uint16(b[16])<<8 | uint16(b[17])
	case AddrDomain:
		if _, err := io.ReadFull(r, buf[:1]); err != nil {
			return Request{}, fmt.Errorf("socks5: read name length: %w", noEOF(err))
		}
		n := int(buf[0])
		if n == 0 {
			return Request{}, ErrEmptyName
		}
		b := buf[:n+2]
		if _, err := io.ReadFull(r, b); err != nil {
			return Request{}, fmt.Errorf("socks5: read name: %w", noEOF(err))
		}
		if err := checkName(b[:n]); err != nil {
			return Request{}, err
		}
		q.Name = string(b[:n])
		q.Port = uint16(b[n])<<8 | uint16(b[n+1])
	default:
		return Request{}, fmt.Errorf("%w: 0x%02x", ErrAddrType, hdr[3])
	}
	return q, nil
}

// checkName rejects names that could not be a host name or an IP literal and
// would otherwise reach the dialer, logs and the gateway verbatim. Punycode
// (what clients send for internationalised names) passes.
func checkName(name []byte) error {
	colon := false
	for _, c := range name {
		if c <= ' ' || c > '~' {
			return fmt.Errorf("%w: byte 0x%02x in %q", ErrBadName, c, name)
		}
		colon = colon || c == ':'
	}
	if colon {
		if _, err := netip.ParseAddr(string(name)); err != nil {
			return fmt.Errorf("%w: %q has a colon but is no IP address", ErrBadName, name)
		}
	}
	return nil
}

// AppendReply appends a reply with code rep and bound address bnd to b. An
// invalid bnd is sent as 0.0.0.0:0; an IPv4-mapped IPv6 address as IPv4.
func AppendReply(b []byte, rep Reply, bnd netip.AddrPort) []byte {
	b = append(b, Version, byte(rep), 0)
	a := bnd.Addr().Unmap()
	switch {
	case a.Is4():
		v := a.As4()
		b = append(b, byte(AddrIPv4))
		b = append(b, v[:]...)
	case a.Is6():
		v := a.As16()
		b = append(b, byte(AddrIPv6))
		b = append(b, v[:]...)
	default:
		b = append(b, byte(AddrIPv4), 0, 0, 0, 0)
		return append(b, 0, 0)
	}
	return append(b, byte(bnd.Port()>>8), byte(bnd.Port()))
}

// noEOF turns an io.EOF met after a message's first bytes into
// io.ErrUnexpectedEOF: the message was truncated.
func noEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}
