package harness

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/pinwall/pinwall/client"
	"github.com/pinwall/pinwall/failure"
	"github.com/pinwall/pinwall/fault"
	"github.com/pinwall/pinwall/gateway"
	"github.com/pinwall/pinwall/mitm/fwlog"
	"github.com/pinwall/pinwall/mitm/policy"
)

// Plan is one run: a topology, what the laptop does, and what happens to
// the network meanwhile.
type Plan struct {
	Spec     Spec     `json:"-"`
	Workload Workload `json:"workload"`
	// Reconnects, when positive, replaces the flow workload by that many
	// tunnel attempts, each from a fresh client (a laptop reconnecting),
	// measuring how many fail.
	Reconnects int `json:"reconnects,omitempty"`
	// Fleet, when positive, replaces the flow workload by that many
	// laptops behind the same firewall, each on an address of its own in
	// the LAN and with a device certificate of its own, all starting their
	// client at once (in containers, a container each, without events).
	// Attempts counts the laptops whose
	// tunnel was not up within WaitUp, and AllUp the time until the last
	// came up.
	Fleet  int     `json:"fleet,omitempty"`
	Events []Event `json:"events,omitempty"`
	// Probes are extra connections from hosts without the client.
	Probes []Probe `json:"probes,omitempty"`
	// WaitUp bounds the wait for the first tunnel; zero means 5s.
	WaitUp time.Duration `json:"wait_up,omitempty"`
	// Hold keeps the run going up to this long after the tunnel first
	// settled, so that reconnections after events are observed even when
	// the workload ends sooner. A plan with events ends its hold as soon
	// as one is observed (HoldForReconnection): the tunnel up again after
	// the events, or every gateway tried and failed; in containers the
	// runner tells the laptop when it has applied the events.
	Hold time.Duration `json:"hold,omitempty"`
}

// EventKind names something that happens during a run.
type EventKind string

// Event kinds.
const (
	// EventGatewayDown stops the gateway named by Target (or the client's
	// first): its process is killed, its addresses stop answering.
	EventGatewayDown EventKind = "gateway-down"
	// EventPolicy replaces the firewall policy with Policy.
	EventPolicy EventKind = "policy"
	// EventFirewallPause makes the firewall stop forwarding for Duration.
	EventFirewallPause EventKind = "firewall-pause"
	// EventFirewallRestart stops the firewall and starts it again on the
	// same addresses with the same policy and an empty session table:
	// every session through it ends (and is logged), and what arrives
	// afterwards is new to it. In process the firewall component is closed
	// and a new one started; in containers the firewall container is
	// restarted (docker restart: SIGTERM, then a fresh process and network
	// namespace, so its nftables and conntrack state is lost too).
	EventFirewallRestart EventKind = "firewall-restart"
	// EventImpair degrades the laptop's datagrams (UDP, both directions)
	// as Impair says — loss, latency with jitter, reordering — replacing
	// any impairment before it (the spec's udp-loss included); a zero
	// Impair clears it. With a Duration the impairment is cleared after
	// that long. Target may only be empty or "laptop".
	EventImpair EventKind = "impair"
	// EventNetworkChange tells the client the network changed (it forgets a
	// fallback to TLS).
	EventNetworkChange EventKind = "network-change"
)

// Choices lists the event kinds.
func (EventKind) Choices() []string {
	return []string{string(EventGatewayDown), string(EventPolicy), string(EventFirewallPause), string(EventFirewallRestart),
		string(EventImpair), string(EventNetworkChange)}
}

// Event is something that happens At a time after the tunnel first came
// up (or after the start, if it never does).
type Event struct {
	// At is when the event happens, after the first tunnel came up (or
	// after the start, if it never does).
	At time.Duration `yaml:"at,required" json:"at"`
	// Do is what happens.
	Do EventKind `yaml:"do,required" json:"do"`
	// Target names the gateway a gateway-down stops; empty means the
	// client's first gateway.
	Target string `yaml:"target" json:"target,omitempty"`
	// Policy is the new firewall policy (for "policy").
	Policy string `yaml:"policy" json:"policy,omitempty"`
	// Duration of a pause or an impairment.
	Duration time.Duration `yaml:"duration" json:"duration,omitempty"`
	// Impair is the impairment of an "impair" event.
	Impair *fault.Impairment `yaml:"impair" json:"impair,omitempty"`
}

