//go:build linux

package netsetup_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/pinwall/pinwall/netsetup"
	"github.com/pinwall/pinwall/netsetup/nstest"
)

// netState is what Apply may change in a namespace.
type netState struct {
	addrs  map[string][]string // interface → IPv4 addresses
	routes []string            // main table, "dst via gw"
	rules  []string            // "fwmark → table" rules
	local  []string            // routes of the TPROXY table
	chains []string            // chains of the pinwall table, if it exists
	table  bool
}

func readState(t *testing.T, ns *nstest.NS, rtTable int) netState {
	t.Helper()
	s := netState{addrs: map[string][]string{}}
	ns.MustDo(func() error {
		links, err := netlink.LinkList()
		if err != nil {
			return err
		}
		for _, l := range links {
			as, err := netlink.AddrList(l, netlink.FAMILY_V4)
			if err != nil {
				return err
			}
			for _, a := range as {
				s.addrs[l.Attrs().Name] = append(s.addrs[l.Attrs().Name], a.IPNet.String())
			}
		}
		routes, err := netlink.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
		if err != nil {
			return err
		}
		for _, r := range routes {
			dst := "default"
			if r.Dst != nil {
				if ones, _ := r.Dst.Mask.Size(); ones > 0 {
					dst = r.Dst.String()
				}
			}
			if r.Gw != nil {
				s.routes = append(s.routes, dst+" via "+r.Gw.String())
			}
		}
		rules, err := netlink.RuleList(netlink.FAMILY_V4)
		if err != nil {
			return err
		}
		for _, r := range rules {
			if r.Mark != 0 {
				s.rules = append(s.rules, fmt.Sprintf("fwmark %#x lookup %d", r.Mark, r.Table))
			}
		}
		local, err := netlink.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: rtTable}, netlink.RT_FILTER_TABLE)
		if err != nil {
			return err
		}
		for _, r := range local {
			s.local = append(s.local, fmt.Sprintf("type %d %v dev %d", r.Type, r.Dst, r.LinkIndex))
		}
		c, err := nftables.New()
		if err != nil {
			return err
		}
		tb, err := c.ListTableOfFamily(netsetup.TableName, nftables.TableFamilyIPv4)
		if err != nil {
			return nil // no table
		}
		s.table = true
		chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyIPv4)
		if err != nil {
			return err
		}
		for _, ch := range chains {
			if ch.Table.Name == tb.Name {
				s.chains = append(s.chains, ch.Name)
			}
		}
		return nil
	})
	slices.Sort(s.routes)
	slices.Sort(s.chains)
	return s
}

// nftList renders the pinwall table with the nft tool, when there is one.
func nftList(t *testing.T, ns *nstest.NS) string {
	t.Helper()
	if _, err := exec.LookPath("nft"); err != nil {
		t.Log("nft not installed: the rendered rules are not checked")
		return ""
	}
	var out []byte
	ns.MustDo(func() error {
		var err error
		// The child is forked from this thread, inside the namespace.
		out, err = exec.Command("nft", "list", "table", "ip", netsetup.TableName).CombinedOutput()
		if err != nil {
			return fmt.Errorf("nft list: %w: %s", err, out)
		}
		return nil
	})
	return string(out)
}

func applyIn(t *testing.T, ns *nstest.NS, cfg netsetup.Config) (undo func() error, err error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	derr := ns.Do(func() error {
		undo, err = netsetup.Apply(ctx, cfg)
		return nil
	})
	require.NoError(t, derr)
	if undo != nil {
		t.Cleanup(func() { _ = undo() })
	}
	return undo, err
}

func addRoute(dst netip.Prefix, via netip.Addr) func() error {
	return func() error {
		n := &net.IPNet{IP: dst.Addr().AsSlice(), Mask: net.CIDRMask(dst.Bits(), 32)}
		return netlink.RouteAdd(&netlink.Route{Dst: n, Gw: via.AsSlice()})
	}
}

