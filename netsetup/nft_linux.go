//go:build linux

package netsetup

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"golang.org/x/sys/unix"
)

// Chain names of the pinwall table.
const (
	chainMangle     = "prerouting-mangle"
	chainDNAT       = "prerouting-nat"
	chainMasquerade = "postrouting-nat"
	chainForward    = "forward-filter"
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
	if len(ic.TCPRules) > 0 {
		ch := c.AddChain(&nftables.Chain{
			Name: chainDNAT, Table: t, Type: nftables.ChainTypeNAT,
			Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityNATDest, Policy: &accept,
		})
		for _, f := range ic.TCPRules {
			for _, ex := range filterMatches(ic, unix.IPPROTO_TCP, f, true) {
				if f.Verdict == FilterRedirect {
					ex = append(ex, &expr.Counter{},
						&expr.Immediate{Register: 1, Data: binaryutil.BigEndian.PutUint16(ic.TCPTo)},
						&expr.Redir{RegisterProtoMin: 1, Flags: unix.NF_NAT_RANGE_PROTO_SPECIFIED})
				} else {
					ex = append(ex, &expr.Verdict{Kind: expr.VerdictAccept})
				}
				c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: ex, UserData: comment(f)})
			}
		}
		summary = append(summary, fmt.Sprintf("%d tcp rules (redirect to :%d)", len(ic.TCPRules), ic.TCPTo))
	}
	if len(ic.TCPRules) > 0 || len(ic.UDPRules) > 0 {
		ch := c.AddChain(&nftables.Chain{
			Name: chainForward, Table: t, Type: nftables.ChainTypeFilter,
			Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter, Policy: &accept,
		})
		for _, l := range []struct {
			proto byte
			rules []Filter
		}{{unix.IPPROTO_TCP, ic.TCPRules}, {unix.IPPROTO_UDP, ic.UDPRules}} {
			for _, f := range l.rules {
				for _, ex := range filterMatches(ic, l.proto, f, false) {
					ex = append(ex, &expr.Counter{})
					switch {
					case f.Verdict == FilterDrop && l.proto == unix.IPPROTO_TCP:
						ex = append(ex, &expr.Reject{Type: unix.NFT_REJECT_TCP_RST})
					case f.Verdict == FilterDrop:
						ex = append(ex, &expr.Verdict{Kind: expr.VerdictDrop})
					default:
						ex = append(ex, &expr.Verdict{Kind: expr.VerdictAccept})
					}
					c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: ex, UserData: comment(f)})
				}
			}
		}
		summary = append(summary, fmt.Sprintf("forward filter (%d udp rules)", len(ic.UDPRules)))
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

// lanMatch matches traffic arriving from the LAN.
func lanMatch(ic *Intercept) []expr.Any {
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
	return ex
}

// filterMatches is a Filter's match as one nftables rule per combination
// of its source, destination and port range (nftables rules AND their
// expressions; the lists are ORs), in order. notLocal adds "fib daddr
// type != local" (prerouting: never what is addressed to this host).
func filterMatches(ic *Intercept, proto byte, f Filter, notLocal bool) [][]expr.Any {
	srcs, dsts, ports := f.Src, f.Dst, f.Ports
	if len(srcs) == 0 {
		srcs = []netip.Prefix{{}}
	}
	if len(dsts) == 0 {
		dsts = []netip.Prefix{{}}
	}
	if len(ports) == 0 {
		ports = []PortRange{{}}
	}
	var out [][]expr.Any
	for _, s := range srcs {
		for _, d := range dsts {
			for _, p := range ports {
				ex := lanMatch(ic)
				ex = append(ex,
					&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
					&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}})
				if s.IsValid() {
					ex = append(ex, matchPrefix(12, s, true)...)
				}
				if d.IsValid() {
					ex = append(ex, matchPrefix(16, d, true)...)
				}
				if p.Lo != 0 {
					ex = append(ex, &expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2})
					if p.Lo == p.Hi {
						ex = append(ex, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(p.Lo)})
					} else {
						ex = append(ex, &expr.Range{Op: expr.CmpOpEq, Register: 1,
							FromData: binaryutil.BigEndian.PutUint16(p.Lo), ToData: binaryutil.BigEndian.PutUint16(p.Hi)})
					}
				}
				if notLocal {
					ex = append(ex,
						&expr.Fib{Register: 1, FlagDADDR: true, ResultADDRTYPE: true},
						&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(unix.RTN_LOCAL)})
				}
				out = append(out, ex)
			}
		}
	}
	return out
}

// comment is a rule's nftables comment (userdata), at most 128 bytes.
func comment(f Filter) []byte {
	if f.Comment == "" {
		return nil
	}
	c := f.Comment
	if len(c) > 127 {
		c = c[:127]
	}
	return userdata.AppendString(nil, userdata.TypeComment, c)
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

// RuleCount is one counted rule of the pinwall table and what it matched.
type RuleCount struct {
	Chain   string `json:"chain"`
	Comment string `json:"comment,omitempty"`
	Packets uint64 `json:"packets"`
	Bytes   uint64 `json:"bytes"`
}

// Counters lists the counted rules of the pinwall table (TCPRules and
// UDPRules) in the calling thread's network namespace, chain by chain in
// rule order. A namespace without the table has none.
func Counters() ([]RuleCount, error) {
	c, err := nftables.New()
	if err != nil {
		return nil, opErr(err, "open nftables netlink")
	}
	t, err := c.ListTableOfFamily(TableName, nftables.TableFamilyIPv4)
	if err != nil || t == nil {
		return nil, nil
	}
	var out []RuleCount
	for _, name := range []string{chainDNAT, chainForward} {
		rules, err := c.GetRules(t, &nftables.Chain{Name: name, Table: t})
		if err != nil {
			continue // no such chain
		}
		for _, r := range rules {
			for _, e := range r.Exprs {
				if ct, ok := e.(*expr.Counter); ok {
					cm, _ := userdata.GetString(r.UserData, userdata.TypeComment)
					out = append(out, RuleCount{Chain: name, Comment: cm, Packets: ct.Packets, Bytes: ct.Bytes})
				}
			}
		}
	}
	return out, nil
}
