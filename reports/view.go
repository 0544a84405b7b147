package reports

import (
	"fmt"
	"html/template"
	"slices"
	"strings"
	"time"

	"github.com/pinwall/pinwall/gateway"
	"github.com/pinwall/pinwall/interceptors"
	"github.com/pinwall/pinwall/scenarios"
)

// maxRows bounds the log rows a report shows per run; the rest are in the
// bundle's logs directory.
const maxRows = 10

// intro opens every report: a simulation's evidence, to be read with the
// "What this is" section (frame.go) that follows.
const intro = "Evidence from pinwall, a simulation built of real software: what a TLS-intercepting firewall does to an " +
	"endpoint security client's tunnel to its cloud gateway. Read \"What this is\" first: it says what is real, what is " +
	"simulated, and what this report lets you conclude about your own firewall."

// view is everything a report template renders; templates compute nothing.
type view struct {
	Intro string
	// Frame is what a reader must know first (frame.go).
	Frame         []frameSection
	Meta          Meta
	When          string
	Command       string
	Passed, Total int
	Overall       string
	Counts        string
	Questions     []question
	Rows          []row
	Sections      []section
	Policies      []policyGroup
	Commands      []string
	// Provenance lists what produced the evidence, Signature how the
	// manifest is signed (nil: not signed), Captures the runs' packet
	// captures.
	Provenance [][2]string
	Signature  *Signature
	Captures   []captureRow
	// Firewalls is the side-by-side of pinwall's firewall and the
	// third-party tools, when the runs had more than one.
	Firewalls *firewallCompare
}

// captureRow is one run's capture in the appendix.
type captureRow struct {
	Key, File, KeyLog, Legs string
	Packets, KeyLines       int
}

// row is one line of the verdict table.
type row struct {
	Key, Anchor, Scenario, Variant string
	Outcome, Failure               string
	Findings                       int
	Verdict, Expected              string
}

// section is one scenario: its text, its runs and their comparison.
type section struct {
	ID, Anchor, Title, Summary, Explain, Setting, Fix string
	Sources                                           []string
	// Policies says which policy each run used and what it is.
	Policies     []string
	Runs         []runView
	CompareHeads []string
	Compare      []compareRow
}

// compareRow is one line of the without/with comparison: a label and one
// cell per run.
type compareRow struct {
	Label string
	Cells []string
}

// runView is one result as the report shows it.
type runView struct {
	Key, Anchor, Label, Describe string
	Verdict, Expected            string
	Outcome, Failure, Detail     string
	// Basis says which evidence the failing leg and cause rest on.
	Basis             string
	Error             string
	Started, Duration string
	Notes             []string
	Topo              topology
	TopoSVG           template.HTML
	SeqText           string
	SeqSVG            template.HTML
	FW                fwView
	GW                gwView
	Side              []sideRow
	Checks            []scenarios.Check
	Failed            int
	Findings          []scenarios.Finding
	Logs              string
	// MaxRows is how many log rows of each kind the report shows; Raw
	// counts the rows ("2 firewall sessions, 13 gateway events").
	MaxRows int
	Raw     string
	// Observed is false for a run that produced no observation (an error
	// before it started, an interruption): it has no logs to show.
	Observed bool
}

type fwView struct {
	Rows        []fwRow
	More, Total int
	Summary     string
}

type fwRow struct {
	Session, Start, Src, Dst, Proto, App, SNI, Rule, Action, Decryption, EndReason, Bytes string
	// SrcName and DstName name the addresses' roles ("laptop"), or "".
	SrcName, DstName string
	Kind             markKind
}

type gwView struct {
	Rows        []gwRow
	More, Total int
	Summary     string
}

type gwRow struct {
	Time, Event, Gateway, Transport, Client, Detail string
	// Who says who made the connection (see facts.who).
	Who string
	Bad bool
}

// sideRow pairs the i-th firewall record with the i-th gateway event, for
// the Markdown report's side-by-side table (the rows are not related).
type sideRow struct{ FW, GW string }

