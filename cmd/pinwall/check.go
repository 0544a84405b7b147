package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"

	"github.com/pinwall/pinwall/harness"
	"github.com/pinwall/pinwall/mitm/policy"
	"github.com/pinwall/pinwall/review"
	"github.com/pinwall/pinwall/strictyaml"
)

// Exit statuses of check, besides 0 (every answer OK) and 2 (usage).
const (
	exitProblems = 1
	exitWarnings = 3
)

func cmdCheck(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("check", "pinwall check (--policy FILE | --panos FILE | --fortios FILE [--path FROM:TO] [--laptop ADDR] [--scope NAME] [--write-policy FILE]) [--client FILE] [-v]", args, stdout, stderr)
	var src policySource
	src.flags(fs)
	clientFile := fs.String("client", "", "client settings (YAML: transport, pin, device-cert, trust, fail-mode, except-domains, …)")
	verbose := fs.Bool("v", false, "log what the components of every question's topology do, with times, on stderr")
	if err := fs.Parse(args); err != nil {
		return flagError(err)
	}
	if fs.NArg() > 0 {
		return usageError("check: one of --policy FILE, --panos FILE or --fortios FILE is required and takes no other arguments")
	}
	pol, polName, err := src.load(stdout)
	if err != nil {
		return err
	}
	var cs harness.ClientSpec
	if *clientFile != "" {
		if err := strictyaml.DecodeFile(*clientFile, &cs); err != nil {
			return &exitError{code: 2, err: err}
		}
	}
	var log *slog.Logger
	if *verbose {
		log = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return checkPolicy(ctx, pol, polName, cs, log, stdout, stderr)
}

// checkPolicy reviews pol, which came from source (a file, or a vendor
// configuration translated into a policy), prints the answers and returns
// the exit status: 0 every answer OK, 3 warnings only, 1 problems.
// log, if set, receives the components' operational logs.
func checkPolicy(ctx context.Context, pol *policy.Policy, source string, cs harness.ClientSpec, log *slog.Logger, stdout, stderr io.Writer) error {
	fmt.Fprintln(stderr, "check: asking every question at once, each on its own topology; a line as each is answered")
	rep, err := review.Run(ctx, review.Input{Policy: pol, Source: source, Client: cs}, review.Options{
		Logger:   log,
		Progress: func(done, total int, a review.Answer) { fmt.Fprintln(stderr, review.Progress(done, total, a)) },
	})
	if err != nil {
		if ctx.Err() != nil {
			if rep != nil {
				writeAnswered(rep, stdout)
			}
			return &exitError{code: exitProblems, err: errors.New("interrupted: the answers above are those given before")}
		}
		return &exitError{code: 2, err: err}
	}
	fmt.Fprintf(stdout, "%s\n\n", rep.Heading())
	if err := rep.Write(stdout); err != nil {
		return err
	}
	switch rep.Level() {
	case review.Warn:
		return &exitError{code: exitWarnings, err: errors.New("")}
	case review.Problem:
		return &exitError{code: exitProblems, err: errors.New("")}
	}
	return nil
}

// writeAnswered prints the answers a stopped review gave.
func writeAnswered(rep *review.Report, stdout io.Writer) {
	var done []review.Answer
	for _, a := range rep.Answers {
		if a.Topic != "" {
			done = append(done, a)
		}
	}
	rep.Answers = done
	fmt.Fprintf(stdout, "%s\n\n", rep.Heading())
	_ = rep.Write(stdout)
}
