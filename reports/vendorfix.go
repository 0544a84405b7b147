package reports

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// The recommended fix in the customer's own syntax: PAN-OS set commands
// and FortiOS CLI, for the gateways of a Gateways description (the
// customer's, from --gateways, or the simulation's own). The commands
// follow the configuration schema pinwall's readers take in
// (vendorconf/panos: rulebase/security and rulebase/decryption rules,
// address, address-group, service; vendorconf/fortios: firewall address,
// addrgrp, service custom, policy with ssl-ssh-profile), written in each
// CLI's configure mode (docs/vendor-configs.md). Zones and interfaces are
// the placeholders pinwall's logs use (trust/untrust, port2/port1): the
// reader replaces them with their own.

// SimulatedGateways are the simulation's gateways, as the simulated SSE
// vendor publishes them (docs/topology.md): the fix names these when no
// --gateways file is given.
func SimulatedGateways() *Gateways {
	p := netip.MustParsePrefix
	return &Gateways{
		Vendor:    "the simulated SSE vendor",
		Endpoints: []netip.Prefix{p("10.10.10.96/27")},
		Gateways: []Gateway{
			{Name: "gateway-acme.sse.test", Addresses: []netip.Prefix{p("203.0.113.8/30"), p("203.0.113.64/26")}},
			{Name: "gateway-acme.eu.sse.test", Addresses: []netip.Prefix{p("203.0.113.40/30")}},
			{Name: "gateway-backup-acme.sse.test", Addresses: []netip.Prefix{p("203.0.113.136/30")}, Backup: true},
		},
	}
}

// endpointsPlaceholder stands for the endpoints' range when the
// description gives none.
const endpointsPlaceholder = "ENDPOINT-RANGE"

// fixObjects are the named objects both vendors' snippets use.
type fixObjects struct {
	addrs     []fixAddr // one per gateway range
	endpoints []fixAddr
	tcp, udp  []uint16
	sniNames  []string // gateway names, where the firewall checks SNI against the certificate
}

type fixAddr struct {
	name, comment string
	prefix        netip.Prefix
}

func objectsOf(g *Gateways) fixObjects {
	var o fixObjects
	for i, gw := range g.Gateways {
		role := "primary"
		if gw.Backup {
			role = "backup"
		}
		for j, a := range gw.Addresses {
			name := fmt.Sprintf("sse-gw%d", i+1)
			if len(gw.Addresses) > 1 {
				name += "-" + strconv.Itoa(j+1)
			}
			o.addrs = append(o.addrs, fixAddr{name: name, comment: gw.Name + " " + role, prefix: a})
		}
		for _, p := range gw.PortList() {
			proto, port, err := ParsePort(p)
			if err != nil {
				continue
			}
			if proto == "tcp" && !slices.Contains(o.tcp, port) {
				o.tcp = append(o.tcp, port)
			}
			if proto == "udp" && !slices.Contains(o.udp, port) {
				o.udp = append(o.udp, port)
			}
		}
		if gw.SNIChecked {
			o.sniNames = append(o.sniNames, gw.Name)
		}
	}
	slices.Sort(o.tcp)
	slices.Sort(o.udp)
	for i, e := range g.Endpoints {
		o.endpoints = append(o.endpoints, fixAddr{name: fmt.Sprintf("sse-endpoints%d", i+1), comment: "managed endpoints", prefix: e})
	}
	return o
}

func ports(ps []uint16) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = strconv.Itoa(int(p))
	}
	return strings.Join(s, ",")
}

func names(as []fixAddr) []string {
	out := make([]string, len(as))
	for i, a := range as {
		out[i] = a.name
	}
	return out
}