func TestApplyUndo(t *testing.T) {
	env := nstest.Guard(t)
	fw := env.NS("fw")
	peer := env.NS("peer")
	env.Link(fw, "wan0", pfx("198.51.100.1/24"), peer, "eth0", pfx("198.51.100.20/24"))
	env.Link(fw, "lan0", pfx("10.10.10.254/24"), peer, "eth1", pfx("10.10.10.1/24"))
	fw.MustDo(addRoute(pfx("0.0.0.0/0"), addr("198.51.100.20")))
	require.NoError(t, fw.Sysctl("net.ipv4.ip_forward", "1"))

	before := readState(t, fw, netsetup.DefaultTable)
	assert.Equal(t, []string{"default via 198.51.100.20"}, before.routes)
	assert.False(t, before.table)

	undo, err := applyIn(t, fw, netsetup.Config{
		Addrs: []netsetup.Addr{
			{Prefix: pfx("10.10.10.7/32")},   // lan0: its subnet contains the address
			{Prefix: pfx("203.0.113.10/32")}, // wan0: shares 4 leading bits, lan0 none
			{Prefix: pfx("192.0.2.10/24"), Iface: "lan0"},
			{Prefix: pfx("198.51.100.1/24")}, // already there: left alone
		},
		Routes:     []netsetup.Route{{Dst: pfx("192.0.2.128/25"), Via: addr("198.51.100.20")}},
		DefaultVia: addr("10.10.10.1"),
		Forward:    true,
		Intercept: &netsetup.Intercept{
			InIface: "lan0", LAN: pfx("10.10.10.0/24"),
			TCPPorts: []uint16{443, 80}, TCPTo: 8443,
			UDPPorts: []uint16{443}, UDPTo: 8443,
			Masquerade: pfx("10.10.10.0/24"),
		},
	})
	require.NoError(t, err)

	got := readState(t, fw, netsetup.DefaultTable)
	assert.ElementsMatch(t, []string{"10.10.10.254/24", "10.10.10.7/32", "192.0.2.10/24"}, got.addrs["lan0"])
	assert.ElementsMatch(t, []string{"198.51.100.1/24", "203.0.113.10/32"}, got.addrs["wan0"])
	assert.Equal(t, []string{"192.0.2.128/25 via 198.51.100.20", "default via 10.10.10.1"}, got.routes)
	assert.Equal(t, []string{"fwmark 0x1bb lookup 443"}, got.rules)
	assert.Equal(t, []string{"type 2 0.0.0.0/0 dev 1"}, got.local) // RTN_LOCAL via lo
	assert.True(t, got.table)
	assert.Equal(t, []string{"postrouting-nat", "prerouting-mangle", "prerouting-nat"}, got.chains)
	if out := nftList(t, fw); out != "" {
		t.Logf("nft list table ip pinwall:\n%s", out)
		for _, want := range []string{
			`type filter hook prerouting priority mangle; policy accept;`,
			`iifname "lan0" ip saddr 10.10.10.0/24 udp dport 443 fib daddr type != local meta mark set 0x000001bb tproxy to :8443 accept`,
			`type nat hook prerouting priority dstnat; policy accept;`,
			`iifname "lan0" ip saddr 10.10.10.0/24 tcp dport 443 fib daddr type != local redirect to :8443`,
			`iifname "lan0" ip saddr 10.10.10.0/24 tcp dport 80 fib daddr type != local redirect to :8443`,
			`type nat hook postrouting priority srcnat; policy accept;`,
			`ip saddr 10.10.10.0/24 ip daddr != 10.10.10.0/24 masquerade`,
		} {
			assert.Contains(t, out, want)
		}
	}

	require.NoError(t, undo())
	require.NoError(t, undo(), "undo is idempotent")
	after := readState(t, fw, netsetup.DefaultTable)
	assert.Equal(t, before, after)
	assert.Equal(t, []string{"default via 198.51.100.20"}, after.routes, "the old default route is back")
}

func TestApplyAddrOnlyInterface(t *testing.T) {
	env := nstest.Guard(t)
	gw := env.NS("gateway")
	fw := env.NS("fw")
	env.Link(gw, "eth0", pfx("198.51.100.20/24"), fw, "eth0", pfx("198.51.100.1/24"))

	var pool []netsetup.Addr
	for i := 10; i < 72; i++ { // the gateway's 62 pool addresses
		pool = append(pool, netsetup.Addr{Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{203, 0, 113, byte(i)}), 32)})
	}
	undo, err := applyIn(t, gw, netsetup.Config{Addrs: pool})
	require.NoError(t, err)
	got := readState(t, gw, netsetup.DefaultTable)
	assert.Len(t, got.addrs["eth0"], 63, "the only interface but lo takes them")
	require.NoError(t, undo())
	assert.Equal(t, []string{"198.51.100.20/24"}, readState(t, gw, netsetup.DefaultTable).addrs["eth0"])
}

