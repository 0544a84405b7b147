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

func runField(t *testing.T, pol *policy.Policy, opts probetest.Options) (*probe.Result, *probetest.Field) {
	t.Helper()
	ctx := context.Background()
	f, err := probetest.Start(ctx, pol, opts)
	require.NoError(t, err)
	t.Cleanup(func() { f.Close() })
	res, err := probe.Run(ctx, probe.Config{Bundle: f.Bundle, Identity: f.Identity, Stack: f.Laptop(), Label: "test", StepTimeout: 2 * time.Second, Rate: 50})
	require.NoError(t, err)
	return res, f
}
