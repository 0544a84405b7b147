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
	// Tunnel checks the client's tunnel at the end of the run; absent:
	// not checked.
	Tunnel *TunnelExpect `yaml:"tunnel" json:"tunnel,omitempty"`
	// Flows checks the workload's flows; absent: not checked.
	Flows *FlowsExpect `yaml:"flows" json:"flows,omitempty"`
	// Failure checks the run's failing leg and cause; absent: not checked.
	Failure *FailureExpect `yaml:"failure" json:"failure,omitempty"`
	// Attempts checks the tunnel attempts of a reconnects run; absent: not
	// checked.
	Attempts *AttemptsExpect `yaml:"attempts" json:"attempts,omitempty"`
	// Firewall checks the firewall's log, one check per item.
	Firewall []FirewallCheck `yaml:"firewall" json:"firewall,omitempty"`
	// Gateway checks the gateways' logs, one check per item.
	Gateway []GatewayCheck `yaml:"gateway" json:"gateway,omitempty"`
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
	// State is up or down; empty: not checked.
	State State `yaml:"state" json:"state,omitempty"`
	// Transport is the tunnel's transport at the end; empty: not checked.
	Transport TransportName `yaml:"transport" json:"transport,omitempty"`
	// Gateway is the gateway name the tunnel ends at.
	Gateway string `yaml:"gateway" json:"gateway,omitempty"`
	// Fallback is the cause that made the client fall back to TLS, or "none".
	Fallback CauseName `yaml:"fallback" json:"fallback,omitempty"`
}

// FlowsExpect checks the workload's flows.
type FlowsExpect struct {
	// Completed counts the flows that completed; empty: not checked.
	Completed Count `yaml:"completed" json:"completed,omitzero"`
	// Verified counts the flows whose SHA-256 was checked at both ends;
	// empty: not checked.
	Verified Count `yaml:"verified" json:"verified,omitzero"`
	// Tunnelled counts the flows carried by the tunnel; empty: not checked.
	Tunnelled Count `yaml:"tunnelled" json:"tunnelled,omitzero"`
	// Direct counts the flows sent direct (steering exceptions, fail-open);
	// empty: not checked.
	Direct Count `yaml:"direct" json:"direct,omitzero"`
	// Lost says which flows may be lost: none, or in-flight-only (only
	// flows in flight on a tunnel when it went down, which no client can
	// move to another gateway); empty: not checked.
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
	// None expects no failure at all.
	None bool `yaml:"none" json:"none,omitempty"`
	// Leg is the failing leg; empty: any.
	Leg LegName `yaml:"leg" json:"leg,omitempty"`
	// Cause is the failure's cause; empty: any.
	Cause CauseName `yaml:"cause" json:"cause,omitempty"`
	// OneOf expects one of these legs and causes, for a behaviour that
	// races (which of two packets arrives first decides what the client
	// sees). It excludes None, Leg and Cause.
	OneOf []LegCause `yaml:"one-of" json:"one_of,omitempty"`
}

// LegCause is a failing leg and cause.
type LegCause struct {
	// Leg is the failing leg.
	Leg LegName `yaml:"leg,required" json:"leg"`
	// Cause is the failure's cause.
	Cause CauseName `yaml:"cause,required" json:"cause"`
}

// Validate rejects a failure that is both none and something.
func (f FailureExpect) Validate() error {
	if f.None && (f.Leg != "" || f.Cause != "") {
		return fmt.Errorf("failure: none excludes leg and cause")
	}
	if len(f.OneOf) > 0 && (f.None || f.Leg != "" || f.Cause != "") {
		return fmt.Errorf("failure: one-of excludes none, leg and cause")
	}
	return nil
}

// AttemptsExpect checks reconnect attempts.
type AttemptsExpect struct {
	// Failed counts the attempts that failed; empty: not checked.
	Failed Count `yaml:"failed" json:"failed,omitzero"`
	// FailedFraction bounds the fraction of attempts that failed; empty:
	// not checked.
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
	// Proto selects records of one protocol; empty: any.
	Proto ProtoName `yaml:"proto" json:"proto,omitempty"`
	// Src selects records by source address; empty: any.
	Src Selector `yaml:"src" json:"src,omitempty"`
	// Dst selects records by destination address; empty: any.
	Dst Selector `yaml:"dst" json:"dst,omitempty"`
	// SNI selects records whose ClientHello named this server; empty: any.
	SNI string `yaml:"sni" json:"sni,omitempty"`
	// Rule selects records of the rule of this name; empty: any.
	Rule string `yaml:"rule" json:"rule,omitempty"`
	// App selects records of one application; empty: any.
	App AppName `yaml:"app" json:"app,omitempty"`
	// Outcome selects records by decryption outcome ("none": no
	// decryption rule applied); empty: any.
	Outcome OutcomeName `yaml:"outcome" json:"outcome,omitempty"`
}

