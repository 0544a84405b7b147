package hostnet

import (
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"
)

// tcpConn is a real TCP connection that reports logical addresses. It keeps
// CloseWrite and the splice fast path of io.Copy between two of them.
type tcpConn struct {
	*net.TCPConn
	local, remote net.Addr
}

func (c *tcpConn) LocalAddr() net.Addr  { return c.local }
func (c *tcpConn) RemoteAddr() net.Addr { return c.remote }

// Unwrap returns the kernel connection.
func (c *tcpConn) Unwrap() net.Conn { return c.TCPConn }

// ReadFrom lets io.Copy splice between two simulated connections.
func (c *tcpConn) ReadFrom(r io.Reader) (int64, error) {
	if o, ok := r.(*tcpConn); ok {
		r = o.TCPConn
	}
	return c.TCPConn.ReadFrom(r)
}

// WriteTo lets io.Copy splice between two simulated connections.
func (c *tcpConn) WriteTo(w io.Writer) (int64, error) {
	if o, ok := w.(*tcpConn); ok {
		w = o.TCPConn
	}
	return c.TCPConn.WriteTo(w)
}

type listener struct {
	net.Listener
	host    *Host
	logical []netip.AddrPort
	real    netip.AddrPort
	once    sync.Once
}

func (l *listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	tc := c.(*net.TCPConn)
	real := tc.RemoteAddr().(*net.TCPAddr).AddrPort()
	remote := l.host.sim.Logical(ProtoTCP, real)
	conn := &tcpConn{TCPConn: tc, local: net.TCPAddrFromAddrPort(l.logical[0]), remote: net.TCPAddrFromAddrPort(remote)}
	return l.host.tapAccepted(l.host.sim.hostOnLoopback(real.Addr()), conn), nil
}

func (l *listener) Addr() net.Addr { return net.TCPAddrFromAddrPort(l.logical[0]) }

func (l *listener) Close() error {
	l.once.Do(func() { l.host.sim.unregister(ProtoTCP, l.logical, l.real) })
	return l.Listener.Close()
}

// RealAddr returns the kernel address of the listener.
func (l *listener) RealAddr() netip.AddrPort { return l.real }

// udpConn is a connected UDP socket reporting logical addresses. With a
// prefix, every datagram written carries it (the PROXY header to a router).
type udpConn struct {
	*net.UDPConn
	host          *Host
	local, remote net.Addr
	prefix        []byte

	wmu  sync.Mutex
	wbuf []byte
}

func (c *udpConn) LocalAddr() net.Addr  { return c.local }
func (c *udpConn) RemoteAddr() net.Addr { return c.remote }

func (c *udpConn) Write(b []byte) (int, error) {
	if c.host.drop() {
		return len(b), nil
	}
	if c.prefix == nil {
		return c.UDPConn.Write(b)
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.wbuf = append(append(c.wbuf[:0], c.prefix...), b...)
	if _, err := c.UDPConn.Write(c.wbuf); err != nil {
		return 0, err
	}
	return len(b), nil
}

func (c *udpConn) Read(b []byte) (int, error) {
	for {
		n, err := c.UDPConn.Read(b)
		if err != nil || !c.host.drop() {
			return n, err
		}
	}
}

// packetConn is a listening UDP socket speaking logical addresses.
type packetConn struct {
	*net.UDPConn
	host    *Host
	logical []netip.AddrPort
	real    netip.AddrPort
	once    sync.Once
}

func (p *packetConn) LocalAddr() net.Addr { return net.UDPAddrFromAddrPort(p.logical[0]) }

func (p *packetConn) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		n, ap, err := p.UDPConn.ReadFromUDPAddrPort(b)
		if err != nil {
			return n, nil, err
		}
		if p.host.drop() {
			continue
		}
		return n, net.UDPAddrFromAddrPort(p.host.sim.Logical(ProtoUDP, ap)), nil
	}
}

