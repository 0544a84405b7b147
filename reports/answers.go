package reports

import (
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"

	"github.com/pinwall/pinwall/gateway"
	"github.com/pinwall/pinwall/mitm/fwlog"
	"github.com/pinwall/pinwall/scenarios"
)

// question is one of the three questions users bring, answered from the
// results of this run. Points are evidence, each naming the run it comes
// from; Missing names the scenarios the answer needed and the run lacked.
// Text uses `backticks` for names and addresses (code in both renderings).
type question struct {
	N       int
	Title   string
	Answer  string
	Points  []string
	Missing []string
	// Absent lists scenarios that would add to the answer but were not run.
	Absent []string
	// TableHead and Table are an optional table of the runs behind the
	// answer, one row per run.
	TableHead []string
	Table     [][]string
}

// evidence finds results by scenario id and role.
type evidence struct {
	results []scenarios.Result
}

// of returns the results of id (and role, when not empty), in order.
func (e evidence) of(id string, v scenarios.Role) []*scenarios.Result {
	var out []*scenarios.Result
	for i := range e.results {
		r := &e.results[i]
		if r.ID == id && (v == "" || r.Role == v) {
			out = append(out, r)
		}
	}
	return out
}

// usable returns the results of id in role v that produced an observation
// (pass or fail) and notes in *notes the ones that did not.
func (e evidence) usable(id string, v scenarios.Role, notes *[]string) []*scenarios.Result {
	var out []*scenarios.Result
	for _, r := range e.of(id, v) {
		switch r.Verdict {
		case scenarios.Pass, scenarios.Fail:
			out = append(out, r)
		default:
			*notes = append(*notes, fmt.Sprintf("`%s` did not complete (%s: %s), so it adds nothing here.", r.Key(), r.Verdict, orDash(r.Error)))
		}
	}
	return out
}

func (e evidence) has(id string) bool { return len(e.of(id, "")) > 0 }

// caveat flags evidence from a run that did not match its expectation.
func caveat(r *scenarios.Result) string {
	if r.Verdict == scenarios.Fail {
		return " (this run did not match its expectation; see the verdict table)"
	}
	return ""
}

func answers(ss []*scenarios.Scenario, results []scenarios.Result) []question {
	e := evidence{results: results}
	return []question{q1(e), q2(e), q3(e, ss)}
}

