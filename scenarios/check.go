package scenarios

import (
	"fmt"
	"slices"
	"strings"

	"github.com/pinwall/pinwall/gateway"
	"github.com/pinwall/pinwall/harness"
	"github.com/pinwall/pinwall/mitm/fwlog"
)

// evaluate checks every expectation against what was observed.
func evaluate(e Expect, obs *harness.Observation, o Observed, fs []Finding) []Check {
	var cs []Check
	add := func(name, expected, observed string, pass bool) {
		cs = append(cs, Check{Name: name, Expected: expected, Observed: observed, Pass: pass})
	}
	if t := e.Tunnel; t != nil {
		if t.State != "" {
			add("tunnel state", string(t.State), o.Tunnel.State, string(t.State) == o.Tunnel.State)
		}
		if t.Transport != "" {
			got := o.Tunnel.Transport
			if got == "" {
				got = "none"
			}
			add("tunnel transport", string(t.Transport), got, string(t.Transport) == got)
		}
		if t.Gateway != "" {
			add("tunnel gateway", t.Gateway, o.Tunnel.Gateway, t.Gateway == o.Tunnel.Gateway)
		}
		if t.Fallback != "" {
			got := o.Tunnel.Fallback
			if got == "" {
				got = "none"
			}
			add("fallback to TLS", string(t.Fallback), got, string(t.Fallback) == got)
		}
	}
	if f := e.Flows; f != nil {
		total := o.Flows.Attempted
		for _, c := range []struct {
			name string
			want Count
			got  int
		}{
			{"flows completed", f.Completed, o.Flows.Completed},
			{"flows verified (SHA-256 at both ends)", f.Verified, o.Flows.Verified},
			{"flows through the tunnel", f.Tunnelled, o.Flows.Tunnelled},
			{"flows sent direct", f.Direct, o.Flows.Direct},
		} {
			if !c.want.IsZero() {
				add(c.name, c.want.String()+" of "+fmt.Sprint(total), fmt.Sprintf("%d of %d", c.got, total), c.want.Holds(c.got, total))
			}
		}
		if f.Lost != "" {
			add(lostCheck(f.Lost, o.Flows.Lost))
		}
	}
	if f := e.Failure; f != nil {
		add(failureCheck(*f, o.Failure))
	}
	if a := e.Attempts; a != nil {
		st := harness.AttemptStats{}
		if o.Attempts != nil {
			st = *o.Attempts
		}
		if !a.Failed.IsZero() {
			add("tunnel attempts that failed", a.Failed.String()+" of "+fmt.Sprint(st.Total), fmt.Sprintf("%d of %d", st.Failed, st.Total), a.Failed.Holds(st.Failed, st.Total))
		}
		if !a.FailedFraction.IsZero() {
			add("fraction of tunnel attempts decrypted and failed", a.FailedFraction.String(), fmt.Sprintf("%.2f (%d of %d)", st.Fraction(), st.Failed, st.Total), a.FailedFraction.Holds(st.Fraction()))
		}
	}
	for _, fc := range e.Firewall {
		cs = append(cs, checkFirewall(fc, obs))
	}
	for _, gc := range e.Gateway {
		cs = append(cs, checkGateway(gc, obs))
	}
	var raised []string
	for _, f := range fs {
		raised = append(raised, string(f.ID))
	}
	for _, id := range e.Findings {
		add("finding "+string(id)+" raised", "raised", list(raised), slices.Contains(raised, string(id)))
	}
	for _, id := range e.NoFindings {
		add("finding "+string(id)+" not raised", "not raised", list(raised), !slices.Contains(raised, string(id)))
	}
	return cs
}

func orAny(s string) string {
	if s == "" {
		return "any"
	}
	return s
}

func list(xs []string) string {
	if len(xs) == 0 {
		return "none"
	}
	return strings.Join(xs, ", ")
}