// policyGroup is one firewall policy and the runs that used it.
type policyGroup struct {
	Runs []string
	// Text ends in a newline, so that a code fence can follow it.
	Text string
	key  string
}

func buildView(meta Meta, ss []*scenarios.Scenario, results []scenarios.Result, dirs []string) view {
	v := view{Intro: intro, Meta: meta, Command: strings.Join(meta.CommandLine, " ")}
	v.When = when(meta.Started, meta.Ended)
	v.Passed, v.Total = Summary(results)
	switch {
	case v.Total == 0:
		v.Overall = "no runs"
	case v.Passed == v.Total:
		v.Overall = fmt.Sprintf("all %d runs as expected", v.Total)
	default:
		v.Overall = fmt.Sprintf("%d of %d runs as expected", v.Passed, v.Total)
	}
	v.Counts = verdictCounts(results)
	v.Firewalls = compareFirewalls(results)
	v.Questions = answers(ss, pinwallRuns(results))
	v.Frame = buildFrame(meta, ss, results)

	byID := map[string]*scenarios.Scenario{}
	var order []string
	for _, s := range ss {
		if _, dup := byID[s.ID]; !dup {
			byID[s.ID] = s
			order = append(order, s.ID)
		}
	}
	for _, r := range results {
		if !slices.Contains(order, r.ID) {
			order = append(order, r.ID)
		}
	}
	for _, r := range results {
		label := variantLabel(r)
		if r.Firewall != "" && r.Firewall != string(interceptors.Pinwall) {
			label += " on " + r.Firewall
		}
		v.Rows = append(v.Rows, row{Key: r.Key(), Anchor: anchor("r", r.Key()), Scenario: r.ID, Variant: label,
			Outcome: outcome(r), Failure: failureText(r), Findings: len(r.Findings), Verdict: string(r.Verdict), Expected: expectedText(r)})
	}
	for _, id := range order {
		sec := section{ID: id, Anchor: anchor("s", id)}
		if s := byID[id]; s != nil {
			sec.Title, sec.Summary, sec.Explain, sec.Setting, sec.Fix, sec.Sources = s.Title, s.Summary, s.Explain, s.Setting, s.Fix, s.Sources
		}
		var rs []*scenarios.Result
		for i := range results {
			if results[i].ID == id {
				rs = append(rs, &results[i])
				sec.Runs = append(sec.Runs, buildRun(&results[i], dirs[i]))
			}
		}
		if sec.Title == "" && len(rs) > 0 {
			sec.Title = rs[0].Title
		}
		if len(rs) > 1 {
			sec.CompareHeads, sec.Compare = compare(rs)
		}
		sec.Policies = policyLines(rs)
		v.Sections = append(v.Sections, sec)
	}
	if meta.Provenance != nil {
		v.Provenance = meta.Provenance.Describe()
	}
	v.Signature = meta.Signature
	for i, r := range results {
		if c := captureInfo(r, dirs[i]); c != nil {
			v.Captures = append(v.Captures, captureRow{Key: r.Key(), File: c.File, KeyLog: c.KeyLog, Legs: strings.Join(c.Legs, ", "),
				Packets: c.Packets, KeyLines: c.KeyLines})
		}
	}
	v.Commands = reproduce(meta, byID, order)
	for _, r := range results {
		if r.Policy == "" {
			continue
		}
		i := slices.IndexFunc(v.Policies, func(p policyGroup) bool { return p.key == r.Policy })
		if i < 0 {
			text := r.Policy
			if !strings.HasSuffix(text, "\n") {
				text += "\n"
			}
			v.Policies = append(v.Policies, policyGroup{Text: text, key: r.Policy})
			i = len(v.Policies) - 1
		}
		v.Policies[i].Runs = append(v.Policies[i].Runs, r.Key())
	}
	return v
}

