package fault

import (
	"container/heap"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"
)

// Impairment degrades datagrams. The zero value changes nothing.
type Impairment struct {
	// Loss drops this fraction of datagrams, 0..1 (1 drops everything).
	Loss float64 `yaml:"loss" json:"loss,omitempty"`
	// Latency delays each datagram by this much; zero adds no delay.
	Latency time.Duration `yaml:"latency" json:"latency_ns,omitempty"`
	// Jitter varies each delay uniformly within ±Jitter; it needs a
	// Latency at least as large (a delay is never negative).
	Jitter time.Duration `yaml:"jitter" json:"jitter_ns,omitempty"`
	// Reorder sends this fraction of datagrams (0..1) at once, without the
	// Latency, so they overtake the delayed ones; it needs a Latency.
	Reorder float64 `yaml:"reorder" json:"reorder,omitempty"`
	// Seed makes the random choices repeatable in process; zero means 1.
	// netem has no seed: in containers the choices are the kernel's.
	Seed uint64 `yaml:"seed" json:"seed,omitempty"`
}

// IsZero reports an impairment that changes nothing.
func (i Impairment) IsZero() bool {
	return i.Loss == 0 && i.Latency == 0 && i.Jitter == 0 && i.Reorder == 0
}

// Delays reports whether some datagrams are delayed.
func (i Impairment) Delays() bool { return i.Latency > 0 }

// Validate rejects numbers out of range and combinations netem refuses
// or that mean nothing.
func (i Impairment) Validate() error {
	var errs []error
	if i.Loss < 0 || i.Loss > 1 {
		errs = append(errs, fmt.Errorf("loss %v is not within 0..1", i.Loss))
	}
	if i.Reorder < 0 || i.Reorder > 1 {
		errs = append(errs, fmt.Errorf("reorder %v is not within 0..1", i.Reorder))
	}
	if i.Latency < 0 || i.Jitter < 0 {
		errs = append(errs, fmt.Errorf("latency %v and jitter %v must not be negative", i.Latency, i.Jitter))
	}
	if i.Jitter > i.Latency {
		errs = append(errs, fmt.Errorf("jitter %v exceeds the latency %v (a delay cannot be negative)", i.Jitter, i.Latency))
	}
	if i.Reorder > 0 && i.Latency == 0 {
		errs = append(errs, errors.New("reorder needs a latency: reordered datagrams overtake delayed ones"))
	}
	if i.Latency > time.Minute {
		errs = append(errs, fmt.Errorf("latency %v is over a minute", i.Latency))
	}
	return errors.Join(errs...)
}

// String describes the impairment as tc-netem would ("loss 5% delay 20ms
// 5ms reorder 25%"), or "none".
func (i Impairment) String() string {
	if i.IsZero() {
		return "none"
	}
	var s string
	if i.Loss > 0 {
		s += fmt.Sprintf(" loss %g%%", i.Loss*100)
	}
	if i.Latency > 0 {
		s += " delay " + i.Latency.String()
		if i.Jitter > 0 {
			s += " " + i.Jitter.String()
		}
	}
	if i.Reorder > 0 {
		s += fmt.Sprintf(" reorder %g%%", i.Reorder*100)
	}
	return s[1:]
}

// Impairer decides the fate of each datagram under an Impairment. It is
// safe for concurrent use.
type Impairer struct {
	im  Impairment
	mu  sync.Mutex
	rng *rand.Rand
}

// NewImpairer returns an Impairer for im (which should be valid).
func NewImpairer(im Impairment) *Impairer {
	seed := im.Seed
	if seed == 0 {
		seed = 1
	}
	return &Impairer{im: im, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
}

// Impairment returns what the Impairer applies.
func (p *Impairer) Impairment() Impairment { return p.im }

// Next decides one datagram: dropped, or delivered after delay (zero:
// at once).
func (p *Impairer) Next() (drop bool, delay time.Duration) {
	im := p.im
	if im.Loss >= 1 {
		return true, 0
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if im.Loss > 0 && p.rng.Float64() < im.Loss {
		return true, 0
	}
	if im.Latency == 0 {
		return false, 0
	}
	if im.Reorder > 0 && p.rng.Float64() < im.Reorder {
		return false, 0
	}
	delay = im.Latency
	if im.Jitter > 0 {
		delay += time.Duration(p.rng.Int64N(int64(2*im.Jitter)+1)) - im.Jitter
	}
	return false, delay
}

// DelayLine runs functions (sending a datagram) when they are due, in due
// order, with equal times in the order they were added. It owns at most
// one goroutine, which runs only while something is queued and exits when
// the line is empty, so an idle DelayLine needs no Close; Close drops
// what is queued and makes later Sends no-ops.
type DelayLine struct {
	mu      sync.Mutex
	q       dueHeap
	seq     uint64
	running bool
	closed  bool
	wake    chan struct{}
	idle    chan struct{} // closed when the goroutine exits, while running
}

// Send runs f at due (at once, in its own turn, when due has passed).
func (d *DelayLine) Send(due time.Time, f func()) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return
	}
	if d.wake == nil {
		d.wake = make(chan struct{}, 1)
	}
	d.seq++
	heap.Push(&d.q, dueItem{due: due, seq: d.seq, f: f})
	if !d.running {
		d.running = true
		d.idle = make(chan struct{})
		go d.run(d.idle)
		return
	}
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// Len is how many functions wait.
func (d *DelayLine) Len() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.q.Len()
}

// Close drops whatever waits and waits for the goroutine to exit. It is
// idempotent.
func (d *DelayLine) Close() {
	d.mu.Lock()
	d.closed = true
	d.q = nil
	idle := d.idle
	if d.running {
		select {
		case d.wake <- struct{}{}:
		default:
		}
	}
	d.mu.Unlock()
	if idle != nil {
		<-idle
	}
}

func (d *DelayLine) run(idle chan struct{}) {
	defer close(idle)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		d.mu.Lock()
		if d.q.Len() == 0 || d.closed {
			d.running = false
			d.mu.Unlock()
			return
		}
		next := d.q[0]
		wait := time.Until(next.due)
		if wait <= 0 {
			heap.Pop(&d.q)
			d.mu.Unlock()
			next.f()
			continue
		}
		d.mu.Unlock()
		timer.Reset(wait)
		select {
		case <-timer.C:
		case <-d.wake:
			if !timer.Stop() {
				select {
				case <-timer.C:
				default:
				}
			}
		}
	}
}

type dueItem struct {
	due time.Time
	seq uint64
	f   func()
}

type dueHeap []dueItem

func (h dueHeap) Len() int { return len(h) }
func (h dueHeap) Less(i, j int) bool {
	if h[i].due.Equal(h[j].due) {
		return h[i].seq < h[j].seq
	}
	return h[i].due.Before(h[j].due)
}
func (h dueHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *dueHeap) Push(x any)   { *h = append(*h, x.(dueItem)) }
func (h *dueHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
