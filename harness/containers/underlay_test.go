package containers

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestUnderlaySlotsDisjoint: runs at once never share a Docker subnet, and
// every slot's bridges and node addresses sit inside its own subnets.
func TestUnderlaySlotsDisjoint(t *testing.T) {
	seen := map[string]int{}
	for k := range MaxParallelRuns {
		u := underlaySlot(k)
		for _, p := range []string{u.lan.String(), u.inet.String()} {
			prev, dup := seen[p]
			require.False(t, dup, "slot %d reuses %s of slot %d", k, p, prev)
			seen[p] = k
		}
		assert.True(t, u.lan.Contains(u.lanBridge), "slot %d: lan bridge", k)
		assert.True(t, u.inet.Contains(u.inetBridge), "slot %d: internet bridge", k)
		assert.True(t, u.lan.Contains(underlayOf(firstGatewayOnNet, u.lan)))
		assert.True(t, u.inet.Contains(underlayOf(firstGatewayOnNet, u.inet)))
		assert.True(t, u.lan.Addr().Is4() && u.lan.Addr().As4()[0] == 198 && u.lan.Addr().As4()[1] == 18, "slot %d stays on 198.18.0.0/15", k)
	}
	assert.Equal(t, "198.18.10.0/24", underlaySlot(0).lan.String(), "slot 0 is the compose export's")
	assert.Equal(t, "198.18.100.0/24", underlaySlot(0).inet.String())
}

// TestContainersSlotsBounded: Parallel caps the runs holding containers,
// and a cancelled wait for a slot returns the context's error.
func TestContainersSlotsBounded(t *testing.T) {
	c := &Runner{Parallel: 2}
	a, err := c.acquire(t.Context())
	require.NoError(t, err)
	b, err := c.acquire(t.Context())
	require.NoError(t, err)
	assert.NotEqual(t, a, b)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err = c.acquire(ctx)
	require.ErrorIs(t, err, context.Canceled)
	c.release(a)
	got, err := c.acquire(t.Context())
	require.NoError(t, err)
	assert.Equal(t, a, got, "a released slot is handed out again")
}
