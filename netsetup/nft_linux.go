//go:build linux

package netsetup

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// Chain names of the pinwall table.
const (
	chainMangle     = "prerouting-mangle"
	chainDNAT       = "prerouting-nat"
	chainMasquerade = "postrouting-nat"
)

// buildTable queues the pinwall table and its rules on c (the caller
// flushes) and returns a one-line summary for error messages.
func buildTable(c *nftables.Conn, ic *Intercept) string {
	t := c.AddTable(&nftables.Table{Name: TableName, Family: nftables.TableFamilyIPv4})
	accept := nftables.ChainPolicyAccept
	var summary []string
	if len(ic.UDPPorts) > 0 {
		ch := c.AddChain(&nftables.Chain{
			Name: chainMangle, Table: t, Type: nftables.ChainTypeFilter,
			Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityMangle, Policy: &accept,
		})
		for _, p := range ic.UDPPorts {
			c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: tproxyRule(ic, p)})
		}
		summary = append(summary, fmt.Sprintf("udp %v tproxy to :%d mark %#x", ic.UDPPorts, ic.UDPTo, ic.mark()))
	}
	if len(ic.TCPPorts) > 0 {
		ch := c.AddChain(&nftables.Chain{
			Name: chainDNAT, Table: t, Type: nftables.ChainTypeNAT,
			Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityNATDest, Policy: &accept,
		})
		for _, p := range ic.TCPPorts {
			c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: redirectRule(ic, p)})
		}
		summary = append(summary, fmt.Sprintf("tcp %v redirect to :%d", ic.TCPPorts, ic.TCPTo))
	}
	if ic.Masquerade.IsValid() {
		ch := c.AddChain(&nftables.Chain{
			Name: chainMasquerade, Table: t, Type: nftables.ChainTypeNAT,
			Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource, Policy: &accept,
		})
		var ex []expr.Any
		ex = append(ex, matchPrefix(12, ic.Masquerade, true)...)
		ex = append(ex, matchPrefix(16, ic.Masquerade, false)...)
		ex = append(ex, &expr.Masq{})
		c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: ex})
		summary = append(summary, "masquerade "+ic.Masquerade.String())
	}
	return strings.Join(summary, ", ")
}

// fromLAN matches traffic arriving from the LAN for a local port's
// protocol and destination port, not addressed to this host.
func fromLAN(ic *Intercept, proto byte, port uint16) []expr.Any {
	var ex []expr.Any
	if ic.InIface != "" {
		ex = append(ex,
			&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ifname(ic.InIface)},
		)
	}
	if ic.LAN.IsValid() {
		ex = append(ex, matchPrefix(12, ic.LAN, true)...)
	}
	return append(ex,
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(port)},
		// fib daddr type != local: never divert traffic for the firewall itself
		&expr.Fib{Register: 1, FlagDADDR: true, ResultADDRTYPE: true},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(unix.RTN_LOCAL)},
	)
}

// redirectRule: <from LAN> tcp dport <port> redirect to :<TCPTo>
func redirectRule(ic *Intercept, port uint16) []expr.Any {
	return append(fromLAN(ic, unix.IPPROTO_TCP, port),
		&expr.Immediate{Register: 1, Data: binaryutil.BigEndian.PutUint16(ic.TCPTo)},
		&expr.Redir{RegisterProtoMin: 1, Flags: unix.NF_NAT_RANGE_PROTO_SPECIFIED},
	)
}

// tproxyRule: <from LAN> udp dport <port> meta mark set <mark> tproxy to
// :<UDPTo> accept. The mark is set first so that with no transparent socket
// listening the datagram is routed locally and dropped instead of being
// forwarded uninspected.
func tproxyRule(ic *Intercept, port uint16) []expr.Any {
	return append(fromLAN(ic, unix.IPPROTO_UDP, port),
		&expr.Immediate{Register: 1, Data: binaryutil.NativeEndian.PutUint32(ic.mark())},
		&expr.Meta{Key: expr.MetaKeyMARK, SourceRegister: true, Register: 1},
		&expr.Immediate{Register: 1, Data: binaryutil.BigEndian.PutUint16(ic.UDPTo)},
		&expr.TProxy{Family: byte(nftables.TableFamilyIPv4), TableFamily: byte(nftables.TableFamilyIPv4), RegPort: 1},
		&expr.Verdict{Kind: expr.VerdictAccept},
	)
}

// matchPrefix matches the IPv4 address at offset of the network header
// (12 source, 16 destination) inside p (eq) or outside it (!eq).
func matchPrefix(offset uint32, p netip.Prefix, eq bool) []expr.Any {
	op := expr.CmpOpEq
	if !eq {
		op = expr.CmpOpNeq
	}
	mask := make([]byte, 4)
	for i := range p.Bits() {
		mask[i/8] |= 0x80 >> (i % 8)
	}
	network := p.Masked().Addr().As4()
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: 4},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: mask, Xor: make([]byte, 4)},
		&expr.Cmp{Op: op, Register: 1, Data: network[:]},
	}
}

// ifname pads an interface name as the kernel stores it (IFNAMSIZ bytes).
func ifname(name string) []byte {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, name)
	return b
}
