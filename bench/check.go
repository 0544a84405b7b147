package bench

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"path"
	"time"

	"github.com/pinwall/pinwall/harness"
	"github.com/pinwall/pinwall/mitm/policy"
	"github.com/pinwall/pinwall/pki"
	"github.com/pinwall/pinwall/review"
	"github.com/pinwall/pinwall/scenarios"
)

// GoalCheckVsCatalogue: `pinwall check` on any catalogue policy takes at
// most this multiple of `pinwall run --all` (in process, --parallel 2) on
// the same machine, measured in the same run.
const GoalCheckVsCatalogue = 1.0

// CheckSection measures `pinwall check` (review.Run) on every policy in
// scenarios/policies beside `pinwall run --all` in process with --parallel
// 2 (what make demo runs): the catalogue before and after the reviews, its
// mean the reference every review's wall time is held against.
func CheckSection() SectionFunc {
	return func(ctx context.Context, log io.Writer) (Section, error) {
		sec := Section{Title: "pinwall check: wall time per catalogue policy, against pinwall run --all (in process, --parallel 2)"}
		all, err := scenarios.Catalogue()
		if err != nil {
			return sec, err
		}
		runs, err := scenarios.AllRuns(all)
		if err != nil {
			return sec, err
		}
		catalogue := func(label string) time.Duration {
			if log != nil {
				fmt.Fprintf(log, "bench: run --all (%s) ...\n", label)
			}
			start := time.Now()
			scenarios.Execute(ctx, runs, scenarios.ExecOptions{Runner: harness.InProcess{}, Parallel: 2})
			return time.Since(start)
		}
		before := catalogue("before the reviews")
		fsys, names := scenarios.CatalogueFiles()
		set, err := pki.NewSet(pki.Config{}, harness.DefaultTenant)
		if err != nil {
			return sec, err
		}
		type timed struct {
			name  string
			took  time.Duration
			level review.Level
			err   error
		}
		var checks []timed
		for _, name := range names {
			if path.Dir(name) != "policies" || ctx.Err() != nil {
				continue
			}
			data, err := fs.ReadFile(fsys, name)
			if err != nil {
				return sec, err
			}
			pol, err := policy.Parse("scenarios/"+name, data)
			if err != nil {
				return sec, err
			}
			if log != nil {
				fmt.Fprintf(log, "bench: check %s ...\n", name)
			}
			start := time.Now()
			rep, err := review.Run(ctx, review.Input{Policy: pol}, review.Options{PKI: set})
			t := timed{name: path.Base(name), took: time.Since(start), err: err}
			if rep != nil {
				t.level = rep.Level()
			}
			checks = append(checks, t)
		}
		after := catalogue("after the reviews")
		ref := (before + after) / 2
		sec.Add(WallTime("pinwall run --all (mean of before and after)", ref, 0).
			WithNote(fmt.Sprintf("%d runs; before %.1fs, after %.1fs", len(runs), before.Seconds(), after.Seconds())))
		var slowest time.Duration
		for _, c := range checks {
			row := Figure("check "+c.name, c.took.Seconds(), UnitSeconds).
				RatioAtMost(ref.Seconds(), GoalCheckVsCatalogue, fmt.Sprintf("≤ %.1f× run --all", GoalCheckVsCatalogue))
			if c.err != nil {
				row = row.WithNote("error: " + c.err.Error())
			} else {
				row = row.WithNote("answer " + c.level.String())
			}
			sec.Add(row)
			slowest = max(slowest, c.took)
		}
		sec.Notes = append(sec.Notes, fmt.Sprintf("slowest check %.1fs = %.2f× run --all; each review is the CLI's (review.Run), one policy at a time, questions at once",
			slowest.Seconds(), slowest.Seconds()/ref.Seconds()))
		return sec, nil
	}
}