// q1: what does the firewall log for a tunnelling laptop?
func q1(e evidence) question {
	q := question{N: 1, Title: "What does my perimeter firewall log when laptops run a tunnelling client?"}
	var notes []string
	vis := e.usable("visibility", "", &notes)
	for _, id := range []string{"udp-blocked", "steering-exceptions"} {
		if !e.has(id) {
			q.Absent = append(q.Absent, id)
		}
	}
	if len(vis) == 0 {
		q.Missing = []string{"visibility"}
		q.Answer = "Not measured in this run: the `visibility` scenario (no decryption, one laptop, many sites) is what answers this, and it did not run or did not complete."
		q.Points = notes
	} else {
		r := vis[0]
		f := newFacts(r)
		from := append(append([]fwlog.Record(nil), f.tunnel...), f.direct...)
		dsts := quoted(distinct(f.tunnel, func(x fwlog.Record) string { return addrLabel(r.Roles, x.Dst.Addr()) }))
		protos := quoted(distinct(f.tunnel, protoPort))
		apps := quoted(distinct(f.tunnel, func(x fwlog.Record) string { return string(x.App) }))
		flows := r.Observed.Flows.Attempted
		switch {
		case len(from) == 0:
			q.Answer = fmt.Sprintf("Nothing: in `%s` the firewall logged no session from the laptop%s.", r.Key(), caveat(r))
		case len(f.direct) == 0:
			q.Answer = fmt.Sprintf("Only the gateway. In `%s` the firewall logged %s from the laptop, all to %s on %s, application %s — for %s to %s, which only the gateway's log names%s.",
				r.Key(), plural(len(from), "session"), list(dsts), list(protos), list(apps), plural(flows, "inner flow"), plural(len(f.sites), "site"), caveat(r))
		default:
			others := quoted(distinct(f.direct, func(x fwlog.Record) string { return addrLabel(r.Roles, x.Dst.Addr()) }))
			q.Answer = fmt.Sprintf("Not only the gateway. In `%s` the firewall logged %s to the gateway (%s) but also %s to %s%s.",
				r.Key(), plural(len(f.tunnel), "session"), list(dsts), plural(len(f.direct), "session"), list(others), caveat(r))
		}
		q.Points = append(q.Points, fmt.Sprintf("Firewall log of `%s`: %s.", r.Key(), firewallSummary(f)))
		if snis := quoted(distinct(from, func(x fwlog.Record) string { return x.SNI })); len(snis) > 0 {
			nat := quoted(distinct(from, func(x fwlog.Record) string {
				if x.NATSrc.IsValid() {
					return x.NATSrc.Addr().String()
				}
				return ""
			}))
			p := "Server name (SNI) in the firewall log: " + list(snis)
			if len(nat) > 0 {
				p += "; sessions leave with the firewall's NAT address " + list(nat)
			}
			q.Points = append(q.Points, p+".")
		}
		if len(f.flows) > 0 {
			var clients []string
			for _, ev := range f.flows {
				if c, _, _ := strings.Cut(ev.Client, ":"); c != "" && !slices.Contains(clients, "`"+c+"`") {
					clients = append(clients, "`"+c+"`")
				}
			}
			q.Points = append(q.Points, fmt.Sprintf("Gateway log of `%s`: %s to %s; the gateway sees the client as %s.",
				r.Key(), plural(len(f.flows), "flow event"), list(quoted(f.sites)), list(clients)))
		} else {
			q.Points = append(q.Points, fmt.Sprintf("Gateway log of `%s`: no flow events (%s).", r.Key(), gatewaySummary(f)))
		}
		if n := count(r.FirewallLog, func(x fwlog.Record) bool { return r.Roles.IsOrigin(x.Dst.Addr()) }); n == 0 {
			q.Points = append(q.Points, "No firewall session went to any site's address.")
		} else {
			q.Points = append(q.Points, fmt.Sprintf("%s went to a site's address.", plural(n, "firewall session")))
		}
		q.Points = append(q.Points, notes...)
	}
	notes = nil
	for _, r := range e.usable("udp-blocked", scenarios.WithoutFix, &notes) {
		f := newFacts(r)
		denied := count(f.tunnel, func(x fwlog.Record) bool { return x.Proto == fwlog.ProtoUDP && x.Action != fwlog.ActionAllow })
		tcp := distinct(f.tunnel, func(x fwlog.Record) string {
			if x.Proto != fwlog.ProtoTCP || x.Action != fwlog.ActionAllow {
				return ""
			}
			return fmt.Sprintf("%s application `%s` with SNI `%s`", protoPort(x), x.App, x.SNI)
		})
		p := fmt.Sprintf("With UDP/443 blocked (`%s`): %s denied", r.Key(), plural(denied, "UDP session"))
		if len(tcp) > 0 {
			p += ", then the tunnel as " + list(tcp)
		}
		q.Points = append(q.Points, p+" — still only the gateway"+caveat(r)+".")
	}
	for _, r := range e.usable("steering-exceptions", "", &notes) {
		f := newFacts(r)
		dsts := quoted(distinct(f.direct, func(x fwlog.Record) string { return addrLabel(r.Roles, x.Dst.Addr()) }))
		if len(dsts) > 0 {
			q.Points = append(q.Points, fmt.Sprintf("Flows the client does not steer (`%s`) do reach the firewall with their real destinations: %s (%s); the tunnelled sites still do not%s.",
				r.Key(), list(dsts), plural(len(f.direct), "session"), caveat(r)))
		}
	}
	q.Points = append(q.Points, notes...)
	return q
}

