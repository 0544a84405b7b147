package scenarios

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/pinwall/pinwall/failure"
	"github.com/pinwall/pinwall/gateway"
	"github.com/pinwall/pinwall/harness"
	"github.com/pinwall/pinwall/interceptors"
	"github.com/pinwall/pinwall/mitm/policy"
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
	// Expect replaces, section by section (tunnel, flows, failure, …),
	// the run's expectation on this tool. It cannot hold firewall checks:
	// those read pinwall's firewall log.
	Expect yaml.Node `yaml:"expect"`
	// Client is merged onto the run's client on this tool, for a
	// behaviour that needs it to show within the run (a shorter
	// handshake timeout when the tool holds a connection unanswered).
	// It needs a Source like Expect.
	Client yaml.Node `yaml:"client"`
	// Skip, when set, says why the row is not run on this tool although
	// the tool can express its policy.
	Skip string `yaml:"skip"`
	// PolicyFile, when set, is the policy the tool runs instead of the
	// row's, for a tool that cannot express the row's (resolved as the
	// firewall's policy-file). It needs a Source like Expect: the report
	// shows both.
	PolicyFile string `yaml:"policy-file"`
	Line       int    `yaml:"-" strictyaml:"line"`
}

// ToolsSection holds a ToolSpec per third-party kind.
type ToolsSection struct {
	// Mitmproxy is how the row goes with mitmproxy 8.1.1 in the
	// firewall's place; absent: as with pinwall's firewall.
	Mitmproxy *ToolSpec `yaml:"mitmproxy"`
	// Squid is how it goes with squid 5.7; absent: as with pinwall's.
	Squid *ToolSpec `yaml:"squid"`
	// SSLsplit is how it goes with sslsplit 0.5.5; absent: as with
	// pinwall's.
	SSLsplit *ToolSpec `yaml:"sslsplit"`
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
	// Client, if set, replaces the run's client on the tool.
	Client *harness.ClientSpec `json:"client,omitempty"`
	// Policy, if set, replaces the run's firewall policy on the tool;
	// PolicyFile is where it was read from.
	Policy     *policy.Policy `json:"-"`
	PolicyFile string         `json:"policy_file,omitempty"`
}

// resolveTools resolves variant v's expectations on every tool: the
// variant's entry, else the scenario's, merged onto exp.
func (s *Scenario) resolveTools(v VariantSpec, field string, exp Expect, cs harness.ClientSpec) (map[interceptors.Kind]ToolRun, error) {
	out := map[interceptors.Kind]ToolRun{}
	for _, k := range interceptors.ThirdParty {
		ts, at := v.Tools.get(k), strictyaml.Key(strictyaml.Key(field, "tools"), string(k))
		if ts == nil {
			ts, at = s.Tools.get(k), strictyaml.Key("tools", string(k))
		}
		tr := ToolRun{Expect: exp.clone()}
		if ts != nil {
			if ts.Source == "" && (ts.Expect.Kind != 0 || ts.Skip != "" || ts.Client.Kind != 0 || ts.PolicyFile != "") {
				return nil, &strictyaml.Error{File: s.File, Line: ts.Line, Field: at + ".source",
					Msg: "a difference from pinwall's firewall needs its source: the tool's documentation, or \"observed: what, with which version\""}
			}
			if ts.Skip != "" && (ts.Expect.Kind != 0 || ts.Client.Kind != 0 || ts.PolicyFile != "") {
				return nil, &strictyaml.Error{File: s.File, Line: ts.Line, Field: at, Msg: "skip excludes expect, client and policy-file"}
			}
			if ts.PolicyFile != "" {
				p, err := s.loadPolicy(ts.PolicyFile, at+".policy-file")
				if err != nil {
					return nil, err
				}
				tr.Policy, tr.PolicyFile = p, ts.PolicyFile
			}
			if ts.Client.Kind != 0 {
				c := cs
				if err := strictyaml.DecodeNode(s.File, &ts.Client, at+".client", &c); err != nil {
					return nil, err
				}
				tr.Client = &c
			}
			if ts.Expect.Kind != 0 {
				if hasKey(&ts.Expect, "firewall") {
					return nil, &strictyaml.Error{File: s.File, Line: ts.Line, Field: at + ".expect.firewall",
						Msg: "firewall checks read pinwall's firewall log; a third-party tool's own logs are in the evidence"}
				}
				clearSections(&tr.Expect, &ts.Expect)
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

// clearSections empties the sections of e that n names: a tool's
// expectation replaces a section of the row's whole (a tunnel that is down
// on the tool has no transport to check), where a variant's merges.
func clearSections(e *Expect, n *yaml.Node) {
	for _, k := range []struct {
		key   string
		clear func()
	}{
		{"tunnel", func() { e.Tunnel = nil }}, {"flows", func() { e.Flows = nil }},
		{"failure", func() { e.Failure = nil }}, {"attempts", func() { e.Attempts = nil }},
		{"gateway", func() { e.Gateway = nil }}, {"findings", func() { e.Findings = nil }},
		{"no-findings", func() { e.NoFindings = nil }},
	} {
		if hasKey(n, k.key) {
			k.clear()
		}
	}
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
	if tr.Policy != nil {
		spec.Policy, spec.PolicyFile, spec.PolicyYAML = tr.Policy, "", ""
	}
	if tr.Client != nil {
		s := out.Plan.Spec
		s.Client = *tr.Client
		out.Plan.Spec.Client = s.WithDefaults().Client
	}
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
	if r.Plan.Spec.Client.UpstreamProxy == "firewall" {
		out.NotRun = fmt.Sprintf("the client's upstream proxy is pinwall's firewall's explicit proxy, which %s in its place does not serve", kind)
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
// and left no pinwall firewall log to refine it, from what the endpoints
// saw:
//
//   - a presented chain that is not the pinned gateway's (or from a CA the
//     laptop does not trust) was presented by whoever intercepted: the
//     firewall (client-firewall);
//   - the gateway refusing, for want of a device certificate, a handshake
//     that presented none, while the client has one and presents it, was
//     refusing someone else's handshake: the firewall's
//     (firewall-gateway / client-certificate-required).
//
// It is the one endpoint inference this package makes for a tool; the
// rest comes from the client and the gateway (Attribute).
func refineForInterceptor(f *FailureObserved, obs *harness.Observation, deviceCert bool) {
	if f == nil || obs.Interceptor == nil || f.Leg != failure.LegClientGateway {
		return
	}
	kind := obs.Interceptor.Kind
	switch f.Cause {
	case failure.CausePinMismatch, failure.CauseUnknownAuthority:
		f.Leg = failure.LegClientFirewall
		f.Source += "+endpoint"
		f.Detail += fmt.Sprintf("; no pinwall firewall log (%s stood in its place): the chain the client refused was not the gateway's, so the firewall presented it", kind)
	case failure.CauseClientCertRequired:
		if !deviceCert {
			return
		}
		for _, e := range obs.Gateway {
			if e.Event == gateway.EventTunnelRefused && e.Cause == failure.CauseClientCertRequired && e.Presented == nil {
				f.Leg = failure.LegFirewallGateway
				f.Source += "+endpoint"
				f.Detail += fmt.Sprintf("; the gateway refused a handshake without a device certificate from %s while the client presents one: the handshake was %s's", e.Client, kind)
				return
			}
		}
	}
}
