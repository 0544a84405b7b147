package netsetup

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"syscall"
)

// TableName is the nftables table (family ip) that holds every rule Apply
// installs; undo deletes it whole.
const TableName = "pinwall"

// Defaults for Intercept's TPROXY plumbing.
const (
	// DefaultMark is the fwmark of TPROXY-diverted datagrams (0x1bb = 443).
	DefaultMark uint32 = 0x1bb
	// DefaultTable is the routing table holding the local default route
	// that delivers marked datagrams to the firewall's socket.
	DefaultTable = 443
	// DefaultRulePriority is the priority of the "fwmark → table" rule,
	// ahead of the main table (32766).
	DefaultRulePriority = 100
)

// ErrUnsupported is wrapped by Apply's error on systems other than Linux.
var ErrUnsupported = errors.New("netsetup: not supported on this system (Linux only)")

// Config is a container's network, as Apply programs it. The zero Config
// changes nothing.
type Config struct {
	// Overlays are VXLAN segments to create first, so that the addresses,
	// routes and interception below can use them (see Overlay).
	Overlays []Overlay
	// Addrs are secondary addresses to add (for example the gateway's pool
	// of /32 addresses on eth0).
	Addrs []Addr
	// Routes are static routes to add to the main table.
	Routes []Route
	// DefaultVia, when valid, replaces the default route: every existing
	// IPv4 default route of the main table is removed (and put back by
	// undo) and one via DefaultVia is added (the laptop's route via the
	// firewall).
	DefaultVia netip.Addr
	// Intercept, when non-nil, installs the firewall's interception rules.
	Intercept *Intercept
	// Forward declares that this host forwards packets (the firewall). The
	// runtime must set net.ipv4.ip_forward (docker run --sysctl
	// net.ipv4.ip_forward=1, since /proc/sys is read-only in a container);
	// Apply only checks it and fails with an explanation when it is 0.
	Forward bool
}

// Overlay is a VXLAN segment: a layer-2 link to Peers carried in UDP over
// the underlay (a Docker network), holding Addr. Docker's bridge driver
// drops routed traffic on internal networks — its isolation rules require
// both addresses of a frame to lie in the network's subnet, and
// br_netfilter applies them to bridged frames — so a topology whose hosts
// route through one another (the laptop through the firewall) runs its
// real addresses on overlays above internal Docker networks.
type Overlay struct {
	// Name of the interface to create (15 bytes at most): "pw-lan".
	Name string
	// VNI is the VXLAN network identifier, the same on every member.
	VNI uint32
	// Addr is this member's address on the segment (10.10.10.254/24).
	Addr netip.Prefix
	// Underlay is this member's address on the underlying network; the
	// interface holding it carries the encapsulated frames.
	Underlay netip.Addr
	// Peers are the other members' underlay addresses.
	Peers []netip.Addr
	// MTU of the overlay; zero means 1450 (1500 less VXLAN's 50 bytes).
	MTU int
}

// OverlayMAC is the hardware address Apply gives an overlay interface:
// locally administered (02:50, "P"), then the member's IPv4 address. It
// is the same whenever the member is set up again — a restarted firewall
// container gets a new network namespace and new interfaces — so its
// neighbours' ARP entries stay right and traffic resumes at once instead
// of after their neighbour cache notices a new MAC.
func OverlayMAC(addr netip.Addr) net.HardwareAddr {
	a := addr.As4()
	return net.HardwareAddr{0x02, 0x50, a[0], a[1], a[2], a[3]}
}

// Addr is one address to add to an interface.
type Addr struct {
	// Prefix is the address with its prefix length, not masked
	// (203.0.113.10/32).
	Prefix netip.Prefix
	// Iface names the interface. Empty picks one by these rules, first
	// match wins:
	//  1. the interface with an IPv4 subnet containing the address (the
	//     longest such subnet);
	//  2. the only interface other than loopback;
	//  3. the interface with the IPv4 address sharing the longest prefix
	//     with the address, if no other interface ties with it.
	// Otherwise Apply fails and asks for Iface.
	Iface string
}

// Route is a static route.
type Route struct {
	// Dst is the destination prefix (203.0.113.0/24).
	Dst netip.Prefix
	// Via is the next hop, on a directly connected subnet.
	Via netip.Addr
}

