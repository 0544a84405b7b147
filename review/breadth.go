package review

import (
	"context"
	"fmt"
	"net/netip"
	"slices"

	"github.com/pinwall/pinwall/mitm/policy"
	"github.com/pinwall/pinwall/resolve"
)

// breadth asks the policy, without running anything, whether its bypass
// is wider than the tunnel: whether a no-decrypt rule takes a TLS session
// from a LAN host without the client to a gateway address, or from the
// laptop to an address beside the gateways (in a gateway's /24, not a
// gateway, not a site). bypass-narrow shows both with running code; the
// recommended fix (policies/bypass-gateways-from-endpoints.yaml) takes
// neither. Each is a warning: the tunnel works, but the exemption is an
// inspection gap wider than it needs to be.
func (e *env) breadth(ctx context.Context, a *Answer) ([]string, error) {
	zone := &resolve.Zone{}
	for _, g := range e.base.Gateways {
		if err := zone.Add(resolve.Record{Name: g.Name, Addrs: g.Addrs()}); err != nil {
			return nil, err
		}
	}
	eng, err := policy.NewEngine(e.pol, policy.EngineConfig{Resolver: zone})
	if err != nil {
		return nil, err
	}
	gw := e.primary.Addrs()[0]
	tls := func(src, dst netip.Addr, sni string) policy.Decision {
		return eng.Decide(ctx, policy.Session{Src: netip.AddrPortFrom(src, 50000), Dst: netip.AddrPortFrom(dst, 443),
			Proto: policy.ProtoTCP, SNI: sni, HasSNI: true, App: policy.AppSSL})
	}
	var wide []string
	if d := tls(rogueAddr, gw, e.primary.Name); d.Action == policy.ActionNoDecrypt {
		wide = append(wide, fmt.Sprintf("a LAN host without the client (%s) reaches the gateway %s undecrypted on %s", rogueAddr, gw, e.ruleRef(d.RuleName)))
	}
	if n, ok := e.neighbour(gw); ok {
		if d := tls(e.base.Laptop, n, "www.neighbour.test"); d.Action == policy.ActionNoDecrypt {
			wide = append(wide, fmt.Sprintf("a host beside the gateways (%s, in the gateway's /24 but not a gateway) is reached undecrypted on %s", n, e.ruleRef(d.RuleName)))
		}
	}
	if len(wide) == 0 {
		return nil, nil
	}
	a.Level = max(a.Level, Warn)
	for _, w := range wide {
		a.Details = append(a.Details, "wider than the tunnel: "+w)
	}
	a.Advice = append(a.Advice, Advice{Say: "Exempt the gateways' published addresses exactly, primary and backup, TCP and UDP 443, from the endpoints' source range only (scenarios/policies/bypass-gateways-from-endpoints.yaml; the bypass-narrow scenario shows why)"})
	return wide, nil
}

// neighbour is an address in gw's /24 that is neither a gateway nor a
// site of the topology, if there is one.
func (e *env) neighbour(gw netip.Addr) (netip.Addr, bool) {
	if !gw.Is4() {
		return netip.Addr{}, false
	}
	var taken []netip.Addr
	for _, g := range e.base.Gateways {
		taken = append(taken, g.Addrs()...)
	}
	for _, o := range e.base.Origins {
		taken = append(taken, o.Addr)
	}
	b := netip.PrefixFrom(gw, 24).Masked().Addr().As4()
	for last := 50; last < 255; last++ {
		b[3] = byte(last)
		if a := netip.AddrFrom4(b); !slices.Contains(taken, a) {
			return a, true
		}
	}
	return netip.Addr{}, false
}
