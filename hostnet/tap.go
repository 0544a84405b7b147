package hostnet

import (
	"net"
	"net/netip"
)

// TapFunc observes a connection a host of a Sim has dialled, for packet
// captures (package capture): from is the dialling host, to the host that
// answered (for a routed dial, the router's host: the firewall), and c the
// connection as the dialler will use it, reporting logical addresses. It
// returns the connection to hand the dialler: c itself or a wrapper.
//
// A routed connection's PROXY v2 header has already been written when the
// tap sees it, so a wrapper records only what the dialler writes.
type TapFunc func(proto Proto, from, to *Host, c net.Conn) net.Conn

// SetTap installs f for every connection dialled from now on; nil removes
// it. Connections already open are not affected.
func (s *Sim) SetTap(f TapFunc) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tap = f
}

// tapped passes a new connection through the tap, if any.
func (h *Host) tapped(proto Proto, to *Host, c net.Conn) net.Conn {
	h.sim.mu.Lock()
	f := h.sim.tap
	h.sim.mu.Unlock()
	if f == nil || to == nil {
		return c
	}
	return f(proto, h, to, c)
}

// hostAt returns the host owning the logical address a, or nil.
func (s *Sim) hostAt(a netip.Addr) *Host {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.owner[a.Unmap()]
}
