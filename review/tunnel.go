package review

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/pinwall/pinwall/client"
	"github.com/pinwall/pinwall/harness"
	"github.com/pinwall/pinwall/mitm/fwlog"
	"github.com/pinwall/pinwall/mitm/policy"
	"github.com/pinwall/pinwall/tunnel"
)

// flowsPerCheck is how many flows prove a tunnel that came up: each is
// verified by SHA-256 at both ends.
const flowsPerCheck = 3

func askDTLS(ctx context.Context, e *env) Answer {
	if e.base.Client.Transport == client.TransportTLS {
		return Answer{Level: OK, Summary: "not asked: the client is set to TLS only"}
	}
	return e.askTunnel(ctx, client.TransportDTLS, e.primary, e.primarySpec(client.TransportDTLS))
}

func askTLS(ctx context.Context, e *env) Answer {
	if e.base.Client.Transport == client.TransportDTLS {
		return Answer{Level: OK, Summary: "not asked: the client is set to DTLS only"}
	}
	return e.askTunnel(ctx, client.TransportTLS, e.primary, e.primarySpec(client.TransportTLS))
}

// primarySpec is the base topology with the client on the primary gateway
// only, over one transport.
func (e *env) primarySpec(mode client.TransportMode) harness.Spec {
	return e.with(func(s *harness.Spec) {
		s.Client.Transport = mode
		s.Client.Gateways = []string{e.primary.Name}
	})
}

// regionalPool holds the regional gateway's addresses (as in the
// bypass-sni scenario).
var regionalPool = netip.MustParsePrefix("203.0.113.40/30")

// regional is the gateway a tenant is assigned in another region: the
// primary's name with one label more ("gateway-acme.eu.sse.test", as in
// the bypass-sni scenario), which a one-label wildcard misses.
func (e *env) regional() harness.GatewaySpec {
	name := e.primary.Name
	if first, rest, ok := strings.Cut(name, "."); ok {
		name = first + ".eu." + rest
	} else {
		name += ".eu"
	}
	return harness.GatewaySpec{Name: name, Pool: []netip.Prefix{regionalPool}, Answer: 1, Rotate: true}
}

// askRegional brings the tunnel up to a regional gateway name, over the
// client's own transport. The client reviewed does not use that name, so a
// failure is a warning: it fails only once the tenant is moved there.
func askRegional(ctx context.Context, e *env) Answer {
	g := e.regional()
	spec := e.with(func(s *harness.Spec) {
		s.Gateways = append(slices.Clone(s.Gateways), g)
		s.Client.Gateways = []string{g.Name}
	})
	a := e.askTunnel(ctx, e.base.Client.Transport, g, spec)
	if a.Level == Problem && a.Err == nil {
		// The client here is not configured with this name: a tenant
		// moved to a regional gateway would be.
		a.Level = Warn
		a.Summary = "if the tenant is moved to a regional gateway name (one label more than the primary's), its tunnel fails: " + a.Summary
	}
	return a
}

// protoOf is the firewall's protocol for a transport.
func protoOf(mode client.TransportMode) fwlog.Proto {
	if mode == client.TransportDTLS {
		return fwlog.ProtoUDP
	}
	return fwlog.ProtoTCP
}

