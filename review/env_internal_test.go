package review

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/pinwall/pinwall/harness"
)

// TestUntilWakes: a condition that changes with no firewall record and no
// client change (the over-bypass QUIC probe's answer) is seen at once when
// its goroutine wakes the waiter, and only at ctx's end when it does not.
// A lost wake-up once made pinwall check report "probes unanswered within
// 30s" for a policy it had answered.
func TestUntilWakes(t *testing.T) {
	tests := []struct {
		name  string
		wake  bool
		limit time.Duration
		want  error
	}{
		{"woken", true, 10 * time.Second, nil},
		{"not woken", false, 100 * time.Millisecond, context.DeadlineExceeded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := &lab{topo: &harness.Topology{}, sig: make(signal, 1)}
			var answered atomic.Bool
			ready := make(chan struct{})
			done := make(chan struct{})
			go func() {
				defer close(done)
				<-ready // the waiter has checked once and is waiting
				answered.Store(true)
				if tt.wake {
					l.sig.wake()
				}
			}()
			ctx, cancel := context.WithTimeout(context.Background(), tt.limit)
			defer cancel()
			checks := 0
			err := l.until(ctx, func() bool {
				checks++
				if checks == 1 {
					close(ready)
				}
				return answered.Load()
			})
			<-done
			assert.ErrorIs(t, err, tt.want)
		})
	}
}
