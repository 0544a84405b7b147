package reports

import (
	"fmt"
	"strings"

	"github.com/pinwall/pinwall/scenarios"
)

// A JUnit "pass" means "as expected", which may be a tunnel that is down
// or a laptop failing open: a CI reader who sees 0 failures must still see
// what happened. Every testcase therefore carries the observed outcome as
// <properties> (pinwall.observed.*) and in a first line of its
// <system-out>, and a <failure> message says what was observed besides
// what was expected.

// observedProps are a result's observed outcome as JUnit properties.
func observedProps(r scenarios.Result) []junitProperty {
	if r.Verdict == scenarios.NotRun {
		return []junitProperty{{Name: "pinwall.verdict", Value: "not run"}}
	}
	o := r.Observed
	props := []junitProperty{
		{Name: "pinwall.verdict", Value: verdictWords(r.Verdict)},
		{Name: "pinwall.role", Value: orDash(string(r.Role))},
		{Name: "pinwall.observed.tunnel", Value: tunnelWords(r)},
		{Name: "pinwall.observed.flows_verified", Value: fmt.Sprintf("%d/%d", o.Flows.Verified, o.Flows.Attempted)},
		{Name: "pinwall.observed.fail_open", Value: fmt.Sprintf("%t", failOpen(r))},
		{Name: "pinwall.observed.failure", Value: failureText(r)},
	}
	if a := o.Attempts; a != nil {
		props = append(props, junitProperty{Name: "pinwall.observed.attempts_up", Value: fmt.Sprintf("%d/%d", a.Total-a.Failed, a.Total)})
	}
	var fs []string
	for _, f := range r.Findings {
		fs = append(fs, string(f.Severity)+":"+string(f.ID))
	}
	props = append(props, junitProperty{Name: "pinwall.findings", Value: orDash(strings.Join(fs, " "))})
	return props
}

// observedLine says in one line what was expected and what was observed.
func observedLine(r scenarios.Result) string {
	if r.Verdict == scenarios.NotRun {
		return "NOT RUN: " + r.Error
	}
	o := r.Observed
	s := fmt.Sprintf("%s — observed: tunnel %s, %d/%d flows verified", strings.ToUpper(verdictWords(r.Verdict)), tunnelWords(r), o.Flows.Verified, o.Flows.Attempted)
	if failOpen(r) {
		s += fmt.Sprintf(", FAIL-OPEN (%d flows went direct, uninspected by the gateway)", o.Flows.Direct)
	} else if o.Flows.Direct > 0 {
		s += fmt.Sprintf(" (%d direct)", o.Flows.Direct)
	}
	if f := failureText(r); f != "-" {
		s += ", failing leg / cause " + f
	}
	if n := len(r.Findings); n > 0 {
		s += fmt.Sprintf(", %d finding(s)", n)
	}
	return s
}

func verdictWords(v scenarios.Verdict) string {
	switch v {
	case scenarios.Pass:
		return "as expected"
	case scenarios.Fail:
		return "not as expected"
	}
	return string(v)
}

// tunnelWords is "up over dtls", "down" or "not observed".
func tunnelWords(r scenarios.Result) string {
	t := r.Observed.Tunnel
	switch {
	case t.State == "":
		return "not observed"
	case t.Transport != "":
		return t.State + " over " + t.Transport
	}
	return t.State
}

// failOpen: the tunnel was down and flows went direct.
func failOpen(r scenarios.Result) bool {
	return r.Observed.Tunnel.State == "down" && r.Observed.Flows.Direct > 0
}