// askTunnel brings the tunnel up to the primary gateway over one
// transport. It is decided when the tunnel is up (then proven with
// flows), when every attempt the client makes at the primary has failed,
// or — for DTLS — when the firewall logs a deny for the tunnel's UDP/443
// and its policy denies every address of the gateway.
func (e *env) askTunnel(ctx context.Context, mode client.TransportMode, g harness.GatewaySpec, spec harness.Spec) Answer {
	l, err := e.start(ctx, spec, false)
	if err != nil {
		return Answer{Err: err}
	}
	defer l.close()
	gws := []string{g.Name}
	var denied *fwlog.Record
	l.resetRounds(0)
	err = l.until(ctx, func() bool {
		if upSince(l.topo.Client.History(), 0) != nil || l.givenUp(gws) {
			return true
		}
		if mode == client.TransportDTLS {
			denied = l.udpDenied(ctx, g.Name)
		}
		return denied != nil
	})
	if err != nil {
		return l.undecided(err)
	}
	h := l.topo.Client.History()
	up := upSince(h, 0)
	verified, why := 0, ""
	if up != nil {
		verified, why = l.flows(ctx, flowsPerCheck)
	}
	recs := l.finish()
	mine := l.tunnelRecords(recs, g.Name)
	var details []string
	for _, r := range mine {
		if mode == client.TransportAuto || r.Proto == protoOf(mode) {
			details = append(details, "the firewall logged "+e.describeRecord(r))
		}
	}
	details = uniq(details)
	if up == nil {
		return e.tunnelDown(l, mode, g, denied, mine, l.topo.Client.LastError(), details)
	}
	return e.tunnelUp(l, mode, g, *up, h, mine, verified, why, details)
}

// undecided is the answer of a question whose limit ran out.
func (l *lab) undecided(err error) Answer {
	var last string
	if h := l.topo.Client.History(); len(h) > 0 {
		t := h[len(h)-1]
		last = fmt.Sprintf("; the client's last event: %s %s %s %s", t.Event, t.Gateway, t.Transport, t.Error)
	}
	return Answer{Err: fmt.Errorf("no answer within %v%s: %w", l.e.limit, last, err)}
}

// udpDenied returns the firewall's deny record of the laptop's UDP/443 to
// gateway g when the policy denies UDP/443 to every address of g (one deny
// answers for them all, without waiting out the client's handshake
// timeout per address), else nil.
func (l *lab) udpDenied(ctx context.Context, g string) *fwlog.Record {
	var deny *fwlog.Record
	for _, r := range l.tunnelRecords(l.topo.Firewall.Records(), g) {
		if r.Proto == fwlog.ProtoUDP && r.Action == fwlog.ActionDeny {
			deny = &r
			break
		}
	}
	if deny == nil {
		return nil
	}
	eng := l.topo.Firewall.Engine()
	for _, a := range l.topo.Spec.Gateways {
		if a.Name != g {
			continue
		}
		for _, addr := range a.Addrs() {
			d := eng.Decide(ctx, policy.Session{Src: deny.Src, Dst: netip.AddrPortFrom(addr, deny.Dst.Port()), Proto: policy.ProtoUDP, App: policy.AppDTLS})
			if d.Action != policy.ActionBlock {
				return nil
			}
		}
	}
	return deny
}