// PANOSSetCommands returns the recommended fix for g as PAN-OS
// configure-mode set commands: address objects for every gateway range
// and for the endpoints, services for the tunnel's ports, a security rule
// allowing the tunnel's UDP (DTLS) and a decryption rule exempting its TCP
// (TLS), both moved to the top of their rulebases.
func PANOSSetCommands(g *Gateways) []string {
	o := objectsOf(g)
	var c []string
	for _, a := range o.addrs {
		c = append(c, fmt.Sprintf("set address %s ip-netmask %s description %q", a.name, a.prefix, a.comment))
	}
	c = append(c, fmt.Sprintf("set address-group sse-gateways static [ %s ]", strings.Join(names(o.addrs), " ")))
	src := endpointsPlaceholder
	if len(o.endpoints) > 0 {
		for _, a := range o.endpoints {
			c = append(c, fmt.Sprintf("set address %s ip-netmask %s description %q", a.name, a.prefix, a.comment))
		}
		src = "[ " + strings.Join(names(o.endpoints), " ") + " ]"
	}
	if len(o.udp) > 0 {
		c = append(c, fmt.Sprintf("set service sse-tunnel-udp protocol udp port %s", ports(o.udp)),
			fmt.Sprintf("set rulebase security rules sse-allow-tunnel-udp from trust to untrust source %s destination sse-gateways application any service sse-tunnel-udp action allow", src),
			"move rulebase security rules sse-allow-tunnel-udp top")
	}
	if len(o.tcp) > 0 {
		c = append(c, fmt.Sprintf("set service sse-tunnel-tcp protocol tcp port %s", ports(o.tcp)),
			fmt.Sprintf("set rulebase decryption rules sse-no-decrypt from trust to untrust source %s destination sse-gateways service sse-tunnel-tcp category any type ssl-forward-proxy action no-decrypt", src),
			"move rulebase decryption rules sse-no-decrypt top")
	}
	return c
}

// FortiOSCLI returns the recommended fix for g as FortiOS CLI: address
// objects and a group for the gateways, the endpoints' address, a service
// for the tunnel's ports, and a firewall policy from the endpoints to the
// gateways with certificate inspection only (no decryption), to be moved
// above the deep-inspection policy.
func FortiOSCLI(g *Gateways) []string {
	o := objectsOf(g)
	var c []string
	addrBlock := func(as []fixAddr) {
		var v4, v6 []fixAddr
		for _, a := range as {
			if a.prefix.Addr().Is4() {
				v4 = append(v4, a)
			} else {
				v6 = append(v6, a)
			}
		}
		if len(v4) > 0 {
			c = append(c, "config firewall address")
			for _, a := range v4 {
				mask := net.IP(net.CIDRMask(a.prefix.Bits(), 32)).String()
				c = append(c, fmt.Sprintf("    edit %q", a.name), fmt.Sprintf("        set subnet %s %s", a.prefix.Addr(), mask), "    next")
			}
			c = append(c, "end")
		}
		if len(v6) > 0 {
			c = append(c, "config firewall address6")
			for _, a := range v6 {
				c = append(c, fmt.Sprintf("    edit %q", a.name), fmt.Sprintf("        set ip6 %s", a.prefix), "    next")
			}
			c = append(c, "end")
		}
	}
	addrBlock(o.addrs)
	c = append(c, "config firewall addrgrp", `    edit "sse-gateways"`, "        set member "+quoteEach(names(o.addrs)), "    next", "end")
	src := `"` + endpointsPlaceholder + `"`
	if len(o.endpoints) > 0 {
		addrBlock(o.endpoints)
		src = quoteEach(names(o.endpoints))
	}
	c = append(c, "config firewall service custom", `    edit "sse-tunnel"`)
	if len(o.tcp) > 0 {
		c = append(c, "        set tcp-portrange "+strings.ReplaceAll(ports(o.tcp), ",", " "))
	}
	if len(o.udp) > 0 {
		c = append(c, "        set udp-portrange "+strings.ReplaceAll(ports(o.udp), ",", " "))
	}
	c = append(c, "    next", "end",
		"config firewall policy",
		"    edit 0",
		`        set name "sse-tunnel-no-decrypt"`,
		`        set comments "SSE gateways, from the managed endpoints: no decryption (the gateway inspects)"`,
		`        set srcintf "port2"`, `        set dstintf "port1"`,
		"        set srcaddr "+src, `        set dstaddr "sse-gateways"`,
		`        set action accept`, `        set schedule "always"`, `        set service "sse-tunnel"`,
		`        set utm-status enable`, `        set ssl-ssh-profile "certificate-inspection"`,
		`        set logtraffic all`, `        set nat enable`,
		"    next", "end")
	return c
}

func quoteEach(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = strconv.Quote(s)
	}
	return strings.Join(q, " ")
}
