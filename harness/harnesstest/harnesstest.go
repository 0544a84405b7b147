// Package harnesstest holds the test helpers of pinwall's Go API: a
// topology started for one test and stopped by its cleanup.
//
//	topo := harnesstest.New(t, harness.WithFirewallPolicy(policyYAML))
//	flows := topo.RunWorkload(ctx, harness.Workload{Flows: 6})
//	obs, err := topo.Observe(ctx, flows)
package harnesstest

import (
	"context"
	"testing"
	"time"

	"github.com/pinwall/pinwall/harness"
)

// New starts an in-process topology for a test and stops it with
// t.Cleanup. It fails the test if the topology cannot start.
func New(t testing.TB, opts ...harness.Option) *harness.Topology {
	t.Helper()
	var spec harness.Spec
	for _, o := range opts {
		o(&spec)
	}
	return Start(t, spec)
}

// Start is New for a whole Spec: it starts spec in process, fails the test
// if the topology cannot start within 30 s, and registers a cleanup that
// closes the topology and fails the test if closing fails.
func Start(t testing.TB, spec harness.Spec) *harness.Topology {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	topo, err := harness.StartInProcess(ctx, spec, harness.Options{})
	if err != nil {
		t.Fatalf("harness: %v", err)
	}
	t.Cleanup(func() {
		if err := topo.Close(); err != nil {
			t.Errorf("harness: close: %v", err)
		}
	})
	return topo
}