// tunnelUp grades a tunnel that came up: OK when every flow was verified
// on the first attempt without decryption.
func (e *env) tunnelUp(l *lab, mode client.TransportMode, g harness.GatewaySpec, up client.Transition, h []client.Transition, recs []fwlog.Record, verified int, why string, details []string) Answer {
	a := Answer{Level: OK, Details: details}
	var carried *fwlog.Record
	for i := range recs {
		r := &recs[i]
		if r.Proto == protoOf(client.TransportMode(up.Transport)) && r.Dst.String() == up.Addr && r.Action == fwlog.ActionAllow && r.Outcome() != fwlog.OutcomeFailed {
			carried = r
		}
	}
	var failed []client.Transition
	for _, t := range h {
		if t.Event == client.EventUp {
			break
		}
		if t.Event == client.EventAttemptFailed && t.Transport == up.Transport {
			failed = append(failed, t)
		}
	}
	base := fmt.Sprintf("up over %s to %s (%s), %d/%d flows verified", up.Transport, up.Gateway, up.Addr, verified, flowsPerCheck)
	if carried != nil {
		base += "; carried by " + e.ruleRef(carried.Rule)
		if carried.Outcome() != "" {
			base += ", " + string(carried.Outcome())
		}
	}
	a.Summary = "survives: " + base
	switch {
	case verified < flowsPerCheck:
		a.Level = Problem
		a.Summary = fmt.Sprintf("the tunnel came up over %s but only %d/%d flows were verified: %s", up.Transport, verified, flowsPerCheck, why)
	case carried != nil && carried.Outcome() == fwlog.OutcomeDecrypted:
		a.Level = Warn
		a.Summary = "works through decryption: " + base + "; the client accepted the firewall's forged certificate (is pinning off?) and the firewall sees only the opaque multiplexed tunnel"
		a.Advice = append(a.Advice, e.addRule("Do not decrypt the tunnel", carried.Rule, e.noDecryptRule(g)))
	case len(failed) > 0:
		a.Level = Warn
		a.Summary = fmt.Sprintf("works only after %d failed attempt(s): %s; the first failed with %s", len(failed), base, failed[0].Cause)
		at := failedRule(recs, client.TransportMode(up.Transport))
		if ex := e.learning(at); ex != "" {
			a.Summary += "; " + ex
		}
		if drift := e.driftNote(l, recs); drift != "" {
			a.Summary += "; " + drift
		}
		a.Advice = append(a.Advice, e.fixTunnel(client.TransportMode(up.Transport), at, g, "Let every tunnel attempt through over "+strings.ToUpper(string(up.Transport))+", not only some"))
	case carried != nil && carried.Outcome() == fwlog.OutcomeExcluded:
		a.Level = Warn
		a.Summary = "works by exclusion: " + base + fmt.Sprintf("; %s would decrypt it and passes it only as an exclusion (the gateway asks for a client certificate)", e.ruleRef(carried.Rule))
		a.Advice = append(a.Advice, e.addRule("Say what you mean: do not decrypt the tunnel, whatever the gateway asks", carried.Rule, e.noDecryptRule(g)))
	}
	return a
}

// shortDuration writes d without zero trailing units: 12h, 1h30m, 30s.
func shortDuration(d time.Duration) string {
	s := d.String()
	s = strings.TrimSuffix(s, "m0s")
	if strings.HasSuffix(s, "h0") {
		s = strings.TrimSuffix(s, "0")
	}
	return s
}

// driftNote explains failed sessions to gateway addresses that an FQDN
// bypass rule's object did not hold, or "".
func (e *env) driftNote(l *lab, recs []fwlog.Record) string {
	rules := e.fqdnRules()
	if len(rules) == 0 {
		return ""
	}
	snap := l.topo.Firewall.Engine().FQDNSnapshot()
	var missed []string
	for _, r := range recs {
		if r.Outcome() != fwlog.OutcomeFailed && r.Action == fwlog.ActionAllow || r.Rule == rules[0].Name {
			continue
		}
		missed = append(missed, r.Dst.Addr().String())
	}
	if len(missed) == 0 {
		return ""
	}
	name := rules[0].Match.DstFQDN[0]
	return fmt.Sprintf("the FQDN object %s held %v, not %s (FQDN drift, see its answer)", name, snap[name].Addrs, strings.Join(uniq(missed), ", "))
}

// learning explains a rule that passes the tunnel only after a failure
// taught it to.
func (e *env) learning(rule string) string {
	r := e.ruleByName(rule)
	if r == nil || !r.Options.Learns() {
		return ""
	}
	ttl := r.Options.WithDefaults().ExclusionTTL
	return fmt.Sprintf("%s learned a decryption exclusion from the failure; the first tunnel after it expires (%s) fails again", e.ruleRef(rule), shortDuration(ttl))
}

