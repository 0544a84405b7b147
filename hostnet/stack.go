package hostnet

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
)

// Stack is a host's network.
type Stack interface {
	// DialContext connects to address, an IP literal with port, over "tcp" or "udp".
	DialContext(ctx context.Context, network, address string) (net.Conn, error)
	// Listen opens a TCP listener on address ("IP:port", port 0 for any).
	Listen(ctx context.Context, network, address string) (net.Listener, error)
	// ListenPacket opens a UDP socket on address.
	ListenPacket(ctx context.Context, network, address string) (net.PacketConn, error)
}

// UDPBufferSize is the socket buffer size set on every UDP socket: DTLS with
// SCTP on top loses datagrams with the kernel's default receive buffer.
const UDPBufferSize = 4 << 20

// ErrNotIP is returned for an address that is not an IP literal.
var ErrNotIP = errors.New("hostnet: address must be an IP literal (names are resolved by the caller's own resolver)")

// ParseAddrPort parses "IP:port", rejecting names.
func ParseAddrPort(address string) (netip.AddrPort, error) {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		host, _, splitErr := net.SplitHostPort(address)
		if splitErr == nil {
			if _, ipErr := netip.ParseAddr(host); ipErr != nil {
				return netip.AddrPort{}, fmt.Errorf("%w: %q", ErrNotIP, address)
			}
		}
		return netip.AddrPort{}, fmt.Errorf("hostnet: %q: %w", address, err)
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
}

// OS is the kernel's network. The zero value is ready to use.
type OS struct {
	// UDPBuffer is the UDP socket buffer size; zero means UDPBufferSize.
	UDPBuffer int
}

func (o OS) control(network, _ string, c syscall.RawConn) error {
	if network[:3] != "udp" {
		return setNoDelayHint(c)
	}
	return setUDPBuffers(c, o.bufSize())
}

func (o OS) bufSize() int {
	if o.UDPBuffer > 0 {
		return o.UDPBuffer
	}
	return UDPBufferSize
}

// DialContext implements Stack.
func (o OS) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	if _, err := ParseAddrPort(address); err != nil {
		return nil, err
	}
	d := net.Dialer{Control: o.control}
	return d.DialContext(ctx, network, address)
}

// Listen implements Stack.
func (o OS) Listen(ctx context.Context, network, address string) (net.Listener, error) {
	if _, err := ParseAddrPort(address); err != nil {
		return nil, err
	}
	lc := net.ListenConfig{}
	return lc.Listen(ctx, network, address)
}

// ListenPacket implements Stack.
func (o OS) ListenPacket(ctx context.Context, network, address string) (net.PacketConn, error) {
	if _, err := ParseAddrPort(address); err != nil {
		return nil, err
	}
	lc := net.ListenConfig{Control: o.control}
	return lc.ListenPacket(ctx, network, address)
}
