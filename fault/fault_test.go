package fault_test

import (
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/pinwall/pinwall/fault"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestImpairmentValidate(t *testing.T) {
	tests := map[string]struct {
		im  fault.Impairment
		err string
	}{
		"zero":                {fault.Impairment{}, ""},
		"everything":          {fault.Impairment{Loss: 0.05, Latency: 20 * time.Millisecond, Jitter: 5 * time.Millisecond, Reorder: 0.25}, ""},
		"loss over one":       {fault.Impairment{Loss: 1.5}, "loss 1.5 is not within 0..1"},
		"negative reorder":    {fault.Impairment{Reorder: -0.1, Latency: time.Millisecond}, "reorder -0.1"},
		"jitter over latency": {fault.Impairment{Latency: time.Millisecond, Jitter: 2 * time.Millisecond}, "exceeds the latency"},
		"reorder, no delay":   {fault.Impairment{Reorder: 0.5}, "reorder needs a latency"},
		"negative latency":    {fault.Impairment{Latency: -time.Second}, "must not be negative"},
		"an hour of latency":  {fault.Impairment{Latency: time.Hour}, "over a minute"},
	}
	for name, tt := range tests {
		err := tt.im.Validate()
		if tt.err == "" {
			assert.NoError(t, err, name)
			continue
		}
		require.Error(t, err, name)
		assert.Contains(t, err.Error(), tt.err, name)
	}
	assert.Equal(t, "none", fault.Impairment{}.String())
	assert.Equal(t, "loss 5% delay 20ms 5ms reorder 25%",
		fault.Impairment{Loss: 0.05, Latency: 20 * time.Millisecond, Jitter: 5 * time.Millisecond, Reorder: 0.25}.String())
}

// TestImpairerFractions: over many datagrams the drops, the delays and the
// reordered (undelayed) ones come at the configured rates, the delays stay
// within latency ± jitter, and the same seed repeats the same choices.
func TestImpairerFractions(t *testing.T) {
	im := fault.Impairment{Loss: 0.1, Latency: 20 * time.Millisecond, Jitter: 5 * time.Millisecond, Reorder: 0.25, Seed: 7}
	const n = 20000
	p := fault.NewImpairer(im)
	var dropped, atOnce int
	var choices []time.Duration
	for range n {
		drop, d := p.Next()
		switch {
		case drop:
			dropped++
			choices = append(choices, -1)
			continue
		case d == 0:
			atOnce++
		default:
			assert.GreaterOrEqual(t, d, 15*time.Millisecond)
			assert.LessOrEqual(t, d, 25*time.Millisecond)
		}
		choices = append(choices, d)
	}
	assert.InDelta(t, 0.1, float64(dropped)/n, 0.01, "loss")
	assert.InDelta(t, 0.25, float64(atOnce)/float64(n-dropped), 0.015, "reorder among the delivered")
	q := fault.NewImpairer(im)
	for i := range 100 {
		drop, d := q.Next()
		if drop {
			d = -1
		}
		require.Equal(t, choices[i], d, "datagram %d: the seed repeats the choices", i)
	}
	all := fault.NewImpairer(fault.Impairment{Loss: 1})
	drop, _ := all.Next()
	assert.True(t, drop, "loss 1 drops everything")
	none := fault.NewImpairer(fault.Impairment{})
	drop, d := none.Next()
	assert.False(t, drop)
	assert.Zero(t, d)
}

// TestDelayLine: functions run in due order, equal times in sending order,
// the goroutine ends when the line is empty, and Close drops what waits.
func TestDelayLine(t *testing.T) {
	var dl fault.DelayLine
	var mu sync.Mutex
	var got []int
	done := make(chan struct{})
	record := func(i int) func() {
		return func() {
			mu.Lock()
			got = append(got, i)
			if len(got) == 5 {
				close(done)
			}
			mu.Unlock()
		}
	}
	now := time.Now()
	dl.Send(now.Add(60*time.Millisecond), record(4))
	dl.Send(now.Add(20*time.Millisecond), record(1))
	dl.Send(now.Add(20*time.Millisecond), record(2))
	dl.Send(now.Add(-time.Second), record(0)) // overdue: at once
	dl.Send(now.Add(40*time.Millisecond), record(3))
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the delay line stalled")
	}
	assert.Equal(t, []int{0, 1, 2, 3, 4}, got)
	assert.GreaterOrEqual(t, time.Since(now), 60*time.Millisecond)
	// An empty line has no goroutine left.
	deadline := time.Now().Add(5 * time.Second)
	for goleak.Find() != nil {
		require.True(t, time.Now().Before(deadline), "an empty line keeps a goroutine: %v", goleak.Find())
		time.Sleep(10 * time.Millisecond)
	}

	ran := make(chan struct{}, 1)
	dl.Send(time.Now().Add(time.Hour), func() { ran <- struct{}{} })
	assert.Equal(t, 1, dl.Len())
	dl.Close()
	dl.Close()
	assert.Zero(t, dl.Len())
	dl.Send(time.Now(), func() { ran <- struct{}{} })
	select {
	case <-ran:
		t.Fatal("a closed line ran a function")
	case <-time.After(50 * time.Millisecond):
	}
}