// tunnelDown grades a tunnel that never came up.
func (e *env) tunnelDown(l *lab, mode client.TransportMode, g harness.GatewaySpec, denied *fwlog.Record, recs []fwlog.Record, lastErr error, details []string) Answer {
	a := Answer{Level: Problem, Details: details}
	at := policy.DefaultRuleName
	switch {
	case denied != nil:
		at = denied.Rule
		a.Summary = fmt.Sprintf("UDP/443 to %s denied by %s", g.Name, e.ruleRef(denied.Rule))
	default:
		var failed *fwlog.Record
		for i := range recs {
			if recs[i].Proto == protoOf(mode) {
				failed = &recs[i]
			}
		}
		over := " " + strings.ToUpper(string(mode))
		if mode == client.TransportAuto {
			over = ""
		}
		a.Summary = fmt.Sprintf("no%s tunnel to %s", over, g.Name)
		if failed != nil {
			at = failed.Rule
			a.Summary += "; the firewall: " + e.describeRecord(*failed)
		}
		if lastErr != nil {
			a.Summary += "; the client: " + lastErr.Error()
		}
		if drift := e.driftNote(l, recs); drift != "" {
			a.Summary += "; " + drift
		}
	}
	a.Advice = append(a.Advice, e.fixTunnel(protoMode(mode), at, g, "Let the tunnel through over "+strings.ToUpper(string(protoMode(mode)))))
	return a
}

// protoMode is the transport whose sessions decide a mode's outcome: TLS
// for auto (its last step), else the mode itself.
func protoMode(mode client.TransportMode) client.TransportMode {
	if mode == client.TransportAuto {
		return client.TransportTLS
	}
	return mode
}

// fixTunnel advises how to let the tunnel's transport to gateway g through
// where rule at stopped (or decrypted) it: change the policy's own bypass
// rule for the gateways if it has one before at, else add one before at.
func (e *env) fixTunnel(mode client.TransportMode, at string, g harness.GatewaySpec, why string) Advice {
	for _, r := range e.pol.Rules {
		if r.Name == at {
			break
		}
		if e.aimed(r) && carries(r.Match, mode) {
			return e.changeRule(why+" (it misses "+g.Name+")", e.coverGateway(r, g))
		}
	}
	if mode == client.TransportDTLS {
		return e.addRule(why+" (allow UDP/443 to the gateway ranges)", at, e.allowDTLSRule(g))
	}
	return e.addRule(why+" (do not decrypt TCP/443 to the gateway ranges)", at, e.noDecryptRule(g))
}

// carries reports whether a match can take the tunnel's sessions over
// mode's transport: its protocol, and its applications if it names any
// (ssl for TLS, dtls for DTLS).
func carries(m policy.Match, mode client.TransportMode) bool {
	p := protoOf(mode)
	if m.Proto != "" && m.Proto != policy.ProtoAny && string(m.Proto) != string(p) {
		return false
	}
	if len(m.App) == 0 {
		return true
	}
	app := policy.AppSSL
	if p == fwlog.ProtoUDP {
		app = policy.AppDTLS
	}
	return slices.Contains(m.App, app)
}

// aimed reports whether r is a bypass meant for the gateways: it permits,
// and its match names a gateway by SNI, address or FQDN object.
func (e *env) aimed(r policy.Rule) bool {
	if r.Action != policy.ActionAllow && r.Action != policy.ActionNoDecrypt {
		return false
	}
	for _, g := range append(slices.Clone(e.base.Gateways), e.regional()) {
		for _, p := range r.Match.SNI {
			if p.Match(g.Name) || sameParent(string(p), g.Name) {
				return true
			}
		}
		for _, d := range r.Match.Dst {
			if slices.ContainsFunc(g.Addrs(), d.Contains) {
				return true
			}
		}
		for _, o := range r.Match.DstFQDN {
			if obj, ok := e.pol.Objects.FQDN[o]; ok && strings.EqualFold(obj.FQDN, g.Name) {
				return true
			}
		}
	}
	return false
}

// sameParent reports whether pattern and name share the parent domain
// (a bypass written for the gateways' domain that misses one of them).
func sameParent(pattern, name string) bool {
	_, pp, ok1 := strings.Cut(pattern, ".")
	_, np, ok2 := strings.Cut(name, ".")
	return ok1 && ok2 && strings.EqualFold(pp, np) && strings.Contains(pp, ".")
}