func TestApplyErrors(t *testing.T) {
	env := nstest.Guard(t)
	ns := env.NS("host")
	peer := env.NS("peer")
	env.Link(ns, "eth0", pfx("198.51.100.1/24"), peer, "eth0", pfx("198.51.100.20/24"))
	intercept := &netsetup.Intercept{InIface: "eth0", TCPPorts: []uint16{443}, TCPTo: 8443, UDPPorts: []uint16{443}, UDPTo: 8443}

	t.Run("forwarding off", func(t *testing.T) {
		require.NoError(t, ns.Sysctl("net.ipv4.ip_forward", "0"))
		before := readState(t, ns, netsetup.DefaultTable)
		undo, err := applyIn(t, ns, netsetup.Config{Addrs: []netsetup.Addr{{Prefix: pfx("203.0.113.1/32")}}, Forward: true, Intercept: intercept})
		require.Error(t, err)
		assert.Nil(t, undo)
		assert.Contains(t, err.Error(), "netsetup: check /proc/sys/net/ipv4/ip_forward: IP forwarding is off")
		assert.Contains(t, err.Error(), "docker run --sysctl net.ipv4.ip_forward=1")
		assert.Equal(t, before, readState(t, ns, netsetup.DefaultTable), "nothing applied")
	})

	t.Run("unreachable next hop rolls back", func(t *testing.T) {
		before := readState(t, ns, netsetup.DefaultTable)
		undo, err := applyIn(t, ns, netsetup.Config{
			Addrs:     []netsetup.Addr{{Prefix: pfx("203.0.113.1/32")}},
			Intercept: intercept,
			Routes:    []netsetup.Route{{Dst: pfx("192.0.2.0/24"), Via: addr("198.51.100.30")}, {Dst: pfx("203.0.113.0/24"), Via: addr("100.64.0.1")}},
		})
		require.Error(t, err)
		assert.Nil(t, undo)
		assert.Equal(t, "netsetup: add route 203.0.113.0/24 via 100.64.0.1: network is unreachable (is the next hop on a directly connected subnet?)", err.Error())
		assert.ErrorIs(t, err, unix.ENETUNREACH)
		assert.Equal(t, before, readState(t, ns, netsetup.DefaultTable), "the address and the first route were removed")
	})

	t.Run("unknown interface", func(t *testing.T) {
		_, err := applyIn(t, ns, netsetup.Config{Addrs: []netsetup.Addr{{Prefix: pfx("203.0.113.1/32"), Iface: "nope0"}}})
		require.Error(t, err)
		assert.Contains(t, err.Error(), "netsetup: find interface nope0 for 203.0.113.1/32: Link not found")
	})

	t.Run("table already there", func(t *testing.T) {
		undo, err := applyIn(t, ns, netsetup.Config{Intercept: intercept})
		require.NoError(t, err)
		_, err = applyIn(t, ns, netsetup.Config{Intercept: intercept})
		require.Error(t, err)
		assert.Contains(t, err.Error(), "create nftables table ip pinwall: table exists")
		assert.True(t, readState(t, ns, netsetup.DefaultTable).table, "the first Apply's table is untouched")
		require.NoError(t, undo())
		assert.False(t, readState(t, ns, netsetup.DefaultTable).table)
	})

}

// dropCapability removes c from the calling thread's effective set.
func dropCapability(c int) error {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return err
	}
	data[c/32].Effective &^= 1 << (c % 32)
	return unix.Capset(&hdr, &data[0])
}

