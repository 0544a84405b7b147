package capture

import (
	"net"
	"net/netip"
	"sync"
)

// udpFlow synthesizes the datagrams between a connected UDP socket (a,
// end 0) and its peer (b, end 1).
type udpFlow struct {
	leg  *Leg
	a, b netip.AddrPort
	key  flowKey // in the Recorder's registry (zero: not registered)

	mu   sync.Mutex
	kept [2]int
	id   [2]uint16
}

func (f *udpFlow) datagram(d int, p []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	t := f.leg.r.now() // under the lock: the flow's datagrams in time order
	src, dst := f.a, f.b
	if d == 1 {
		src, dst = dst, src
	}
	keep := f.leg.keep(&f.kept[d], len(p))
	pkt, orig := udpPacket(src, dst, p, f.id[d], keep)
	f.id[d]++
	f.leg.emit(t, pkt, orig, 0)
}

// udpConn records a connected UDP socket's datagrams: each one it writes
// before it goes out; when it is the only end recorded (oneSided), each
// one it reads as it arrives.
type udpConn struct {
	net.Conn
	f        *udpFlow
	oneSided bool
	once     sync.Once
}

func (c *udpConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if err == nil && c.oneSided {
		c.f.datagram(1, p[:n])
	}
	return n, err
}

func (c *udpConn) Write(p []byte) (int, error) {
	c.f.datagram(0, p)
	return c.Conn.Write(p)
}

func (c *udpConn) Close() error {
	c.once.Do(func() { c.f.leg.r.releaseUDP(c.f) })
	return c.Conn.Close()
}

// Unwrap returns the recorded connection.
func (c *udpConn) Unwrap() net.Conn { return c.Conn }

// packetConn records the datagrams a listening UDP socket sends to a
// connected socket whose flow is recorded: the answers of the flow's far
// end.
type packetConn struct {
	net.PacketConn
	r *Recorder
}

func (p *packetConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	if ua, ok := addr.(*net.UDPAddr); ok {
		if f := p.r.udpFlowTo(unmap(ua.AddrPort())); f != nil {
			f.datagram(1, b)
		}
	}
	return p.PacketConn.WriteTo(b, addr)
}

// Unwrap returns the recorded socket.
func (p *packetConn) Unwrap() net.PacketConn { return p.PacketConn }
