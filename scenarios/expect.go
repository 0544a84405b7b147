package scenarios

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/pinwall/pinwall/failure"
	"github.com/pinwall/pinwall/gateway"
	"github.com/pinwall/pinwall/harness"
	"github.com/pinwall/pinwall/mitm/fwlog"
	"github.com/pinwall/pinwall/strictyaml"
	"github.com/pinwall/pinwall/tunnel"
)

// Expect is what a run must show, checked field by field. Every field is
// optional; an empty Expect only requires the run to complete.
type Expect struct {
	Tunnel   *TunnelExpect   `yaml:"tunnel" json:"tunnel,omitempty"`
	Flows    *FlowsExpect    `yaml:"flows" json:"flows,omitempty"`
	Failure  *FailureExpect  `yaml:"failure" json:"failure,omitempty"`
	Attempts *AttemptsExpect `yaml:"attempts" json:"attempts,omitempty"`
	Firewall []FirewallCheck `yaml:"firewall" json:"firewall,omitempty"`
	Gateway  []GatewayCheck  `yaml:"gateway" json:"gateway,omitempty"`
	// Findings must all be raised; NoFindings must not be.
	Findings   []FindingID `yaml:"findings" json:"findings,omitempty"`
	NoFindings []FindingID `yaml:"no-findings" json:"no_findings,omitempty"`
}

func (e Expect) clone() Expect {
	c := e
	if e.Tunnel != nil {
		t := *e.Tunnel
		c.Tunnel = &t
	}
	if e.Flows != nil {
		f := *e.Flows
		c.Flows = &f
	}
	if e.Failure != nil {
		f := *e.Failure
		c.Failure = &f
	}
	if e.Attempts != nil {
		a := *e.Attempts
		c.Attempts = &a
	}
	c.Firewall = append([]FirewallCheck(nil), e.Firewall...)
	c.Gateway = append([]GatewayCheck(nil), e.Gateway...)
	c.Findings = append([]FindingID(nil), e.Findings...)
	c.NoFindings = append([]FindingID(nil), e.NoFindings...)
	return c
}

// State is a tunnel's state.
type State string

// Choices lists the states.
func (State) Choices() []string { return []string{"up", "down"} }

// TransportName is a tunnel transport.
type TransportName string

// Choices lists the transports.
func (TransportName) Choices() []string {
	return strs([]tunnel.Transport{tunnel.TransportDTLS, tunnel.TransportTLS})
}

// LegName is a failure.Leg in a scenario file.
type LegName string

// Choices lists the legs.
func (LegName) Choices() []string { return strs(failure.Legs) }

// CauseName is a failure.Cause in a scenario file; "none" means no fallback.
type CauseName string

// Choices lists the causes.
func (CauseName) Choices() []string { return append(strs(failure.Causes), "none") }

// TunnelExpect checks the client's tunnel at the end of the run.
type TunnelExpect struct {
	State     State         `yaml:"state" json:"state,omitempty"`
	Transport TransportName `yaml:"transport" json:"transport,omitempty"`
	// Gateway is the gateway name the tunnel ends at.
	Gateway string `yaml:"gateway" json:"gateway,omitempty"`
	// Fallback is the cause that made the client fall back to TLS, or "none".
	Fallback CauseName `yaml:"fallback" json:"fallback,omitempty"`
}

// FlowsExpect checks the workload's flows.
type FlowsExpect struct {
	Completed Count `yaml:"completed" json:"completed,omitzero"`
	Verified  Count `yaml:"verified" json:"verified,omitzero"`
	Tunnelled Count `yaml:"tunnelled" json:"tunnelled,omitzero"`
	Direct    Count `yaml:"direct" json:"direct,omitzero"`
	// Lost says which flows may be lost: none, or in-flight-only (only
	// flows in flight on a tunnel when it went down, which no client can
	// move to another gateway).
	Lost LostRule `yaml:"lost" json:"lost,omitempty"`
}