// TestApplyWithoutNetAdmin drops CAP_NET_ADMIN on a thread that is then
// discarded. Go ends such a thread only when it gets round to it, which can
// outlast the namespace leak check, so the check runs in a child process
// that exits with the thread.
func TestApplyWithoutNetAdmin(t *testing.T) {
	if os.Getenv("PINWALL_NETSETUP_CHILD") == "" {
		nstest.Guard(t) // skips without root and CAP_NET_ADMIN
		cmd := exec.Command(os.Args[0], "-test.run", "^TestApplyWithoutNetAdmin$", "-test.count=1")
		cmd.Env = append(os.Environ(), "PINWALL_NETSETUP_CHILD=1")
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "child: %s", out)
		require.Contains(t, string(out), "PASS")
		return
	}
	// In the child the thread stays in the process's own namespace: without
	// NET_ADMIN the kernel refuses before looking at the route.
	var undo func() error
	var err error
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		if derr := dropCapability(unix.CAP_NET_ADMIN); derr != nil {
			done <- derr
			return
		}
		undo, err = netsetup.Apply(context.Background(), netsetup.Config{Routes: []netsetup.Route{{Dst: pfx("203.0.113.0/24"), Via: addr("198.51.100.20")}}})
		done <- nil
	}()
	require.NoError(t, <-done)
	assert.Nil(t, undo)
	require.Error(t, err)
	assert.Equal(t, "netsetup: add route 203.0.113.0/24 via 198.51.100.20: operation not permitted (does the container have NET_ADMIN?)", err.Error())
	assert.ErrorIs(t, err, os.ErrPermission)
	var oe *netsetup.OpError
	assert.True(t, errors.As(err, &oe))
}

// TestOverlayMACSurvivesRecreation: an overlay member's interface takes
// the MAC OverlayMAC derives from its address, so a member set up again
// (a restarted firewall container: new namespace, new interfaces) is
// reached at once by peers whose neighbour entries still hold the old one.
func TestOverlayMACSurvivesRecreation(t *testing.T) {
	env := nstest.Guard(t)
	a, b := env.NS("laptop"), env.NS("firewall")
	env.Link(a, "ua", pfx("198.18.251.1/24"), b, "ub", pfx("198.18.251.2/24"))
	overlay := func(self, under, peerUnder string) netsetup.Config {
		return netsetup.Config{Overlays: []netsetup.Overlay{{Name: "pw-lan", VNI: 10, Addr: pfx(self), Underlay: addr(under), Peers: []netip.Addr{addr(peerUnder)}}}}
	}
	_, err := applyIn(t, a, overlay("10.10.10.100/24", "198.18.251.1", "198.18.251.2"))
	require.NoError(t, err)
	undoB, err := applyIn(t, b, overlay("10.10.10.254/24", "198.18.251.2", "198.18.251.1"))
	require.NoError(t, err)
	macOf := func(ns *nstest.NS) (mac string) {
		ns.MustDo(func() error {
			l, err := netlink.LinkByName("pw-lan")
			if err != nil {
				return err
			}
			mac = l.Attrs().HardwareAddr.String()
			return nil
		})
		return mac
	}
	assert.Equal(t, netsetup.OverlayMAC(addr("10.10.10.100")).String(), macOf(a))
	assert.Equal(t, "02:50:0a:0a:0a:fe", macOf(b))
	echo := func() {
		pc, err := b.Stack().ListenPacket(context.Background(), "udp", "10.10.10.254:9000")
		require.NoError(t, err)
		defer pc.Close()
		c, err := a.Stack().DialContext(context.Background(), "udp", "10.10.10.254:9000")
		require.NoError(t, err)
		defer c.Close()
		_, err = c.Write([]byte("ping"))
		require.NoError(t, err)
		require.NoError(t, pc.SetReadDeadline(time.Now().Add(2*time.Second)))
		buf := make([]byte, 16)
		n, _, err := pc.ReadFrom(buf)
		require.NoError(t, err, "the datagram crossed the overlay")
		assert.Equal(t, "ping", string(buf[:n]))
	}
	echo()
	// The firewall's side goes away and is set up again: same MAC.
	require.NoError(t, undoB())
	_, err = applyIn(t, b, overlay("10.10.10.254/24", "198.18.251.2", "198.18.251.1"))
	require.NoError(t, err)
	assert.Equal(t, "02:50:0a:0a:0a:fe", macOf(b))
	echo() // at once, through the laptop's existing neighbour entry
}

