package scenarios

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pinwall/pinwall/failure"
	"github.com/pinwall/pinwall/gateway"
	"github.com/pinwall/pinwall/harness"
	"github.com/pinwall/pinwall/interceptors"
)

// TestEndpointRefinementAndOneOf: with a tool in the firewall's place the
// endpoints place the failure, and a racing tool's row accepts either of
// two outcomes.
func TestEndpointRefinementAndOneOf(t *testing.T) {
	tool := &harness.InterceptorEvidence{Kind: interceptors.SSLsplit}
	refused := gateway.Event{Event: gateway.EventTunnelRefused, Cause: failure.CauseClientCertRequired, Client: "198.51.100.1:40000"}
	oneOf := Expect{Failure: &FailureExpect{OneOf: []LegCause{
		{Leg: LegName(failure.LegFirewallGateway), Cause: CauseName(failure.CauseClientCertRequired)},
		{Leg: LegName(failure.LegClientFirewall), Cause: CauseName(failure.CausePinMismatch)},
	}}}
	tests := []struct {
		name       string
		leg        failure.Leg
		cause      failure.Cause
		gw         []gateway.Event
		deviceCert bool
		tool       *harness.InterceptorEvidence
		want       failure.Leg
		wantCause  failure.Cause
		pass       bool
	}{
		{"pin mismatch: the firewall presented the chain", failure.LegClientGateway, failure.CausePinMismatch, nil, true, tool, failure.LegClientFirewall, failure.CausePinMismatch, true},
		{"a reset, and the gateway refused a handshake without a certificate", failure.LegClientGateway, failure.CauseConnectionReset, []gateway.Event{refused}, true, tool, failure.LegFirewallGateway, failure.CauseClientCertRequired, true},
		{"the client itself has no certificate: its own handshake was refused", failure.LegClientGateway, failure.CauseConnectionReset, []gateway.Event{refused}, false, tool, failure.LegClientGateway, failure.CauseClientCertRequired, false},
		{"pinwall's firewall without its log: the endpoints (Attribute) place a pin mismatch too", failure.LegClientGateway, failure.CausePinMismatch, nil, true, nil, failure.LegClientFirewall, failure.CausePinMismatch, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			obs := &harness.Observation{ClientLeg: tt.leg, ClientCause: tt.cause, ClientErrorText: "x", Gateway: tt.gw, Interceptor: tt.tool}
			res := Result{Expected: oneOf}
			judge(&res, obs, tt.deviceCert)
			require.NotNil(t, res.Observed.Failure)
			assert.Equal(t, tt.want, res.Observed.Failure.Leg)
			assert.Equal(t, tt.wantCause, res.Observed.Failure.Cause)
			require.Len(t, res.Checks, 1)
			assert.Equal(t, tt.pass, res.Checks[0].Pass, "%+v", res.Checks[0])
			assert.Contains(t, res.Checks[0].Expected, "one of: leg firewall-gateway, cause client-certificate-required; leg client-firewall, cause pin-mismatch")
		})
	}
	assert.Error(t, FailureExpect{Leg: "client-firewall", OneOf: oneOf.Failure.OneOf}.Validate())
}
