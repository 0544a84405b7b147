package bench

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Tool is an external intercepting proxy measured beside pinwall.
type Tool struct {
	// Name labels the tool's figures.
	Name string
	// Binary is the program run.
	Binary string
	// Package is the Debian package that ships it.
	Package string
}

// The tools measured.
var (
	SSLsplit  = Tool{Name: "sslsplit", Binary: "sslsplit", Package: "sslsplit"}
	Mitmproxy = Tool{Name: "mitmproxy", Binary: "mitmdump", Package: "mitmproxy"}
)

// ToolStatus says whether a tool can be run, and why not.
type ToolStatus struct {
	Tool
	// Path is the binary's path when available.
	Path string
	// Version is the installed package version, if known.
	Version string
	// Problem explains why the tool is unavailable ("" when it is).
	Problem string
}

// Available reports whether the tool can be run.
func (s ToolStatus) Available() bool { return s.Problem == "" }

// EnsureTools finds the tools, installing the missing ones with apt-get when
// install is set (the candidate is checked with apt-cache policy first, and
// the package lists refreshed once if there is none). Progress goes to log.
// It never fails: a tool it cannot get comes back with its Problem set.
func EnsureTools(ctx context.Context, install bool, log io.Writer, tools ...Tool) []ToolStatus {
	out := make([]ToolStatus, len(tools))
	var missing []int
	for i, t := range tools {
		out[i] = ToolStatus{Tool: t}
		if p, err := exec.LookPath(t.Binary); err == nil {
			out[i].Path = p
		} else {
			missing = append(missing, i)
		}
	}
	if len(missing) > 0 && !install {
		for _, i := range missing {
			out[i].Problem = "not installed (install not attempted)"
		}
	}
	if len(missing) > 0 && install {
		installTools(ctx, log, out, missing)
	}
	for i := range out {
		if out[i].Path != "" && out[i].Version == "" {
			out[i].Version = dpkgVersion(ctx, out[i].Package)
		}
	}
	return out
}

func installTools(ctx context.Context, log io.Writer, out []ToolStatus, missing []int) {
	if os.Geteuid() != 0 {
		for _, i := range missing {
			out[i].Problem = "not installed, and installing needs root"
		}
		return
	}
	pkgs := func(idx []int) []string {
		var p []string
		for _, i := range idx {
			p = append(p, out[i].Package)
		}
		return p
	}
	candidates := aptCandidates(ctx, pkgs(missing))
	if len(candidates) < len(missing) {
		fmt.Fprintf(log, "bench: apt-cache has no candidate for some of %v; running apt-get update\n", pkgs(missing))
		if err := runLogged(ctx, log, "apt-get", "update"); err != nil {
			fmt.Fprintf(log, "bench: apt-get update: %v\n", err)
		}
		candidates = aptCandidates(ctx, pkgs(missing))
	}
	var installable []int
	for _, i := range missing {
		if v, ok := candidates[out[i].Package]; ok {
			out[i].Version = v
			installable = append(installable, i)
		} else {
			out[i].Problem = "absent: apt-cache policy shows no candidate for " + out[i].Package
		}
	}
	if len(installable) == 0 {
		return
	}
	fmt.Fprintf(log, "bench: apt-get install -y %s\n", strings.Join(pkgs(installable), " "))
	err := runLogged(ctx, log, "apt-get", append([]string{"install", "-y", "--no-install-recommends"}, pkgs(installable)...)...)
	for _, i := range installable {
		if p, lerr := exec.LookPath(out[i].Binary); lerr == nil {
			out[i].Path = p
			continue
		}
		if err != nil {
			out[i].Problem = "apt-get install failed: " + err.Error()
		} else {
			out[i].Problem = "installed " + out[i].Package + " but found no " + out[i].Binary
		}
	}
}

// aptCandidates returns the candidate versions apt-cache policy shows.
func aptCandidates(ctx context.Context, pkgs []string) map[string]string {
	cmd := exec.CommandContext(ctx, "apt-cache", append([]string{"policy"}, pkgs...)...)
	b, err := cmd.Output()
	if err != nil {
		return map[string]string{}
	}
	return parseAptPolicy(string(b))
}

// parseAptPolicy reads the candidate versions out of apt-cache policy's output.
func parseAptPolicy(out string) map[string]string {
	res := map[string]string{}
	var cur string
	for _, line := range strings.Split(out, "\n") {
		if !strings.HasPrefix(line, " ") && strings.HasSuffix(line, ":") {
			cur = strings.TrimSuffix(line, ":")
			continue
		}
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "Candidate:"); ok && cur != "" {
			if v = strings.TrimSpace(v); v != "(none)" && v != "" {
				res[cur] = v
			}
		}
	}
	return res
}

