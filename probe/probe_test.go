package probe_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/pinwall/pinwall/mitm/policy"
	"github.com/pinwall/pinwall/probe"
	"github.com/pinwall/pinwall/probe/probetest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func runIn(t *testing.T, pol *policy.Policy, opts probetest.Options) *probe.Result {
	t.Helper()
	ctx := context.Background()
	f, err := probetest.Start(ctx, pol, opts)
	require.NoError(t, err)
	t.Cleanup(func() { f.Close() })
	res, err := probe.Run(ctx, probe.Config{Bundle: f.Bundle, Identity: f.Identity, Stack: f.Laptop(), Label: "test", StepTimeout: 2 * time.Second, Rate: 50})
	require.NoError(t, err)
	return res
}

func TestProbeDebug(t *testing.T) {
	for _, file := range []string{"allow-all", "decrypt-all", "sni-only"} {
		pol, err := policy.Load("../scenarios/policies/" + file + ".yaml")
		require.NoError(t, err)
		res := runIn(t, pol, probetest.Options{})
		t.Logf("== %s", file)
		for _, a := range res.Observed.DTLS {
			t.Logf("dtls %+v", a)
		}
		for _, a := range res.Observed.TLS {
			t.Logf("tls %s %s %q %s %s %s tunnel=%v", a.Key, a.Addr, a.SNI, a.Outcome, a.Cause, a.Error, a.Tunnel)
		}
		for _, a := range res.Answers {
			t.Logf("%s %s: %s", a.ID, a.Level, a.Summary)
		}
		t.Logf("record err %s, rec=%v", res.Observed.RecordError, res.Observed.Record != nil)
	}
}
