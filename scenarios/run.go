package scenarios

import (
	"context"
	"errors"
	"runtime"
	"sort"
	"sync"
	"time"

	"github.com/pinwall/pinwall/harness"
)

// ExecOptions tune Execute.
type ExecOptions struct {
	// Runner runs each plan; nil means harness.InProcess{}.
	Runner harness.Runner
	// Parallel bounds concurrent runs; zero means 1.
	Parallel int
	// Progress is called as each run finishes, from the goroutine that ran
	// it, one call at a time.
	Progress func(done, total int, r Result)
}

// AllRuns resolves every variant of every scenario, in order.
func AllRuns(ss []*Scenario) ([]Run, error) {
	var out []Run
	for _, s := range ss {
		runs, err := s.Runs()
		if err != nil {
			return nil, err
		}
		out = append(out, runs...)
	}
	return out, nil
}

// Execute runs every run and returns the results in the order given. When
// ctx ends, runs in flight finish as Incomplete and those not started are
// reported Incomplete without running.
func Execute(ctx context.Context, runs []Run, opts ExecOptions) []Result {
	if opts.Runner == nil {
		opts.Runner = harness.InProcess{}
	}
	par := max(opts.Parallel, 1)
	results := make([]Result, len(runs))
	var (
		mu   sync.Mutex
		done int
		wg   sync.WaitGroup
	)
	sem := make(chan struct{}, par)
	// Longest runs first, so parallel runners finish together; results
	// keep the order given.
	order := make([]int, len(runs))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return estimate(runs[order[a]]) > estimate(runs[order[b]]) })
	for _, i := range order {
		r := runs[i]
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			results[i] = incomplete(r, opts.Runner.Name(), "interrupted before it started")
			continue
		}
		wg.Add(1)
		go func(i int, r Run) {
			defer wg.Done()
			defer func() { <-sem }()
			res := RunOne(ctx, opts.Runner, r)
			results[i] = res
			if opts.Progress != nil {
				// One call at a time: a progress function writes to one
				// stream.
				mu.Lock()
				done++
				opts.Progress(done, len(runs), res)
				mu.Unlock()
			}
		}(i, r)
	}
	wg.Wait()
	return results
}

// estimate guesses a run's length from what it waits for.
func estimate(r Run) time.Duration {
	p := r.Plan
	d := p.Hold
	for _, e := range p.Events {
		d = max(d, e.At+e.Duration)
	}
	if w := p.Workload; w.Concurrency > 0 {
		d = max(d, time.Duration(w.Flows)*w.Spacing)
	}
	if p.Reconnects > 0 {
		d += time.Duration(p.Reconnects) * 50 * time.Millisecond
	}
	if p.Fleet > 0 {
		// A laptop container each in containers: a fleet goes first.
		d += time.Duration(p.Fleet) * 250 * time.Millisecond
	}
	return d
}

func incomplete(r Run, mode, why string) Result {
	res := newResult(r, mode)
	res.Verdict, res.Error = Incomplete, why
	return res
}

// newResult is a result for r before it runs.
func newResult(r Run, mode string) Result {
	res := Result{ID: r.Scenario.ID, Variant: r.Variant, Role: r.Role, Title: r.Scenario.Title, Describe: r.Describe,
		Mode: mode, Expected: r.Expect, Started: time.Now(), ToolSource: r.ToolSource, NotApplicable: r.NotApplicable}
	if fw := r.Plan.Spec.Firewall; fw != nil {
		res.Firewall = string(fw.Kind.OrPinwall())
	}
	return res
}

// DefaultParallel is how many runs go at once unless told otherwise: the
// machine's cores, and at least 4. A run mostly waits (on the scenario's
// timers, and in containers on the Docker engine): the whole catalogue
// used 1.3 s of CPU for 7.8 s in process at 2 at once, and about 30 CPU
// seconds (containers, engine and runner) in containers whatever its wall
// time, measured on a 2-core machine (docs/fleet.md).
func DefaultParallel() int { return max(runtime.NumCPU(), 4) }

// RunOne executes one run and judges it.
func RunOne(ctx context.Context, runner harness.Runner, r Run) Result {
	res := newResult(r, runner.Name())
	if r.NotRun != "" {
		res.Verdict, res.Error = NotRun, r.NotRun
		return res
	}
	if fw := r.Plan.Spec.Firewall; fw != nil {
		if p, err := fw.LoadPolicy(); err == nil {
			res.Policy, res.PolicyFile, res.PolicyNote = p.Describe(), p.File, p.Comment
			res.PolicyFindings = PolicyFindings(p)
		}
	}
	obs, err := runner.Run(ctx, r.Plan)
	res.DurationMS = time.Since(res.Started).Milliseconds()
	if obs != nil {
		judge(&res, obs, r.Plan.Spec.Client.DeviceCert != harness.DeviceCertNone)
	}
	switch {
	case errors.Is(err, context.Canceled) || (err != nil && ctx.Err() != nil):
		res.Verdict, res.Error = Incomplete, "interrupted: "+err.Error()
	case err != nil:
		res.Verdict, res.Error = Error, err.Error()
	}
	return res
}

// Judge fills a result from an observation: the summary, the findings, the
// checks and the verdict.
func Judge(res *Result, obs *harness.Observation) { judge(res, obs, false) }

// judge is Judge; deviceCert says the client presents a device
// certificate (what the endpoint refinement for a third-party firewall
// needs to know).
func judge(res *Result, obs *harness.Observation, deviceCert bool) {
	res.Observed = summarize(obs)
	if obs.Interceptor != nil {
		refineForInterceptor(res.Observed.Failure, obs, deviceCert)
		res.Interceptor = obs.Interceptor
	}
	res.Findings = findings(obs)
	res.Checks = evaluate(res.Expected, obs, res.Observed, res.Findings)
	res.FirewallLog, res.GatewayLog, res.ClientHistory = obs.Firewall, obs.Gateway, obs.History
	res.Flows, res.Probes, res.Roles, res.ClientError = obs.Flows, obs.Probes, obs.Roles, obs.ClientErrorText
	res.Events = obs.Events
	res.Capture = obs.Capture
	res.Verdict = Pass
	for _, c := range res.Checks {
		if !c.Pass {
			res.Verdict = Fail
		}
	}
}

// Passed reports whether every result that ran passed (a run not
// carried out on its firewall is neither), and one did.
func Passed(rs []Result) bool {
	ran := 0
	for _, r := range rs {
		if r.Verdict == NotRun {
			continue
		}
		ran++
		if r.Verdict != Pass {
			return false
		}
	}
	return ran > 0
}