// q2: can the firewall decrypt the tunnel?
func q2(e evidence) question {
	q := question{N: 2, Title: `Can the firewall decrypt that tunnel ("double decryption")? Why not?`}
	var notes, clauses []string
	for _, id := range []string{"decrypt-pinned", "decrypt-mtls", "double-decrypt"} {
		if !e.has(id) {
			q.Missing = append(q.Missing, id)
		}
	}
	visible := false
	for i, r := range e.usable("decrypt-pinned", scenarios.WithoutFix, &notes) {
		f := newFacts(r)
		p := fmt.Sprintf("`%s`: %s", r.Key(), interception(f))
		if r.Observed.Flows.Direct > 0 {
			seen := quoted(distinct(f.direct, func(x fwlog.Record) string {
				if x.Outcome() == fwlog.OutcomeDecrypted {
					return orDash(x.SNI)
				}
				return ""
			}))
			p += fmt.Sprintf(" %d of %d flows went direct (fail-open)", r.Observed.Flows.Direct, r.Observed.Flows.Attempted)
			if len(seen) > 0 {
				p += "; the firewall decrypted them and now sees " + list(seen) + " — but the cloud gateway inspected none of it"
			}
			p += "."
		} else if r.Observed.Tunnel.State == "down" {
			p += fmt.Sprintf(" Nothing went direct: %d of %d flows verified (fail-close).", r.Observed.Flows.Verified, r.Observed.Flows.Attempted)
		}
		q.Points = append(q.Points, p+caveat(r))
		if i == 0 {
			clauses = append(clauses, "a client that pins its gateway's key aborts at the forged certificate ("+failureOrDash(r)+")")
		}
	}
	for _, r := range e.usable("decrypt-mtls", scenarios.WithoutFix, &notes) {
		f := newFacts(r)
		p := fmt.Sprintf("`%s`", r.Key())
		if r.Describe != "" {
			p += " (" + r.Describe + ")"
		}
		p += ": " + interception(f)
		if n := gateway.Refusals(r.GatewayLog); n > 0 {
			p += fmt.Sprintf(" The gateway logged %s%s.", plural(n, "tunnel refusal"), refusalNote(r))
		}
		if r.Observed.RecoveryMS > 0 {
			p += fmt.Sprintf(" Recovered after %d ms.", r.Observed.RecoveryMS)
		}
		q.Points = append(q.Points, p+caveat(r))
		if r.Observed.Failure != nil && len(clauses) < 2 {
			clauses = append(clauses, "the gateway refuses the firewall, which has no device certificate ("+failureOrDash(r)+")")
		}
	}
	for _, r := range e.usable("double-decrypt", scenarios.WithoutFix, &notes) {
		f := newFacts(r)
		dec := filter(f.tunnel, func(x fwlog.Record) bool { return x.Outcome() == fwlog.OutcomeDecrypted })
		apps := quoted(distinct(dec, func(x fwlog.Record) string { return string(x.App) }))
		origins := count(r.FirewallLog, func(x fwlog.Record) bool { return r.Roles.IsOrigin(x.Dst.Addr()) })
		p := fmt.Sprintf("`%s` (a client that neither pins nor presents a certificate): ", r.Key())
		switch {
		case len(dec) == 0:
			p += "the firewall decrypted no tunnel session. " + interception(f)
		default:
			p += fmt.Sprintf("the tunnel was %s with %s decrypted by `%s`; the firewall identified the application as %s",
				tunnelState(r), plural(len(dec), "session"), dec[0].Rule, list(apps))
			if a := dec[0].Decryption.ALPN; a != "" {
				p += fmt.Sprintf(" (ALPN `%s`)", a)
			}
			p += fmt.Sprintf(" and logged %s to any site, while the gateway carried %s to %s.",
				plural(origins, "session"), plural(len(f.flows), "flow"), plural(len(f.sites), "site"))
		}
		for _, fd := range r.Findings {
			if fd.ID == scenarios.FindingInterceptionAccepted {
				p += fmt.Sprintf(" Finding `%s` (%s).", fd.ID, fd.Severity)
			}
		}
		q.Points = append(q.Points, p+caveat(r))
		for _, x := range dec {
			if x.App == fwlog.AppWebBrowsing || x.App == fwlog.AppHTTP2 {
				visible = true
			}
		}
		if len(dec) > 0 && r.Observed.Tunnel.State == "up" {
			clauses = append(clauses, fmt.Sprintf("where decryption “worked” (an insecure client) the firewall saw only %s and %s",
				list(apps), map[bool]string{true: "no site", false: plural(origins, "site session")}[origins == 0]))
		}
	}
	for _, r := range e.usable("double-decrypt", scenarios.WithFix, &notes) {
		q.Points = append(q.Points, fmt.Sprintf("`%s` (the client pins and presents its device certificate): %s%s", r.Key(), interception(newFacts(r)), caveat(r)))
	}
	q.Points = append(q.Points, notes...)
	switch {
	case len(clauses) == 0:
		q.Answer = "Not measured in this run: `decrypt-pinned`, `decrypt-mtls` and `double-decrypt` answer this, and none of them produced a result."
	case visible:
		q.Answer = "Partly, in this run: " + strings.Join(clauses, "; ") + "."
	default:
		q.Answer = "No, not usefully: " + strings.Join(clauses, "; ") + ". The inner protocol is the tunnel's own multiplexing, which names no site to the firewall."
	}
	return q
}