func checkFirewall(fc FirewallCheck, obs *harness.Observation) Check {
	c := Check{Name: "firewall: " + fc.Name}
	want := fc.Count
	if want.IsZero() {
		want = MustCount(">=1")
	}
	var sel []fwlog.Record
	for _, r := range obs.Firewall {
		ok, err := fc.Where.matches(obs.Roles, r)
		if err != nil {
			c.Expected, c.Observed = describeFilter(fc.Where), err.Error()
			return c
		}
		if ok {
			sel = append(sel, r)
		}
	}
	c.Expected = fmt.Sprintf("%s record(s) %s", want, describeFilter(fc.Where))
	c.Observed = fmt.Sprintf("%d of %d record(s)", len(sel), len(obs.Firewall))
	if !want.Holds(len(sel), len(obs.Firewall)) {
		return c
	}
	check := func(label string, e RecordExpect, rs []fwlog.Record) bool {
		if e.isZero() {
			return true
		}
		c.Expected += "; " + label + " " + describeRecordExpect(e)
		for _, r := range rs {
			if msg := e.mismatch(obs.Roles, r); msg != "" {
				c.Observed += fmt.Sprintf("; session %d: %s", r.SessionID, msg)
				return false
			}
		}
		return true
	}
	pass := check("each", fc.Each, sel)
	if len(sel) > 0 {
		pass = check("first", fc.First, sel[:1]) && pass
		pass = check("last", fc.Last, sel[len(sel)-1:]) && pass
	} else if !fc.First.isZero() || !fc.Last.isZero() {
		pass = false
	}
	c.Pass = pass
	return c
}

func (f RecordFilter) matches(roles harness.Roles, r fwlog.Record) (bool, error) {
	if f.Proto != "" && string(f.Proto) != string(r.Proto) {
		return false, nil
	}
	if ok, err := f.Src.Matches(roles, r.Src.Addr()); err != nil || !ok {
		return false, err
	}
	if ok, err := f.Dst.Matches(roles, r.Dst.Addr()); err != nil || !ok {
		return false, err
	}
	if f.SNI != "" && f.SNI != r.SNI {
		return false, nil
	}
	if f.Rule != "" && f.Rule != r.Rule {
		return false, nil
	}
	if f.App != "" && string(f.App) != string(r.App) {
		return false, nil
	}
	if f.Outcome != "" && string(f.Outcome) != outcomeOf(r) {
		return false, nil
	}
	return true, nil
}

func outcomeOf(r fwlog.Record) string {
	if r.Decryption == nil {
		return "none"
	}
	return string(r.Decryption.Outcome)
}

func describeFilter(f RecordFilter) string {
	var parts []string
	add := func(k, v string) {
		if v != "" {
			parts = append(parts, k+"="+v)
		}
	}
	add("proto", string(f.Proto))
	add("src", string(f.Src))
	add("dst", string(f.Dst))
	add("sni", f.SNI)
	add("rule", f.Rule)
	add("app", string(f.App))
	add("outcome", string(f.Outcome))
	if len(parts) == 0 {
		return "(any)"
	}
	return "where " + strings.Join(parts, " ")
}

func describeRecordExpect(e RecordExpect) string {
	var parts []string
	add := func(k, v string) {
		if v != "" {
			parts = append(parts, k+"="+v)
		}
	}
	add("app", string(e.App))
	add("action", string(e.Action))
	add("rule", e.Rule)
	add("outcome", string(e.Outcome))
	add("leg", string(e.Leg))
	add("cause", string(e.Cause))
	add("end-reason", string(e.EndReason))
	add("sni", e.SNI)
	add("dst", string(e.Dst))
	add("nat-src", string(e.NATSrc))
	if e.Fingerprints {
		parts = append(parts, "both certificate fingerprints")
	}
	return strings.Join(parts, " ")
}

