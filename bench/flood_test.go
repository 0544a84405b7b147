package bench_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pinwall/pinwall/bench"
)

// TestPreAuthFloods runs the two pre-authentication floods of issue 9 at
// their full counts (4,300 idle TCP connections; 20,000 DTLS ClientHellos,
// each from a new source port) over a shorter window, and asserts the ratio
// of legitimate tunnels that came up with their flow intact. The RSS goal
// is measured by make bench, not asserted here.
func TestPreAuthFloods(t *testing.T) {
	if testing.Short() {
		t.Skip("floods take about 25 s")
	}
	cfg := bench.FloodConfig{Window: 10 * time.Second, Legit: 40}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	t.Run("idle tcp", func(t *testing.T) {
		res, err := bench.FloodIdleTCP(ctx, cfg)
		require.NoError(t, err)
		t.Logf("%d idle connections: %d/%d TLS tunnels up, RSS %d→%d MiB, gateway %+v, errors %q",
			res.Sent, res.Up, res.Legit, res.BaseRSS>>20, res.PeakRSS>>20, res.Stats, res.Errors)
		assert.GreaterOrEqual(t, res.Ratio(), bench.FloodLegitGoal, "errors: %q", res.Errors)
		assert.Equal(t, 4300, res.Sent)
	})
	t.Run("dtls hellos", func(t *testing.T) {
		res, err := bench.FloodDTLSHellos(ctx, cfg)
		require.NoError(t, err)
		t.Logf("%d hellos: %d/%d DTLS tunnels up, RSS %d→%d MiB, gateway %+v, errors %q",
			res.Sent, res.Up, res.Legit, res.BaseRSS>>20, res.PeakRSS>>20, res.Stats, res.Errors)
		assert.GreaterOrEqual(t, res.Ratio(), bench.FloodLegitGoal, "errors: %q", res.Errors)
		assert.Greater(t, res.Sent, 19000)
	})
}