func dpkgVersion(ctx context.Context, pkg string) string {
	b, err := exec.CommandContext(ctx, "dpkg-query", "-W", "-f=${Version}", pkg).Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

func runLogged(ctx context.Context, log io.Writer, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	var tail tailBuffer
	cmd.Stdout, cmd.Stderr = &tail, &tail
	if err := cmd.Run(); err != nil {
		fmt.Fprintf(log, "%s", tail.String())
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

// tailBuffer keeps the last 8 KiB written to it.
type tailBuffer struct {
	mu sync.Mutex
	b  []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if over := len(t.b) - 8<<10; over > 0 {
		t.b = t.b[over:]
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}

// process is an external tool the env started; stop ends it by its pid.
type process struct {
	cmd    *exec.Cmd
	out    *tailBuffer
	exited chan struct{}
	err    error
}

func startProcess(bin string, args ...string) (*process, error) {
	cmd := exec.Command(bin, args...)
	p := &process{cmd: cmd, out: &tailBuffer{}, exited: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	cmd.Stdin = nil
	// Its own process group, so a signal to the bench does not reach it first.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("bench: start %s: %w", bin, err)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()
	return p, nil
}

// stop sends SIGTERM to the process (by pid), then SIGKILL after 5s.
func (p *process) stop() error {
	select {
	case <-p.exited:
		return nil
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(5 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
	return nil
}

// waitListening waits until addr accepts connections, the process exits or
// the timeout passes.
func (p *process) waitListening(addr netip.AddrPort, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", addr.String(), time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-p.exited:
			return fmt.Errorf("exited before listening (%v): %s", p.err, lastLines(p.out.String(), 5))
		case <-time.After(25 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not listening on %s after %v: %s", addr, timeout, lastLines(p.out.String(), 5))
		}
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}

// freePort finds a loopback port nobody listens on.
func freePort() (netip.AddrPort, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return netip.AddrPort{}, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).AddrPort(), nil
}

// StartTool starts an available tool in front of the origin, intercepting
// with the enterprise CA, and waits until it listens.
func (e *FirewallEnv) StartTool(st ToolStatus) (*Path, error) {
	if !st.Available() {
		return nil, fmt.Errorf("bench: %s: %s", st.Name, st.Problem)
	}
	certFile, keyFile, bundle, err := e.writeCAFiles()
	if err != nil {
		return nil, err
	}
	addr, err := freePort()
	if err != nil {
		return nil, err
	}
	origin := e.OriginAddr()
	var args []string
	note := st.Version
	var curve tls.CurveID
	switch st.Tool {
	case SSLsplit:
		// One static upstream; -P passes through what cannot be split. No
		// -l/-L/-S/-F: no connection or content logs. sslsplit has no
		// TCP_NODELAY option: it leaves Nagle on.
		args = []string{"-k", keyFile, "-c", certFile, "-P",
			"ssl", addr.Addr().String(), strconv.Itoa(int(addr.Port())),
			origin.Addr().String(), strconv.Itoa(int(origin.Port()))}
		note += "; static upstream, Nagle on, client offers P-256 (its only ECDH group)"
		curve = tls.CurveP256
	case Mitmproxy:
		// Reverse mode to the origin, the enterprise CA as mitmproxy's own
		// (confdir/mitmproxy-ca.pem = key + cert), no upstream verification,
		// quiet, and bodies over 1 MiB streamed rather than buffered.
		args = []string{"--mode", "reverse:https://" + origin.String(),
			"--listen-host", addr.Addr().String(), "--listen-port", strconv.Itoa(int(addr.Port())),
			"--ssl-insecure", "--set", "confdir=" + filepath.Dir(bundle),
			"--set", "stream_large_bodies=1m", "-q"}
		note += "; reverse mode, stream_large_bodies=1m"
	default:
		return nil, fmt.Errorf("bench: no command line for %s", st.Name)
	}
	proc, err := startProcess(st.Path, args...)
	if err != nil {
		return nil, err
	}
	if err := proc.waitListening(addr, 30*time.Second); err != nil {
		proc.stop()
		return nil, fmt.Errorf("bench: %s: %w", st.Name, err)
	}
	return e.addPath(&Path{Name: st.Name, Addr: addr, Decrypts: true, Note: strings.TrimPrefix(note, "; "), Curve: curve, stop: proc.stop})
}
