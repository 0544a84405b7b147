package gateway

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pinwall/pinwall/tunnel"
)

// Refusal logging bounds.
const (
	// refusalSamples is how many refusals per source, transport and
	// interval are logged one by one as tunnel-refused events.
	refusalSamples = 10
	// refusalSources bounds the sources counted per interval; refusals from
	// further sources are summed under refusalOther.
	refusalSources = 1024
	// refusalOther names the sources beyond refusalSources in a summary.
	refusalOther = "other"
)

type refusalKey struct {
	src string // an IP address, or refusalOther
	tr  tunnel.Transport
}

type refusalCount struct {
	total, logged int
	kinds         map[string]int
}

// refusalLog keeps refused tunnel attempts from flooding the gateway's log
// (a flood of idle connections once wrote 104,661 tunnel-refused events in
// 30 s). Per source and transport, the first refusalSamples refusals of an
// interval are logged one by one; the rest are only counted, and at the end
// of the interval one refusal-summary event per source that had more says
// how many there were and why. Its memory is bounded by refusalSources.
type refusalLog struct {
	mu     sync.Mutex
	start  time.Time
	counts map[refusalKey]*refusalCount
}

func newRefusalLog(now time.Time) *refusalLog {
	return &refusalLog{start: now, counts: make(map[refusalKey]*refusalCount)}
}

// note counts one refusal of kind from src over tr and reports whether it
// is among the samples to log in full.
func (r *refusalLog) note(src netip.Addr, tr tunnel.Transport, kind string, sample bool) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	k := refusalKey{src.Unmap().String(), tr}
	c, ok := r.counts[k]
	if !ok {
		if len(r.counts) >= refusalSources {
			k.src = refusalOther
			c, ok = r.counts[k]
		}
		if !ok {
			c = &refusalCount{kinds: make(map[string]int)}
			r.counts[k] = c
		}
	}
	c.total++
	c.kinds[kind]++
	if sample && c.logged < refusalSamples && k.src != refusalOther {
		c.logged++
		return true
	}
	return false
}

// flush returns one summary event per source that had refusals not logged
// one by one since the last flush, and starts a new interval.
func (r *refusalLog) flush(now time.Time) []Event {
	r.mu.Lock()
	counts, start := r.counts, r.start
	r.counts, r.start = make(map[refusalKey]*refusalCount), now
	r.mu.Unlock()
	var out []Event
	for k, c := range counts {
		if c.total == c.logged {
			continue
		}
		kinds := make([]string, 0, len(c.kinds))
		for kind := range c.kinds {
			kinds = append(kinds, kind)
		}
		slices.SortFunc(kinds, func(a, b string) int {
			if d := c.kinds[b] - c.kinds[a]; d != 0 {
				return d
			}
			return strings.Compare(a, b)
		})
		parts := make([]string, len(kinds))
		for i, kind := range kinds {
			parts[i] = kind + " " + thousands(c.kinds[kind])
		}
		from := "from " + k.src
		if k.src == refusalOther {
			from = fmt.Sprintf("from sources beyond the first %d", refusalSources)
		}
		interval := now.Sub(start)
		out = append(out, Event{
			Event: EventRefusalSummary, Transport: string(k.tr), Client: k.src,
			Count: c.total, Causes: c.kinds, Sampled: c.logged, DurationMS: interval.Milliseconds(),
			Reason: fmt.Sprintf("refused %s pre-auth %s attempts %s in the last %v (%d logged one by one): %s",
				thousands(c.total), k.tr, from, interval.Round(time.Second), c.logged, strings.Join(parts, ", ")),
		})
	}
	slices.SortFunc(out, func(a, b Event) int {
		return strings.Compare(a.Client+a.Transport, b.Client+b.Transport)
	})
	return out
}

// thousands writes n with comma separators: 104,661.
func thousands(n int) string {
	s := strconv.Itoa(n)
	if len(s) <= 3 || n < 0 {
		return s
	}
	var b strings.Builder
	lead := len(s) % 3
	if lead > 0 {
		b.WriteString(s[:lead])
	}
	for i := lead; i < len(s); i += 3 {
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(s[i : i+3])
	}
	return b.String()
}
