package harness

import (
	"context"

	"github.com/pinwall/pinwall/client"
)

// Option shapes a Spec built in code.
type Option func(*Spec)

// WithFirewallPolicy puts a firewall with this policy (mitm/policy YAML)
// between the laptop and the internet.
func WithFirewallPolicy(policyYAML string) Option {
	return func(s *Spec) { s.Firewall = &FirewallSpec{PolicyYAML: policyYAML} }
}

// WithTransport sets the client's transport mode.
func WithTransport(m client.TransportMode) Option {
	return func(s *Spec) { s.Client.Transport = m }
}

// WithPin sets what the client pins.
func WithPin(p PinMode) Option { return func(s *Spec) { s.Client.Pin = p } }

// WithDeviceCert sets which device certificate the client presents.
func WithDeviceCert(d DeviceCertMode) Option { return func(s *Spec) { s.Client.DeviceCert = d } }

// WithTrust sets the CAs the laptop trusts.
func WithTrust(ts ...TrustStore) Option { return func(s *Spec) { s.Client.Trust = ts } }

// WithFailMode sets the client's fail mode.
func WithFailMode(m client.FailMode) Option { return func(s *Spec) { s.Client.FailMode = m } }

// WithAnonymousGateway turns device authentication off at the gateways.
func WithAnonymousGateway() Option { return func(s *Spec) { s.Gateway.AllowAnonymous = true } }

// WithSpec edits the Spec directly.
func WithSpec(f func(*Spec)) Option { return f }

// Observe ends the run (the client closes, logs are completed) and
// returns everything the components logged, as a Runner would.
func (t *Topology) Observe(ctx context.Context, flows []FlowOutcome) (*Observation, error) {
	obs := &Observation{Mode: "inproc", Roles: RolesOf(t.Spec), Flows: flows, Summary: Summarize(flows)}
	if t.Client != nil {
		obs.Tunnel = t.Client.State()
		obs.History = t.Client.History()
		ExplainLost(obs.Flows, obs.History)
		if err := t.Client.LastError(); err != nil {
			obs.ClientError = err
		}
	}
	if err := t.Drain(ctx); err != nil {
		return obs, err
	}
	t.collect(obs)
	return obs, nil
}
