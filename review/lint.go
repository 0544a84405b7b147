package review

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/pinwall/pinwall/mitm/policy"
	"github.com/pinwall/pinwall/resolve"
)

// askLint reads the policy without running it: policy.Lint's findings
// (shadowed rules, UDP decryption), and the bypass rules meant for the
// gateways that no session of the tunnel reaches — matched by nothing the
// tunnel sends, or taken first by an earlier rule.
func askLint(ctx context.Context, e *env) Answer {
	a := Answer{Level: OK}
	reported := map[string]bool{}
	for _, f := range e.pol.Lint() {
		a.Level = Warn
		reported[f.Rule] = true
		at := e.ruleRef(f.Rule)
		switch f.Kind {
		case policy.LintShadowed:
			a.Details = append(a.Details, fmt.Sprintf("%s is never reached: %s above it matches every session it would", at, e.ruleRef(f.By)))
			a.Advice = append(a.Advice, Advice{Say: fmt.Sprintf("Delete %s, or move it above %s if it should decide first", at, e.ruleRef(f.By))})
		case policy.LintUDPDecrypt:
			a.Details = append(a.Details, fmt.Sprintf("%s decrypts UDP, which the firewall never decrypts: the UDP it matches (DTLS, QUIC) is allowed undecrypted", at))
			if r := e.ruleByName(f.Rule); r != nil {
				fixed := *r
				fixed.Action, fixed.Options = policy.ActionAllow, policy.Options{Log: r.Options.Log}
				a.Advice = append(a.Advice, e.changeRule("Say what the rule does (or make it block, if UDP should not pass)", fixed))
			}
		}
	}
	for _, r := range e.pol.Rules {
		if r.Action == policy.ActionDecrypt && r.Options.ClientCert == policy.ClientCertBypass && len(r.Match.Dst) == 0 && len(r.Match.DstFQDN) == 0 {
			a.Level = Warn
			a.Details = append(a.Details, fmt.Sprintf("%s passes undecrypted every server that asks for a client certificate (client-cert bypass): the gateways, and any other server that does so, whatever its address", e.ruleRef(r.Name)))
			a.Advice = append(a.Advice, Advice{Say: fmt.Sprintf("Exempt the gateways by address instead (policies/bypass-gateways-from-endpoints.yaml), and let %s block or learn what asks for a client certificate", e.ruleRef(r.Name))})
		}
	}
	unreached, err := e.unreached(ctx, reported)
	if err != nil {
		return Answer{Err: err}
	}
	for _, u := range unreached {
		a.Level = Warn
		a.Details = append(a.Details, u.detail)
		a.Advice = append(a.Advice, u.advice)
	}
	if a.Level == OK {
		a.Summary = "no shadowed rule, no UDP decryption, no blanket client-certificate bypass, and every bypass rule meant for the gateways takes some of the tunnel's sessions"
	} else {
		a.Summary = fmt.Sprintf("%d rule(s) do not do what they say or exempt more than the gateways", len(a.Details))
	}
	if e.pol.DefaultAction == "" || e.pol.DefaultAction == policy.ActionAllow {
		a.Details = append(a.Details, "note: default-action is allow: a session no rule matches passes uninspected; this policy stands for the decryption rules, and the firewall's security policy decides what else passes")
	}
	return a
}

// tunnelSession is one session the tunnel sends: to each gateway address
// on port 443, over TCP with the gateway's name as SNI and over UDP (DTLS,
// whose SNI the firewall does not match).
type tunnelSession struct {
	gateway string
	s       policy.Session
}

func (e *env) tunnelSessions() []tunnelSession {
	src := netip.AddrPortFrom(e.base.Laptop, 50000)
	var out []tunnelSession
	for _, g := range e.base.Gateways {
		for _, a := range g.Addrs() {
			dst := netip.AddrPortFrom(a, 443)
			out = append(out,
				tunnelSession{g.Name, policy.Session{Src: src, Dst: dst, Proto: policy.ProtoTCP, SNI: g.Name, HasSNI: true, App: policy.AppSSL}},
				tunnelSession{g.Name, policy.Session{Src: src, Dst: dst, Proto: policy.ProtoUDP, App: policy.AppDTLS}})
		}
	}
	return out
}

type unreachedRule struct {
	detail string
	advice Advice
}

