package scenarios

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/pinwall/pinwall/failure"
	"github.com/pinwall/pinwall/harness"
	"github.com/pinwall/pinwall/interceptors"
	"github.com/pinwall/pinwall/strictyaml"
)

// ToolSpec is how a row behaves on one third-party firewall where that
// differs from pinwall's: the expectation that replaces the row's own
// (merged onto it field by field, as a variant's is), with where the
// difference comes from.
type ToolSpec struct {
	// Source is where the difference is known from: the tool's
	// documentation, or "observed: what, with which version". Required
	// with Expect and with Skip.
	Source string `yaml:"source"`
	// Expect is merged onto the run's expectation for this tool. It
	// cannot hold firewall checks: those read pinwall's firewall log.
	Expect yaml.Node `yaml:"expect"`
	// Skip, when set, says why the row is not run on this tool although
	// the tool can express its policy.
	Skip string `yaml:"skip"`
	Line int    `yaml:"-" strictyaml:"line"`
}

// ToolsSection holds a ToolSpec per third-party kind.
type ToolsSection struct {
	Mitmproxy *ToolSpec `yaml:"mitmproxy"`
	Squid     *ToolSpec `yaml:"squid"`
	SSLsplit  *ToolSpec `yaml:"sslsplit"`
}

func (t ToolsSection) get(k interceptors.Kind) *ToolSpec {
	switch k {
	case interceptors.Mitmproxy:
		return t.Mitmproxy
	case interceptors.Squid:
		return t.Squid
	case interceptors.SSLsplit:
		return t.SSLsplit
	}
	return nil
}

// ToolRun is a run's expectation on one third-party firewall.
type ToolRun struct {
	Expect Expect `json:"expect"`
	// Source is the declared difference's source; empty when the row
	// expects of the tool what it expects of pinwall's firewall.
	Source string `json:"source,omitempty"`
	// Skip says why the row is not run on the tool.
	Skip string `json:"skip,omitempty"`
}

// resolveTools resolves variant v's expectations on every tool: the
// variant's entry, else the scenario's, merged onto exp.
func (s *Scenario) resolveTools(v VariantSpec, field string, exp Expect) (map[interceptors.Kind]ToolRun, error) {
	out := map[interceptors.Kind]ToolRun{}
	for _, k := range interceptors.ThirdParty {
		ts, at := v.Tools.get(k), strictyaml.Key(strictyaml.Key(field, "tools"), string(k))
		if ts == nil {
			ts, at = s.Tools.get(k), strictyaml.Key("tools", string(k))
		}
		tr := ToolRun{Expect: exp.clone()}
		if ts != nil {
			if ts.Source == "" && (ts.Expect.Kind != 0 || ts.Skip != "") {
				return nil, &strictyaml.Error{File: s.File, Line: ts.Line, Field: at + ".source",
					Msg: "a difference from pinwall's firewall needs its source: the tool's documentation, or \"observed: what, with which version\""}
			}
			if ts.Skip != "" && ts.Expect.Kind != 0 {
				return nil, &strictyaml.Error{File: s.File, Line: ts.Line, Field: at, Msg: "skip and expect exclude each other"}
			}
			if ts.Expect.Kind != 0 {
				if hasKey(&ts.Expect, "firewall") {
					return nil, &strictyaml.Error{File: s.File, Line: ts.Line, Field: at + ".expect.firewall",
						Msg: "firewall checks read pinwall's firewall log; a third-party tool's own logs are in the evidence"}
				}
				if err := strictyaml.DecodeNode(s.File, &ts.Expect, at+".expect", &tr.Expect); err != nil {
					return nil, err
				}
			}
			tr.Source, tr.Skip = ts.Source, ts.Skip
		}
		out[k] = tr
	}
	return out, nil
}

func hasKey(n *yaml.Node, key string) bool {
	if n.Kind != yaml.MappingNode {
		return false
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return true
		}
	}
	return false
}

