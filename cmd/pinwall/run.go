package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"github.com/pinwall/pinwall/harness"
	"github.com/pinwall/pinwall/interceptors"
	"github.com/pinwall/pinwall/mitm/fwlog"
	"github.com/pinwall/pinwall/pki"
	"github.com/pinwall/pinwall/reports"
	"github.com/pinwall/pinwall/scenarios"
)

func cmdList(args []string, stdout io.Writer) error {
	if err := helpOnly("pinwall list", args, stdout); err != nil {
		return err
	}
	all, err := scenarios.Catalogue()
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	width := 0
	for _, s := range all {
		width = max(width, len(s.ID))
	}
	for _, s := range all {
		fmt.Fprintf(stdout, "%-*s  %s\n", width, s.ID, s.Summary)
	}
	return nil
}

// runnerFor returns the runner of a --mode, sharing one set of CAs; parallel
// is how many runs the container runner lets hold containers at once.
func runnerFor(mode string, set *pki.Set, parallel int, stderr io.Writer) (harness.Runner, error) {
	switch mode {
	case "inproc":
		return harness.InProcess{PKI: set}, nil
	case "containers":
		return newContainerRunner(set, parallel, stderr)
	}
	return nil, usageError("--mode %q is not one of inproc, containers", mode)
}

// parseInterspersed parses flags wherever they stand among the positional
// arguments ("run visibility --out DIR" as well as "run --out DIR
// visibility") and returns the positional ones; after "--" every argument
// is positional.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if used := len(args) - len(rest); used > 0 && args[used-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

func cmdRun(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("run", "pinwall run [ID...] [--all] [--file FILE]... [--out DIR] [--mode inproc|containers] [--parallel N] [--gateways FILE] [--controls FILE] [--operator NAME]", args, stdout, stderr)
	all := fs.Bool("all", false, "run the whole catalogue (the default when no ID is given)")
	out := fs.String("out", "evidence", "directory for the evidence bundle")
	mode := fs.String("mode", "inproc", "runner: inproc (every host on loopback, no privileges) or containers (Docker)")
	parallel := fs.Int("parallel", scenarios.DefaultParallel(), "scenario runs at once (the default: the machine's cores, and at least 4: runs mostly wait on timers and, in containers, on the Docker engine)")
	firewall := fs.String("firewall", "", "what stands in the firewall's place: pinwall (default), mitmproxy, squid or sslsplit (the tools need --mode containers); several, comma-separated, or all, run every row on each side by side")
	panVersion := fs.String("pan-version", fwlog.DefaultPANVersion, "PAN-OS log layout of the bundle's PAN-OS files: 9.1, 10.0 (TRAFFIC 75 fields, DECRYPTION 91) or 10.1 to 11.2 (TRAFFIC 115, DECRYPTION 107)")
	var files stringList
	fs.Var(&files, "file", "run a scenario file of your own (repeatable)")
	ev := addEvidenceFlags(fs)
	ff := addFrameFlags(fs)
	ids, err := parseInterspersed(fs, args)
	if err != nil {
		return flagError(err)
	}
	if *parallel < 1 {
		return usageError("--parallel must be at least 1")
	}
	if _, err := fwlog.ParsePANVersion(*panVersion); err != nil {
		return usageError("--pan-version: %v", err)
	}
	ss, err := selectScenarios(ids, *all, files)
	if err != nil {
		return err
	}
	controls, gateways, err := ff.load()
	if err != nil {
		return err
	}
	if err := reports.CheckDir(*out); err != nil {
		return usageError("--out: %v", err)
	}
	set, err := pki.NewSet(pki.Config{}, harness.DefaultTenant)
	if err != nil {
		return err
	}
	signer, err := ev.signer()
	if err != nil {
		return err
	}
	runner, err := runnerFor(*mode, set, *parallel, stderr)
	if err != nil {
		return err
	}
	runner = withCapture(runner, ev.captureOn(*mode), ev.snapLen())
	if c, ok := runner.(io.Closer); ok {
		defer c.Close()
	}
	runs, err := scenarios.AllRuns(ss)
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	if *firewall != "" {
		kinds, err := parseFirewalls(*firewall)
		if err != nil {
			return usageError("--firewall: %v", err)
		}
		var all []scenarios.Run
		tools := false
		for _, r := range runs {
			for _, k := range kinds {
				all = append(all, r.ForFirewall(k))
				tools = tools || k.IsThirdParty()
			}
		}
		runs = all
		if tools && *mode != "containers" {
			return usageError("--firewall %s: the third-party tools run only with --mode containers (the kernel redirects the laptop's traffic into them)", *firewall)
		}
		if tools {
			if err := prepareTools(ctx, runner, stderr); err != nil {
				return err
			}
		}
	}
	results, meta := execute(ctx, runs, runner, *parallel, stderr)
	meta.CommandLine = append([]string{"pinwall", "run"}, args...)
	meta.PANVersion = *panVersion
	meta.CAs = []reports.CA{
		{Name: set.Internet.Cert.Subject.CommonName, SHA256: pki.Fingerprint(set.Internet.Cert)},
		{Name: set.Tenant.Cert.Subject.CommonName, SHA256: pki.Fingerprint(set.Tenant.Cert)},
		{Name: set.Enterprise.Cert.Subject.CommonName, SHA256: pki.Fingerprint(set.Enterprise.Cert)},
	}
	meta.Provenance = provenanceOf(ctx, runner)
	meta.Operator, meta.Controls, meta.Gateways = ff.operatorName(), controls, gateways
	if *ff.check && ctx.Err() == nil {
		meta.Checks = checkPolicies(ctx, ss, stderr)
	}
	fmt.Fprint(stdout, reports.VerdictTable(results))
	fmt.Fprint(stdout, reports.NotRunLines(results))
	passed, total := reports.Summary(results)
	if err := reports.WriteSigned(*out, meta, ss, results, signer); err != nil {
		return fmt.Errorf("writing the evidence bundle: %w", err)
	}
	abs, _ := filepath.Abs(*out)
	if signer != nil {
		fmt.Fprintf(stdout, "\nSigned %s with the %s key %s (%s, %s)\n", reports.ManifestFile, signer.Describe().Algorithm, signer.Fingerprint(), reports.SignatureFile, reports.OpenSSLSignatureFile)
	}
	fmt.Fprintf(stdout, "\n%d of %d runs as expected (%s, %.1fs). Evidence: %s (report.html, report.md, summary.md, evidence.json, junit.xml)\n",
		passed, total, meta.Mode, meta.Ended.Sub(meta.Started).Seconds(), abs)
	if meta.Interrupted {
		return &exitError{code: 1, err: errors.New("interrupted: incomplete runs are marked in the evidence")}
	}
	if total == 0 {
		return &exitError{code: 2, err: errors.New("no run could be carried out on this firewall")}
	}
	if passed != total {
		return &exitError{code: 1, err: fmt.Errorf("%d run(s) did not meet their expectation", total-passed)}
	}
	return nil
}

