//go:build linux

package netsetup

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"sync"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// ipForwardPath is where the kernel exposes net.ipv4.ip_forward for the
// calling thread's network namespace.
const ipForwardPath = "/proc/sys/net/ipv4/ip_forward"

// Apply programs cfg into the network namespace of the calling thread and
// returns the function that reverts it. undo is idempotent (later calls
// return the first call's result) and may be called from any goroutine.
// On error nothing Apply did is left in place and undo is nil. ctx is
// checked between steps (each is one quick netlink exchange).
func Apply(ctx context.Context, cfg Config) (undo func() error, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	// Every socket below is created in the namespace of this thread and
	// keeps working in it whichever thread uses it later (undo).
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()

	if cfg.Forward {
		if err := checkForwarding(); err != nil {
			return nil, err
		}
	}
	a, err := newApplier()
	if err != nil {
		return nil, err
	}
	if err := a.apply(ctx, &cfg); err != nil {
		if uerr := a.revert(); uerr != nil {
			err = fmt.Errorf("%w (and reverting: %w)", err, uerr)
		}
		return nil, err
	}
	var once sync.Once
	var uerr error
	return func() error {
		once.Do(func() { uerr = a.revert() })
		return uerr
	}, nil
}

func checkForwarding() error {
	b, err := os.ReadFile(ipForwardPath)
	if err != nil {
		return opErr(err, "read %s", ipForwardPath)
	}
	if string(bytes.TrimSpace(b)) == "0" {
		return &OpError{
			Op:  "check " + ipForwardPath,
			Err: errors.New("IP forwarding is off; this host forwards the LAN's traffic, so the runtime must enable it (docker run --sysctl net.ipv4.ip_forward=1: /proc/sys is read-only inside a container)"),
		}
	}
	return nil
}

// applier makes the changes and remembers how to revert each one.
type applier struct {
	nl   *netlink.Handle
	nft  *nftables.Conn
	undo []step
}

type step struct {
	op string
	fn func() error
}

func newApplier() (*applier, error) {
	// netlink.NewHandle opens its socket in the current namespace without
	// setns (NewHandleAt would need CAP_SYS_ADMIN, which a container lacks).
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return nil, opErr(err, "open rtnetlink")
	}
	nft, err := nftables.New(nftables.AsLasting())
	if err != nil {
		h.Close()
		return nil, opErr(err, "open nftables netlink")
	}
	return &applier{nl: h, nft: nft}, nil
}

func (a *applier) push(op string, fn func() error) { a.undo = append(a.undo, step{op, fn}) }

// revert undoes every recorded change, newest first, and closes the sockets.
func (a *applier) revert() error {
	var errs []error
	for i := len(a.undo) - 1; i >= 0; i-- {
		if err := a.undo[i].fn(); err != nil {
			errs = append(errs, opErr(err, "undo: %s", a.undo[i].op))
		}
	}
	a.undo = nil
	if a.nft != nil {
		_ = a.nft.CloseLasting()
		a.nft = nil
	}
	if a.nl != nil {
		a.nl.Close()
		a.nl = nil
	}
	return errors.Join(errs...)
}