// endpointFindings are the findings drawn without the firewall's log
// (from the client and the gateway), which hold whatever stands in the
// firewall's place.
var endpointFindings = []FindingID{FindingFailOpenExposure, FindingTunnelDown}

// ForFirewall is the run with kind in the firewall's place: for a
// third-party tool, with the tool's expectation (the row's own, or the
// difference it declares) and without the checks that read pinwall's
// firewall log (listed in NotApplicable); NotRun says why it cannot run
// when the tool cannot express the policy or the row skips it. A run
// without a firewall is returned as it is.
func (r Run) ForFirewall(kind interceptors.Kind) Run {
	kind = kind.OrPinwall()
	fw := r.Plan.Spec.Firewall
	if fw == nil {
		return r
	}
	out := r
	spec := *fw
	spec.Kind = kind
	out.Plan.Spec.Firewall = &spec
	out.Firewall, out.ToolSource, out.NotApplicable, out.NotRun = kind, "", nil, ""
	if !kind.IsThirdParty() {
		return out
	}
	tr, ok := r.Tools[kind]
	if !ok {
		tr = ToolRun{Expect: r.Expect.clone()}
	}
	out.Expect, out.ToolSource = tr.Expect.clone(), tr.Source
	if tr.Skip != "" {
		out.NotRun = fmt.Sprintf("not run on %s: %s (%s)", kind, tr.Skip, tr.Source)
		return out
	}
	pol, err := spec.LoadPolicy()
	if err == nil {
		_, err = interceptors.Translate(kind, pol, interceptors.DefaultParams())
	}
	if err != nil {
		out.NotRun = err.Error()
		if !errors.Is(err, interceptors.ErrUnsupported) {
			out.NotRun = fmt.Sprintf("cannot translate the policy for %s: %v", kind, err)
		}
		return out
	}
	for i, e := range r.Plan.Events {
		if e.Do == harness.EventPolicy {
			out.NotRun = fmt.Sprintf("event %d changes the policy during the run, which pinwall does not carry out for %s", i, kind)
			return out
		}
	}
	e := &out.Expect
	if n := len(e.Firewall); n > 0 {
		out.NotApplicable = append(out.NotApplicable, fmt.Sprintf("%d firewall check(s) (%s): they read pinwall's firewall log; %s's own logs are in the evidence", n, checkNames(e.Firewall), kind))
		e.Firewall = nil
	}
	var left []FindingID
	for _, list := range []*[]FindingID{&e.Findings, &e.NoFindings} {
		kept := (*list)[:0:0]
		for _, f := range *list {
			if slices.Contains(endpointFindings, f) {
				kept = append(kept, f)
			} else {
				left = append(left, f)
			}
		}
		*list = kept
	}
	if len(left) > 0 {
		out.NotApplicable = append(out.NotApplicable, fmt.Sprintf("finding(s) %s: drawn from pinwall's firewall log", strings.Join(strs(left), ", ")))
	}
	return out
}

func checkNames(cs []FirewallCheck) string {
	names := make([]string, len(cs))
	for i, c := range cs {
		names[i] = fmt.Sprintf("%q", c.Name)
	}
	return strings.Join(names, ", ")
}

// refineForInterceptor places a failure the client could only put on its
// end-to-end leg when a third-party tool stood in the firewall's place
// and left no pinwall firewall log to refine it: a presented chain that
// is not the pinned gateway's was presented by whoever intercepted, the
// firewall. It is the one endpoint inference this package makes itself;
// the rest comes from the client and the gateway (Attribute).
func refineForInterceptor(f *FailureObserved, kind interceptors.Kind) {
	if f == nil || !kind.IsThirdParty() || f.Leg != failure.LegClientGateway {
		return
	}
	switch f.Cause {
	case failure.CausePinMismatch, failure.CauseUnknownAuthority:
		f.Leg = failure.LegClientFirewall
		f.Source += "+endpoint"
		f.Detail += fmt.Sprintf("; no pinwall firewall log (%s stood in its place): the chain the client refused was not the gateway's, so the firewall presented it", kind)
	}
}