// reproduce lists the commands that reproduce the run: the command as it
// was typed, then one per scenario — by id for the catalogue's, by --file
// for a scenario file (a scenario built in code has no file and goes by
// its id) — with the run's mode.
func reproduce(meta Meta, byID map[string]*scenarios.Scenario, order []string) []string {
	var out []string
	if len(meta.CommandLine) > 0 {
		out = append(out, shellJoin(meta.CommandLine)+"   # the whole run, as typed")
	}
	mode := ""
	if meta.Mode != "" && meta.Mode != "inproc" {
		mode = " --mode " + meta.Mode
	}
	for _, id := range order {
		s := byID[id]
		switch {
		case s == nil:
			continue
		case s.Builtin() || s.File == "":
			out = append(out, "pinwall run"+mode+" "+shellQuote(id))
		default:
			out = append(out, "pinwall run"+mode+" --file "+shellQuote(s.File))
		}
	}
	return out
}

// shellJoin writes args as a POSIX shell would read them back.
func shellJoin(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		q[i] = shellQuote(a)
	}
	return strings.Join(q, " ")
}

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./=:,+@%") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func buildRun(r *scenarios.Result, dir string) runView {
	f := newFacts(r)
	rv := runView{Key: r.Key(), Anchor: anchor("r", r.Key()), Label: variantLabel(*r), Describe: r.Describe,
		Verdict: string(r.Verdict), Expected: expectedText(*r), Outcome: outcome(*r), Failure: failureText(*r),
		Error: r.Error, Checks: r.Checks, Findings: r.Findings, Logs: dir + "/", MaxRows: maxRows}
	if fo := r.Observed.Failure; fo != nil {
		rv.Detail = fo.Detail
		rv.Basis = fo.BasisLine()
		if fo.Source != "" {
			rv.Failure += " (from " + fo.Source + ")"
		}
	}
	if !r.Started.IsZero() {
		rv.Started = r.Started.UTC().Format(time.RFC3339)
	}
	rv.Duration = (time.Duration(r.DurationMS) * time.Millisecond).String()
	rv.Failed = len(failedChecks(*r))
	rv.Notes = append(interceptorNotes(r, dir), runNotes(r)...)
	rv.Observed = r.Observed.Tunnel.State != "" || len(r.FirewallLog)+len(r.GatewayLog) > 0
	if rv.Observed {
		rv.Topo = buildTopology(f)
		rv.TopoSVG = rv.Topo.svg("Topology of " + r.Key())
		seq := buildSequence(f)
		rv.SeqText = seq.text()
		rv.SeqSVG = seq.svg("Handshake of " + r.Key())
	}
	rv.FW = fwTable(f)
	rv.GW = gwTable(f)
	rv.Raw = plural(rv.FW.Total, "firewall session") + ", " + plural(rv.GW.Total, "gateway event")
	for i := 0; i < max(len(rv.FW.Rows), len(rv.GW.Rows)); i++ {
		var s sideRow
		if i < len(rv.FW.Rows) {
			x := rv.FW.Rows[i]
			s.FW = fmt.Sprintf("%s #%s %s %s → %s %s · %s %s · %s · %s",
				x.Start, x.Session, x.Proto, endpoint(x.Src, x.SrcName), endpoint(x.Dst, x.DstName), x.App, x.Rule, x.Action, x.Decryption, x.EndReason)
		}
		if i < len(rv.GW.Rows) {
			x := rv.GW.Rows[i]
			who := ""
			if strings.HasPrefix(x.Event, "tunnel-") {
				who = " · from " + x.Who
			}
			s.GW = strings.TrimSpace(fmt.Sprintf("%s %s %s %s%s · %s", x.Time, x.Event, x.Transport, x.Gateway, who, x.Detail))
		}
		rv.Side = append(rv.Side, s)
	}
	return rv
}

