package bench

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/pinwall/pinwall/scenarios"
)

func TestRatioAtMost(t *testing.T) {
	within := WallTime("captured", 66*time.Second, 0).RatioAtMost(64, GoalCaptureOverhead, "without")
	assert.InDelta(t, 66.0/64, within.Ratio, 1e-9)
	assert.Equal(t, Pass, within.Verdict)
	over := WallTime("captured", 80*time.Second, 0).RatioAtMost(64, GoalCaptureOverhead, "without")
	assert.Equal(t, Miss, over.Verdict)
}

func TestMedianOf(t *testing.T) {
	tests := []struct {
		in     []time.Duration
		median time.Duration
		spread string
	}{
		{[]time.Duration{8600 * time.Millisecond, 4 * time.Second, 4100 * time.Millisecond}, 4100 * time.Millisecond, "8.6 / 4.0 / 4.1 s"},
		{[]time.Duration{3 * time.Second}, 3 * time.Second, "3.0 s"},
	}
	for _, tt := range tests {
		m, spread := medianOf(tt.in)
		assert.Equal(t, tt.median, m)
		assert.Equal(t, tt.spread, spread)
	}
}

// TestLogUnexpected: a run not as expected is logged with its error and
// every failed check (expected and observed), and passing checks are not.
func TestLogUnexpected(t *testing.T) {
	var b strings.Builder
	logUnexpected(&b, "containers, warm", scenarios.Result{
		ID: "backup-gateway", Variant: "without-fix", Verdict: scenarios.Fail,
		Checks: []scenarios.Check{
			{Name: "tunnel state", Expected: "down", Observed: "down", Pass: true},
			{Name: "failure leg", Expected: "firewall-gateway", Observed: "client-gateway", Pass: false},
		},
	})
	assert.Equal(t, "bench: catalogue containers, warm: backup-gateway/without-fix fail\n"+
		"bench:   check \"failure leg\": expected firewall-gateway, observed client-gateway\n", b.String())
}
