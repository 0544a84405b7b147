package containers_test

import (
	"context"
	"net/netip"
	"testing"
	"time"

	mnet "github.com/moby/moby/api/types/network"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/testcontainers/testcontainers-go/network"

	"github.com/pinwall/pinwall/harness"
	"github.com/pinwall/pinwall/harness/containers"
	"github.com/pinwall/pinwall/scenarios"
)

// containerRunner returns a shared container runner, or skips with a one-line
// reason where no Docker engine answers.
func containerRunner(t *testing.T) *containers.Runner {
	t.Helper()
	if testing.Short() {
		t.Skip("containers: skipped with -short")
	}
	if err := containers.DockerAvailable(context.Background()); err != nil {
		t.Skipf("containers: no Docker engine answers (%v); the container suite needs one", err)
	}
	r := &containers.Runner{}
	t.Cleanup(func() {
		left, err := containers.Leftovers(context.Background())
		require.NoError(t, err)
		assert.Empty(t, left, "every container and network of the runs is removed")
	})
	return r
}

// TestContainersCatalogue runs every catalogue row on Docker networks and
// requires the same verdicts as in process.
func TestContainersCatalogue(t *testing.T) {
	r := containerRunner(t)
	all, err := scenarios.Catalogue()
	require.NoError(t, err)
	runs, err := scenarios.AllRuns(all)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	start := time.Now()
	results := scenarios.Execute(ctx, runs, scenarios.ExecOptions{Runner: r, Parallel: 2})
	t.Logf("container catalogue: %d runs in %v (image build %v)", len(results), time.Since(start).Round(time.Millisecond), r.ImageBuildTime().Round(time.Millisecond))
	for _, res := range results {
		for _, c := range res.Checks {
			if !c.Pass {
				t.Logf("%s: FAILED %s: expected %s; observed %s", res.Key(), c.Name, c.Expected, c.Observed)
			}
		}
		assert.Equal(t, scenarios.Pass, res.Verdict, "%s: %s", res.Key(), res.Error)
		assert.Equal(t, "containers", res.Mode)
		// The firewall logs carry the topology's real addresses.
		for _, rec := range res.FirewallLog {
			if rec.Src.Addr() == res.Roles.Laptop && res.Roles.IsGateway(rec.Dst.Addr()) && rec.NATSrc.IsValid() {
				assert.Equal(t, res.Roles.FirewallOut, rec.NATSrc.Addr(), "%s: NAT source", res.Key())
			}
		}
	}
}

// TestContainersFirewallPause freezes the firewall container for longer
// than the client's timeouts: no flow may be lost silently — each completes
// verified or fails with a named cause.
func TestContainersFirewallPause(t *testing.T) {
	r := containerRunner(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	plan := harness.Plan{
		Spec: harness.Spec{
			Firewall: &harness.FirewallSpec{PolicyYAML: "rules: [{name: allow-all, action: allow}]"},
			Client:   harness.ClientSpec{Keepalive: 300 * time.Millisecond, FallbackTimeout: 300 * time.Millisecond, HandshakeTimeout: time.Second, TunnelWait: time.Second},
		},
		Workload: harness.Workload{Flows: 20, Concurrency: 2, Spacing: 150 * time.Millisecond, Retries: -1, Timeout: 2 * time.Second},
		Events:   []harness.Event{{At: 500 * time.Millisecond, Do: harness.EventFirewallPause, Duration: 3 * time.Second}},
		Hold:     6 * time.Second,
	}
	obs, err := r.Run(ctx, plan)
	require.NoError(t, err)
	require.Len(t, obs.Events, 1)
	assert.Empty(t, obs.Events[0].Error)
	failed := 0
	for _, f := range obs.Flows {
		if !f.Verified {
			failed++
			assert.NotEmpty(t, f.Cause, "flow %d failed without a named cause: %s", f.Index, f.Error)
			assert.NotEmpty(t, f.Leg, "flow %d failed without a leg", f.Index)
		}
	}
	assert.Positive(t, failed, "a frozen firewall for 3s beyond every timeout fails some flows")
	assert.Less(t, failed, len(obs.Flows), "flows before and after the pause complete")
	var downs int
	for _, h := range obs.History {
		if h.Event == "down" {
			downs++
		}
	}
	assert.Positive(t, downs, "the client noticed the tunnel die under the pause")
	assert.True(t, obs.Tunnel.Up, "and rebuilt it afterwards")
}

// TestContainersUnderlayTaken: a network already on the engine over the
// first underlay slot's subnet (another process's run, say) moves the run
// to another slot instead of failing it.
func TestContainersUnderlayTaken(t *testing.T) {
	r := containerRunner(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	squatter, err := network.New(ctx, network.WithInternal(), network.WithLabels(map[string]string{containers.LabelRun: "squatter"}),
		network.WithIPAM(&mnet.IPAM{Config: []mnet.IPAMConfig{{Subnet: netip.MustParsePrefix("198.18.10.0/24")}}}))
	require.NoError(t, err)
	// Registered after containerRunner's leftover check, so it runs first.
	t.Cleanup(func() { require.NoError(t, squatter.Remove(context.Background())) })

	plan := harness.Plan{
		Spec:     harness.Spec{Firewall: &harness.FirewallSpec{PolicyYAML: "rules: [{name: allow-all, action: allow}]"}},
		Workload: harness.Workload{Flows: 2},
	}
	obs, err := r.Run(ctx, plan)
	require.NoError(t, err, "the run moves to a free underlay")
	assert.Equal(t, 2, obs.Summary.Verified)
}
