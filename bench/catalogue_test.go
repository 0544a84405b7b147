package bench

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestRatioAtMost(t *testing.T) {
	within := WallTime("captured", 66*time.Second, 0).RatioAtMost(64, GoalCaptureOverhead, "without")
	assert.InDelta(t, 66.0/64, within.Ratio, 1e-9)
	assert.Equal(t, Pass, within.Verdict)
	over := WallTime("captured", 80*time.Second, 0).RatioAtMost(64, GoalCaptureOverhead, "without")
	assert.Equal(t, Miss, over.Verdict)
}