// askFailover brings the tunnel up (on the primary when it can), proves it,
// stops the primary gateway and waits for the client on the backup.
func askFailover(ctx context.Context, e *env) Answer {
	if e.primary.Name == e.backup.Name {
		return Answer{Level: OK, Summary: "not asked: the client has one gateway"}
	}
	l, err := e.start(ctx, e.with(func(*harness.Spec) {}), false)
	if err != nil {
		return Answer{Err: err}
	}
	defer l.close()
	c := l.topo.Client
	all := c.Config().Gateways
	l.resetRounds(0)
	if err := l.until(ctx, func() bool { return upSince(c.History(), 0) != nil || l.givenUp(all) }); err != nil {
		return l.undecided(err)
	}
	first := upSince(c.History(), 0)
	if first == nil {
		recs := l.finish()
		return Answer{Level: Problem, Summary: "no gateway takes the tunnel, the backup " + e.backup.Name + " neither",
			Details: e.recordLines(l, recs, e.backup.Name), Advice: e.fixBackup(ctx, l, recs)}
	}
	mark := 0
	var primaryUp *client.Transition
	if first.Gateway == e.primary.Name {
		primaryUp = first
		if n, why := l.flows(ctx, 2); n < 2 {
			l.finish()
			return Answer{Level: Problem, Summary: "the tunnel came up on the primary but its flows failed: " + why}
		}
		mark = len(c.History())
		l.resetRounds(mark)
		if err := l.topo.Apply(ctx, harness.Event{Do: harness.EventGatewayDown, Target: e.primary.Name}); err != nil {
			return Answer{Err: err}
		}
		err := l.until(ctx, func() bool {
			up := upSince(c.History(), mark)
			return up != nil && up.Gateway == e.backup.Name || l.givenUp([]string{e.backup.Name})
		})
		if err != nil {
			return l.undecided(err)
		}
	}
	onBackup := upSince(c.History(), mark)
	if onBackup == nil || onBackup.Gateway != e.backup.Name {
		recs := l.finish()
		return Answer{Level: Problem, Summary: fmt.Sprintf("the primary went down and the client did not come up on the backup %s: %v", e.backup.Name, c.LastError()),
			Details: e.recordLines(l, recs, e.backup.Name), Advice: e.fixBackup(ctx, l, recs)}
	}
	n, why := l.flows(ctx, 2)
	recs := l.finish()
	a := Answer{Level: OK, Details: e.recordLines(l, recs, e.backup.Name)}
	switch {
	case n < 2:
		a.Level, a.Summary = Problem, "the client came up on the backup but its flows failed: "+why
	case primaryUp == nil:
		a.Summary = fmt.Sprintf("the backup %s takes the tunnel over %s (the primary does not: see the answers above)", e.backup.Name, onBackup.Transport)
	default:
		a.Summary = fmt.Sprintf("survives: the primary went down, the client came up on the backup %s over %s, %d/2 flows verified", e.backup.Name, onBackup.Transport, n)
		if f := attempts(c.History(), mark, c.Config().Transport)[e.backup.Name]; f > 0 {
			at := failedRule(l.tunnelRecords(recs, e.backup.Name), client.TransportMode(onBackup.Transport))
			a.Level = Warn
			a.Summary = fmt.Sprintf("works only after %d failed attempt(s) at the backup: the primary went down, the client came up on the backup %s over %s", f, e.backup.Name, onBackup.Transport)
			if ex := e.learning(at); ex != "" {
				a.Summary += "; " + ex
			}
			a.Advice = append(a.Advice, e.fixBackupTransport(ctx, l, client.TransportMode(onBackup.Transport), at))
			break
		}
		if primaryUp.Transport == tunnel.TransportDTLS && onBackup.Transport == tunnel.TransportTLS {
			a.Level = Warn
			a.Summary = fmt.Sprintf("works over TLS only on the backup: DTLS worked to the primary, but the client reached the backup %s over TLS: its UDP/443 does not pass", e.backup.Name)
			a.Advice = append(a.Advice, e.fixBackupTransport(ctx, l, client.TransportDTLS, failedRule(l.tunnelRecords(recs, e.backup.Name), client.TransportDTLS)))
		}
	}
	return a
}