func (p *packetConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	ua, ok := addr.(*net.UDPAddr)
	if !ok {
		return 0, &net.OpError{Op: "write", Net: "udp", Addr: addr, Err: net.InvalidAddrError("not a UDP address")}
	}
	if p.host.drop() {
		return len(b), nil
	}
	dst := ua.AddrPort()
	real, ok := p.host.sim.RealAddr(ProtoUDP, dst)
	if !ok {
		if dst.Addr().Unmap().IsLoopback() {
			real = dst // a peer outside the simulation, such as a test's own socket
		} else {
			return len(b), nil // no such host: the datagram is lost
		}
	}
	return p.UDPConn.WriteToUDPAddrPort(b, real)
}

func (p *packetConn) Close() error {
	p.once.Do(func() { p.host.sim.unregister(ProtoUDP, p.logical, p.real) })
	return p.UDPConn.Close()
}

// RealAddr returns the kernel address of the socket.
func (p *packetConn) RealAddr() netip.AddrPort { return p.real }

// RealAddr returns the kernel address behind a listener or packet socket
// opened on a Sim host, and false for any other.
func RealAddr(x any) (netip.AddrPort, bool) {
	for x != nil {
		if r, ok := x.(interface{ RealAddr() netip.AddrPort }); ok {
			return r.RealAddr(), true
		}
		switch u := x.(type) {
		case interface{ Unwrap() net.PacketConn }: // a tap's wrapper
			x = u.Unwrap()
		case interface{ Unwrap() net.Listener }:
			x = u.Unwrap()
		default:
			return netip.AddrPort{}, false
		}
	}
	return netip.AddrPort{}, false
}

// sinkConn is a UDP "connection" to nowhere: writes vanish, reads wait.
type sinkConn struct {
	local, remote net.Addr
	once          sync.Once
	closed        chan struct{}
	mu            sync.Mutex
	deadline      time.Time
	wake          chan struct{}
}

func newSinkConn(local, remote netip.AddrPort) *sinkConn {
	return &sinkConn{
		local:  net.UDPAddrFromAddrPort(local),
		remote: net.UDPAddrFromAddrPort(remote),
		closed: make(chan struct{}),
		wake:   make(chan struct{}, 1),
	}
}

func (s *sinkConn) Read([]byte) (int, error) {
	for {
		s.mu.Lock()
		dl := s.deadline
		s.mu.Unlock()
		if err := s.waitOnce(dl); err != nil {
			return 0, err
		}
	}
}

// waitOnce blocks until the connection closes (net.ErrClosed), the deadline
// passes (os.ErrDeadlineExceeded) or the deadline changes (nil).
func (s *sinkConn) waitOnce(dl time.Time) error {
	select {
	case <-s.closed:
		return net.ErrClosed
	default:
	}
	var timer <-chan time.Time
	if !dl.IsZero() {
		d := time.Until(dl)
		if d <= 0 {
			return os.ErrDeadlineExceeded
		}
		t := time.NewTimer(d)
		defer t.Stop()
		timer = t.C
	}
	select {
	case <-s.closed:
		return net.ErrClosed
	case <-timer:
		return os.ErrDeadlineExceeded
	case <-s.wake:
		return nil
	}
}

func (s *sinkConn) Write(b []byte) (int, error) {
	select {
	case <-s.closed:
		return 0, net.ErrClosed
	default:
		return len(b), nil
	}
}

func (s *sinkConn) Close() error {
	s.once.Do(func() { close(s.closed) })
	return nil
}

func (s *sinkConn) LocalAddr() net.Addr  { return s.local }
func (s *sinkConn) RemoteAddr() net.Addr { return s.remote }

func (s *sinkConn) SetDeadline(t time.Time) error { return s.SetReadDeadline(t) }

func (s *sinkConn) SetReadDeadline(t time.Time) error {
	s.mu.Lock()
	s.deadline = t
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
	return nil
}

func (s *sinkConn) SetWriteDeadline(time.Time) error { return nil }

type impairer struct {
	mu   sync.Mutex
	rng  *rand.Rand
	loss float64
}

func newImpairer(im Impairment) *impairer {
	seed := im.Seed
	if seed == 0 {
		seed = 1
	}
	return &impairer{rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), loss: im.Loss}
}

func (i *impairer) drop() bool {
	if i.loss >= 1 {
		return true
	}
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.rng.Float64() < i.loss
}