// q3: which bypass rule fixes it, and is it correct and narrow?
func q3(e evidence, ss []*scenarios.Scenario) question {
	q := question{N: 3, Title: "Which bypass rule fixes it, and is my rule correct and narrow?",
		TableHead: []string{"run", "rule", "result", "why"}}
	byID := map[string]*scenarios.Scenario{}
	for _, s := range ss {
		byID[s.ID] = s
	}
	var notes, worked, tlsOnly, failed []string
	shapes := []string{"bypass-ip", "udp-blocked", "bypass-sni", "bypass-fqdn", "backup-gateway", "sni-spoof", "bypass-narrow"}
	for _, id := range shapes {
		if !e.has(id) {
			q.Missing = append(q.Missing, id)
		}
		for _, r := range e.usable(id, "", &notes) {
			f := newFacts(r)
			g, why := grade(f)
			switch g {
			case gradeWorks:
				worked = append(worked, "`"+r.Key()+"`")
			case gradeTLSOnly:
				tlsOnly = append(tlsOnly, "`"+r.Key()+"`")
			default:
				failed = append(failed, "`"+r.Key()+"`")
			}
			q.Table = append(q.Table, []string{"`" + r.Key() + "`", ruleText(byID[r.ID], r), string(g), why})
			p := fmt.Sprintf("`%s` — %s: %s.", r.Key(), g, outcome(*r))
			if rules := bySNI(f); rules != "" {
				p += " Tunnel sessions by name: " + rules + "."
			}
			if a := r.Observed.Attempts; a != nil && a.Total > 0 {
				p += fmt.Sprintf(" %d of %d tunnel attempts failed (%.0f%%).", a.Failed, a.Total, 100*a.Fraction())
				addrs := distinct(filter(f.tunnel, func(x fwlog.Record) bool { return x.Proto == fwlog.ProtoTCP }), func(x fwlog.Record) string { return x.Dst.Addr().String() })
				passed := distinct(filter(f.tunnel, func(x fwlog.Record) bool {
					return x.Proto == fwlog.ProtoTCP && x.Action == fwlog.ActionAllow
				}), func(x fwlog.Record) string { return x.Dst.Addr().String() })
				p += fmt.Sprintf(" The client used %s; sessions to %d of them passed.", plural(len(addrs), "gateway address"), len(passed))
			}
			for _, o := range f.others {
				p += fmt.Sprintf(" A session from `%s` naming `%s` to `%s`: %s.", orAddr(name(r.Roles, o.Src.Addr()), o.Src.Addr()), orDash(o.SNI), addrLabel(r.Roles, o.Dst.Addr()), verdictOn(o))
			}
			if fb := r.Observed.Tunnel.Fallback; fb != "" {
				p += fmt.Sprintf(" The client fell back to TLS (%s).", fb)
			}
			q.Points = append(q.Points, p+caveat(r))
		}
	}
	q.Points = append(q.Points, notes...)
	if len(q.Table) == 0 {
		q.TableHead = nil
	}
	var b strings.Builder
	b.WriteString(RecommendedFixText + " (`" + RecommendedPolicy + "`).")
	if n := len(worked) + len(tlsOnly) + len(failed); n > 0 {
		fmt.Fprintf(&b, " Of the %s measured here, ", plural(n, "rule"))
		var parts []string
		if len(worked) > 0 {
			parts = append(parts, fmt.Sprintf("%d kept the tunnel up and intact (%s)", len(worked), list(worked)))
		}
		if len(tlsOnly) > 0 {
			parts = append(parts, fmt.Sprintf("%d kept it up but over TLS only (UDP/443 still blocked: %s)", len(tlsOnly), list(tlsOnly)))
		}
		if len(failed) > 0 {
			parts = append(parts, fmt.Sprintf("%d failed (%s)", len(failed), list(failed)))
		}
		b.WriteString(list(parts) + ".")
	}
	if len(e.usable("bypass-ip", scenarios.WithFix, new([]string))) == 0 {
		b.WriteString(" The range rule itself was not measured in this run (`pinwall run bypass-ip`).")
	}
	q.Answer = b.String()
	return q
}