// runNotes are the facts the tables do not show: gateway and address,
// fallback, failovers, attempts, recovery.
func runNotes(r *scenarios.Result) []string {
	o := r.Observed
	var out []string
	if t := o.Tunnel; t.Gateway != "" {
		out = append(out, fmt.Sprintf("Tunnel ended at `%s` (`%s`).", t.Gateway, orDash(t.Addr)))
	}
	if o.Tunnel.Fallback != "" {
		out = append(out, fmt.Sprintf("The client fell back from DTLS to TLS: `%s`.", o.Tunnel.Fallback))
	}
	if o.Tunnel.Failovers > 0 {
		out = append(out, fmt.Sprintf("The client failed over to another gateway %s.", plural(o.Tunnel.Failovers, "time")))
	}
	if a := o.Attempts; a != nil {
		out = append(out, fmt.Sprintf("Tunnel attempts: %d, failed %d (%.0f%%).", a.Total, a.Failed, 100*a.Fraction()))
	}
	if o.UpAfterMS > 0 {
		out = append(out, fmt.Sprintf("First tunnel up after %d ms.", o.UpAfterMS))
	}
	if o.RecoveryMS > 0 {
		out = append(out, fmt.Sprintf("Recovery from the first failed attempt to the tunnel: %d ms.", o.RecoveryMS))
	}
	if o.Flows.Retried > 0 {
		out = append(out, fmt.Sprintf("%s retried.", plural(o.Flows.Retried, "flow")))
	}
	if o.Flows.Reopened > 0 {
		out = append(out, fmt.Sprintf("%s opened again by the client on another tunnel: the broken one had not acknowledged them, so nothing was lost.", plural(o.Flows.Reopened, "flow")))
	}
	for _, l := range o.Flows.Lost {
		if l.InFlight {
			out = append(out, fmt.Sprintf("Flow %d (`%s`) lost: %s.", l.Index, l.Site, l.Why))
		}
	}
	for _, p := range r.Probes {
		out = append(out, fmt.Sprintf("Probe from `%s` to `%s` naming `%s`: %s.", p.From, p.To, orDash(p.SNI), p.Handshake))
	}
	if r.ClientError != "" && o.Failure == nil {
		out = append(out, "Last client error: "+r.ClientError)
	}
	return out
}

func fwTable(f *facts) fwView {
	r := f.r
	v := fwView{Total: len(r.FirewallLog), Summary: firewallSummary(f)}
	for i, x := range r.FirewallLog {
		if i == maxRows {
			v.More = len(r.FirewallLog) - maxRows
			break
		}
		m := markOf(x)
		kind := m.Kind
		if kind == kindWarn && !r.Roles.IsGateway(x.Dst.Addr()) {
			kind = kindInfo
		}
		v.Rows = append(v.Rows, fwRow{
			Session: fmt.Sprint(x.SessionID), Start: offset(r.Started, x.Start),
			Src: x.Src.String(), Dst: x.Dst.String(), SrcName: name(r.Roles, x.Src.Addr()), DstName: name(r.Roles, x.Dst.Addr()),
			Proto: protoPort(x), App: string(x.App), SNI: orDash(x.SNI), Rule: ruleName(x), Action: string(x.Action),
			Decryption: decryptionText(x), EndReason: string(x.EndReason),
			Bytes: fmt.Sprintf("%d/%d", x.BytesSent, x.BytesReceived), Kind: kind,
		})
	}
	return v
}

// endpoint is "10.10.10.100:49855 (laptop)", or the bare address:port.
func endpoint(addr, name string) string {
	if name != "" {
		return addr + " (" + name + ")"
	}
	return addr
}

func gwTable(f *facts) gwView {
	r := f.r
	v := gwView{Total: len(r.GatewayLog), Summary: gatewaySummary(f)}
	for i, e := range r.GatewayLog {
		if i == maxRows {
			v.More = len(r.GatewayLog) - maxRows
			break
		}
		v.Rows = append(v.Rows, gwRow{Time: offset(r.Started, e.Time), Event: e.Event, Gateway: e.Gateway, Transport: e.Transport,
			Client: e.Client, Who: f.who(e), Detail: eventDetail(e), Bad: e.Event == gateway.EventTunnelRefused || e.Event == gateway.EventStreamRefused || (e.Result != "" && e.Result != gateway.ResultOK)})
	}
	return v
}

