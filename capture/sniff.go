package capture

import (
	"bytes"
	"net"
	"net/netip"
)

// Tap is one leg captured on an interface: frames to or from the
// interface's own hardware address whose IPv4 source or destination is in
// Peers (any, when Peers is empty). ARP frames go to an interface's first
// tap; other non-IPv4 frames are not kept.
type Tap struct {
	// Leg names the capture interface ("laptop-firewall").
	Leg string `json:"leg"`
	// Description says what it carries.
	Description string `json:"description,omitempty"`
	// Peers are the addresses whose traffic belongs to this leg.
	Peers []netip.Prefix `json:"peers,omitempty"`
}

// SnifferConfig says what a Sniffer captures.
type SnifferConfig struct {
	// Iface is the interface's name.
	Iface string
	// Taps sort its frames into legs, the first that matches winning.
	Taps []Tap
}

// classifier sorts frames into taps.
type classifier struct {
	own  net.HardwareAddr
	taps []Tap
}

// tap returns the index of the tap a frame belongs to, or -1.
func (c classifier) tap(frame []byte) int {
	if len(frame) < 14 || len(c.taps) == 0 {
		return -1
	}
	if len(c.own) == 6 && !bytes.Equal(frame[0:6], c.own) && !bytes.Equal(frame[6:12], c.own) {
		return -1 // another host's frame, flooded on a shared segment
	}
	et := uint16(frame[12])<<8 | uint16(frame[13])
	if et == 0x0806 {
		return 0 // ARP
	}
	src, dst, ok := peersOf(frame)
	if !ok {
		return -1
	}
	for i, t := range c.taps {
		if len(t.Peers) == 0 {
			return i
		}
		for _, p := range t.Peers {
			if p.Contains(src) || p.Contains(dst) {
				return i
			}
		}
	}
	return -1
}
