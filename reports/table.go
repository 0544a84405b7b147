package reports

import (
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/pinwall/pinwall/scenarios"
)

// Summary counts the runs whose verdict is pass, out of all runs.
func Summary(results []scenarios.Result) (passed, total int) {
	for _, r := range results {
		switch r.Verdict {
		case scenarios.Pass:
			passed++
		case scenarios.NotRun:
			continue
		}
		total++
	}
	return passed, total
}

// NotRunLines lists the runs not carried out on their firewall, one line
// each with the reason (empty when every run ran).
func NotRunLines(results []scenarios.Result) string {
	var b strings.Builder
	for _, r := range results {
		if r.Verdict == scenarios.NotRun {
			if b.Len() == 0 {
				b.WriteString("\nNot run (the firewall in its place cannot do what the row needs):\n")
			}
			fmt.Fprintf(&b, "  %s: %s\n", r.Key(), r.Error)
		}
	}
	return b.String()
}

// VerdictTable is the plain-text table `pinwall run` prints at the end:
// aligned columns, no colour, a header and one line per result, in the
// order given. Columns: scenario, variant (with the case after a slash),
// outcome, failing leg / cause, and whether the run went as expected.
func VerdictTable(results []scenarios.Result) string {
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 8, 2, ' ', 0)
	tools := false
	for _, r := range results {
		tools = tools || r.Firewall != "" && r.Firewall != "pinwall"
	}
	if tools {
		// A third-party tool stood in the firewall's place: say which.
		fmt.Fprintln(tw, "SCENARIO\tVARIANT\tFIREWALL\tOUTCOME\tLEG / CAUSE\tEXPECTED?")
		for _, r := range results {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.ID, variantLabel(r), orDash(r.Firewall), outcome(r), failureText(r), expectedText(r))
		}
	} else {
		fmt.Fprintln(tw, "SCENARIO\tVARIANT\tOUTCOME\tLEG / CAUSE\tEXPECTED?")
		for _, r := range results {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.ID, variantLabel(r), outcome(r), failureText(r), expectedText(r))
		}
	}
	_ = tw.Flush()
	return b.String()
}

// variantLabel is the variant's label: "without-fix",
// "without-fix/fail-close".
func variantLabel(r scenarios.Result) string { return r.Variant }

// outcome is the run's end state in a few words: "up dtls, 20/20
// verified", "down, 0/6 verified", "down, 6/6 verified (6 direct)", "up
// tls, 2/20 attempts up" for reconnect runs, "not observed" when the run
// produced nothing.
func outcome(r scenarios.Result) string {
	if r.Verdict == scenarios.NotRun {
		return "-"
	}
	o := r.Observed
	if o.Tunnel.State == "" {
		return "not observed"
	}
	s := o.Tunnel.State
	if o.Tunnel.Transport != "" {
		s += " " + o.Tunnel.Transport
	}
	if a := o.Attempts; a != nil && o.Flows.Attempted == 0 {
		return fmt.Sprintf("%s, %d/%d attempts up", s, a.Total-a.Failed, a.Total)
	}
	s += fmt.Sprintf(", %d/%d verified", o.Flows.Verified, o.Flows.Attempted)
	if o.Flows.Direct > 0 {
		s += fmt.Sprintf(" (%d direct)", o.Flows.Direct)
	}
	return s
}

// failureText is the observed failing leg and cause, or "-".
func failureText(r scenarios.Result) string {
	if r.Observed.Failure == nil {
		return "-"
	}
	return legCause(r.Observed.Failure.Leg, r.Observed.Failure.Cause)
}

// failedChecks returns the checks that did not hold.
func failedChecks(r scenarios.Result) []scenarios.Check {
	var out []scenarios.Check
	for _, c := range r.Checks {
		if !c.Pass {
			out = append(out, c)
		}
	}
	return out
}

// expectedText says whether the run matched its expectation: "yes", "NO
// (2 of 13 checks failed)", "ERROR", "INCOMPLETE".
func expectedText(r scenarios.Result) string {
	switch r.Verdict {
	case scenarios.Pass:
		return "yes"
	case scenarios.Fail:
		return fmt.Sprintf("NO (%d of %d checks failed)", len(failedChecks(r)), len(r.Checks))
	case scenarios.Error:
		return "ERROR"
	case scenarios.Incomplete:
		return "INCOMPLETE"
	case scenarios.NotRun:
		return "not run"
	}
	return strings.ToUpper(string(r.Verdict))
}
