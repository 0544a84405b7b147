package hostnet

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
)

// PROXY protocol v2 (haproxy's proxy-protocol.txt, section 2.2), the subset
// pinwall writes and reads: command PROXY, TCP or UDP over IPv4 or IPv6, TLVs
// skipped on read.

var proxySig = [12]byte{0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A}

// Proto is a transport protocol in a PROXY header.
type Proto byte

// Transport protocols.
const (
	ProtoTCP Proto = 1
	ProtoUDP Proto = 2
)

func (p Proto) String() string {
	switch p {
	case ProtoTCP:
		return "tcp"
	case ProtoUDP:
		return "udp"
	}
	return fmt.Sprintf("proto(%d)", byte(p))
}

// ProxyHeader is a decoded PROXY v2 header.
type ProxyHeader struct {
	Proto Proto
	Src   netip.AddrPort
	Dst   netip.AddrPort
}

// ErrProxyHeader reports a malformed PROXY v2 header.
var ErrProxyHeader = errors.New("hostnet: malformed PROXY v2 header")

// maxProxyHeader bounds the header length either parser accepts (addresses
// plus TLVs).
const maxProxyHeader = 16 + 536

// AppendProxyHeader appends h's encoding to b.
func AppendProxyHeader(b []byte, h ProxyHeader) ([]byte, error) {
	src, dst := h.Src.Addr().Unmap(), h.Dst.Addr().Unmap()
	if src.Is4() != dst.Is4() {
		return b, fmt.Errorf("%w: mixed address families %s and %s", ErrProxyHeader, src, dst)
	}
	if h.Proto != ProtoTCP && h.Proto != ProtoUDP {
		return b, fmt.Errorf("%w: protocol %d", ErrProxyHeader, h.Proto)
	}
	fam := byte(0x10)
	alen := 12
	if !src.Is4() {
		fam, alen = 0x20, 36
	}
	b = append(b, proxySig[:]...)
	b = append(b, 0x21, fam|byte(h.Proto))
	b = binary.BigEndian.AppendUint16(b, uint16(alen))
	if src.Is4() {
		s4, d4 := src.As4(), dst.As4()
		b = append(b, s4[:]...)
		b = append(b, d4[:]...)
	} else {
		s16, d16 := src.As16(), dst.As16()
		b = append(b, s16[:]...)
		b = append(b, d16[:]...)
	}
	b = binary.BigEndian.AppendUint16(b, h.Src.Port())
	b = binary.BigEndian.AppendUint16(b, h.Dst.Port())
	return b, nil
}

// ParseProxyHeader decodes a header at the start of b and returns the bytes
// after it (for a datagram: its payload).
func ParseProxyHeader(b []byte) (ProxyHeader, []byte, error) {
	if len(b) < 16 {
		return ProxyHeader{}, nil, fmt.Errorf("%w: %d bytes, need 16", ErrProxyHeader, len(b))
	}
	n, err := proxyHeaderLen(b[:16])
	if err != nil {
		return ProxyHeader{}, nil, err
	}
	if len(b) < n {
		return ProxyHeader{}, nil, fmt.Errorf("%w: truncated (%d of %d bytes)", ErrProxyHeader, len(b), n)
	}
	h, err := decodeProxyHeader(b[:n])
	if err != nil {
		return ProxyHeader{}, nil, err
	}
	return h, b[n:], nil
}

// ReadProxyHeader reads exactly one header from r, consuming nothing beyond it.
func ReadProxyHeader(r io.Reader) (ProxyHeader, error) {
	var fixed [16]byte
	if _, err := io.ReadFull(r, fixed[:]); err != nil {
		return ProxyHeader{}, fmt.Errorf("%w: %w", ErrProxyHeader, err)
	}
	n, err := proxyHeaderLen(fixed[:])
	if err != nil {
		return ProxyHeader{}, err
	}
	buf := make([]byte, n)
	copy(buf, fixed[:])
	if _, err := io.ReadFull(r, buf[16:]); err != nil {
		return ProxyHeader{}, fmt.Errorf("%w: %w", ErrProxyHeader, err)
	}
	return decodeProxyHeader(buf)
}

// proxyHeaderLen checks a header's fixed 16 bytes (signature, version,
// bounded length) before anything more is read, and returns the whole
// header's length.
func proxyHeaderLen(fixed []byte) (int, error) {
	if [12]byte(fixed[:12]) != proxySig {
		return 0, fmt.Errorf("%w: bad signature", ErrProxyHeader)
	}
	if fixed[12] != 0x21 {
		return 0, fmt.Errorf("%w: version/command 0x%02x, want 0x21", ErrProxyHeader, fixed[12])
	}
	n := int(binary.BigEndian.Uint16(fixed[14:16]))
	if 16+n > maxProxyHeader {
		return 0, fmt.Errorf("%w: length %d exceeds %d", ErrProxyHeader, n, maxProxyHeader-16)
	}
	return 16 + n, nil
}

func decodeProxyHeader(b []byte) (ProxyHeader, error) {
	if [12]byte(b[:12]) != proxySig {
		return ProxyHeader{}, fmt.Errorf("%w: bad signature", ErrProxyHeader)
	}
	if b[12] != 0x21 {
		return ProxyHeader{}, fmt.Errorf("%w: version/command 0x%02x, want 0x21", ErrProxyHeader, b[12])
	}
	h := ProxyHeader{Proto: Proto(b[13] & 0x0f)}
	if h.Proto != ProtoTCP && h.Proto != ProtoUDP {
		return ProxyHeader{}, fmt.Errorf("%w: transport %d", ErrProxyHeader, h.Proto)
	}
	body := b[16:]
	switch b[13] >> 4 {
	case 1:
		if len(body) < 12 {
			return ProxyHeader{}, fmt.Errorf("%w: short IPv4 block", ErrProxyHeader)
		}
		h.Src = netip.AddrPortFrom(netip.AddrFrom4([4]byte(body[0:4])), binary.BigEndian.Uint16(body[8:10]))
		h.Dst = netip.AddrPortFrom(netip.AddrFrom4([4]byte(body[4:8])), binary.BigEndian.Uint16(body[10:12]))
	case 2:
		if len(body) < 36 {
			return ProxyHeader{}, fmt.Errorf("%w: short IPv6 block", ErrProxyHeader)
		}
		h.Src = netip.AddrPortFrom(netip.AddrFrom16([16]byte(body[0:16])).Unmap(), binary.BigEndian.Uint16(body[32:34]))
		h.Dst = netip.AddrPortFrom(netip.AddrFrom16([16]byte(body[16:32])).Unmap(), binary.BigEndian.Uint16(body[34:36]))
	default:
		return ProxyHeader{}, fmt.Errorf("%w: address family %d", ErrProxyHeader, b[13]>>4)
	}
	return h, nil
}
