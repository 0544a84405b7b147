package capture

import (
	"net"
	"net/netip"
	"sync"
)

// udpFlow synthesizes one connected UDP socket's datagrams. Direction 0
// is from the socket (a), 1 towards it.
type udpFlow struct {
	leg  *Leg
	a, b netip.AddrPort

	mu   sync.Mutex
	kept [2]int
	id   [2]uint16
}

func (f *udpFlow) datagram(d int, p []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	src, dst := f.a, f.b
	if d == 1 {
		src, dst = dst, src
	}
	keep := f.leg.keep(&f.kept[d], len(p))
	pkt, orig := udpPacket(src, dst, p, f.id[d], keep)
	f.id[d]++
	f.leg.emit(f.leg.r.now(), pkt, orig, 0)
}

// udpConn records a connected UDP socket's datagrams: each written one
// before it goes out, each read one as it arrives.
type udpConn struct {
	net.Conn
	f *udpFlow
}

func (c *udpConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if err == nil {
		c.f.datagram(1, p[:n])
	}
	return n, err
}

func (c *udpConn) Write(p []byte) (int, error) {
	c.f.datagram(0, p)
	return c.Conn.Write(p)
}

// Unwrap returns the recorded connection.
func (c *udpConn) Unwrap() net.Conn { return c.Conn }
