package bench

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"
)

// Sample is what one Op reports.
type Sample struct {
	// Bytes is the payload the op moved (zero for a connection op).
	Bytes int64
	// Latency is the latency the op measured (time to first byte, setup
	// time); zero means the op's whole duration.
	Latency time.Duration
}

// Op is one unit of a measurement: a connection, a flow, a transfer. It must
// be safe to call from several goroutines when run with Concurrency > 1.
type Op func(ctx context.Context) (Sample, error)

// RunConfig says how many ops to run and how. A run stops starting ops once
// MaxOps have started, or once Duration has passed and at least MinOps have
// started; with neither MaxOps nor Duration it runs one op.
type RunConfig struct {
	// Concurrency is the number of workers; zero means 1.
	Concurrency int
	// Duration is how long to keep starting ops; zero means no time bound.
	Duration time.Duration
	// MinOps is the fewest ops to start even past Duration.
	MinOps int
	// MaxOps bounds the ops started; zero means no bound.
	MaxOps int
	// Warmup ops run (sequentially, untimed, unrecorded) before the run.
	Warmup int
	// MaxErrors is how many failed ops are tolerated before the run is
	// abandoned; zero means none (the first error ends the run).
	MaxErrors int
}

// Result is a finished run.
type Result struct {
	// Ops counts the ops that succeeded; Errors those that failed.
	Ops, Errors int
	// FirstErr is the first failure, if any.
	FirstErr error
	// Bytes sums the successful ops' Sample.Bytes.
	Bytes int64
	// Elapsed is the wall time from the first op's start to the last op's end.
	Elapsed time.Duration
	// Latencies holds one entry per successful op, sorted.
	Latencies []time.Duration
	// OtherCores is how many cores other processes (not this one, not its
	// children) kept busy on average during the run; -1 when unknown. A
	// figure taken while it is well above zero shared the machine.
	OtherCores float64
	// CPU is the CPU time (user and system) this process and its
	// descendants spent during the run, to 10 ms; 0 when unknown. Every
	// side of an in-process path (client, firewall or tunnel, origin) runs
	// in this process, so CPU over Bytes is what the whole path costs per
	// byte on this machine.
	CPU time.Duration
}

// CPUPerMiB is the CPU time spent per MiB carried; 0 when unknown.
func (r Result) CPUPerMiB() time.Duration {
	if r.CPU <= 0 || r.Bytes <= 0 {
		return 0
	}
	return time.Duration(float64(r.CPU) / (float64(r.Bytes) / (1 << 20)))
}

// PerSecond is successful ops per second of wall time.
func (r Result) PerSecond() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Ops) / r.Elapsed.Seconds()
}

// MiBPerSecond is payload MiB per second of wall time.
func (r Result) MiBPerSecond() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Bytes) / (1 << 20) / r.Elapsed.Seconds()
}

// Percentile returns the p-th percentile (0 < p ≤ 100) of the latencies by
// the nearest-rank method, or zero without samples.
func (r Result) Percentile(p float64) time.Duration {
	return percentile(r.Latencies, p)
}

func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	rank = min(max(rank, 1), len(sorted))
	return sorted[rank-1]
}

// ErrTooManyErrors ends a run whose ops failed more than RunConfig.MaxErrors times.
var ErrTooManyErrors = errors.New("bench: too many failed ops")

// Run runs op under cfg and returns what it measured. It returns an error
// (with the partial Result) when ctx ends, a warmup op fails, or more than
// MaxErrors ops fail.
func Run(ctx context.Context, cfg RunConfig, op Op) (Result, error) {
	for i := 0; i < cfg.Warmup; i++ {
		if _, err := op(ctx); err != nil {
			return Result{Errors: 1, FirstErr: err}, fmt.Errorf("bench: warmup: %w", err)
		}
	}
	workers := max(cfg.Concurrency, 1)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	var (
		mu      sync.Mutex
		res     Result
		started int
		lastEnd time.Time
		abort   error
	)
	cpu0 := readCPU()
	start := time.Now()
	// next reports whether a worker may start another op.
	next := func() bool {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case abort != nil || ctx.Err() != nil:
			return false
		case cfg.MaxOps > 0 && started >= cfg.MaxOps:
			return false
		case cfg.MaxOps == 0 && cfg.Duration == 0 && started >= 1:
			return false
		case cfg.Duration > 0 && time.Since(start) >= cfg.Duration && started >= cfg.MinOps:
			return false
		}
		started++
		return true
	}
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next() {
				t0 := time.Now()
				s, err := op(ctx)
				t1 := time.Now()
				mu.Lock()
				if t1.After(lastEnd) {
					lastEnd = t1
				}
				if err != nil {
					if abort == nil { // not a casualty of our own abort
						res.Errors++
						if res.FirstErr == nil {
							res.FirstErr = err
						}
						if res.Errors > cfg.MaxErrors && abort == nil {
							abort = fmt.Errorf("%w: %d (first: %w)", ErrTooManyErrors, res.Errors, res.FirstErr)
							cancel()
						}
					}
					mu.Unlock()
					continue
				}
				res.Ops++
				res.Bytes += s.Bytes
				lat := s.Latency
				if lat == 0 {
					lat = t1.Sub(t0)
				}
				res.Latencies = append(res.Latencies, lat)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	cpu1 := readCPU()
	res.OtherCores = otherCores(cpu0, cpu1)
	res.CPU = ownCPU(cpu0, cpu1)
	if !lastEnd.IsZero() {
		res.Elapsed = lastEnd.Sub(start)
	}
	slices.Sort(res.Latencies)
	if abort != nil {
		return res, abort
	}
	if err := ctx.Err(); err != nil {
		return res, err
	}
	return res, nil
}