// Intercept is the firewall's transparent interception of LAN traffic:
// TCP is REDIRECTed to a local port, UDP is diverted with TPROXY to a
// local port (see the package documentation for the rules and why).
type Intercept struct {
	// InIface is the interface LAN traffic arrives on; empty matches any.
	InIface string
	// LAN is the source prefix of LAN traffic; the zero Prefix matches any
	// source. At least one of InIface and LAN must be set.
	LAN netip.Prefix
	// TCPPorts are the destination ports REDIRECTed to TCPTo.
	TCPPorts []uint16
	// TCPTo is the local port of the transparent TCP listener (required
	// with TCPPorts).
	TCPTo uint16
	// UDPPorts are the destination ports diverted with TPROXY to UDPTo.
	UDPPorts []uint16
	// UDPTo is the local port of the transparent UDP socket (required with
	// UDPPorts).
	UDPTo uint16
	// Masquerade, when valid, source-NATs traffic from this prefix leaving
	// towards anything outside it (needs Config.Forward).
	Masquerade netip.Prefix
	// TCPRules, instead of TCPPorts, decide LAN TCP connections in
	// order, first match wins: redirected to TCPTo, forwarded (accept) or
	// refused with a TCP reset (drop). A connection no rule matches is
	// forwarded. It is how a third-party interceptor gets only what the
	// policy gives it (package interceptors).
	TCPRules []Filter
	// UDPRules, instead of UDPPorts, decide LAN UDP flows in order: forwarded
	// (accept) or dropped; none is diverted.
	UDPRules []Filter
	// Mark is the fwmark of diverted datagrams; zero means DefaultMark.
	Mark uint32
	// Table is the routing table of the local route for marked datagrams;
	// zero means DefaultTable.
	Table int
}

// FilterVerdict is what a Filter does with a matching connection.
type FilterVerdict string

// The verdicts.
const (
	// FilterAccept forwards the connection (masqueraded with Masquerade).
	FilterAccept FilterVerdict = "accept"
	// FilterDrop drops it; a TCP connection is refused with a reset.
	FilterDrop FilterVerdict = "drop"
	// FilterRedirect redirects a TCP connection to Intercept.TCPTo.
	FilterRedirect FilterVerdict = "redirect"
)

// PortRange is an inclusive range of destination ports.
type PortRange struct{ Lo, Hi uint16 }

// Filter is one rule of TCPRules or UDPRules: a connection from the LAN
// matching every field that is set (any element of a list) gets Verdict.
type Filter struct {
	Src, Dst []netip.Prefix
	Ports    []PortRange
	Verdict  FilterVerdict
	// Comment is shown by nft list (at most 128 bytes kept).
	Comment string
}

func (ic *Intercept) mark() uint32 {
	if ic.Mark == 0 {
		return DefaultMark
	}
	return ic.Mark
}

func (ic *Intercept) table() int {
	if ic.Table == 0 {
		return DefaultTable
	}
	return ic.Table
}

// Validate reports every contradiction in c at once.
func (c *Config) Validate() error {
	var p problems
	c.validateLinks(&p)
	if ic := c.Intercept; ic != nil {
		ic.validate(&p, c.Forward)
	}
	if len(p) > 0 {
		return fmt.Errorf("netsetup: config: %w", errors.Join(p...))
	}
	return nil
}

// problems collects the contradictions Validate finds, in order.
type problems []error

func (p *problems) add(format string, args ...any) { *p = append(*p, fmt.Errorf(format, args...)) }

// validateLinks checks the overlays, addresses and routes.
func (c *Config) validateLinks(p *problems) {
	for i, o := range c.Overlays {
		if o.Name == "" || len(o.Name) > 15 {
			p.add("Overlays[%d]: name %q must be 1 to 15 bytes", i, o.Name)
		}
		if o.VNI == 0 || o.VNI >= 1<<24 {
			p.add("Overlays[%d]: VNI %d is not within 1..16777215", i, o.VNI)
		}
		if !o.Addr.IsValid() || !o.Addr.Addr().Is4() {
			p.add("Overlays[%d]: address %q is not an IPv4 address/length", i, o.Addr)
		}
		if !o.Underlay.Is4() {
			p.add("Overlays[%d]: underlay %q is not an IPv4 address", i, o.Underlay)
		}
	}
	for i, a := range c.Addrs {
		if !a.Prefix.IsValid() || !a.Prefix.Addr().Is4() {
			p.add("Addrs[%d]: %q is not an IPv4 address/length", i, a.Prefix)
		}
	}
	for i, r := range c.Routes {
		if !r.Dst.IsValid() || !r.Dst.Addr().Is4() {
			p.add("Routes[%d]: destination %q is not an IPv4 prefix", i, r.Dst)
		} else if r.Dst.Masked() != r.Dst {
			p.add("Routes[%d]: destination %s has host bits set (want %s)", i, r.Dst, r.Dst.Masked())
		}
		if !r.Via.Is4() {
			p.add("Routes[%d]: next hop %q is not an IPv4 address", i, r.Via)
		}
	}
	if c.DefaultVia.IsValid() && !c.DefaultVia.Is4() {
		p.add("DefaultVia %s is not an IPv4 address", c.DefaultVia)
	}
}