// execute runs the runs with a progress line per finished run on stderr
// (a terminal or a CI log alike) and returns the results with the run's
// metadata.
func execute(ctx context.Context, runs []scenarios.Run, runner harness.Runner, parallel int, stderr io.Writer) ([]scenarios.Result, reports.Meta) {
	v, c := buildInfo()
	meta := reports.Meta{
		Version: v, Commit: c, GoVersion: runtime.Version(), OS: runtime.GOOS, Arch: runtime.GOARCH,
		Mode: runner.Name(), Started: time.Now(),
	}
	progress := func(done, total int, r scenarios.Result) {
		fmt.Fprintf(stderr, "[%2d/%d] %-4s %-48s %6.1fs  %s\n", done, total, strings.ToUpper(string(r.Verdict)), r.Key(),
			float64(r.DurationMS)/1000, outcomeLine(r))
	}
	results := scenarios.Execute(ctx, runs, scenarios.ExecOptions{Runner: runner, Parallel: parallel, Progress: progress})
	meta.Ended = time.Now()
	meta.Interrupted = ctx.Err() != nil
	return results, meta
}

func outcomeLine(r scenarios.Result) string {
	if r.Verdict == scenarios.NotRun {
		return r.Error
	}
	t := r.Observed.Tunnel
	s := "tunnel " + t.State
	if t.Transport != "" {
		s += " over " + t.Transport
	}
	if f := r.Observed.Failure; f != nil {
		s += fmt.Sprintf(", %s on %s", f.Cause, f.Leg)
	}
	if r.Error != "" {
		s += " (" + r.Error + ")"
	}
	return s
}

// selectScenarios loads the scenario files and picks the catalogue's
// scenarios by id (all of them with all, or with neither ids nor files). A
// file whose id is a catalogue scenario's, or another file's, is refused.
func selectScenarios(ids []string, all bool, files []string) ([]*scenarios.Scenario, error) {
	cat, err := scenarios.Catalogue()
	if err != nil {
		return nil, &exitError{code: 2, err: err}
	}
	var out []*scenarios.Scenario
	seen := map[string]string{}
	for _, f := range files {
		s, err := scenarios.Load(f)
		if err != nil {
			return nil, &exitError{code: 2, err: err}
		}
		if err := scenarios.Collides(s, cat); err != nil {
			return nil, &exitError{code: 2, err: err}
		}
		if first, dup := seen[s.ID]; dup {
			return nil, usageError("%s and %s both have the id %q", first, f, s.ID)
		}
		seen[s.ID] = f
		out = append(out, s)
	}
	if len(files) > 0 && len(ids) == 0 && !all {
		return out, nil
	}
	if all || len(ids) == 0 {
		if len(ids) > 0 {
			return nil, usageError("give scenario ids or --all, not both")
		}
		return append(out, cat...), nil
	}
	sel, err := scenarios.Find(cat, ids...)
	if err != nil {
		return nil, &exitError{code: 2, err: err}
	}
	return append(out, sel...), nil
}

type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

// version and commit are set by the Makefile's -ldflags.
var version, commit string

func buildInfo() (v, c string) {
	v, c = "devel", reports.UnknownCommit
	if version != "" {
		v = version
	}
	if commit != "" {
		c = commit
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return
	}
	if version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		v = bi.Main.Version
	}
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" && commit == "" {
			c = s.Value
		}
	}
	return
}

// parseFirewalls reads --firewall: one kind, a comma-separated list, or
// "all" (pinwall's firewall and every tool).
func parseFirewalls(v string) ([]interceptors.Kind, error) {
	if strings.TrimSpace(v) == "all" {
		return interceptors.Kinds, nil
	}
	var out []interceptors.Kind
	for _, f := range strings.Split(v, ",") {
		k, err := interceptors.ParseKind(f)
		if err != nil {
			return nil, err
		}
		if !slices.Contains(out, k) {
			out = append(out, k)
		}
	}
	return out, nil
}
