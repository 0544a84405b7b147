package containers_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pinwall/pinwall/harness"
	"github.com/pinwall/pinwall/interceptors"
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

// TestContainersFieldProbeInterceptors runs the field probe behind the
// real interceptors (mitmproxy, squid, sslsplit) where the policy
// translates: behind "decrypt everything" each forges the gateway's
// certificate or fails the session, and the probe must say the tunnel's
// TLS does not come up undecrypted, naming the forged issuer when it saw
// one; behind the bypass of the gateways' addresses, the pinned chain comes through.
func TestContainersFieldProbeInterceptors(t *testing.T) {
	r := containerRunner(t)
	for _, kind := range []interceptors.Kind{interceptors.Mitmproxy, interceptors.Squid, interceptors.SSLsplit} {
		for _, name := range []string{"decrypt-all", "bypass-gateways-any-source"} {
			t.Run(string(kind)+"/"+name, func(t *testing.T) {
				pol, err := policy.Load("../../scenarios/policies/" + name + ".yaml")
				require.NoError(t, err)
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
				defer cancel()
				got, err := r.RunFieldProbe(ctx, harness.Spec{Firewall: &harness.FirewallSpec{Kind: kind, Policy: pol}}, string(kind)+": "+name)
				if errors.Is(err, interceptors.ErrUnsupported) {
					t.Skipf("%s cannot express %s: %v", kind, name, err)
				}
				require.NoError(t, err)
				for _, a := range got.Answers {
					t.Logf("%s %s %s: %s %s", kind, name, a.ID, a.Level, a.Summary)
				}
				A := got.Observed.TLS[0]
				switch name {
				case "decrypt-all":
					assert.False(t, A.Passed(), "%s forged or failed the gateway's session: %+v", kind, A)
					assert.NotEqual(t, probe.OK, got.Answer(probe.AnswerTLS).Level)
					if A.Intercepted() {
						assert.Contains(t, got.Answer(probe.AnswerTLS).Summary, A.Chain.Issuer)
					}
				case "bypass-gateways-any-source":
					assert.True(t, A.Passed(), "%+v", A)
					assert.Equal(t, probe.OK, got.Answer(probe.AnswerTunnel).Level, got.Answer(probe.AnswerTunnel).Summary)
				}
			})
		}
	}
}
