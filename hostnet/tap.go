package hostnet

import (
	"net"
	"net/netip"
)

// Tap observes a Sim's traffic for packet captures (package capture): the
// Sim hands it both ends of every TCP connection between two of its hosts,
// the dialler's end of every UDP "connection", and every listening UDP
// socket. Each method returns what the caller will use: its argument or a
// wrapper around it. Addresses are logical throughout; a routed
// connection's PROXY v2 header has been written (TCP) or is added after
// the wrapper (UDP), so a wrapper never sees it.
type Tap interface {
	// DialledConn is the dialler's end of a connection, just connected,
	// from host from to host to (for a routed dial, the router's host).
	DialledConn(proto Proto, from, to *Host, c net.Conn) net.Conn
	// AcceptedConn is the listener's end of a TCP connection dialled by
	// host from, just accepted by host at. Its RemoteAddr is the dialler's
	// LocalAddr.
	AcceptedConn(from, at *Host, c net.Conn) net.Conn
	// PacketConn is a listening UDP socket host h just opened.
	PacketConn(h *Host, pc net.PacketConn) net.PacketConn
}

// SetTap installs t for every connection and socket opened from now on;
// nil removes it. Those already open are not affected.
func (s *Sim) SetTap(t Tap) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tap = t
}

func (s *Sim) currentTap() Tap {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tap
}

// tapDialled passes a dialled connection to the tap, if any.
func (h *Host) tapDialled(proto Proto, to *Host, c net.Conn) net.Conn {
	if t := h.sim.currentTap(); t != nil && to != nil {
		return t.DialledConn(proto, h, to, c)
	}
	return c
}

// tapAccepted passes an accepted connection to the tap, if any.
func (h *Host) tapAccepted(from *Host, c net.Conn) net.Conn {
	if t := h.sim.currentTap(); t != nil && from != nil {
		return t.AcceptedConn(from, h, c)
	}
	return c
}

// tapPacketConn passes a listening UDP socket to the tap, if any.
func (h *Host) tapPacketConn(pc net.PacketConn) net.PacketConn {
	if t := h.sim.currentTap(); t != nil {
		return t.PacketConn(h, pc)
	}
	return pc
}

// hostAt returns the host owning the logical address a, or nil.
func (s *Sim) hostAt(a netip.Addr) *Host {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.owner[a.Unmap()]
}

// hostOnLoopback returns the host whose loopback address is a, or nil.
func (s *Sim) hostOnLoopback(a netip.Addr) *Host {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.byLoop[a.Unmap()]
}