// RecordExpect is what selected records must show.
type RecordExpect struct {
	// App is the application the firewall identified; empty: not checked.
	App AppName `yaml:"app" json:"app,omitempty"`
	// Action is the logged action; empty: not checked.
	Action ActionName `yaml:"action" json:"action,omitempty"`
	// Rule is the name of the rule that took the session; empty: not
	// checked.
	Rule string `yaml:"rule" json:"rule,omitempty"`
	// Outcome is the decryption outcome ("none": no decryption rule
	// applied); empty: not checked.
	Outcome OutcomeName `yaml:"outcome" json:"outcome,omitempty"`
	// Leg is the failing leg of a failed decryption; empty: not checked.
	Leg LegName `yaml:"leg" json:"leg,omitempty"`
	// Cause is the cause of a failed decryption; empty: not checked.
	Cause CauseName `yaml:"cause" json:"cause,omitempty"`
	// EndReason is the session end reason; empty: not checked.
	EndReason EndReasonName `yaml:"end-reason" json:"end_reason,omitempty"`
	// SNI is the server name the ClientHello carried; empty: not checked.
	SNI string `yaml:"sni" json:"sni,omitempty"`
	// Dst is where the session went; empty: not checked.
	Dst Selector `yaml:"dst" json:"dst,omitempty"`
	// NATSrc is the source the firewall translated the session to; empty:
	// not checked.
	NATSrc Selector `yaml:"nat-src" json:"nat_src,omitempty"`
	// Fingerprints requires both certificate fingerprints (decryption).
	Fingerprints bool `yaml:"fingerprints" json:"fingerprints,omitempty"`
}

func (e RecordExpect) isZero() bool { return e == RecordExpect{} }

// FirewallCheck selects firewall records and checks them.
type FirewallCheck struct {
	// Name says in words what the check shows ("only gateway addresses").
	Name string `yaml:"name,required" json:"name"`
	// Where selects the records the check is about; empty: every record.
	Where RecordFilter `yaml:"where" json:"where"`
	// Count of selected records; empty means ">=1".
	Count Count `yaml:"count" json:"count,omitzero"`
	// Each is what every selected record must show.
	Each RecordExpect `yaml:"each" json:"each,omitzero"`
	// First is what the first selected record must show.
	First RecordExpect `yaml:"first" json:"first,omitzero"`
	// Last is what the last selected record must show.
	Last RecordExpect `yaml:"last" json:"last,omitzero"`
}

// GatewayEventName is a gateway event kind.
type GatewayEventName string

// Choices lists the gateway events.
func (GatewayEventName) Choices() []string {
	return slices.Clone(gateway.Events)
}

// EventFilter selects gateway events.
type EventFilter struct {
	// Event selects events of one kind; empty: any.
	Event GatewayEventName `yaml:"event" json:"event,omitempty"`
	// Transport selects events of tunnels over one transport; empty: any.
	Transport TransportName `yaml:"transport" json:"transport,omitempty"`
	// Host selects flow events to one site; empty: any.
	Host string `yaml:"host" json:"host,omitempty"`
	// Gateway selects the events of the gateway of this name; empty: any.
	Gateway string `yaml:"gateway" json:"gateway,omitempty"`
	// Client selects events by the address the gateway saw the tunnel
	// come from; empty: any.
	Client Selector `yaml:"client" json:"client,omitempty"`
}

// EventExpect is what selected gateway events must show.
type EventExpect struct {
	// Cause is the cause of a refusal; empty: not checked.
	Cause CauseName `yaml:"cause" json:"cause,omitempty"`
	// Result is a flow's result ("ok"); empty: not checked.
	Result string `yaml:"result" json:"result,omitempty"`
	// Client is where the gateway saw the tunnel come from; empty: not
	// checked.
	Client Selector `yaml:"client" json:"client,omitempty"`
	// Transport is the tunnel's transport; empty: not checked.
	Transport TransportName `yaml:"transport" json:"transport,omitempty"`
	// Presented requires (true) or forbids (false) a presented certificate in refusals.
	Presented *bool `yaml:"presented" json:"presented,omitempty"`
	// Device requires an authenticated device identity.
	Device bool `yaml:"device" json:"device,omitempty"`
}

// GatewayCheck selects gateway events and checks them.
type GatewayCheck struct {
	// Name says in words what the check shows.
	Name string `yaml:"name,required" json:"name"`
	// Where selects the events the check is about; empty: every event.
	Where EventFilter `yaml:"where" json:"where"`
	// Count of selected events; empty means ">=1".
	Count Count `yaml:"count" json:"count,omitzero"`
	// Each is what every selected event must show.
	Each EventExpect `yaml:"each" json:"each,omitzero"`
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