// TestApplyFilterRules runs the rules a third-party interceptor's
// firewall gets (package interceptors): a refused destination is reset at
// once, the tool's port is redirected to the firewall's listener, the
// rest is forwarded; UDP is dropped or forwarded; each rule counts.
func TestApplyFilterRules(t *testing.T) {
	env := nstest.Guard(t)
	laptop, fw, server := env.NS("laptop"), env.NS("fw"), env.NS("server")
	env.Link(laptop, "eth0", pfx("10.10.10.100/24"), fw, "lan0", pfx("10.10.10.254/24"))
	env.Link(fw, "wan0", pfx("198.51.100.1/24"), server, "eth0", pfx("198.51.100.20/24"))
	laptop.MustDo(addRoute(pfx("0.0.0.0/0"), addr("10.10.10.254")))
	require.NoError(t, fw.Sysctl("net.ipv4.ip_forward", "1"))
	rules := netsetup.Config{Forward: true, Intercept: &netsetup.Intercept{
		LAN: pfx("10.10.10.0/24"), TCPTo: 15001, Masquerade: pfx("10.10.10.0/24"),
		TCPRules: []netsetup.Filter{
			{Dst: []netip.Prefix{pfx("198.51.100.20/32")}, Ports: []netsetup.PortRange{{443, 443}}, Verdict: netsetup.FilterDrop, Comment: "block-gw"},
			{Ports: []netsetup.PortRange{{444, 446}}, Verdict: netsetup.FilterRedirect, Comment: "tool"},
			{Verdict: netsetup.FilterAccept, Comment: "default"},
		},
		UDPRules: []netsetup.Filter{
			{Ports: []netsetup.PortRange{{443, 443}}, Verdict: netsetup.FilterDrop, Comment: "block-quic"},
			{Verdict: netsetup.FilterAccept, Comment: "default"},
		},
	}}
	_, err := applyIn(t, fw, rules)
	require.NoError(t, err)
	if out := nftList(t, fw); out != "" {
		t.Logf("nft list table ip pinwall:\n%s", out)
		for _, want := range []string{
			`ip saddr 10.10.10.0/24 ip daddr 198.51.100.20 tcp dport 443 fib daddr type != local accept comment "block-gw"`,
			`ip saddr 10.10.10.0/24 tcp dport 444-446 fib daddr type != local counter packets 0 bytes 0 redirect to :15001 comment "tool"`,
			`ip saddr 10.10.10.0/24 ip daddr 198.51.100.20 tcp dport 443 counter packets 0 bytes 0 reject with tcp reset comment "block-gw"`,
			`ip saddr 10.10.10.0/24 udp dport 443 counter packets 0 bytes 0 drop comment "block-quic"`,
			`ip saddr 10.10.10.0/24 meta l4proto udp counter packets 0 bytes 0 accept comment "default"`,
		} {
			assert.Contains(t, out, want)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	listen := func(ns *nstest.NS, a string) net.Listener {
		l, err := ns.Stack().Listen(ctx, "tcp", a)
		require.NoError(t, err)
		t.Cleanup(func() { l.Close() })
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				_, _ = c.Write([]byte(ns.Name()))
				c.Close()
			}
		}()
		return l
	}
	listen(fw, "0.0.0.0:15001")
	listen(server, "0.0.0.0:443")
	listen(server, "0.0.0.0:445")
	listen(server, "0.0.0.0:8080")
	who := func(dst string) (string, error) {
		c, err := laptop.Stack().DialContext(ctx, "tcp", dst)
		if err != nil {
			return "", err
		}
		defer c.Close()
		b, err := io.ReadAll(c)
		return string(b), err
	}
	start := time.Now()
	_, err = who("198.51.100.20:443")
	require.Error(t, err)
	assert.ErrorIs(t, err, unix.ECONNREFUSED, "a dropped TCP connection is reset")
	assert.Less(t, time.Since(start), 5*time.Second)
	got, err := who("198.51.100.20:445")
	require.NoError(t, err)
	assert.Equal(t, "fw", got, "redirected to the firewall's listener")
	got, err = who("198.51.100.20:8080")
	require.NoError(t, err)
	assert.Equal(t, "server", got, "forwarded")

	var counts []netsetup.RuleCount
	fw.MustDo(func() error { counts, err = netsetup.Counters(); return err })
	byComment := map[string]uint64{}
	for _, c := range counts {
		byComment[c.Chain+"/"+c.Comment] += c.Packets
	}
	assert.Equal(t, uint64(1), byComment["prerouting-nat/tool"], "one SYN redirected")
	assert.NotZero(t, byComment["forward-filter/block-gw"])
	assert.NotZero(t, byComment["forward-filter/default"])
}