// Validate checks one event against a spec (with its defaults applied).
func (e Event) Validate(s Spec) error {
	if !slices.Contains(EventKind("").Choices(), string(e.Do)) {
		return fmt.Errorf("unknown event %q (one of: %s)", e.Do, strings.Join(EventKind("").Choices(), ", "))
	}
	if e.At < 0 || e.Duration < 0 {
		return fmt.Errorf("%s: at and duration must not be negative", e.Do)
	}
	switch e.Do {
	case EventPolicy:
		if e.Policy == "" {
			return errors.New("a policy event needs a policy")
		}
	case EventImpair:
		if e.Impair == nil {
			return errors.New("an impair event needs an impair section (loss, latency, jitter, reorder)")
		}
		if err := e.Impair.Validate(); err != nil {
			return fmt.Errorf("impair: %w", err)
		}
		if e.Target != "" && e.Target != "laptop" {
			return fmt.Errorf("impair: target %q: only the laptop's datagrams can be impaired", e.Target)
		}
	case EventGatewayDown:
		if e.Target != "" && !slices.ContainsFunc(s.Gateways, func(g GatewaySpec) bool { return g.Name == e.Target }) {
			return fmt.Errorf("gateway-down: target %q is not one of the topology's gateways", e.Target)
		}
	}
	switch e.Do {
	case EventPolicy, EventFirewallPause, EventFirewallRestart:
		if s.Firewall == nil {
			return fmt.Errorf("a %s event needs a firewall", e.Do)
		}
	}
	if e.Do != EventImpair && e.Impair != nil {
		return fmt.Errorf("%s: impair belongs to impair events", e.Do)
	}
	return nil
}

// AppliedEvent is an event and when it happened.
type AppliedEvent struct {
	Event
	Time  time.Time `json:"time"`
	Error string    `json:"error,omitempty"`
}

// Probe is a connection from another LAN host: a TLS ClientHello (e.g. a
// spoofed SNI) over TCP, or one datagram over UDP.
type Probe struct {
	// From names an extra host of the Spec.
	From string `yaml:"from,required" json:"from"`
	// To is the destination address:port.
	To netip.AddrPort `yaml:"to,required" json:"to"`
	// SNI is the server name the probe claims.
	SNI string `yaml:"sni" json:"sni"`
	// UDP sends one QUIC-looking datagram instead of a TLS handshake.
	UDP bool `yaml:"udp" json:"udp,omitempty"`
}

// ProbeResult is what a probe saw.
type ProbeResult struct {
	Probe
	// Handshake is "ok" or the error.
	Handshake string `json:"handshake"`
	// Issuer is the common name of the certificate's issuer, when one came.
	Issuer string `json:"issuer,omitempty"`
}

// Observation is everything a run produced, the same in every runner.
type Observation struct {
	Mode string `json:"mode"`
	// Tunnel is the client's state when the workload ended.
	Tunnel client.State `json:"tunnel"`
	// FirstUp is the state when the tunnel first came up, if it did.
	FirstUp *client.State `json:"first_up,omitempty"`
	// UpAfter is how long the first tunnel took from the client's start.
	UpAfter time.Duration `json:"up_after_ns,omitempty"`
	// ClientError is the client's last establishment failure.
	ClientError     error                       `json:"-"`
	ClientErrorText string                      `json:"client_error,omitempty"`
	ClientLeg       failure.Leg                 `json:"client_leg,omitempty"`
	ClientCause     failure.Cause               `json:"client_cause,omitempty"`
	History         []client.Transition         `json:"client_history"`
	Flows           []FlowOutcome               `json:"flows"`
	Summary         Summary                     `json:"summary"`
	Attempts        *AttemptStats               `json:"attempts,omitempty"`
	Probes          []ProbeResult               `json:"probes,omitempty"`
	Firewall        []fwlog.Record              `json:"firewall_log"`
	Gateway         []gateway.Event             `json:"gateway_log"`
	FQDN            map[string]policy.FQDNState `json:"fqdn_objects,omitempty"`
	Exclusions      any                         `json:"exclusions,omitempty"`
	// Events are the plan's events as they were applied.
	Events []AppliedEvent `json:"events,omitempty"`
	// LaptopDatagrams counts what the impairment (udp-loss, impair
	// events) did to the laptop's datagrams; nil without one.
	LaptopDatagrams *fault.Stats `json:"laptop_datagrams,omitempty"`
	// Recovery is the time from the first failed tunnel attempt to the
	// first tunnel up, when both happened.
	Recovery time.Duration `json:"recovery_ns,omitempty"`
	Started  time.Time     `json:"started"`
	Duration time.Duration `json:"duration_ns"`
	// Roles maps address sets to their members, for reading logs.
	Roles Roles `json:"roles"`
	// Interceptor is what a third-party firewall left: its generated
	// configuration, its logs, its version; nil with pinwall's own.
	Interceptor *InterceptorEvidence `json:"interceptor,omitempty"`
	// Capture is the run's packet capture, when the runner made one.
	Capture *Capture `json:"-"`
}

