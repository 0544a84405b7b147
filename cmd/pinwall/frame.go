package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/user"
	"sync"

	"github.com/pinwall/pinwall/harness"
	"github.com/pinwall/pinwall/mitm/policy"
	"github.com/pinwall/pinwall/reports"
	"github.com/pinwall/pinwall/scenarios"
)

// frameFlags are the flags about the report's frame: who ran it, the
// organisation's controls, the customer's gateways, and the policy checks.
type frameFlags struct {
	operator *string
	controls *string
	gateways *string
	check    *bool
}

func addFrameFlags(fs *flag.FlagSet) *frameFlags {
	return &frameFlags{
		operator: fs.String("operator", "", "who runs this, for the report's audit frame (default: $PINWALL_OPERATOR, else the OS user)"),
		controls: fs.String("controls", "", "map catalogue rows to your organisation's control IDs (YAML; template: docs/controls-template.yaml)"),
		gateways: fs.String("gateways", "", "your SSE vendor's gateways (YAML: names, address ranges, backup, ports; docs/gateways-format.md): the report's fix names them"),
		check:    fs.Bool("check", true, "review each policy the runs used with `pinwall check` and put the output in the bundle's checks/"),
	}
}

// operatorName is --operator, else $PINWALL_OPERATOR, else the OS user.
func (f *frameFlags) operatorName() string {
	if *f.operator != "" {
		return *f.operator
	}
	if v := os.Getenv("PINWALL_OPERATOR"); v != "" {
		return v
	}
	if u, err := user.Current(); err == nil {
		if u.Username != "" {
			return u.Username + " (OS user)"
		}
	}
	return ""
}

// load reads --controls and --gateways; a bad file is a usage error
// naming its file, line and field.
func (f *frameFlags) load() (*reports.Controls, *reports.Gateways, error) {
	var c *reports.Controls
	var g *reports.Gateways
	var err error
	if *f.controls != "" {
		if c, err = reports.LoadControls(*f.controls); err != nil {
			return nil, nil, usageError("--controls: %v", err)
		}
	}
	if *f.gateways != "" {
		if g, err = reports.LoadGateways(*f.gateways); err != nil {
			return nil, nil, usageError("--gateways: %v", err)
		}
	}
	return c, g, nil
}

// checkPolicies reviews every policy file the scenarios name, two at a
// time, and returns each review's output, in the order of the files.
func checkPolicies(ctx context.Context, ss []*scenarios.Scenario, stderr io.Writer) []reports.CheckOutput {
	var files []scenarios.InputFile
	seen := map[string]bool{}
	for _, s := range ss {
		ins := s.Inputs()
		for i := 1; i < len(ins); i++ {
			if !seen[ins[i].Path] {
				seen[ins[i].Path] = true
				files = append(files, ins[i])
			}
		}
	}
	if len(files) == 0 {
		return nil
	}
	fmt.Fprintf(stderr, "check: reviewing the %d policies the runs used (--check=false skips this)\n", len(files))
	out := make([]reports.CheckOutput, len(files))
	sem := make(chan struct{}, 2)
	var wg sync.WaitGroup
	var mu sync.Mutex // stderr is one writer
	for i, f := range files {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			out[i] = checkOne(ctx, f)
			mu.Lock()
			defer mu.Unlock()
			fmt.Fprintf(stderr, "check: %s: exit %d\n", f.Path, out[i].ExitCode)
		}()
	}
	wg.Wait()
	return out
}

// checkOne reviews one policy file as `pinwall check --policy FILE` would.
func checkOne(ctx context.Context, f scenarios.InputFile) reports.CheckOutput {
	c := reports.CheckOutput{Policy: f.Path, Command: "pinwall check --policy " + shellQuoteArg(f.Path)}
	var buf bytes.Buffer
	pol, err := policy.Parse(f.Path, f.Data)
	if err == nil {
		err = checkPolicy(ctx, pol, f.Path, harness.ClientSpec{}, nil, &buf, io.Discard)
	}
	c.ExitCode = 0
	if err != nil {
		c.ExitCode = 2
		var ee *exitError
		if errors.As(err, &ee) {
			c.ExitCode = ee.code
		}
		if msg := err.Error(); msg != "" {
			fmt.Fprintf(&buf, "\npinwall check: %s\n", msg)
		}
	}
	c.Output = buf.String()
	return c
}

// shellQuoteArg quotes a path for a shell when it needs it.
func shellQuoteArg(s string) string {
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.' || r == '/') {
			return "'" + s + "'"
		}
	}
	return s
}
