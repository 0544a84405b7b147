package node

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/pinwall/pinwall/interceptors"
	"github.com/pinwall/pinwall/netsetup"
)

// InterceptorReport is what the firewall node writes about a third-party
// tool (file InterceptorReportFile in Out).
type InterceptorReport struct {
	// Version is the tool's version output.
	Version string `json:"version"`
	// Exited is how the tool ended, if it did before the node was told to
	// stop.
	Exited string `json:"exited,omitempty"`
	// Counters are the nftables rules' counters when the node stopped.
	Counters []netsetup.RuleCount `json:"counters,omitempty"`
}

// InterceptorReportFile is the InterceptorReport's name in Out.
const InterceptorReportFile = "interceptor.json"

// ToolDNS is where the firewall node answers the topology's names over
// DNS for the tool (interceptors' squid.conf names it).
const ToolDNS = "127.0.0.1:53"

// ToolReadyTimeout bounds how long the tool may take to listen.
const ToolReadyTimeout = 90 * time.Second

// runInterceptorNode supervises a third-party interceptor in the firewall
// container: it writes the CA, the trust store, the topology's names and
// the tool's generated configuration, records the tool's version, runs
// its setup and then the tool itself, waits until it listens, and prints
// MarkerReady. When ctx ends it stops the tool (SIGTERM, then SIGKILL after
// 10 s) and writes the InterceptorReport. The nftables rules are the
// node's network (applied by Run before this).
func runInterceptorNode(ctx context.Context, nc Config, sig Signals, stdout io.Writer, log *slog.Logger) error {
	fn := nc.Firewall
	ic := fn.Interceptor
	p := interceptors.DefaultParams()
	// The enterprise CA exists only for this run and inside this
	// container; squid reads its key after dropping to the proxy user.
	files := []interceptors.File{
		{Path: p.CACert, Mode: 0o644, Content: fn.CA.Cert},
		{Path: p.CAKey, Mode: 0o644, Content: fn.CA.Key},
		{Path: p.Trust, Mode: 0o644, Content: fn.Roots},
	}
	for _, f := range append(files, ic.Files...) {
		if err := os.MkdirAll(path.Dir(f.Path), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(f.Path, []byte(f.Content), os.FileMode(f.Mode)); err != nil {
			return err
		}
		if err := os.Chmod(f.Path, os.FileMode(f.Mode)); err != nil {
			return err
		}
	}
	rep := InterceptorReport{}
	if v, err := exec.CommandContext(ctx, ic.Tool.VersionCmd[0], ic.Tool.VersionCmd[1:]...).CombinedOutput(); err != nil {
		return fmt.Errorf("%s: %s: %w: %s", ic.Kind, strings.Join(ic.Tool.VersionCmd, " "), err, v)
	} else {
		rep.Version = string(v)
	}
	// The topology's names, for a tool that resolves them itself.
	dns, err := serveZoneDNS(ToolDNS, nc.Zone)
	if err != nil {
		return fmt.Errorf("%s: the zone's DNS on %s: %w", ic.Kind, ToolDNS, err)
	}
	defer dns.Close()
	setupLog, err := createOut(nc, string(ic.Kind)+"-setup.log")
	if err != nil {
		return err
	}
	for _, s := range ic.Setup {
		cmd := exec.CommandContext(ctx, s[0], s[1:]...)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		fmt.Fprintf(setupLog, "$ %s\n%s", strings.Join(s, " "), out.String())
		if err != nil {
			setupLog.Close()
			return fmt.Errorf("%s setup: %s: %w: %s", ic.Kind, strings.Join(s, " "), err, out.String())
		}
	}
	setupLog.Close()
	if err := os.MkdirAll(filepath.Dir(ic.Stdout), 0o755); err != nil {
		return err
	}
	out, err := os.OpenFile(ic.Stdout, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer out.Close()
	cmd := exec.Command(ic.Command[0], ic.Command[1:]...)
	cmd.Env = append(os.Environ(), ic.Env...)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("%s: start %s: %w", ic.Kind, strings.Join(ic.Command, " "), err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stop := func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-exited:
			exited <- err
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
		}
	}
	if err := waitListening(ctx, ic.Port, exited, ToolReadyTimeout); err != nil {
		stop()
		return fmt.Errorf("%s: %w\n%s", ic.Kind, err, tail(ic.Stdout, 4<<10))
	}
	fmt.Fprintf(stdout, "pinwall firewall: %s listening on :%d\n", ic.Kind, ic.Port)
	fmt.Fprintln(stdout, MarkerReady)
	running := true
	for done := false; !done; {
		select {
		case <-ctx.Done():
			done = true
		case err := <-exited:
			running = false
			rep.Exited = fmt.Sprintf("%s exited during the run: %v", ic.Kind, err)
			fmt.Fprintln(stdout, "pinwall firewall: "+rep.Exited)
			log.Warn("firewall: the interceptor exited", "kind", ic.Kind, "err", err)
			exited = nil
		case <-sig.Impair:
			applyImpair(ImpairPath, nil, stdout, log)
		case <-sig.Reload:
			log.Warn("firewall: a policy change is not carried out for a third-party interceptor", "kind", ic.Kind)
			fmt.Fprintf(stdout, "pinwall firewall: policy reload not supported for %s\n", ic.Kind)
		}
	}
	if running {
		stop()
	}
	rep.Counters, err = netsetup.Counters()
	if err != nil {
		log.Warn("firewall: reading the nftables counters", "err", err)
	}
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(nc.Out, InterceptorReportFile), b, 0o644)
}

// waitListening waits until a TCP socket listens on port (from
// /proc/net/tcp, so that nothing connects to the tool to find out), the
// tool exits, or timeout passes.
func waitListening(ctx context.Context, port uint16, exited chan error, timeout time.Duration) error {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		if listening("/proc/net/tcp", port) {
			return nil
		}
		select {
		case err := <-exited:
			exited <- err
			return fmt.Errorf("exited before listening on :%d: %v", port, err)
		case <-deadline.C:
			return fmt.Errorf("not listening on :%d after %v", port, timeout)
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// listening reports whether file (/proc/net/tcp) shows a socket in state
// LISTEN (0A) on port.
func listening(file string, port uint16) bool {
	f, err := os.Open(file)
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 4 || fields[3] != "0A" {
			continue
		}
		_, hexPort, ok := strings.Cut(fields[1], ":")
		if !ok {
			continue
		}
		if n, err := strconv.ParseUint(hexPort, 16, 16); err == nil && uint16(n) == port {
			return true
		}
	}
	return false
}

// tail is the end of a file, for an error message.
func tail(file string, n int64) string {
	f, err := os.Open(file)
	if err != nil {
		return ""
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return ""
	}
	off := max(st.Size()-n, 0)
	b := make([]byte, st.Size()-off)
	if _, err := f.ReadAt(b, off); err != nil && !errors.Is(err, io.EOF) {
		return ""
	}
	return string(b)
}