// LostRule says which lost flows a run may have.
type LostRule string

// Lost rules.
const (
	LostNone         LostRule = "none"
	LostInFlightOnly LostRule = "in-flight-only"
)

// Choices lists the rules.
func (LostRule) Choices() []string { return []string{string(LostNone), string(LostInFlightOnly)} }

// FailureExpect checks the run's failing leg and cause; None expects no
// failure at all.
type FailureExpect struct {
	None  bool      `yaml:"none" json:"none,omitempty"`
	Leg   LegName   `yaml:"leg" json:"leg,omitempty"`
	Cause CauseName `yaml:"cause" json:"cause,omitempty"`
}

// Validate rejects a failure that is both none and something.
func (f FailureExpect) Validate() error {
	if f.None && (f.Leg != "" || f.Cause != "") {
		return fmt.Errorf("failure: none excludes leg and cause")
	}
	return nil
}

// AttemptsExpect checks reconnect attempts.
type AttemptsExpect struct {
	Failed         Count    `yaml:"failed" json:"failed,omitzero"`
	FailedFraction Fraction `yaml:"failed-fraction" json:"failed_fraction,omitzero"`
}

// Selector names a set of addresses: laptop, firewall, gateways, origins,
// an extra host's name, a gateway or origin name, or an address or CIDR.
type Selector string

// Validate accepts role names and addresses; unknown names are caught when
// the selector is resolved against a topology.
func (s Selector) Validate() error {
	if s == "" {
		return nil
	}
	if strings.ContainsAny(string(s), "/:") || strings.Count(string(s), ".") == 3 {
		if _, err := strictyaml.ParsePrefix(string(s)); err != nil {
			return fmt.Errorf("%q is neither a role (laptop, firewall, gateways, origins, a host name) nor an address or CIDR", s)
		}
	}
	return nil
}

// Matches reports whether a is in the selected set.
func (s Selector) Matches(r harness.Roles, a netip.Addr) (bool, error) {
	switch s {
	case "":
		return true, nil
	case "laptop":
		return a == r.Laptop, nil
	case "firewall":
		return a == r.FirewallOut || a == r.FirewallIn, nil
	case "gateways":
		return r.IsGateway(a), nil
	case "origins":
		return r.IsOrigin(a), nil
	}
	if pool, ok := r.Gateways[string(s)]; ok {
		for _, x := range pool {
			if x == a {
				return true, nil
			}
		}
		return false, nil
	}
	if x, ok := r.Origins[string(s)]; ok {
		return x == a, nil
	}
	if x, ok := r.Extra[string(s)]; ok {
		return x == a, nil
	}
	p, err := strictyaml.ParsePrefix(string(s))
	if err != nil {
		return false, fmt.Errorf("selector %q names nothing in this topology", s)
	}
	return p.Contains(a), nil
}

// ProtoName is tcp or udp.
type ProtoName string

// Choices lists the protocols.
func (ProtoName) Choices() []string { return []string{"tcp", "udp"} }

// AppName is a firewall application.
type AppName string

// Choices lists the applications.
func (AppName) Choices() []string { return strs(fwlog.Apps) }

// ActionName is a firewall log action.
type ActionName string

// Choices lists the actions.
func (ActionName) Choices() []string { return strs(fwlog.Actions) }

// OutcomeName is a decryption outcome; "none" means no decryption rule applied.
type OutcomeName string

// Choices lists the outcomes.
func (OutcomeName) Choices() []string { return append(strs(fwlog.Outcomes), "none") }

// EndReasonName is a session end reason.
type EndReasonName string

// Choices lists the end reasons.
func (EndReasonName) Choices() []string { return strs(fwlog.EndReasons) }

