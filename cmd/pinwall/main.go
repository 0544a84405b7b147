// Command pinwall runs pinwall's scenarios and labs: what a TLS-intercepting
// perimeter firewall does to an endpoint security client's tunnel to its
// cloud gateway, proven with running code.
//
//	pinwall list                      one scenario per line
//	pinwall run [ID...] [--all]       run scenarios, print a verdict table, write evidence
//	pinwall check --policy FILE       review your own firewall policy
//	pinwall lab                       an interactive lab (SOCKS5 for curl)
//	pinwall probe --bundle FILE       measure a real network towards a field gateway
//	pinwall serve ROLE                one component, for containers or standalone use
//	pinwall clean                     remove what dead container runs left on the Docker engine
//
// Exit codes: 0 every expectation held (check: every answer OK), 1 some
// did not (check: a problem), 2 usage or configuration error, 3 check
// found warnings only, 128+N when run, check or lab is stopped by signal N
// (130 for SIGINT, 143 for SIGTERM), after writing what it had; serve,
// stopped by a signal, exits 0. -h and --help print a command's usage and
// exit 0.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// exitError carries an exit code.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func usageError(format string, args ...any) error {
	return &exitError{code: 2, err: fmt.Errorf(format, args...)}
}

const usage = `pinwall: what a TLS-intercepting firewall does to a tunnelling security client.

Usage:
  pinwall list                              list the scenarios
  pinwall run [ID...] [--all] [--out DIR] [--mode inproc|containers] [--parallel N]
              [--firewall pinwall|mitmproxy|squid|sslsplit|LIST|all]
              [--gateways FILE] [--controls FILE] [--operator NAME] [--check=false]
                                            run scenarios, print the verdicts, write evidence
                                            (report, one-page summary, inputs, check output)
  pinwall check --policy FILE [--client FILE]
                                            review a firewall policy: the tunnel over DTLS and TLS,
                                            failover, over-bypass, FQDN drift, lint; exit 0 OK,
                                            3 warnings only, 1 problems
  pinwall lab [--transport auto|tls|dtls] [--socks ADDR] [--socks-any] [--dir DIR] [--policy FILE]
              [--firewall-proxy ADDR] [--upstream-proxy URL] [--proxy-connect addr|name] [--dns ADDR]
                                            run an interactive lab until interrupted
  pinwall probe --bundle FILE [--out DIR] [--proxy URL] [--json]
                                            measure a real network towards a field gateway
                                            (pinwall serve gateway --dir DIR); exit codes as check
  pinwall serve ROLE [flags]                run one component (firewall, client, gateway, origin, probe)
  pinwall compose [--scenario ID] [--dir DIR]
                                            write a docker-compose project of a scenario's topology
  pinwall image [--tools] [--rebuild]       make the container images (--tools: mitmproxy, squid, sslsplit)
  pinwall clean [--images] [--ttl D] [--dry-run]
                                            remove what dead container runs left on the Docker engine
  pinwall version                           print the version

Run "pinwall COMMAND -h" for a command's flags.
`

func main() {
	ctx, stop := signalContext(context.Background())
	err := dispatch(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if len(os.Args) > 1 && os.Args[1] == "serve" {
		// A server stopped by a signal has done what it was asked.
		os.Exit(exitCode(err, os.Stderr))
	}
	os.Exit(exitStatus(ctx, err, os.Stderr))
}

// stoppedBy is the cause of a context a signal cancelled.
type stoppedBy struct{ sig os.Signal }

func (s stoppedBy) Error() string { return "stopped by " + s.sig.String() }

// signalContext is cancelled, with a stoppedBy cause, by the first SIGINT
// or SIGTERM; stop stops listening for them.
func signalContext(parent context.Context) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(parent)
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		select {
		case s := <-sigs:
			cancel(stoppedBy{s})
		case <-done:
		}
	}()
	return ctx, func() {
		signal.Stop(sigs)
		close(done)
		cancel(nil)
	}
}

// exitStatus is the process's exit code: 128 plus the signal's number when
// a signal stopped the command (the shell's convention, so that a script
// can tell "interrupted" from "not as expected"), exitCode's otherwise.
func exitStatus(ctx context.Context, err error, stderr io.Writer) int {
	code := exitCode(err, stderr)
	var sb stoppedBy
	if errors.As(context.Cause(ctx), &sb) {
		if n, ok := sb.sig.(syscall.Signal); ok {
			return 128 + int(n)
		}
	}
	return code
}

func exitCode(err error, stderr io.Writer) int {
	if err == nil {
		return 0
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err != nil && ee.err.Error() != "" {
			fmt.Fprintln(stderr, "pinwall:", ee.err)
		}
		return ee.code
	}
	fmt.Fprintln(stderr, "pinwall:", err)
	return 1
}

func dispatch(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return &exitError{code: 2, err: errors.New("")}
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "list":
		return cmdList(rest, stdout)
	case "run":
		return cmdRun(ctx, rest, stdout, stderr)
	case "check":
		return cmdCheck(ctx, rest, stdout, stderr)
	case "lab":
		return cmdLab(ctx, rest, stdout, stderr)
	case "probe":
		return cmdProbe(ctx, rest, stdout, stderr)
	case "serve":
		return cmdServe(ctx, rest, stdout, stderr)
	case "compose":
		return cmdCompose(rest, stdout, stderr)
	case "image":
		return cmdImage(ctx, rest, stdout, stderr)
	case "clean":
		return cmdClean(ctx, rest, stdout, stderr)
	case "version":
		if err := helpOnly("pinwall version", rest, stdout); err != nil {
			return err
		}
		v, c := buildInfo()
		fmt.Fprintf(stdout, "pinwall %s (%s)\n", v, c)
		return nil
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return usageError("unknown command %q", cmd)
}
