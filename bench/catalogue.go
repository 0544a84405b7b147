package bench

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"time"

	"github.com/pinwall/pinwall/harness"
	"github.com/pinwall/pinwall/harness/containers"
	"github.com/pinwall/pinwall/scenarios"
)

// Goals for the scenario catalogue's wall time.
const (
	CatalogueInProcessGoal = 10 * time.Second
	CatalogueContainerGoal = 90 * time.Second
)

// CatalogueSection measures the whole scenario catalogue's wall time
// in process (parallel on every core) and, when withContainers is set and a
// Docker engine answers, in containers cold (image build included) and warm
// (image reused).
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
		measure := func(name string, r harness.Runner, par int, goal time.Duration) time.Duration {
			if log != nil {
				fmt.Fprintf(log, "bench: catalogue %s ...\n", name)
			}
			start := time.Now()
			res := scenarios.Execute(ctx, runs, scenarios.ExecOptions{Runner: r, Parallel: par})
			d := time.Since(start)
			pass := 0
			for _, x := range res {
				if x.Verdict == scenarios.Pass {
					pass++
				}
			}
			row := WallTime(name, d, goal)
			row.Note = fmt.Sprintf("%d runs, %d as expected, --parallel %d", len(res), pass, par)
			sec.Add(row)
			return d
		}
		measure("in-process", harness.InProcess{}, runtime.NumCPU(), CatalogueInProcessGoal)
		if !withContainers {
			return sec, nil
		}
		if err := containers.DockerAvailable(ctx); err != nil {
			sec.Add(Missing("containers, cold (image build included)", UnitSeconds, "no Docker engine answers: "+err.Error()))
			return sec, nil
		}
		par := runtime.NumCPU()
		cold := &containers.Runner{Rebuild: true, Parallel: par}
		measure("containers, cold (image build included)", cold, par, 0)
		sec.Notes = append(sec.Notes, fmt.Sprintf("cold: building the static binary and the FROM-scratch image took %v of it", cold.ImageBuildTime().Round(time.Millisecond)))
		measure("containers, warm (image reused)", &containers.Runner{Parallel: par}, par, CatalogueContainerGoal)
		sec.Notes = append(sec.Notes, "containers: each run at once on its own pair of underlay subnets")
		return sec, nil
	}
}