// AttemptStats counts reconnect attempts.
type AttemptStats struct {
	Total  int            `json:"total"`
	Failed int            `json:"failed"`
	Causes map[string]int `json:"causes,omitempty"`
	// AllUpMS is a fleet's time from its clients' start until the last
	// tunnel came up, in milliseconds; zero for reconnects or when one
	// never came up.
	AllUpMS int64 `json:"all_up_ms,omitempty"`
}

// Fraction is Failed/Total.
func (a AttemptStats) Fraction() float64 {
	if a.Total == 0 {
		return 0
	}
	return float64(a.Failed) / float64(a.Total)
}

// Roles names the addresses of a topology.
type Roles struct {
	Laptop      netip.Addr              `json:"laptop"`
	FirewallIn  netip.Addr              `json:"firewall_inside,omitzero"`
	FirewallOut netip.Addr              `json:"firewall_outside,omitzero"`
	Gateways    map[string][]netip.Addr `json:"gateways"`
	Origins     map[string]netip.Addr   `json:"origins"`
	Extra       map[string]netip.Addr   `json:"extra,omitempty"`
	// Fleet are the addresses of a fleet's laptops (Plan.Fleet), which
	// count as the laptop's.
	Fleet []netip.Addr `json:"fleet,omitempty"`
}

// IsLaptop reports whether a is the laptop's address or a fleet laptop's.
func (r Roles) IsLaptop(a netip.Addr) bool {
	return a == r.Laptop || slices.Contains(r.Fleet, a)
}

// RolesOf lists a defaulted Spec's addresses by role.
func RolesOf(s Spec) Roles {
	r := Roles{Laptop: s.Laptop, Gateways: map[string][]netip.Addr{}, Origins: map[string]netip.Addr{}, Extra: map[string]netip.Addr{}}
	if s.Firewall != nil {
		r.FirewallIn, r.FirewallOut = s.Firewall.Inside, s.Firewall.Outside
	}
	for _, g := range s.Gateways {
		r.Gateways[g.Name] = g.Addrs()
	}
	for _, o := range s.Origins {
		r.Origins[o.Name] = o.Addr
	}
	for _, h := range s.ExtraHosts {
		r.Extra[h.Name] = h.Addr
	}
	return r
}

// IsGateway reports whether a belongs to a gateway pool.
func (r Roles) IsGateway(a netip.Addr) bool {
	for _, pool := range r.Gateways {
		for _, x := range pool {
			if x == a {
				return true
			}
		}
	}
	return false
}

// IsOrigin reports whether a is an origin's address.
func (r Roles) IsOrigin(a netip.Addr) bool {
	for _, x := range r.Origins {
		if x == a {
			return true
		}
	}
	return false
}

// Runner runs plans: in-process or in containers, one behaviour.
type Runner interface {
	// Name is "inproc" or "containers".
	Name() string
	// Run executes a plan and returns what was observed. An error means the
	// run could not be carried out (not that the tunnel failed).
	Run(ctx context.Context, p Plan) (*Observation, error)
}

// Impairs reports whether the plan degrades the laptop's datagrams (a
// udp-loss or an impair event): the runners then route the laptop's UDP
// through a fault.ImpairedStack.
func (p Plan) Impairs() bool {
	return p.Spec.Client.UDPLoss > 0 || slices.ContainsFunc(p.Events, func(e Event) bool { return e.Do == EventImpair })
}

// UpWait is how long a run waits for the tunnel before its workload: WaitUp,
// or 5 s when zero.
func (p Plan) UpWait() time.Duration {
	if p.WaitUp > 0 {
		return p.WaitUp
	}
	return 5 * time.Second
}

// Validate checks a plan against its (defaulted) spec.
func (p Plan) Validate() error {
	spec := p.Spec.WithDefaults()
	for i, e := range p.Events {
		if err := e.Validate(spec); err != nil {
			return fmt.Errorf("event %d: %w", i, err)
		}
	}
	if p.Fleet > 0 {
		if p.Reconnects > 0 {
			return errors.New("fleet and reconnects exclude each other")
		}
		if free := fleetRoom(spec); p.Fleet > free {
			return fmt.Errorf("fleet of %d does not fit the LAN %s (%d free addresses): give the topology a larger lan", p.Fleet, spec.LAN, free)
		}
	}
	for i, pr := range p.Probes {
		found := false
		for _, h := range p.Spec.ExtraHosts {
			found = found || h.Name == pr.From
		}
		if !found {
			return fmt.Errorf("probe %d: %q is not an extra host of the topology", i, pr.From)
		}
	}
	return nil
}
