package bench

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pinwall/pinwall/tunnel"
)

// TestFleetSmall brings a small fleet up over both transports in this
// process: every tunnel up with its own device certificate, every flow
// checked. Figures are the report's business, not asserted here.
func TestFleetSmall(t *testing.T) {
	if testing.Short() {
		t.Skip("brings tunnels up")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, tr := range []tunnel.Transport{tunnel.TransportTLS, tunnel.TransportDTLS} {
		t.Run(string(tr), func(t *testing.T) {
			res, err := Fleet(ctx, FleetConfig{N: 12, Concurrency: 4}, tr)
			require.NoError(t, err)
			assert.Empty(t, res.Errors)
			assert.Equal(t, 12, res.Up)
			assert.Equal(t, 12, res.Verified)
			assert.Len(t, res.Setup, 12)
		})
	}
	t.Run("decrypt", func(t *testing.T) {
		res, err := FleetDecrypt(ctx, 8)
		require.NoError(t, err)
		assert.Equal(t, 8, res.N)
	})
}

// TestFleetExclusionSmall: the learned-exclusion fleet at a small size
// brings every laptop up and learns the exclusion.
func TestFleetExclusionSmall(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a topology")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := FleetExclusion(ctx, 10)
	require.NoError(t, err)
	assert.Equal(t, 10, res.Up)
	assert.Positive(t, res.Taught)
	assert.Positive(t, res.Excluded)
}