// validate checks the interception; forward is Config.Forward, which
// Masquerade needs.
func (ic *Intercept) validate(p *problems, forward bool) {
	if ic.InIface == "" && !ic.LAN.IsValid() {
		p.add("Intercept: set InIface or LAN (which traffic comes from the LAN?)")
	}
	if len(ic.InIface) > 15 {
		p.add("Intercept: InIface %q is longer than 15 bytes", ic.InIface)
	}
	if ic.LAN.IsValid() && (!ic.LAN.Addr().Is4() || ic.LAN.Masked() != ic.LAN) {
		p.add("Intercept: LAN %s is not a masked IPv4 prefix", ic.LAN)
	}
	if len(ic.TCPPorts) > 0 && ic.TCPTo == 0 {
		p.add("Intercept: TCPPorts %v need TCPTo", ic.TCPPorts)
	}
	if len(ic.UDPPorts) > 0 && ic.UDPTo == 0 {
		p.add("Intercept: UDPPorts %v need UDPTo", ic.UDPPorts)
	}
	if slices.Contains(ic.TCPPorts, 0) || slices.Contains(ic.UDPPorts, 0) {
		p.add("Intercept: port 0 cannot be intercepted")
	}
	ic.validateRules(p)
	if len(ic.TCPPorts) == 0 && len(ic.UDPPorts) == 0 && len(ic.TCPRules) == 0 && len(ic.UDPRules) == 0 && !ic.Masquerade.IsValid() {
		p.add("Intercept: nothing to do (no TCPPorts, UDPPorts or Masquerade)")
	}
	if ic.Masquerade.IsValid() {
		if !ic.Masquerade.Addr().Is4() || ic.Masquerade.Masked() != ic.Masquerade {
			p.add("Intercept: Masquerade %s is not a masked IPv4 prefix", ic.Masquerade)
		}
		if !forward {
			p.add("Intercept: Masquerade rewrites forwarded traffic, set Forward (and net.ipv4.ip_forward=1)")
		}
	}
	if ic.Table < 0 || ic.Table == 253 || ic.Table == 254 || ic.Table == 255 {
		p.add("Intercept: Table %d is reserved (default, main, local) or negative", ic.Table)
	}
}

// validateRules checks TCPRules and UDPRules.
func (ic *Intercept) validateRules(p *problems) {
	if len(ic.TCPRules) > 0 && len(ic.TCPPorts) > 0 {
		p.add("Intercept: TCPPorts and TCPRules exclude each other")
	}
	if len(ic.UDPRules) > 0 && len(ic.UDPPorts) > 0 {
		p.add("Intercept: UDPPorts and UDPRules exclude each other")
	}
	for _, l := range []struct {
		name  string
		rules []Filter
		udp   bool
	}{{"TCPRules", ic.TCPRules, false}, {"UDPRules", ic.UDPRules, true}} {
		for i, f := range l.rules {
			switch f.Verdict {
			case FilterAccept, FilterDrop:
			case FilterRedirect:
				if l.udp {
					p.add("Intercept: %s[%d]: UDP cannot be redirected (use UDPPorts for TPROXY)", l.name, i)
				} else if ic.TCPTo == 0 {
					p.add("Intercept: %s[%d]: redirect needs TCPTo", l.name, i)
				}
			default:
				p.add("Intercept: %s[%d]: verdict %q is not one of accept, drop, redirect", l.name, i, f.Verdict)
			}
			for _, pr := range append(append([]netip.Prefix{}, f.Src...), f.Dst...) {
				if !pr.IsValid() || !pr.Addr().Is4() || pr.Masked() != pr {
					p.add("Intercept: %s[%d]: %s is not a masked IPv4 prefix", l.name, i, pr)
				}
			}
			for _, r := range f.Ports {
				if r.Lo == 0 || r.Lo > r.Hi {
					p.add("Intercept: %s[%d]: port range %d-%d is empty or holds 0", l.name, i, r.Lo, r.Hi)
				}
			}
		}
	}
}

// OpError is a failed step of Apply or undo.
type OpError struct {
	// Op names the step: "add route 203.0.113.0/24 via 198.51.100.20".
	Op string
	// Err is the cause (usually a syscall.Errno from the kernel).
	Err error
}

func (e *OpError) Error() string {
	return "netsetup: " + e.Op + ": " + e.Err.Error() + hint(e.Err)
}

func (e *OpError) Unwrap() error { return e.Err }

func opErr(err error, format string, args ...any) error {
	if err == nil {
		return nil
	}
	return &OpError{Op: fmt.Sprintf(format, args...), Err: err}
}

// hint names the usual cause of a kernel error.
func hint(err error) string {
	switch {
	case errors.Is(err, os.ErrPermission):
		return " (does the container have NET_ADMIN?)"
	case errors.Is(err, syscall.ENETUNREACH):
		return " (is the next hop on a directly connected subnet?)"
	case errors.Is(err, syscall.ENODEV):
		return " (no such interface in this network namespace)"
	}
	return ""
}
