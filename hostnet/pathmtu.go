package hostnet

import (
	"fmt"
	"net"
	"net/netip"
)

// PathMTUer is a Stack that can tell the IP path MTU towards a
// destination: the largest IP packet it would send there unfragmented.
// Stacks that wrap another forward it.
type PathMTUer interface {
	PathMTU(dst netip.Addr) (int, error)
}

// PathMTU is s's path MTU towards dst, or false when s cannot tell (it
// does not implement PathMTUer, or the kernel did not answer).
func PathMTU(s Stack, dst netip.Addr) (int, bool) {
	p, ok := s.(PathMTUer)
	if !ok {
		return 0, false
	}
	mtu, err := p.PathMTU(dst)
	if err != nil || mtu <= 0 {
		return 0, false
	}
	return mtu, true
}

// PathMTU implements PathMTUer with the kernel's route MTU: a UDP socket
// connected to dst (nothing is sent) asked for IP_MTU, which is what
// OpenSSL's DTLS asks its datagram socket (BIO_CTRL_DGRAM_QUERY_MTU in
// crypto/bio/bss_dgram.c). It is the outgoing interface's MTU until an
// ICMP "fragmentation needed" lowers the route's.
func (OS) PathMTU(dst netip.Addr) (int, error) {
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(dst.Unmap(), 9)))
	if err != nil {
		return 0, fmt.Errorf("hostnet: path MTU to %s: %w", dst, err)
	}
	defer c.Close()
	raw, err := c.SyscallConn()
	if err != nil {
		return 0, fmt.Errorf("hostnet: path MTU to %s: %w", dst, err)
	}
	mtu, err := socketMTU(raw, dst.Unmap().Is6())
	if err != nil {
		return 0, fmt.Errorf("hostnet: path MTU to %s: %w", dst, err)
	}
	return mtu, nil
}

// PathMTU implements PathMTUer: every simulated hop is a loopback socket,
// so the path MTU is the kernel's towards the host's own loopback address
// wherever dst is (on Linux 65535: loopback's 65536, bounded by the
// largest IP packet).
func (h *Host) PathMTU(netip.Addr) (int, error) {
	return OS{}.PathMTU(h.loop)
}
