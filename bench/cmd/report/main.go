// Command report runs pinwall's performance measurements in one process and
// prints them as a table — figure, value, reference or goal, ratio, pass or
// miss — so that every ratio compares figures of the same run. It is what
// `make bench` runs.
//
// Usage:
//
//	go run ./bench/cmd/report [-d 3s] [-only tunnel|firewall|catalogue|flood|fleet|check] [-fleet N] [-no-tools] [-no-install]
//
// sslsplit and mitmproxy (Debian packages) are installed with apt-get when
// missing unless -no-install is given; a tool that cannot be had is reported
// as such in the table. Progress goes to standard error, the table to
// standard output. Goals are printed, never enforced: the exit status is 0
// whatever the verdicts, 1 only when the run itself could not be completed.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/pinwall/pinwall/bench"
)

func main() {
	// The flood measurements run their gateway in a child process: this
	// executable, started again.
	if bench.GatewayChild() {
		return
	}
	var (
		d         = flag.Duration("d", bench.DefaultDuration, "how long each figure runs")
		only      = flag.String("only", "", `measure one section: "tunnel", "firewall", "catalogue", "flood", "fleet" or "check"`)
		fleetN    = flag.Int("fleet", bench.FleetDefault, "laptops in the fleet section")
		noCont    = flag.Bool("no-containers", false, "leave the container catalogue and the container fleets out")
		noTools   = flag.Bool("no-tools", false, "leave sslsplit and mitmproxy out")
		noInstall = flag.Bool("no-install", false, "do not apt-get install a missing sslsplit or mitmproxy")
		quiet     = flag.Bool("q", false, "no progress on standard error")
	)
	flag.Parse()
	if *only != "" && *only != "tunnel" && *only != "firewall" && *only != "catalogue" && *only != "flood" && *only != "fleet" && *only != "check" {
		fmt.Fprintf(os.Stderr, "report: -only %q: want tunnel, firewall, catalogue, flood, fleet or check\n", *only)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	cfg := bench.Config{
		Log:          os.Stderr,
		Duration:     *d,
		SkipTunnel:   *only != "" && *only != "tunnel",
		SkipFirewall: *only != "" && *only != "firewall",
		SkipTools:    *noTools,
		NoInstall:    *noInstall,
	}
	if *only == "" || *only == "catalogue" {
		cfg.Extra = append(cfg.Extra, bench.CatalogueSection(!*noCont))
	}
	if *only == "" || *only == "flood" {
		cfg.Extra = append(cfg.Extra, bench.FloodSection(bench.FloodConfig{Child: true}))
	}
	if *only == "" || *only == "fleet" {
		cfg.Extra = append(cfg.Extra, bench.FleetSection(bench.FleetConfig{N: *fleetN, Child: true, Containers: !*noCont}))
	}
	if *only == "" || *only == "check" {
		cfg.Extra = append(cfg.Extra, bench.CheckSection())
	}
	if *quiet {
		cfg.Log = nil
	}
	start := time.Now()
	sections, err := bench.Report(ctx, cfg)
	fmt.Println("pinwall bench")
	for _, l := range bench.Environment(cfg) {
		fmt.Println("  " + l)
	}
	fmt.Println()
	if werr := bench.WriteTable(os.Stdout, sections...); werr != nil {
		fmt.Fprintln(os.Stderr, "report:", werr)
		os.Exit(1)
	}
	pass, miss := bench.Tally(sections...)
	fmt.Printf("\ngoals: %d pass, %d miss; measured in %v\n", pass, miss, time.Since(start).Round(time.Second))
	if err != nil {
		fmt.Fprintln(os.Stderr, "report:", err)
		os.Exit(1)
	}
}