func (a *applier) apply(ctx context.Context, cfg *Config) error {
	for _, o := range cfg.Overlays {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := a.addOverlay(o); err != nil {
			return err
		}
	}
	for _, ad := range cfg.Addrs {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := a.addAddr(ad); err != nil {
			return err
		}
	}
	for _, r := range cfg.Routes {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := a.addRoute(r); err != nil {
			return err
		}
	}
	if cfg.DefaultVia.IsValid() {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := a.replaceDefault(cfg.DefaultVia); err != nil {
			return err
		}
	}
	if cfg.Intercept != nil {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := a.intercept(cfg.Intercept); err != nil {
			return err
		}
	}
	return nil
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// notFound reports a kernel answer meaning "already gone", which undo
// accepts: someone else removed it, or the interface went away with it.
func notFound(err error) bool {
	return errors.Is(err, unix.ESRCH) || errors.Is(err, unix.ENOENT) ||
		errors.Is(err, unix.EADDRNOTAVAIL) || errors.Is(err, unix.ENODEV)
}

func (a *applier) addAddr(ad Addr) error {
	link, err := a.linkFor(ad)
	if err != nil {
		return err
	}
	name := link.Attrs().Name
	nlAddr := &netlink.Addr{IPNet: ipNet(ad.Prefix)}
	err = a.nl.AddrAdd(link, nlAddr)
	if errors.Is(err, unix.EEXIST) {
		return nil // already there: not ours to remove
	}
	if err != nil {
		return opErr(err, "add address %s to %s", ad.Prefix, name)
	}
	index := link.Attrs().Index
	a.push(fmt.Sprintf("delete address %s from %s", ad.Prefix, name), func() error {
		l, err := a.nl.LinkByIndex(index)
		if err != nil {
			if notFound(err) {
				return nil
			}
			return err
		}
		if err := a.nl.AddrDel(l, &netlink.Addr{IPNet: ipNet(ad.Prefix)}); err != nil && !notFound(err) {
			return err
		}
		return nil
	})
	return nil
}

// linkFor finds the interface an address goes on (see Addr.Iface).
func (a *applier) linkFor(ad Addr) (netlink.Link, error) {
	if ad.Iface != "" {
		l, err := a.nl.LinkByName(ad.Iface)
		if err != nil {
			return nil, opErr(err, "find interface %s for %s", ad.Iface, ad.Prefix)
		}
		return l, nil
	}
	links, err := a.nl.LinkList()
	if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
		return nil, opErr(err, "list interfaces for %s", ad.Prefix)
	}
	ip := ad.Prefix.Addr()
	var (
		nonLo      []netlink.Link
		containing netlink.Link
		containLen = -1
		closest    []netlink.Link
		closestLen = -1
	)
	for _, l := range links {
		if l.Attrs().Flags&net.FlagLoopback != 0 {
			continue
		}
		nonLo = append(nonLo, l)
		addrs, err := a.nl.AddrList(l, netlink.FAMILY_V4)
		if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
			return nil, opErr(err, "list addresses of %s", l.Attrs().Name)
		}
		best := -1
		for _, x := range addrs {
			xa, ok := netip.AddrFromSlice(x.IP)
			if !ok {
				continue
			}
			xa = xa.Unmap()
			ones, _ := x.Mask.Size()
			if netip.PrefixFrom(xa, ones).Masked().Contains(ip) && ones > containLen {
				containing, containLen = l, ones
			}
			best = max(best, commonBits(xa, ip))
		}
		switch {
		case best < 0:
		case best > closestLen:
			closest, closestLen = []netlink.Link{l}, best
		case best == closestLen:
			closest = append(closest, l)
		}
	}
	switch {
	case containing != nil:
		return containing, nil
	case len(nonLo) == 1:
		return nonLo[0], nil
	case len(closest) == 1:
		return closest[0], nil
	}
	names := make([]string, len(nonLo))
	for i, l := range nonLo {
		names[i] = l.Attrs().Name
	}
	return nil, opErr(fmt.Errorf("no single interface is closest among %v", names), "choose an interface for %s (set Addr.Iface)", ad.Prefix)
}

// commonBits counts the leading bits two IPv4 addresses share.
func commonBits(x, y netip.Addr) int {
	xb, yb := x.As4(), y.As4()
	n := 0
	for i := range 4 {
		d := xb[i] ^ yb[i]
		for bit := 7; bit >= 0; bit-- {
			if d&(1<<bit) != 0 {
				return n
			}
			n++
		}
	}
	return n
}

func (a *applier) addRoute(r Route) error {
	op := fmt.Sprintf("add route %s via %s", r.Dst, r.Via)
	rt := &netlink.Route{Dst: ipNet(r.Dst), Gw: r.Via.AsSlice()}
	err := a.nl.RouteAdd(rt)
	if errors.Is(err, unix.EEXIST) {
		if a.hasRoute(r) {
			return nil // the same route is already there: not ours
		}
		return opErr(fmt.Errorf("%w: a different route to %s exists", err, r.Dst), "%s", op)
	}
	if err != nil {
		return opErr(err, "%s", op)
	}
	a.push("delete route "+r.Dst.String()+" via "+r.Via.String(), func() error {
		if err := a.nl.RouteDel(&netlink.Route{Dst: ipNet(r.Dst), Gw: r.Via.AsSlice()}); err != nil && !notFound(err) {
			return err
		}
		return nil
	})
	return nil
}

