//go:build linux

package fault

import (
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// Handles of the qdiscs ApplyNetem installs: a prio root (1:) whose third
// band (1:3) holds the netem (30:), and a u32 filter steering the
// selected packets to that band; everything else takes band 1:1 as the
// priomap says, untouched.
var (
	rootHandle  = netlink.MakeHandle(1, 0)
	netemParent = netlink.MakeHandle(1, 3)
	netemHandle = netlink.MakeHandle(0x30, 0)
)

// ApplyNetem installs n in the network namespace of the calling thread,
// replacing whatever root qdisc pinwall installed on the interface before
// (so successive events replace each other); a zero Impairment only
// removes it. It needs CAP_NET_ADMIN.
//
// With the tc binary the same would read (UDP to 10.10.10.100 only):
//
//	tc qdisc add dev pw-lan root handle 1: prio bands 3 priomap 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0
//	tc qdisc add dev pw-lan parent 1:3 handle 30: netem loss 5% delay 20ms 5ms reorder 25%
//	tc filter add dev pw-lan parent 1: protocol ip prio 1 u32 \
//		match ip protocol 17 0xff match ip dst 10.10.10.100/32 flowid 1:3
func ApplyNetem(n Netem) error {
	if err := n.Validate(); err != nil {
		return err
	}
	link, err := netlink.LinkByName(n.Iface)
	if err != nil {
		return fmt.Errorf("netem: interface %s: %w", n.Iface, err)
	}
	if err := ClearNetem(n.Iface); err != nil {
		return err
	}
	if n.Impairment.IsZero() {
		return nil
	}
	im := n.Impairment
	nattrs := netlink.NetemQdiscAttrs{
		Latency:     uint32(im.Latency.Microseconds()),
		Jitter:      uint32(im.Jitter.Microseconds()),
		Loss:        float32(im.Loss * 100),
		ReorderProb: float32(im.Reorder * 100),
	}
	idx := link.Attrs().Index
	if n.AllProtocols && !n.Dst.IsValid() {
		q := netlink.NewNetem(netlink.QdiscAttrs{LinkIndex: idx, Handle: rootHandle, Parent: netlink.HANDLE_ROOT}, nattrs)
		if err := netlink.QdiscAdd(q); err != nil {
			return fmt.Errorf("netem: add netem root qdisc on %s: %w", n.Iface, hint(err))
		}
		return nil
	}
	prio := netlink.NewPrio(netlink.QdiscAttrs{LinkIndex: idx, Handle: rootHandle, Parent: netlink.HANDLE_ROOT})
	prio.PriorityMap = [netlink.PRIORITY_MAP_LEN]uint8{} // everything to band 1:1 unless filtered
	if err := netlink.QdiscAdd(prio); err != nil {
		return fmt.Errorf("netem: add prio root qdisc on %s: %w", n.Iface, hint(err))
	}
	q := netlink.NewNetem(netlink.QdiscAttrs{LinkIndex: idx, Handle: netemHandle, Parent: netemParent}, nattrs)
	if err := netlink.QdiscAdd(q); err != nil {
		_ = ClearNetem(n.Iface)
		return fmt.Errorf("netem: add netem qdisc on %s: %w", n.Iface, hint(err))
	}
	var keys []netlink.TcU32Key
	if !n.AllProtocols {
		// The IPv4 header's third word holds TTL, protocol and checksum.
		keys = append(keys, netlink.TcU32Key{Mask: 0x00ff0000, Val: unix.IPPROTO_UDP << 16, Off: 8})
	}
	if n.Dst.IsValid() {
		a := n.Dst.Masked().Addr().As4()
		mask := ^uint32(0)
		if n.Dst.Bits() < 32 {
			mask = ^(math.MaxUint32 >> n.Dst.Bits())
		}
		keys = append(keys, netlink.TcU32Key{Mask: mask, Val: uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3]), Off: 16})
	}
	f := &netlink.U32{
		FilterAttrs: netlink.FilterAttrs{LinkIndex: idx, Parent: rootHandle, Priority: 1, Protocol: unix.ETH_P_IP},
		ClassId:     netemParent,
		Sel:         &netlink.TcU32Sel{Flags: nl.TC_U32_TERMINAL, Keys: keys},
	}
	if err := netlink.FilterAdd(f); err != nil {
		_ = ClearNetem(n.Iface)
		return fmt.Errorf("netem: add u32 filter on %s: %w", n.Iface, hint(err))
	}
	return nil
}

// ClearNetem removes the root qdisc ApplyNetem installed on iface, if any
// (the interface's default qdisc comes back).
func ClearNetem(iface string) error {
	link, err := netlink.LinkByName(iface)
	if err != nil {
		return fmt.Errorf("netem: interface %s: %w", iface, err)
	}
	qs, err := netlink.QdiscList(link)
	if err != nil {
		return fmt.Errorf("netem: list qdiscs of %s: %w", iface, hint(err))
	}
	for _, q := range qs {
		a := q.Attrs()
		if a.Parent == netlink.HANDLE_ROOT && a.Handle == rootHandle {
			if err := netlink.QdiscDel(q); err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.EINVAL) {
				return fmt.Errorf("netem: remove root qdisc of %s: %w", iface, hint(err))
			}
		}
	}
	return nil
}

// NetemOn describes the netem qdisc on iface as ApplyNetem installed it
// (for tests and checks): its impairment, whether a filter limits it, and
// false when there is none.
func NetemOn(iface string) (Impairment, bool, error) {
	link, err := netlink.LinkByName(iface)
	if err != nil {
		return Impairment{}, false, err
	}
	qs, err := netlink.QdiscList(link)
	if err != nil {
		return Impairment{}, false, err
	}
	for _, q := range qs {
		if ne, ok := q.(*netlink.Netem); ok {
			return Impairment{
				Loss:    float64(ne.Loss) / math.MaxUint32,
				Latency: ticksToDuration(ne.Latency),
				Jitter:  ticksToDuration(ne.Jitter),
				Reorder: float64(ne.ReorderProb) / math.MaxUint32,
			}, true, nil
		}
	}
	return Impairment{}, false, nil
}

func hint(err error) error {
	if errors.Is(err, unix.EPERM) {
		return fmt.Errorf("%w (does the container have NET_ADMIN?)", err)
	}
	if errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("%w: %w", ErrNetemUnavailable, err)
	}
	return err
}

// ticksToDuration converts a netem time in the kernel's packet-scheduler
// ticks back to a duration (netlink writes microseconds times TickInUsec).
func ticksToDuration(ticks uint32) time.Duration {
	return time.Duration(float64(ticks)/netlink.TickInUsec()) * time.Microsecond
}
