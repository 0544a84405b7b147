package bench

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/pinwall/pinwall/harness"
	"github.com/pinwall/pinwall/harness/containers"
	"github.com/pinwall/pinwall/scenarios"
)

// Goals for the scenario catalogue's wall time.
const (
	CatalogueInProcessGoal = 5 * time.Second
	CatalogueContainerGoal = 45 * time.Second
	// GoalCaptureOverhead is the most a run's packet capture may add to the
	// container catalogue's wall time for it to be on by default there.
	GoalCaptureOverhead = 1.10
)

// inProcessRounds is how many times each in-process catalogue figure is
// taken (its median is reported).
const inProcessRounds = 3

// medianOf returns the median of ds and the values in the order taken, as
// "a / b / c s" for a note.
func medianOf(ds []time.Duration) (time.Duration, string) {
	parts := make([]string, len(ds))
	for i, d := range ds {
		parts[i] = fmt.Sprintf("%.1f", d.Seconds())
	}
	sorted := slices.Clone(ds)
	slices.Sort(sorted)
	return sorted[len(sorted)/2], strings.Join(parts, " / ") + " s"
}

// CatalogueSection measures the whole scenario catalogue's wall time
// in process (parallel on every core) without and with packet captures
// and, when withContainers is set and a Docker engine answers, in
// containers cold (image build included) and warm (image reused), warm
// both without and with captures: without, with, without again, the
// capture held against the mean of the two runs around it so that a
// machine slowing down or speeding up does not pass for the capture's cost.
func CatalogueSection(withContainers bool) SectionFunc {
	return func(ctx context.Context, log io.Writer) (Section, error) {
		sec := Section{Title: "Scenario catalogue: wall time of every row × variant"}
		all, err := scenarios.Catalogue()
		if err != nil {
			return sec, err
		}
		runs, err := scenarios.AllRuns(all)
		if err != nil {
			return sec, err
		}
		measure := func(name string, r harness.Runner, par int) (time.Duration, string) {
			if log != nil {
				fmt.Fprintf(log, "bench: catalogue %s ...\n", name)
			}
			start, cpu0 := time.Now(), processCPU()
			res := scenarios.Execute(ctx, runs, scenarios.ExecOptions{Runner: r, Parallel: par})
			if c, ok := r.(io.Closer); ok {
				_ = c.Close() // the container runner's networks: part of the catalogue's cost
			}
			d, cpu := time.Since(start), processCPU()-cpu0
			pass, notRun := 0, 0
			var unexpected []string
			var packets int
			var bytes int64
			for _, x := range res {
				switch x.Verdict {
				case scenarios.Pass:
					pass++
				case scenarios.NotRun:
					notRun++ // a row the firewall in its place cannot run
				default:
					unexpected = append(unexpected, fmt.Sprintf("%s %s", x.Key(), x.Verdict))
					if log != nil {
						logUnexpected(log, name, x)
					}
				}
				if x.Capture != nil {
					packets += x.Capture.Packets
					bytes += int64(len(x.Capture.PCAPNG))
				}
			}
			note := fmt.Sprintf("%d runs, %d as expected, --parallel %d; this process's CPU %.1f s", len(res)-notRun, pass, par, cpu.Seconds())
			if notRun > 0 {
				note += fmt.Sprintf(" (%d not run here)", notRun)
			}
			if len(unexpected) > 0 {
				note += "; not as expected: " + strings.Join(unexpected, ", ")
			}
			if packets > 0 {
				note += fmt.Sprintf("; %d packets, %.1f MiB of pcapng", packets, float64(bytes)/(1<<20))
			}
			return d, note
		}
		// The default (pinwall run's): runs mostly wait, so more go at once
		// than there are cores; the figure was taken at 2. Each
		// in-process figure is the median of inProcessRounds rounds, every
		// round taking each once: a catalogue this short is at the mercy of
		// one slow row (a DTLS attempt falling back after its timeout).
		par := scenarios.DefaultParallel()
		type series struct {
			name string
			r    harness.Runner
			par  int
			ds   []time.Duration
			note string
		}
		figs := []*series{{name: "in-process", r: harness.InProcess{}, par: par}}
		if par != 2 {
			figs = append(figs, &series{name: "in-process, --parallel 2", r: harness.InProcess{}, par: 2})
		}
		figs = append(figs, &series{name: "in-process, with captures", r: harness.InProcess{Capture: true}, par: par})
		for i := range inProcessRounds {
			for _, x := range figs {
				d, note := measure(fmt.Sprintf("%s (round %d/%d)", x.name, i+1, inProcessRounds), x.r, x.par)
				x.ds, x.note = append(x.ds, d), note
			}
		}
		var d0 time.Duration
		for _, x := range figs {
			d, spread := medianOf(x.ds)
			note := x.note + "; median of " + spread
			switch {
			case x.name == "in-process":
				d0 = d
				sec.Add(WallTime(x.name, d, CatalogueInProcessGoal).WithNote(note))
			case x.par == 2:
				sec.Add(WallTime(x.name, d, CatalogueInProcessGoal).WithNote(note + "; the issue's measure"))
			default:
				sec.Add(WallTime(x.name, d, 0).Versus(d0.Seconds(), "without").WithNote(note))
			}
		}
		if !withContainers {
			return sec, nil
		}
		if err := containers.DockerAvailable(ctx); err != nil {
			sec.Add(Missing("containers, cold (image build included)", UnitSeconds, "no Docker engine answers: "+err.Error()))
			return sec, nil
		}
		cold := &containers.Runner{Rebuild: true, Parallel: par}
		d, note := measure("containers, cold (image build included)", cold, par)
		sec.Add(WallTime("containers, cold (image build included)", d, 0).WithNote(note))
		sec.Notes = append(sec.Notes, fmt.Sprintf("cold: building the static binary and the FROM-scratch image took %v of it", cold.ImageBuildTime().Round(time.Millisecond)))
		warm := func(capture bool) (time.Duration, string) {
			name := "containers, warm (image reused)"
			if capture {
				name += ", with captures"
			}
			return measure(name, &containers.Runner{Parallel: par, Capture: capture}, par)
		}
		a, noteA := warm(false)
		c, noteC := warm(true)
		b, _ := warm(false)
		without := (a + b) / 2
		sec.Add(WallTime("containers, warm (image reused)", without, CatalogueContainerGoal).
			WithNote(fmt.Sprintf("mean of %.1fs and %.1fs, measured before and after the captured run; ", a.Seconds(), b.Seconds()) + noteA))
		sec.Add(WallTime("containers, warm, with captures", c, 0).
			RatioAtMost(without.Seconds(), GoalCaptureOverhead, fmt.Sprintf("without; goal ≤ ×%.2f", GoalCaptureOverhead)).WithNote(noteC))
		if par != 2 {
			d2, note := measure("containers, warm, --parallel 2", &containers.Runner{Parallel: 2}, 2)
			sec.Add(WallTime("containers, warm, --parallel 2", d2, 0).Versus(without.Seconds(), fmt.Sprintf("--parallel %d", par)).WithNote(note))
		}
		sec.Notes = append(sec.Notes, "containers: each run at once on its own pair of underlay subnets",
			"captures: in process, packets synthesized from the data path; in containers, AF_PACKET in the firewall and gateway nodes, merged by the runner")
		return sec, nil
	}
}

// logUnexpected writes why a catalogue run was not as expected: its error
// and each check that failed, with what was expected and observed, so that
// a miss on a loaded machine can be told from a regression afterwards.
func logUnexpected(log io.Writer, name string, x scenarios.Result) {
	fmt.Fprintf(log, "bench: catalogue %s: %s %s", name, x.Key(), x.Verdict)
	if x.Error != "" {
		fmt.Fprintf(log, ": %s", x.Error)
	}
	fmt.Fprintln(log)
	for _, c := range x.Checks {
		if !c.Pass {
			fmt.Fprintf(log, "bench:   check %q: expected %s, observed %s\n", c.Name, c.Expected, c.Observed)
		}
	}
}
