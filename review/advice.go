package review

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/pinwall/pinwall/harness"
	"github.com/pinwall/pinwall/mitm/fwlog"
	"github.com/pinwall/pinwall/mitm/policy"
)

// gatewayRanges returns the prefixes advice names for the gateways: the
// policy's own destination prefixes that hold a gateway address (the
// ranges the user already wrote, say 203.0.113.0/24), and the pool of
// every gateway none of them covers.
func gatewayRanges(p *policy.Policy, gws []harness.GatewaySpec) []netip.Prefix {
	var out []netip.Prefix
	for _, r := range p.Rules {
		for _, d := range r.Match.Dst {
			for _, g := range gws {
				if slices.ContainsFunc(g.Addrs(), d.Contains) && !slices.Contains(out, d) {
					out = append(out, d)
				}
			}
		}
	}
	for _, g := range gws {
		if !slices.ContainsFunc(g.Addrs(), func(a netip.Addr) bool { return !anyContains(out, a) }) {
			continue // every address already in the policy's ranges
		}
		for _, pool := range g.Pool {
			if !slices.Contains(out, pool.Masked()) {
				out = append(out, pool.Masked())
			}
		}
	}
	// Drop prefixes inside others.
	var kept []netip.Prefix
	for i, p := range out {
		inside := false
		for j, q := range out {
			if i != j && q.Bits() < p.Bits() && q.Contains(p.Addr()) {
				inside = true
			}
		}
		if !inside {
			kept = append(kept, p)
		}
	}
	return kept
}

func anyContains(ps []netip.Prefix, a netip.Addr) bool {
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// ruleYAML writes rules as they would stand under rules: in a policy file.
func ruleYAML(rules ...policy.Rule) string {
	b, err := (&policy.Policy{Rules: rules}).Marshal()
	if err != nil {
		return fmt.Sprintf("# cannot write the rule: %v\n", err)
	}
	s, _ := strings.CutPrefix(string(b), "rules:\n")
	return s
}

// ruleByName returns the policy's rule of that name, or nil (the implicit
// default rule, a name from a record).
func (e *env) ruleByName(name string) *policy.Rule {
	for i := range e.pol.Rules {
		if e.pol.Rules[i].Name == name {
			return &e.pol.Rules[i]
		}
	}
	return nil
}

// ruleRef names a rule for a person: `rule "block-quic" (line 7)`.
func (e *env) ruleRef(name string) string {
	if r := e.ruleByName(name); r != nil {
		if r.Line > 0 {
			return fmt.Sprintf("rule %q (line %d)", name, r.Line)
		}
		return fmt.Sprintf("rule %q", name)
	}
	if name == policy.DefaultRuleName {
		return fmt.Sprintf("the default action (%s)", e.pol.Default().Action)
	}
	return fmt.Sprintf("rule %q", name)
}

// before says where a new rule goes: before the rule that took the session.
func (e *env) before(name string) string {
	if r := e.ruleByName(name); r != nil {
		return "before " + e.ruleRef(name)
	}
	return "at the end of the rules (before the default action)"
}

// freeName returns name, or name-2, name-3… if the policy already uses it.
func (e *env) freeName(name string) string {
	n := name
	for i := 2; e.ruleByName(n) != nil; i++ {
		n = fmt.Sprintf("%s-%d", name, i)
	}
	return n
}

// addRule advises a new rule placed before the rule named at.
func (e *env) addRule(why, at string, r policy.Rule) Advice {
	return Advice{Say: fmt.Sprintf("%s: add this rule %s", why, e.before(at)), YAML: ruleYAML(r)}
}

// changeRule advises a rule as it should read.
func (e *env) changeRule(why string, r policy.Rule) Advice {
	return Advice{Say: fmt.Sprintf("%s: change %s to read", why, e.ruleRef(r.Name)), YAML: ruleYAML(r)}
}

// rangesFor is the gateway ranges with g's pool added where they miss it.
func (e *env) rangesFor(g harness.GatewaySpec) []netip.Prefix {
	out := slices.Clone(e.ranges)
	for _, a := range g.Addrs() {
		if !anyContains(out, a) {
			for _, p := range g.Pool {
				if !slices.Contains(out, p.Masked()) {
					out = append(out, p.Masked())
				}
			}
			break
		}
	}
	return out
}

// The rules advice proposes for gateway g, named as the catalogue names
// them.
func (e *env) allowDTLSRule(g harness.GatewaySpec) policy.Rule {
	return policy.Rule{Name: e.freeName("allow-dtls-to-sse"), Action: policy.ActionAllow,
		Match: policy.Match{Proto: policy.ProtoUDP, Port: []policy.PortRange{policy.Port(443)}, Dst: e.rangesFor(g)}}
}

func (e *env) noDecryptRule(g harness.GatewaySpec) policy.Rule {
	return policy.Rule{Name: e.freeName("no-decrypt-sse"), Action: policy.ActionNoDecrypt,
		Match: policy.Match{Proto: policy.ProtoTCP, Port: []policy.PortRange{policy.Port(443)}, Dst: e.rangesFor(g)}}
}

// withRanges returns r with the gateway ranges as its destinations, in
// place of addresses and FQDN objects that miss gateways.
func (e *env) withRanges(r policy.Rule) policy.Rule {
	r.Match.Dst, r.Match.DstFQDN = slices.Clone(e.ranges), nil
	return r
}

// describeRecord says what the firewall did with a session, for Details.
func (e *env) describeRecord(r fwlog.Record) string {
	s := fmt.Sprintf("%s/%d to %s: %s, %s", r.Proto, r.Dst.Port(), r.Dst.Addr(), orDash(string(r.App)), e.ruleRef(r.Rule))
	if d := r.Decryption; d != nil {
		s += ", " + string(d.Outcome)
		if d.Cause != "" {
			s += fmt.Sprintf(" (%s on %s)", d.Cause, d.Leg)
		}
	} else {
		s += ", " + string(r.Action)
	}
	return s
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// uniq keeps the first of equal strings.
func uniq(xs []string) []string {
	var out []string
	for _, x := range xs {
		if !slices.Contains(out, x) {
			out = append(out, x)
		}
	}
	return out
}