// recordLines describes the firewall's records of the tunnel to gateway g.
func (e *env) recordLines(l *lab, recs []fwlog.Record, g string) []string {
	var out []string
	for _, r := range l.tunnelRecords(recs, g) {
		out = append(out, "the firewall logged "+e.describeRecord(r))
	}
	return uniq(out)
}

// fixBackup advises, for each of the tunnel's protocols whose sessions to
// the backup failed, how to let them through.
func (e *env) fixBackup(ctx context.Context, l *lab, recs []fwlog.Record) []Advice {
	var out []Advice
	for _, mode := range []client.TransportMode{client.TransportDTLS, client.TransportTLS} {
		if m := e.base.Client.Transport; m != client.TransportAuto && m != mode {
			continue
		}
		if at := failedRule(l.tunnelRecords(recs, e.backup.Name), mode); at != "" {
			out = append(out, e.fixBackupTransport(ctx, l, mode, at))
		}
	}
	return out
}

// failedRule is the rule of the first session of mode's protocol among
// recs that was denied or failed, or "".
func failedRule(recs []fwlog.Record, mode client.TransportMode) string {
	for _, r := range recs {
		if r.Proto == protoOf(mode) && (r.Action != fwlog.ActionAllow || r.Outcome() == fwlog.OutcomeFailed) {
			return r.Rule
		}
	}
	return ""
}

// fixBackupTransport advises how to let mode's sessions to the backup
// through where rule at stopped them: extend the bypass rule the firewall
// takes the primary's sessions with, or add one.
func (e *env) fixBackupTransport(ctx context.Context, l *lab, mode client.TransportMode, at string) Advice {
	why := fmt.Sprintf("Let the tunnel to the backup %s through over %s", e.backup.Name, strings.ToUpper(string(mode)))
	s := policy.Session{Src: netip.AddrPortFrom(e.base.Laptop, 50000), Dst: netip.AddrPortFrom(e.primary.Addrs()[0], 443), Proto: policy.ProtoUDP, App: policy.AppDTLS}
	if mode != client.TransportDTLS {
		s.Proto, s.SNI, s.HasSNI, s.App = policy.ProtoTCP, e.primary.Name, true, policy.AppSSL
	}
	d := l.topo.Firewall.Engine().Decide(ctx, s)
	if rule := e.ruleByName(d.RuleName); rule != nil && e.aimed(*rule) {
		return e.changeRule(why+", as the primary's passes "+e.ruleRef(rule.Name), e.coverGateway(*rule, e.backup))
	}
	return e.fixTunnel(mode, at, e.backup, why)
}

// coverGateway returns rule amended to match gateway g's sessions as well:
// g's name among the SNI patterns, the gateway ranges (with g's) as
// destinations in place of addresses and FQDN objects that miss it.
func (e *env) coverGateway(r policy.Rule, g harness.GatewaySpec) policy.Rule {
	if len(r.Match.SNI) > 0 && !slices.ContainsFunc(r.Match.SNI, func(p policy.SNIPattern) bool { return p.Match(g.Name) }) {
		r.Match.SNI = append(slices.Clone(r.Match.SNI), policy.SNIPattern(g.Name))
	}
	if len(r.Match.Dst) > 0 || len(r.Match.DstFQDN) > 0 {
		covered := len(r.Match.DstFQDN) == 0
		for _, a := range g.Addrs() {
			covered = covered && anyContains(r.Match.Dst, a)
		}
		if !covered {
			r.Match.Dst, r.Match.DstFQDN = e.rangesFor(g), nil
		}
	}
	return r
}