// RecordFilter selects firewall records.
type RecordFilter struct {
	Proto   ProtoName   `yaml:"proto" json:"proto,omitempty"`
	Src     Selector    `yaml:"src" json:"src,omitempty"`
	Dst     Selector    `yaml:"dst" json:"dst,omitempty"`
	SNI     string      `yaml:"sni" json:"sni,omitempty"`
	Rule    string      `yaml:"rule" json:"rule,omitempty"`
	App     AppName     `yaml:"app" json:"app,omitempty"`
	Outcome OutcomeName `yaml:"outcome" json:"outcome,omitempty"`
}

// RecordExpect is what selected records must show.
type RecordExpect struct {
	App       AppName       `yaml:"app" json:"app,omitempty"`
	Action    ActionName    `yaml:"action" json:"action,omitempty"`
	Rule      string        `yaml:"rule" json:"rule,omitempty"`
	Outcome   OutcomeName   `yaml:"outcome" json:"outcome,omitempty"`
	Leg       LegName       `yaml:"leg" json:"leg,omitempty"`
	Cause     CauseName     `yaml:"cause" json:"cause,omitempty"`
	EndReason EndReasonName `yaml:"end-reason" json:"end_reason,omitempty"`
	SNI       string        `yaml:"sni" json:"sni,omitempty"`
	Dst       Selector      `yaml:"dst" json:"dst,omitempty"`
	NATSrc    Selector      `yaml:"nat-src" json:"nat_src,omitempty"`
	// Fingerprints requires both certificate fingerprints (decryption).
	Fingerprints bool `yaml:"fingerprints" json:"fingerprints,omitempty"`
}

func (e RecordExpect) isZero() bool { return e == RecordExpect{} }

// FirewallCheck selects firewall records and checks them.
type FirewallCheck struct {
	// Name says in words what the check shows ("only gateway addresses").
	Name  string       `yaml:"name,required" json:"name"`
	Where RecordFilter `yaml:"where" json:"where"`
	// Count of selected records; empty means ">=1".
	Count Count        `yaml:"count" json:"count,omitzero"`
	Each  RecordExpect `yaml:"each" json:"each,omitzero"`
	First RecordExpect `yaml:"first" json:"first,omitzero"`
	Last  RecordExpect `yaml:"last" json:"last,omitzero"`
}

// GatewayEventName is a gateway event kind.
type GatewayEventName string

// Choices lists the gateway events.
func (GatewayEventName) Choices() []string {
	return slices.Clone(gateway.Events)
}

// EventFilter selects gateway events.
type EventFilter struct {
	Event     GatewayEventName `yaml:"event" json:"event,omitempty"`
	Transport TransportName    `yaml:"transport" json:"transport,omitempty"`
	Host      string           `yaml:"host" json:"host,omitempty"`
	Gateway   string           `yaml:"gateway" json:"gateway,omitempty"`
	Client    Selector         `yaml:"client" json:"client,omitempty"`
}

// EventExpect is what selected gateway events must show.
type EventExpect struct {
	Cause     CauseName     `yaml:"cause" json:"cause,omitempty"`
	Result    string        `yaml:"result" json:"result,omitempty"`
	Client    Selector      `yaml:"client" json:"client,omitempty"`
	Transport TransportName `yaml:"transport" json:"transport,omitempty"`
	// Presented requires (true) or forbids (false) a presented certificate in refusals.
	Presented *bool `yaml:"presented" json:"presented,omitempty"`
	// Device requires an authenticated device identity.
	Device bool `yaml:"device" json:"device,omitempty"`
}

// GatewayCheck selects gateway events and checks them.
type GatewayCheck struct {
	Name  string      `yaml:"name,required" json:"name"`
	Where EventFilter `yaml:"where" json:"where"`
	Count Count       `yaml:"count" json:"count,omitzero"`
	Each  EventExpect `yaml:"each" json:"each,omitzero"`
	// EveryDestination requires a flow event for every site the workload's
	// tunnelled flows went to.
	EveryDestination bool `yaml:"every-destination" json:"every_destination,omitempty"`
}

func strs[T ~string](xs []T) []string {
	out := make([]string, len(xs))
	for i, x := range xs {
		out[i] = string(x)
	}
	return out
}