// ruleText describes the firewall rule of a run: the scenario's setting
// (without the fix) or fix, and the variant's description.
func ruleText(s *scenarios.Scenario, r *scenarios.Result) string {
	var t string
	if s != nil {
		t = s.Setting
		if r.Role == scenarios.WithFix && s.Fix != "" {
			t = "fix: " + s.Fix
		}
	}
	switch {
	case t == "":
		return orDash(r.Describe)
	case r.Describe != "":
		return t + " (" + r.Describe + ")"
	}
	return t
}

// ruleGrade is how a bypass rule fared.
type ruleGrade string

const (
	gradeWorks   ruleGrade = "works"
	gradeTLSOnly ruleGrade = "works over TLS only"
	gradeFails   ruleGrade = "fails"
)

// grade judges a bypass rule from what the run showed and says why, naming
// the most telling problem first: a spoofed name let through, failed
// tunnel attempts, gateway names decrypted, the failure, decrypted tunnel
// sessions. A tunnel that is up and intact with only UDP/443 blocked works
// over TLS only.
func grade(f *facts) (ruleGrade, string) {
	g, why := gradeOf(f)
	for i, o := range f.others {
		if i == maxDirect {
			break
		}
		why += fmt.Sprintf("; the session from `%s` naming `%s`: %s", orAddr(name(f.r.Roles, o.Src.Addr()), o.Src.Addr()), orDash(o.SNI), verdictOn(o))
	}
	return g, why
}

func gradeOf(f *facts) (ruleGrade, string) {
	r := f.r
	has := func(id scenarios.FindingID) bool {
		return slices.ContainsFunc(r.Findings, func(x scenarios.Finding) bool { return x.ID == id })
	}
	decrypted := quoted(distinct(f.tunnel, func(x fwlog.Record) string {
		if o := x.Outcome(); o == fwlog.OutcomeFailed || o == fwlog.OutcomeDecrypted {
			return x.SNI
		}
		return ""
	}))
	down := ""
	if r.Observed.Tunnel.State != "up" {
		down = "tunnel down"
		if r.Observed.Failure != nil {
			down += " (" + failureOrDash(r) + ")"
		}
		down += ": "
	}
	a := r.Observed.Attempts
	switch {
	case has(scenarios.FindingSNIRuleTooBroad):
		return gradeFails, down + "a session naming a gateway went undecrypted to an address that is not one"
	case has(scenarios.FindingBypassTooBroad):
		return gradeFails, down + "too broad: a host that is not a gateway, or a machine without the client, passed undecrypted"
	case a != nil && a.Failed > 0:
		return gradeFails, fmt.Sprintf("%s%d of %d tunnel attempts failed", down, a.Failed, a.Total)
	case len(decrypted) > 0 && (has(scenarios.FindingGatewayNameNotCovered) || has(scenarios.FindingInterceptionAccepted)):
		return gradeFails, down + "sessions naming " + list(decrypted) + " were decrypted"
	case r.Observed.Failure != nil:
		return gradeFails, "tunnel " + tunnelState(r) + ", " + failureOrDash(r)
	case has(scenarios.FindingTunnelIntercepted), has(scenarios.FindingPartialBypass), has(scenarios.FindingInterceptionAccepted):
		return gradeFails, down + "tunnel sessions were decrypted"
	case down != "":
		return gradeFails, "tunnel down"
	case has(scenarios.FindingDTLSBlocked):
		n := count(f.tunnel, func(x fwlog.Record) bool { return x.Proto == fwlog.ProtoUDP && x.Action != fwlog.ActionAllow })
		return gradeTLSOnly, fmt.Sprintf("%s to the gateway denied; tunnel %s", plural(n, "UDP/443 session"), tunnelState(r))
	}
	return gradeWorks, outcome(*r)
}

