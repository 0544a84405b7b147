package containers

import (
	"encoding/json"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pinwall/pinwall/harness"
	"github.com/pinwall/pinwall/internal/node"
	"github.com/pinwall/pinwall/pki"
)

// TestGatewayNodes: a run's gateways share one node unless an event acts
// on one of them, and either way every gateway address is routed to the
// node that holds it; no Docker needed.
func TestGatewayNodes(t *testing.T) {
	spec := harness.Spec{}.WithDefaults()
	require.Len(t, spec.Gateways, 2)
	set, err := pki.NewSet(pki.Config{}, spec.Tenant)
	require.NoError(t, err)
	tests := []struct {
		name   string
		events []harness.Event
		shared bool
	}{
		{"no events", nil, true},
		{"a policy event", []harness.Event{{Do: harness.EventPolicy}}, true},
		{"a gateway-down event", []harness.Event{{Do: harness.EventGatewayDown, Target: spec.Gateways[0].Name}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			run := &containerRun{plan: harness.Plan{Spec: spec, Events: tt.events}, set: set}
			nodes, routes := run.gatewayNodes(nil, node.PEMPair{}, nil)
			assert.Equal(t, tt.shared, run.sharedGateways())
			via := map[netip.Addr]netip.Addr{}
			for _, r := range routes {
				via[r.Dst.Addr()] = r.Via
			}
			if tt.shared {
				require.Len(t, nodes, 1)
				n := nodes[0]
				assert.Equal(t, sharedGatewaysNode, n.Name)
				_, inet := run.overlayAddrs(n)
				assert.Equal(t, firstGatewayOnNet, inet)
				require.Len(t, n.Gateway.Hosts, len(spec.Gateways))
				for i, g := range spec.Gateways {
					assert.Equal(t, g.Name, n.Gateway.Hosts[i].Name)
					assert.Equal(t, g.Addrs(), n.Gateway.Hosts[i].Addrs)
					for _, a := range g.Addrs() {
						assert.Contains(t, n.Net.Addrs, netip.PrefixFrom(a, 32), "the node holds %s", a)
						assert.Equal(t, firstGatewayOnNet, via[a], "%s is routed to the shared node", a)
					}
				}
				return
			}
			require.Len(t, nodes, len(spec.Gateways))
			for i, g := range spec.Gateways {
				n := nodes[i]
				assert.Equal(t, g.Name, n.Name)
				assert.Empty(t, n.Gateway.Hosts)
				_, inet := run.overlayAddrs(n)
				assert.Equal(t, nthAddr(firstGatewayOnNet, i), inet)
				for _, a := range g.Addrs() {
					assert.Equal(t, inet, via[a], "%s is routed to %s's node", a, g.Name)
				}
			}
		})
	}
}

// TestComposeOwnGatewaysNoSignals: the compose export, which nothing
// signals, has a laptop that starts at once and a container per gateway
// (a user stops one to see the failover).
func TestComposeOwnGatewaysNoSignals(t *testing.T) {
	fw := harness.FirewallSpec{}
	plan := harness.Plan{Spec: harness.Spec{Firewall: &fw}, Events: nil}
	set, err := pki.NewSet(pki.Config{}, harness.DefaultTenant)
	require.NoError(t, err)
	files, err := ComposeFiles(plan, set, "pinwall-node:test")
	require.NoError(t, err)
	spec := plan.Spec.WithDefaults()
	for _, g := range spec.Gateways {
		assert.Contains(t, files, sanitize(g.Name)+".json", "a service of its own for %s", g.Name)
		assert.Contains(t, string(files["compose.yaml"]), "  "+sanitize(g.Name)+":\n")
	}
	assert.NotContains(t, files, sanitize(sharedGatewaysNode)+".json")
	var laptop node.Config
	require.NoError(t, json.Unmarshal(files["laptop.json"], &laptop))
	require.NotNil(t, laptop.Client)
	assert.False(t, laptop.Client.WaitStart, "nothing sends compose's laptop SIGCONT")
	assert.False(t, laptop.Client.EventsSignalled)
}
