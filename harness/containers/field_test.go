package containers_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pinwall/pinwall/harness"
	"github.com/pinwall/pinwall/mitm/policy"
	"github.com/pinwall/pinwall/probe"
	"github.com/pinwall/pinwall/probe/probetest"
)

// TestContainersFieldProbe runs the field probe in containers, on the
// laptop behind pinwall's firewall with the field gateways at the
// catalogue's addresses, and requires the same answers as the probe in
// process behind the same policy (without a decoy: the container topology
// has none).
func TestContainersFieldProbe(t *testing.T) {
	r := containerRunner(t)
	for _, name := range []string{"sni-only", "decrypt-all-cc-learn"} {
		t.Run(name, func(t *testing.T) {
			pol, err := policy.Load("../../scenarios/policies/" + name + ".yaml")
			require.NoError(t, err)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			got, err := r.RunFieldProbe(ctx, harness.Spec{Firewall: &harness.FirewallSpec{Policy: pol}}, "containers: "+name)
			require.NoError(t, err)
			f, err := probetest.Start(ctx, pol, probetest.Options{NoDecoy: true})
			require.NoError(t, err)
			defer f.Close()
			want, err := probe.Run(ctx, probe.Config{Bundle: f.Bundle, Identity: f.Identity, Stack: f.Laptop(), Label: "in process: " + name})
			require.NoError(t, err)
			for _, id := range []string{probe.AnswerDTLS, probe.AnswerTLS, probe.AnswerFailover, probe.AnswerBypass, probe.AnswerTunnel} {
				g, w := got.Answer(id), want.Answer(id)
				t.Logf("%s %s: containers %s (%s) | in process %s", name, id, g.Level, g.Summary, w.Level)
				assert.Equal(t, w.Level, g.Level, "%s: containers %q, in process %q", id, g.Summary, w.Summary)
				assert.Equal(t, w.KeyedOn, g.KeyedOn, id)
			}
			assert.True(t, got.Observed.Record != nil || got.Observed.RecordError != "", "the record was fetched or why not said")
		})
	}
}
