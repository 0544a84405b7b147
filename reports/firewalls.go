package reports

import (
	"encoding/json"
	"fmt"
	"path"
	"slices"
	"strings"

	"github.com/pinwall/pinwall/harness"
	"github.com/pinwall/pinwall/interceptors"
	"github.com/pinwall/pinwall/scenarios"
)

// InterceptorDir is the subdirectory of a result's log directory holding
// what a third-party firewall left: its generated configuration, its own
// logs, its version, the translation and the nftables counters.
const InterceptorDir = "interceptor"

// The interceptor directory's files beside the tool's own.
const (
	TranslationFile = "translation.txt"
	VersionFile     = "version.txt"
	CountersFile    = "nftables-counters.json"
)

// writeInterceptor writes a third-party firewall's evidence under dir.
func (b *bundle) writeInterceptor(dir string, r *scenarios.Result) {
	ev := r.Interceptor
	if ev == nil {
		return
	}
	d := path.Join(dir, InterceptorDir)
	b.write(path.Join(d, TranslationFile), []byte(ev.Translation))
	b.write(path.Join(d, VersionFile), []byte(ev.VersionText))
	if data, err := json.MarshalIndent(ev.Counters, "", "  "); err == nil {
		b.write(path.Join(d, CountersFile), append(data, '\n'))
	}
	for _, f := range append(append([]harness.NamedText(nil), ev.Files...), ev.Logs...) {
		text := f.Text
		if f.Truncated > 0 {
			text += fmt.Sprintf("\n[pinwall: %d more bytes left out]\n", f.Truncated)
		}
		b.write(path.Join(d, safeName(f.Name)), []byte(text))
	}
}

// slimInterceptor is the evidence of a third-party firewall as
// evidence.json holds it: the logs named by their file in the bundle
// rather than copied in.
func slimInterceptor(ev *harness.InterceptorEvidence, dir string) *harness.InterceptorEvidence {
	if ev == nil {
		return nil
	}
	c := *ev
	c.Logs = nil
	for _, l := range ev.Logs {
		c.Logs = append(c.Logs, harness.NamedText{Name: l.Name, What: l.What, File: path.Join(dir, InterceptorDir, safeName(l.Name)), Truncated: l.Truncated})
	}
	return &c
}

// interceptorNotes are the lines a run with a third-party tool in the
// firewall's place adds to its section: which tool and version, where its
// evidence is, the difference it was expected to show and its source, and
// the checks that did not apply.
func interceptorNotes(r *scenarios.Result, dir string) []string {
	if r.Firewall == "" || r.Firewall == string(interceptors.Pinwall) {
		return nil
	}
	var out []string
	if ev := r.Interceptor; ev != nil {
		out = append(out, fmt.Sprintf("Firewall: %s (`%s`) in the firewall's place; its generated configuration, logs, version and nftables counters are in `%s/`", r.Firewall, ev.Version, path.Join(dir, InterceptorDir)))
		if ev.Exited != "" {
			out = append(out, "The tool ended early: "+ev.Exited)
		}
	} else {
		out = append(out, fmt.Sprintf("Firewall: %s in the firewall's place", r.Firewall))
	}
	if r.ToolSource != "" {
		out = append(out, fmt.Sprintf("Expected of %s where it differs from pinwall's firewall, because %s", r.Firewall, r.ToolSource))
	}
	for _, n := range r.NotApplicable {
		out = append(out, "Not applicable here: "+n)
	}
	return out
}

// firewallCompare is the side-by-side of pinwall's firewall and the
// third-party tools that stood in its place: one row per run, one column
// per firewall, with the sources of the differences as numbered notes.
type firewallCompare struct {
	Heads []string
	Rows  []compareRow
	Notes []string
}

// compareFirewalls builds the side-by-side when results hold more than
// one firewall kind (nil otherwise).
func compareFirewalls(results []scenarios.Result) *firewallCompare {
	var kinds []string
	for _, k := range interceptors.Kinds {
		for _, r := range results {
			if r.Firewall == string(k) && !slices.Contains(kinds, string(k)) {
				kinds = append(kinds, string(k))
			}
		}
	}
	tools := 0
	for _, k := range kinds {
		if k != string(interceptors.Pinwall) {
			tools++
		}
	}
	if tools == 0 {
		return nil
	}
	c := &firewallCompare{Heads: kinds}
	type runKey struct{ id, label string }
	var order []runKey
	byKind := map[runKey]map[string]*scenarios.Result{}
	for i := range results {
		r := &results[i]
		k := runKey{r.ID, variantLabel(*r)}
		if byKind[k] == nil {
			byKind[k] = map[string]*scenarios.Result{}
			order = append(order, k)
		}
		byKind[k][r.Firewall] = r
	}
	for _, k := range order {
		row := compareRow{Label: "`" + k.id + "` " + k.label}
		ref := byKind[k][string(interceptors.Pinwall)]
		for _, kind := range kinds {
			r := byKind[k][kind]
			if r == nil {
				row.Cells = append(row.Cells, "")
				continue
			}
			cell := fmt.Sprintf("%s %s; %s", verdictMark(r), outcome(*r), failureText(*r))
			note := ""
			switch {
			case r.Verdict == scenarios.NotRun:
				cell = "— not run"
				note = r.Error
			case r.ToolSource != "":
				if ref != nil && sameBehaviour(ref, r) {
					cell += " (same leg / cause)"
				} else {
					cell += " (differs)"
				}
				note = r.ToolSource
			case ref != nil && kind != string(interceptors.Pinwall) && !sameBehaviour(ref, r):
				cell += " (ended otherwise than pinwall's run, within the row's expectation)"
			}
			if note != "" {
				c.Notes = append(c.Notes, fmt.Sprintf("`%s` on %s: %s", k.id+"/"+k.label, kind, note))
				cell += fmt.Sprintf(" [%d]", len(c.Notes))
			}
			row.Cells = append(row.Cells, cell)
		}
		c.Rows = append(c.Rows, row)
	}
	return c
}

// pinwallRuns are the results of pinwall's own firewall (or of no
// firewall): the three questions are answered from its logs, which a
// third-party tool does not write.
func pinwallRuns(results []scenarios.Result) []scenarios.Result {
	var out []scenarios.Result
	for _, r := range results {
		if r.Firewall == "" || r.Firewall == string(interceptors.Pinwall) {
			out = append(out, r)
		}
	}
	return out
}

// verdictMark is a result's verdict as one sign.
func verdictMark(r *scenarios.Result) string {
	switch r.Verdict {
	case scenarios.Pass:
		return "✓"
	case scenarios.Fail:
		return "✗"
	}
	return strings.ToUpper(string(r.Verdict))
}

// sameBehaviour reports whether two runs of a row ended alike: tunnel
// state and transport, failing leg and cause.
func sameBehaviour(a, b *scenarios.Result) bool {
	ta, tb := a.Observed.Tunnel, b.Observed.Tunnel
	if ta.State != tb.State || ta.Transport != tb.Transport {
		return false
	}
	fa, fb := a.Observed.Failure, b.Observed.Failure
	if (fa == nil) != (fb == nil) {
		return false
	}
	return fa == nil || fa.Leg == fb.Leg && fa.Cause == fb.Cause
}