func (a *applier) hasRoute(r Route) bool {
	routes, err := a.nl.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Dst: ipNet(r.Dst), Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_DST|netlink.RT_FILTER_TABLE)
	if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
		return false
	}
	for _, x := range routes {
		if gw, ok := netip.AddrFromSlice(x.Gw); ok && gw.Unmap() == r.Via {
			return true
		}
	}
	return false
}

// defaultRoutes lists the IPv4 default routes of the main table.
func (a *applier) defaultRoutes() ([]netlink.Route, error) {
	all, err := a.nl.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
	if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
		return nil, err
	}
	var out []netlink.Route
	for _, r := range all {
		if r.Dst == nil || r.Dst.IP.IsUnspecified() && isZeroMask(r.Dst.Mask) {
			out = append(out, r)
		}
	}
	return out, nil
}

func isZeroMask(m net.IPMask) bool {
	ones, _ := m.Size()
	return ones == 0
}

func (a *applier) replaceDefault(via netip.Addr) error {
	op := "replace the default route with one via " + via.String()
	old, err := a.defaultRoutes()
	if err != nil {
		return opErr(err, "%s: list routes", op)
	}
	for _, r := range old {
		if err := a.nl.RouteDel(&r); err != nil && !notFound(err) {
			return opErr(err, "%s: delete %s", op, r)
		}
		a.push("restore default route "+r.String(), func() error {
			if err := a.nl.RouteAdd(&r); err != nil && !errors.Is(err, unix.EEXIST) {
				return err
			}
			return nil
		})
	}
	def := &netlink.Route{Dst: ipNet(netip.MustParsePrefix("0.0.0.0/0")), Gw: via.AsSlice()}
	if err := a.nl.RouteAdd(def); err != nil {
		return opErr(err, "%s", op)
	}
	a.push("delete default route via "+via.String(), func() error {
		d := &netlink.Route{Dst: ipNet(netip.MustParsePrefix("0.0.0.0/0")), Gw: via.AsSlice()}
		if err := a.nl.RouteDel(d); err != nil && !notFound(err) {
			return err
		}
		return nil
	})
	return nil
}

func (a *applier) intercept(ic *Intercept) error {
	if t, err := a.nft.ListTableOfFamily(TableName, nftables.TableFamilyIPv4); err == nil && t != nil {
		return opErr(errors.New("table exists (an earlier Apply not undone?)"), "create nftables table ip %s", TableName)
	}
	if len(ic.UDPPorts) > 0 {
		if err := a.tproxyRouting(ic); err != nil {
			return err
		}
	}
	table := buildTable(a.nft, ic)
	if err := a.nft.Flush(); err != nil {
		return opErr(err, "install nftables table ip %s (%s)", TableName, table)
	}
	a.push("delete nftables table ip "+TableName, func() error {
		a.nft.DelTable(&nftables.Table{Name: TableName, Family: nftables.TableFamilyIPv4})
		if err := a.nft.Flush(); err != nil && !notFound(err) {
			return err
		}
		return nil
	})
	return nil
}