// eventDetail says what a gateway event is about.
func eventDetail(e gateway.Event) string {
	var parts []string
	switch e.Event {
	case gateway.EventFlow, gateway.EventStreamRefused:
		if e.Host != "" {
			parts = append(parts, fmt.Sprintf("%s:%d", e.Host, e.Port))
		}
		if e.Origin != "" {
			parts = append(parts, "via "+e.Origin)
		}
		if e.Result != "" {
			parts = append(parts, e.Result)
		}
		if e.BytesUp+e.BytesDown > 0 {
			parts = append(parts, fmt.Sprintf("%d/%d bytes", e.BytesUp, e.BytesDown))
		}
	case gateway.EventTunnelOpen:
		if e.Device != nil {
			parts = append(parts, "device "+e.Device.User+" "+e.Device.Device)
		} else {
			parts = append(parts, "no device identity")
		}
	case gateway.EventTunnelClose:
		if e.Flows > 0 {
			parts = append(parts, plural(e.Flows, "flow"))
		}
	case gateway.EventTunnelRefused:
		if e.Presented != nil {
			parts = append(parts, "presented "+e.Presented.Subject)
		} else {
			parts = append(parts, "no certificate presented")
		}
	}
	if e.Cause != "" {
		parts = append(parts, string(e.Cause))
	}
	if e.Reason != "" {
		parts = append(parts, e.Reason)
	}
	if e.Error != "" {
		parts = append(parts, e.Error)
	}
	return strings.Join(parts, "; ")
}

// compare builds the without/with table of a scenario's runs.
func compare(rs []*scenarios.Result) ([]string, []compareRow) {
	heads := make([]string, len(rs))
	rows := []compareRow{{Label: "outcome"}, {Label: "failing leg / cause"}, {Label: "the firewall logged"}, {Label: "the gateway logged"}, {Label: "findings"}, {Label: "as expected?"}}
	for i, r := range rs {
		f := newFacts(r)
		heads[i] = variantLabel(*r)
		var fs []string
		for _, x := range r.Findings {
			fs = append(fs, string(x.ID)+" ("+string(x.Severity)+")")
		}
		cells := []string{outcome(*r), failureText(*r), firewallSummary(f), gatewaySummary(f), orDash(strings.Join(fs, ", ")), expectedText(*r)}
		for j := range rows {
			rows[j].Cells = append(rows[j].Cells, cells[j])
		}
	}
	return heads, rows
}

func verdictCounts(results []scenarios.Result) string {
	var parts []string
	for _, v := range []scenarios.Verdict{scenarios.Pass, scenarios.Fail, scenarios.Error, scenarios.Incomplete} {
		n := 0
		for _, r := range results {
			if r.Verdict == v {
				n++
			}
		}
		if n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, v))
		}
	}
	return strings.Join(parts, ", ")
}

func when(start, end time.Time) string {
	if start.IsZero() {
		return "unknown"
	}
	s := start.UTC().Format("2006-01-02 15:04:05 MST")
	if !end.IsZero() {
		s += fmt.Sprintf(" to %s (%s)", end.UTC().Format("15:04:05 MST"), end.Sub(start).Round(time.Millisecond))
	}
	return s
}

// anchor is an HTML id: prefix-and-the-key-with-safe-characters.
func anchor(prefix, key string) string {
	return prefix + "-" + safeName(strings.ReplaceAll(key, "/", "-"))
}

// safeName keeps letters, digits, '.', '-' and '_'; anything else becomes '_'.
func safeName(s string) string {
	b := []byte(s)
	for i, c := range b {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '-', c == '_':
		default:
			b[i] = '_'
		}
	}
	return string(b)
}

// logDir is the result's directory in the bundle: "logs/id__label", each
// "/" of the label a "__" ("logs/sni-spoof__with-fix__sni-and-ip").
func logDir(r scenarios.Result) string {
	parts := strings.Split(r.Variant, "/")
	for i, p := range parts {
		parts[i] = safeName(p)
	}
	d := safeName(r.ID) + "__" + strings.Join(parts, "__")
	if r.Firewall != "" && r.Firewall != string(interceptors.Pinwall) {
		d += "__" + safeName(r.Firewall)
	}
	return "logs/" + d
}