// unreached finds the bypass rules meant for the gateways that take none
// of the tunnel's sessions, skipping rules already reported.
func (e *env) unreached(ctx context.Context, reported map[string]bool) ([]unreachedRule, error) {
	// The firewall's view of the gateway names: every address (an FQDN
	// object naming a gateway holds its addresses).
	zone := &resolve.Zone{}
	for _, g := range e.base.Gateways {
		if err := zone.Add(resolve.Record{Name: g.Name, Addrs: g.Addrs()}); err != nil {
			return nil, err
		}
	}
	whole, err := policy.NewEngine(e.pol, policy.EngineConfig{Resolver: zone})
	if err != nil {
		return nil, err
	}
	sessions := e.tunnelSessions()
	first := map[string]string{} // session key -> rule taking it
	for _, ts := range sessions {
		first[key(ts.s)] = whole.Decide(ctx, ts.s).RuleName
	}
	var out []unreachedRule
	for _, r := range e.pol.Rules {
		if !e.aimed(r) || reported[r.Name] {
			continue
		}
		alone, err := policy.NewEngine(&policy.Policy{Rules: []policy.Rule{r}, Objects: e.pol.Objects, DefaultAction: policy.ActionBlock}, policy.EngineConfig{Resolver: zone})
		if err != nil {
			return nil, err
		}
		var matched, taken []string
		for _, ts := range sessions {
			if alone.Decide(ctx, ts.s).RuleName != r.Name {
				continue
			}
			matched = append(matched, key(ts.s))
			if first[key(ts.s)] == r.Name {
				taken = append(taken, key(ts.s))
			}
		}
		switch {
		case len(taken) > 0:
			continue
		case len(matched) > 0:
			var by []string
			for _, k := range matched {
				by = append(by, e.ruleRef(first[k]))
			}
			by = uniq(by)
			out = append(out, unreachedRule{
				detail: fmt.Sprintf("%s takes none of the tunnel's sessions: %s above it takes them first", e.ruleRef(r.Name), strings.Join(by, ", ")),
				advice: Advice{Say: fmt.Sprintf("Move %s above %s, or delete it", e.ruleRef(r.Name), strings.Join(by, ", "))},
			})
		default:
			fixed := e.tunnelShaped(r)
			out = append(out, unreachedRule{
				detail: fmt.Sprintf("%s names the gateways but matches nothing the tunnel sends: %s", e.ruleRef(r.Name), e.whyNoMatch(r)),
				advice: e.changeRule("Match the tunnel's sessions", fixed),
			})
		}
	}
	return out, nil
}

func key(s policy.Session) string { return string(s.Proto) + " " + s.Dst.String() }

// whyNoMatch says why a rule meant for the gateways matches none of the
// tunnel's sessions.
func (e *env) whyNoMatch(r policy.Rule) string {
	m := r.Match
	var why []string
	if m.Proto == policy.ProtoUDP && len(m.SNI) > 0 {
		why = append(why, "it names servers (sni) on UDP, but the firewall matches UDP by address and port only (a DTLS hello's SNI is logged, not matched)")
	}
	if len(m.Port) > 0 && !slices.ContainsFunc(m.Port, func(p policy.PortRange) bool { return p.Contains(443) }) {
		why = append(why, "the tunnel uses port 443, over TCP and UDP")
	}
	if len(m.Src) > 0 && !slices.ContainsFunc(m.Src, func(p netip.Prefix) bool { return p.Contains(e.base.Laptop) }) {
		why = append(why, fmt.Sprintf("its sources do not hold the laptop (%s)", e.base.Laptop))
	}
	if len(m.App) > 0 && !slices.Contains(m.App, policy.AppSSL) && !slices.Contains(m.App, policy.AppDTLS) {
		why = append(why, "the tunnel's sessions are applications ssl (TLS) and dtls (DTLS), which its app list leaves out")
	}
	if m.NoSNI && m.Proto == policy.ProtoTCP {
		why = append(why, "the tunnel's TLS hello always names the gateway (no-sni never holds)")
	}
	if len(why) == 0 {
		why = append(why, "its match holds for no gateway address and name on port 443")
	}
	return strings.Join(why, "; ")
}

// tunnelShaped returns r rewritten to match the tunnel's sessions of its
// protocol: port 443, the gateway ranges, SNI only over TCP.
func (e *env) tunnelShaped(r policy.Rule) policy.Rule {
	r = e.withRanges(r)
	r.Match.Port = []policy.PortRange{policy.Port(443)}
	r.Match.NoSNI = false
	if r.Match.Proto == policy.ProtoUDP {
		r.Match.SNI = nil
	}
	if len(r.Match.Src) > 0 && !slices.ContainsFunc(r.Match.Src, func(p netip.Prefix) bool { return p.Contains(e.base.Laptop) }) {
		r.Match.Src = nil
	}
	return r
}