// tproxyRouting delivers marked datagrams locally: ip rule fwmark → table,
// and a local default route in that table.
func (a *applier) tproxyRouting(ic *Intercept) error {
	mark, table := ic.mark(), ic.table()
	rule := netlink.NewRule()
	rule.Family = netlink.FAMILY_V4
	rule.Mark = mark
	rule.Table = table
	rule.Priority = DefaultRulePriority
	op := fmt.Sprintf("add ip rule fwmark %#x lookup %d", mark, table)
	if err := a.nl.RuleAdd(rule); err != nil {
		return opErr(err, "%s", op)
	}
	a.push(op, func() error {
		if err := a.nl.RuleDel(rule); err != nil && !notFound(err) {
			return err
		}
		return nil
	})
	lo, err := a.loopback()
	if err != nil {
		return err
	}
	local := &netlink.Route{
		Dst:       ipNet(netip.MustParsePrefix("0.0.0.0/0")),
		LinkIndex: lo.Attrs().Index,
		Table:     table,
		Type:      unix.RTN_LOCAL,
		Scope:     netlink.SCOPE_HOST,
	}
	op = fmt.Sprintf("add route local 0.0.0.0/0 dev %s table %d", lo.Attrs().Name, table)
	if err := a.nl.RouteAdd(local); err != nil {
		return opErr(err, "%s", op)
	}
	a.push(op, func() error {
		if err := a.nl.RouteDel(local); err != nil && !notFound(err) {
			return err
		}
		return nil
	})
	return nil
}

func (a *applier) loopback() (netlink.Link, error) {
	links, err := a.nl.LinkList()
	if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
		return nil, opErr(err, "list interfaces")
	}
	for _, l := range links {
		if l.Attrs().Flags&net.FlagLoopback != 0 {
			return l, nil
		}
	}
	return nil, opErr(errors.New("no loopback interface"), "find the loopback interface for the TPROXY route")
}

// addOverlay creates a VXLAN interface on the underlay's interface, gives
// it its address, floods unknown destinations to every peer and brings it up.
func (a *applier) addOverlay(o Overlay) error {
	op := fmt.Sprintf("create overlay %s (vni %d) over %s", o.Name, o.VNI, o.Underlay)
	under, err := a.linkWithAddr(o.Underlay)
	if err != nil {
		return opErr(err, "%s: find the underlay interface", op)
	}
	mtu := o.MTU
	if mtu == 0 {
		mtu = 1450
	}
	vx := &netlink.Vxlan{
		LinkAttrs:    netlink.LinkAttrs{Name: o.Name, MTU: mtu, HardwareAddr: OverlayMAC(o.Addr.Addr())},
		VxlanId:      int(o.VNI),
		VtepDevIndex: under.Attrs().Index,
		SrcAddr:      o.Underlay.AsSlice(),
		Port:         4789,
		Learning:     true,
	}
	if err := a.nl.LinkAdd(vx); err != nil {
		return opErr(err, "%s", op)
	}
	name := o.Name
	a.push("delete overlay "+name, func() error {
		l, err := a.nl.LinkByName(name)
		if err != nil {
			if notFound(err) {
				return nil
			}
			return err
		}
		return a.nl.LinkDel(l)
	})
	link, err := a.nl.LinkByName(name)
	if err != nil {
		return opErr(err, "%s: find it", op)
	}
	if err := a.nl.AddrAdd(link, &netlink.Addr{IPNet: ipNet(o.Addr)}); err != nil {
		return opErr(err, "%s: add address %s", op, o.Addr)
	}
	for _, p := range o.Peers {
		n := &netlink.Neigh{LinkIndex: link.Attrs().Index, Family: unix.AF_BRIDGE, Flags: netlink.NTF_SELF,
			State: netlink.NUD_PERMANENT, IP: p.AsSlice(), HardwareAddr: make(net.HardwareAddr, 6)}
		if err := a.nl.NeighAppend(n); err != nil {
			return opErr(err, "%s: flood to peer %s", op, p)
		}
	}
	if err := a.nl.LinkSetUp(link); err != nil {
		return opErr(err, "%s: bring it up", op)
	}
	return nil
}

// linkWithAddr finds the interface holding address ip.
func (a *applier) linkWithAddr(ip netip.Addr) (netlink.Link, error) {
	addrs, err := a.nl.AddrList(nil, unix.AF_INET)
	if err != nil {
		return nil, err
	}
	for _, ad := range addrs {
		if got, ok := netip.AddrFromSlice(ad.IP); ok && got.Unmap() == ip {
			return a.nl.LinkByIndex(ad.LinkIndex)
		}
	}
	return nil, fmt.Errorf("no interface has %s", ip)
}
