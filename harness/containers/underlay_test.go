package containers

import (
	"context"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

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

// TestOverlappingSlots: a network anywhere in a slot's subnets (either of
// them, or a wider one covering both) takes the slot; others stay free.
func TestOverlappingSlots(t *testing.T) {
	taken := overlappingSlots([]netip.Prefix{
		netip.MustParsePrefix("198.18.12.0/24"),   // slot 2's LAN
		netip.MustParsePrefix("198.18.105.64/26"), // inside slot 5's internet side
		netip.MustParsePrefix("172.17.0.0/16"),    // docker0: no slot
	})
	assert.Equal(t, map[int]bool{2: true, 5: true}, taken)
	all := overlappingSlots([]netip.Prefix{netip.MustParsePrefix("198.18.0.0/15")})
	assert.Len(t, all, MaxParallelRuns, "a /15 covers every slot")
}

func TestOwnerLabel(t *testing.T) {
	me := Self()
	require.NotZero(t, me.PID)
	got, err := ParseOwner(me.String())
	require.NoError(t, err)
	assert.Equal(t, me, got)
	assert.Equal(t, Alive, me.Check())
	o, err := ParseOwner("ci-runner/7/99")
	require.NoError(t, err)
	assert.Equal(t, Owner{Host: "ci-runner", PID: 7, Start: 99}, o)
	for _, bad := range []string{"", "host", "host/1", "host/x/1", "host/1/x", "host/-1/5"} {
		_, err := ParseOwner(bad)
		assert.Error(t, err, bad)
	}
	if me.Start != 0 {
		// The same pid with another start time is a reused pid: dead.
		reused := me
		reused.Start++
		assert.Equal(t, Dead, reused.Check())
	}
	other := me
	other.Host += ".elsewhere"
	assert.Equal(t, Elsewhere, other.Check())
	// Another machine with the same hostname (machines made from one
	// image), or this one before a reboot: its pids are not ours.
	host, _ := os.Hostname()
	sameName := me
	sameName.Host = host
	if me.Host != host { // this kernel has a boot id
		assert.Equal(t, Elsewhere, sameName.Check(), "a hostname alone is not this machine")
		sameName.Host = host + "@000000000000"
		assert.Equal(t, Elsewhere, sameName.Check(), "another boot is not this machine")
	}
}

// TestJudge: a run is removed only when its owner is gone, or (owner
// elsewhere or unknown) older than the TTL.
func TestJudge(t *testing.T) {
	now := time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)
	cfg := CleanConfig{TTL: time.Hour, Now: func() time.Time { return now }}
	me := Self()
	gone := me
	gone.Start++
	elsewhere := me
	elsewhere.Host += ".elsewhere"
	tests := []struct {
		name  string
		owner string
		age   time.Duration
		left  bool
	}{
		{"owner alive, old", me.String(), 10 * time.Hour, true},
		{"owner gone, new", gone.String(), time.Second, false},
		{"elsewhere, young", elsewhere.String(), time.Minute, true},
		{"elsewhere, past ttl", elsewhere.String(), 2 * time.Hour, false},
		{"no label, young", "", time.Minute, true},
		{"no label, past ttl", "", 2 * time.Hour, false},
	}
	for _, tt := range tests {
		why, left := judge(tt.owner, now.Add(-tt.age), cfg)
		assert.Equal(t, tt.left, left, "%s: %s", tt.name, why)
		assert.NotEmpty(t, why)
	}
}

// FuzzParseOwner: an owner label on a shared engine is anyone's text; the
// parser never panics, and what it accepts prints back to itself.
func FuzzParseOwner(f *testing.F) {
	for _, s := range []string{"vm/16172/114364", "host.with/slash/1/2", "", "/", "//", "a/1/", "a//1", "a/-1/2", "a/1/99999999999999999999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		o, err := ParseOwner(s)
		if err != nil {
			return
		}
		require.Positive(t, o.PID)
		again, err := ParseOwner(o.String())
		require.NoError(t, err)
		require.Equal(t, o, again)
	})
}