// mismatch returns "" when r meets e, else what differs.
func (e RecordExpect) mismatch(roles harness.Roles, r fwlog.Record) string {
	var diffs []string
	cmp := func(name, want, got string) {
		if want != "" && want != got {
			diffs = append(diffs, fmt.Sprintf("%s %s (want %s)", name, orNone(got), want))
		}
	}
	cmp("app", string(e.App), string(r.App))
	cmp("action", string(e.Action), string(r.Action))
	cmp("rule", e.Rule, r.Rule)
	cmp("outcome", string(e.Outcome), outcomeOf(r))
	var leg, cause string
	if r.Decryption != nil {
		leg, cause = string(r.Decryption.Leg), string(r.Decryption.Cause)
	}
	cmp("leg", string(e.Leg), leg)
	cmp("cause", string(e.Cause), cause)
	cmp("end-reason", string(e.EndReason), string(r.EndReason))
	cmp("sni", e.SNI, r.SNI)
	if e.Dst != "" {
		if ok, err := e.Dst.Matches(roles, r.Dst.Addr()); err != nil || !ok {
			diffs = append(diffs, fmt.Sprintf("dst %s is not %s", r.Dst, e.Dst))
		}
	}
	if e.NATSrc != "" {
		if ok, err := e.NATSrc.Matches(roles, r.NATSrc.Addr()); err != nil || !ok {
			diffs = append(diffs, fmt.Sprintf("nat source %s is not %s", r.NATSrc, e.NATSrc))
		}
	}
	if e.Fingerprints && (r.Decryption == nil || r.Decryption.ForgedFingerprint == "" || r.Decryption.UpstreamFingerprint == "") {
		diffs = append(diffs, "missing certificate fingerprints")
	}
	return strings.Join(diffs, ", ")
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

func checkGateway(gc GatewayCheck, obs *harness.Observation) Check {
	c := Check{Name: "gateway: " + gc.Name}
	if gc.EveryDestination {
		want := map[string]bool{}
		for _, f := range obs.Flows {
			if f.Route == "tunnel" {
				want[f.Site] = true
			}
		}
		seen := map[string]bool{}
		for _, e := range obs.Gateway {
			if e.Event == gateway.EventFlow {
				seen[e.Host] = true
			}
		}
		var missing []string
		for s := range want {
			if !seen[s] {
				missing = append(missing, s)
			}
		}
		slices.Sort(missing)
		c.Expected = fmt.Sprintf("a flow event for each of the %d destinations the tunnel carried", len(want))
		c.Observed = fmt.Sprintf("%d destination(s) logged", len(seen))
		if len(missing) > 0 {
			c.Observed += "; missing " + strings.Join(missing, ", ")
		}
		c.Pass = len(missing) == 0 && len(want) > 0
		return c
	}
	want := gc.Count
	if want.IsZero() {
		want = MustCount(">=1")
	}
	var sel []gateway.Event
	for _, e := range obs.Gateway {
		ok, err := gc.Where.matches(obs.Roles, e)
		if err != nil {
			c.Observed = err.Error()
			return c
		}
		if ok {
			sel = append(sel, e)
		}
	}
	c.Expected = fmt.Sprintf("%s event(s) %s", want, describeEventFilter(gc.Where))
	c.Observed = fmt.Sprintf("%d of %d event(s)", len(sel), len(obs.Gateway))
	if !want.Holds(len(sel), len(obs.Gateway)) {
		return c
	}
	for _, e := range sel {
		if msg := gc.Each.mismatch(obs.Roles, e); msg != "" {
			c.Observed += "; " + e.Event + ": " + msg
			return c
		}
	}
	c.Pass = true
	return c
}

func (f EventFilter) matches(roles harness.Roles, e gateway.Event) (bool, error) {
	if f.Event != "" && string(f.Event) != e.Event {
		return false, nil
	}
	if f.Transport != "" && string(f.Transport) != e.Transport {
		return false, nil
	}
	if f.Host != "" && f.Host != e.Host {
		return false, nil
	}
	if f.Gateway != "" && f.Gateway != e.Gateway {
		return false, nil
	}
	if f.Client != "" {
		return f.Client.Matches(roles, clientAddr(e))
	}
	return true, nil
}

func describeEventFilter(f EventFilter) string {
	var parts []string
	for _, kv := range [][2]string{{"event", string(f.Event)}, {"transport", string(f.Transport)}, {"host", f.Host}, {"gateway", f.Gateway}, {"client", string(f.Client)}} {
		if kv[1] != "" {
			parts = append(parts, kv[0]+"="+kv[1])
		}
	}
	if len(parts) == 0 {
		return "(any)"
	}
	return "where " + strings.Join(parts, " ")
}

func (e EventExpect) mismatch(roles harness.Roles, ev gateway.Event) string {
	var diffs []string
	if e.Cause != "" && string(e.Cause) != string(ev.Cause) {
		diffs = append(diffs, fmt.Sprintf("cause %s (want %s)", orNone(string(ev.Cause)), e.Cause))
	}
	if e.Result != "" && e.Result != ev.Result {
		d := fmt.Sprintf("result %s (want %s)", orNone(ev.Result), e.Result)
		if ev.Error != "" {
			d += ": " + ev.Error
		}
		diffs = append(diffs, d)
	}
	if e.Transport != "" && string(e.Transport) != ev.Transport {
		diffs = append(diffs, fmt.Sprintf("transport %s (want %s)", ev.Transport, e.Transport))
	}
	if e.Client != "" {
		if ok, err := e.Client.Matches(roles, clientAddr(ev)); err != nil || !ok {
			diffs = append(diffs, fmt.Sprintf("client %s is not %s", ev.Client, e.Client))
		}
	}
	if e.Presented != nil && *e.Presented != (ev.Presented != nil) {
		diffs = append(diffs, fmt.Sprintf("presented certificate %v (want %v)", ev.Presented != nil, *e.Presented))
	}
	if e.Device && ev.Device == nil {
		diffs = append(diffs, "no device identity")
	}
	return strings.Join(diffs, ", ")
}

// failureCheck checks the run's failing leg and cause.
func failureCheck(f FailureExpect, o *FailureObserved) (name, expected, observed string, pass bool) {
	got := "none"
	if o != nil {
		got = fmt.Sprintf("leg %s, cause %s", o.Leg, o.Cause)
	}
	switch {
	case f.None:
		return "failure", "none", got, o == nil
	case len(f.OneOf) > 0:
		var want []string
		for _, lc := range f.OneOf {
			want = append(want, fmt.Sprintf("leg %s, cause %s", lc.Leg, lc.Cause))
			pass = pass || o != nil && string(lc.Leg) == string(o.Leg) && string(lc.Cause) == string(o.Cause)
		}
		return "failing leg and cause", "one of: " + strings.Join(want, "; "), got, pass
	}
	want := fmt.Sprintf("leg %s, cause %s", orAny(string(f.Leg)), orAny(string(f.Cause)))
	pass = o != nil && (f.Leg == "" || string(f.Leg) == string(o.Leg)) && (f.Cause == "" || string(f.Cause) == string(o.Cause))
	return "failing leg and cause", want, got, pass
}

// lostCheck checks the lost flows against a rule, naming each lost flow.
func lostCheck(rule LostRule, lost []LostFlow) (name, expected, observed string, pass bool) {
	name = "flows lost"
	expected = "none"
	if rule == LostInFlightOnly {
		expected = "only flows in flight on a tunnel when it went down"
	}
	pass = len(lost) == 0 || rule == LostInFlightOnly
	var parts []string
	for _, l := range lost {
		if !l.InFlight {
			pass = false
		}
		parts = append(parts, fmt.Sprintf("flow %d (%s): %s", l.Index, l.Site, l.Why))
	}
	observed = "none"
	if len(lost) > 0 {
		observed = fmt.Sprintf("%d lost: %s", len(lost), strings.Join(parts, "; "))
	}
	return name, expected, observed, pass
}