// interception says what decryption did to the tunnel's sessions and how
// the run ended.
func interception(f *facts) string {
	r := f.r
	var parts []string
	if rec := f.failing; rec != nil && rec.Decryption != nil {
		d := rec.Decryption
		parts = append(parts, fmt.Sprintf("decryption by `%s` failed on leg `%s` (%s): %s; end reason `%s`",
			rec.Rule, orDash(string(d.Leg)), orDash(string(d.Cause)), orDash(d.Reason), rec.EndReason))
		var stages []string
		for _, st := range []string{d.ClientStage, d.ServerStage} {
			if st != "" {
				stages = append(stages, "“"+st+"”")
			}
		}
		if len(stages) > 0 {
			parts = append(parts, "stages: "+strings.Join(stages, ", "))
		}
	}
	var outs []string
	for _, o := range []fwlog.Outcome{fwlog.OutcomeFailed, fwlog.OutcomeExcluded, fwlog.OutcomeNotDecrypted, fwlog.OutcomeDecrypted} {
		if n := count(f.tunnel, func(x fwlog.Record) bool { return x.Proto == fwlog.ProtoTCP && x.Outcome() == o }); n > 0 {
			outs = append(outs, fmt.Sprintf("%d %s", n, o))
		}
	}
	if len(outs) > 0 {
		parts = append(parts, "tunnel sessions: "+strings.Join(outs, ", "))
	}
	s := strings.Join(parts, "; ")
	if s != "" {
		s += ". "
	}
	s += "Tunnel " + tunnelState(r)
	if fo := r.Observed.Failure; fo != nil {
		s += fmt.Sprintf("; the run's failure: leg `%s`, cause `%s`", orDash(string(fo.Leg)), orDash(string(fo.Cause)))
	}
	return s + "."
}

func tunnelState(r *scenarios.Result) string {
	t := r.Observed.Tunnel
	s := orDash(t.State)
	if t.Transport != "" {
		s += " over " + t.Transport
	}
	return s
}

func failureOrDash(r *scenarios.Result) string {
	if fo := r.Observed.Failure; fo != nil {
		return fmt.Sprintf("`%s` / `%s`", orDash(string(fo.Leg)), orDash(string(fo.Cause)))
	}
	return "no failure"
}

// refusalNote describes the gateway's first refusal: who it refused and
// whether a certificate was presented.
func refusalNote(r *scenarios.Result) string {
	for _, e := range r.GatewayLog {
		if e.Event != gateway.EventTunnelRefused {
			continue
		}
		who, _, _ := strings.Cut(e.Client, ":")
		s := fmt.Sprintf(" (first: cause `%s`, from `%s`", orDash(string(e.Cause)), who)
		if n := name(r.Roles, parseAddr(who)); n != "" {
			s += ", the " + n
		}
		if e.Presented == nil {
			s += ", no certificate presented"
		}
		return s + ")"
	}
	return ""
}

// bySNI groups the laptop's TCP tunnel sessions by server name: "`a` →
// decryption failed by `decrypt-rest` ×2; `b` → not-decrypted by `x` ×1".
func bySNI(f *facts) string {
	type key struct{ sni, what, rule string }
	var keys []key
	n := map[key]int{}
	for _, x := range f.tunnel {
		if x.Proto != fwlog.ProtoTCP {
			continue
		}
		what := string(x.Action)
		if x.Decryption != nil {
			what = string(x.Decryption.Outcome)
			if x.Decryption.Outcome == fwlog.OutcomeFailed {
				what = "decryption failed"
			}
		}
		k := key{orDash(x.SNI), what, ruleName(x)}
		if n[k] == 0 {
			keys = append(keys, k)
		}
		n[k]++
	}
	sort.SliceStable(keys, func(i, j int) bool { return keys[i].sni < keys[j].sni })
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("`%s` → %s by `%s` ×%d", k.sni, k.what, k.rule, n[k])
	}
	return strings.Join(parts, "; ")
}

func parseAddr(s string) netip.Addr {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}
	}
	return a
}

func filter(recs []fwlog.Record, keep func(fwlog.Record) bool) []fwlog.Record {
	var out []fwlog.Record
	for _, r := range recs {
		if keep(r) {
			out = append(out, r)
		}
	}
	return out
}
