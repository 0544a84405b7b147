package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/csv"
	"encoding/json"
	"flag"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"golang.org/x/net/proxy"

	"github.com/pinwall/pinwall/internal/node"
	"github.com/pinwall/pinwall/mitm/policy"
	"github.com/pinwall/pinwall/pki"
	"github.com/pinwall/pinwall/scenarios"
)

func TestMain(m *testing.M) {
	// The test binary is pinwall itself when a test runs it as a child.
	if os.Getenv("PINWALL_TEST_MAIN") == "1" {
		main()
		return
	}
	goleak.VerifyTestMain(m)
}

// TestSignalExitCodes: check and lab, real processes, stopped by SIGINT
// exit 130 (not 1, which means "not as expected"). run, which prints
// nothing until it ends when its output is not a terminal, is in
// TestRunInterrupted.
func TestSignalExitCodes(t *testing.T) {
	tests := []struct {
		name  string
		args  []string
		ready string // a line that shows the command is under way
	}{
		{"check", []string{"check", "--policy", abs(t, "../../scenarios/policies/bypass-gateways-from-endpoints.yaml")}, "check: asking every question at once"},
		{"lab", []string{"lab", "--socks", "127.0.0.1:0", "--dir", "DIR"}, "pinwall lab ready"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			args := make([]string, len(tt.args))
			for i, a := range tt.args {
				args[i] = strings.ReplaceAll(a, "DIR", dir)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, os.Args[0], args...)
			cmd.Env = append(os.Environ(), "PINWALL_TEST_MAIN=1")
			pr, pw := io.Pipe()
			cmd.Stdout, cmd.Stderr = pw, pw
			require.NoError(t, cmd.Start())
			waited := make(chan error, 1)
			go func() { waited <- cmd.Wait(); pw.Close() }()
			sc := bufio.NewScanner(pr)
			var out strings.Builder
			for sc.Scan() {
				out.WriteString(sc.Text() + "\n")
				if strings.Contains(sc.Text(), tt.ready) {
					break
				}
			}
			require.Contains(t, out.String(), tt.ready)
			require.NoError(t, cmd.Process.Signal(os.Interrupt))
			go io.Copy(io.Discard, pr) //nolint:errcheck // drains the child's output
			err := <-waited
			var ee *exec.ExitError
			require.ErrorAs(t, err, &ee, "output:\n%s", out.String())
			assert.Equal(t, 130, ee.ExitCode(), "output:\n%s", out.String())
		})
	}
}

func run(t *testing.T, ctx context.Context, args ...string) (string, string, int) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := dispatch(ctx, args, &out, &errOut)
	code := exitCode(err, &errOut)
	return out.String(), errOut.String(), code
}

func TestListAndUsage(t *testing.T) {
	out, _, code := run(t, context.Background(), "list")
	require.Equal(t, 0, code)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	require.Len(t, lines, 13)
	assert.True(t, strings.HasPrefix(lines[0], "visibility "), lines[0])
	assert.Regexp(t, `^learned-exclusion\s+PAN-style`, lines[12])

	_, errOut, code := run(t, context.Background(), "frobnicate")
	assert.Equal(t, 2, code)
	assert.Contains(t, errOut, `unknown command "frobnicate"`)
	_, _, code = run(t, context.Background())
	assert.Equal(t, 2, code)
	_, errOut, code = run(t, context.Background(), "run", "no-such-row")
	assert.Equal(t, 2, code)
	assert.Contains(t, errOut, "unknown scenario no-such-row (valid: visibility")
	_, _, code = run(t, context.Background(), "run", "--mode", "vm")
	assert.Equal(t, 2, code)
	_, errOut, code = run(t, context.Background(), "clean", "everything")
	assert.Equal(t, 2, code)
	assert.Contains(t, errOut, "clean takes no arguments")
	_, errOut, code = run(t, context.Background(), "clean", "--ttl", "0s")
	assert.Equal(t, 2, code)
	assert.Contains(t, errOut, "--ttl must be positive")
}

// TestHelpExitsZero: every command answers -h and --help on stdout with
// exit 0, including serve and its roles.
func TestHelpExitsZero(t *testing.T) {
	for _, args := range [][]string{
		{"-h"}, {"--help"}, {"help"}, {"list", "-h"}, {"version", "--help"},
		{"run", "-h"}, {"run", "visibility", "--help"}, {"check", "-h"}, {"check", "--help"},
		{"lab", "-h"}, {"compose", "--help"}, {"serve", "-h"}, {"serve", "--help"},
		{"serve", "firewall", "-h"}, {"serve", "client", "--help"}, {"serve", "gateway", "-h"}, {"probe", "-h"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			out, errOut, code := run(t, context.Background(), args...)
			assert.Equal(t, 0, code, errOut)
			assert.Contains(t, out, "Usage")
			assert.Empty(t, errOut)
		})
	}
	_, errOut, code := run(t, context.Background(), "serve")
	assert.Equal(t, 2, code)
	assert.Contains(t, errOut, "Usage: pinwall serve ROLE")
	_, errOut, code = run(t, context.Background(), "run", "--nope")
	assert.Equal(t, 2, code)
	assert.Contains(t, errOut, "flag provided but not defined: -nope")
}

// TestOutCheckedFirst: an --out that cannot hold a bundle is a usage error
// (exit 2) before anything runs.
func TestOutCheckedFirst(t *testing.T) {
	file := filepath.Join(t.TempDir(), "a-file")
	require.NoError(t, os.WriteFile(file, nil, 0o644))
	for _, out := range []string{file, filepath.Join(file, "below")} {
		stdout, errOut, code := run(t, context.Background(), "run", "--all", "--out", out)
		assert.Equal(t, 2, code, errOut)
		assert.Contains(t, errOut, "--out: ")
		assert.Empty(t, stdout, "nothing ran")
	}
}

func TestRunWritesEvidenceAndExitCodes(t *testing.T) {
	dir := t.TempDir()
	out, errOut, code := run(t, context.Background(), "run", "visibility", "--out", dir, "udp-blocked", "--operator", "A. Auditor",
		"--gateways", abs(t, "../../docs/gateways-example.yaml"), "--controls", abs(t, "../../docs/controls-template.yaml"))
	require.Equal(t, 0, code, out)
	assert.Regexp(t, `(?m)^\[ 3/3\] PASS `, errOut, "a progress line per run, though stderr is no terminal")
	assert.Regexp(t, `(?m)^visibility\s+baseline\s+up dtls, 20/20 verified\s+-\s+yes$`, out)
	assert.Contains(t, out, "3 of 3 runs as expected (inproc")
	for _, f := range []string{"evidence.json", "report.html", "report.md", "junit.xml", "manifest.sha256", "summary.md", "summary.html",
		"logs/README.md", "inputs/visibility.yaml", "inputs/udp-blocked.yaml", "inputs/policies/bypass-gateways-from-endpoints.yaml",
		"inputs/gateways-gateways-example.yaml", "inputs/controls-controls-template.yaml", "checks/bypass-gateways-from-endpoints.txt", "checks/allow-all.txt"} {
		assert.FileExists(t, filepath.Join(dir, f))
	}
	report, err := os.ReadFile(filepath.Join(dir, "report.md"))
	require.NoError(t, err)
	assert.Contains(t, string(report), "| Operator | A. Auditor |")
	assert.Contains(t, string(report), "NET-EXAMPLE-01 — TLS inspection exemptions")
	summary, err := os.ReadFile(filepath.Join(dir, "summary.md"))
	require.NoError(t, err)
	assert.Contains(t, string(summary), "set address sse-gw1 ip-netmask 192.0.2.0/26")
	check, err := os.ReadFile(filepath.Join(dir, "checks", "bypass-gateways-from-endpoints.txt"))
	require.NoError(t, err)
	assert.Contains(t, string(check), "# exit status 0\n")

	// A bad gateways file: exit 2, naming file, line and field, before any run.
	badGW := filepath.Join(t.TempDir(), "gw.yaml")
	require.NoError(t, os.WriteFile(badGW, []byte("gateways:\n  - { name: '*.x.test', addresses: [192.0.2.0/24] }\n"), 0o644))
	_, errOut, code = run(t, context.Background(), "run", "visibility", "--out", t.TempDir(), "--gateways", badGW)
	assert.Equal(t, 2, code)
	assert.Contains(t, errOut, badGW+":2:")
	assert.Contains(t, errOut, "gateways[0].name")

	// A scenario whose expectation does not hold: exit 1.
	wrong := filepath.Join(t.TempDir(), "wrong.yaml")
	require.NoError(t, os.WriteFile(wrong, []byte(`id: wrong
title: An expectation that cannot hold
summary: expects DTLS where UDP/443 is blocked
firewall: { policy-file: `+abs(t, "../../scenarios/policies/udp-blocked.yaml")+` }
client: { fallback-timeout: 300ms }
variants: [{ variant: baseline }]
expect: { tunnel: { transport: dtls } }
`), 0o644))
	wrongOut := t.TempDir()
	out, _, code = run(t, context.Background(), "run", "--out", wrongOut, "--file", wrong)
	assert.Equal(t, 1, code, out)
	assert.Regexp(t, `wrong\s+baseline\s+up tls.*NO \(1 of 1 checks failed\)`, out)
	md, err := os.ReadFile(filepath.Join(wrongOut, "report.md"))
	require.NoError(t, err)
	assert.Contains(t, string(md), "\npinwall run --file "+wrong+"\n", "the report reproduces a --file run by its file")

	// A file of one's own cannot take a catalogue id.
	clash := filepath.Join(t.TempDir(), "clash.yaml")
	require.NoError(t, os.WriteFile(clash, []byte("id: visibility\ntitle: t\nsummary: s\nvariants: [{variant: baseline}]\n"), 0o644))
	_, errOut, code = run(t, context.Background(), "run", "--out", t.TempDir(), "--file", clash)
	assert.Equal(t, 2, code)
	assert.Contains(t, errOut, clash+`:1:5: id: "visibility" is the id of the catalogue's scenario`)

	// A broken file: exit 2 with a one-line error naming file, line, field.
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	require.NoError(t, os.WriteFile(bad, []byte("id: bad\ntitle: t\nsummary: s\nvariants: [{variant: baseline}]\nexpect: {tunnel: {state: sideways}}\n"), 0o644))
	_, errOut, code = run(t, context.Background(), "run", "--file", bad)
	assert.Equal(t, 2, code)
	assert.Equal(t, 1, strings.Count(strings.TrimSpace(errOut), "\n")+1, errOut)
	assert.Contains(t, errOut, bad+`:5:`)
	assert.Contains(t, errOut, `expect.tunnel.state: "sideways" is not one of: up, down`)
}

func abs(t *testing.T, p string) string {
	a, err := filepath.Abs(p)
	require.NoError(t, err)
	return a
}

// TestRunInterrupted interrupts a whole-catalogue run as SIGINT does: it
// stops, writes what it has with the unfinished runs marked incomplete, and
// exits 130; goleak
// (TestMain) proves no goroutine, hence no listener, outlived it.
func TestRunInterrupted(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithCancelCause(context.Background())
	time.AfterFunc(1500*time.Millisecond, func() { cancel(stoppedBy{os.Interrupt}) })
	var out, errBuf bytes.Buffer
	err := dispatch(ctx, []string{"run", "--all", "--parallel", "1", "--out", dir}, &out, &errBuf)
	assert.Equal(t, 130, exitStatus(ctx, err, &errBuf), "SIGINT: 128+2, not 1")
	errOut := errBuf.String()
	assert.Contains(t, errOut, "interrupted")
	var ev struct {
		Meta struct {
			Interrupted bool `json:"interrupted"`
		} `json:"meta"`
		Results []struct {
			ID      string `json:"id"`
			Verdict string `json:"verdict"`
		} `json:"results"`
	}
	b, err := os.ReadFile(filepath.Join(dir, "evidence.json"))
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, &ev))
	assert.True(t, ev.Meta.Interrupted)
	all, err := scenarios.Catalogue()
	require.NoError(t, err)
	runs, err := scenarios.AllRuns(all)
	require.NoError(t, err)
	require.Len(t, ev.Results, len(runs), "every run is in the bundle")
	incomplete := 0
	for _, r := range ev.Results {
		if r.Verdict == "incomplete" {
			incomplete++
		}
	}
	assert.Positive(t, incomplete, "unfinished runs are marked")
}

// TestLab starts the interactive lab, fetches a site through the client's
// SOCKS5 listener and through the firewall's explicit proxy, then stops it.
func TestLab(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	done := make(chan int, 1)
	var errOut bytes.Buffer
	go func() {
		err := dispatch(ctx, []string{"lab", "--socks", "127.0.0.1:0", "--firewall-proxy", "127.0.0.1:0", "--dir", dir,
			"--policy", abs(t, "../../scenarios/policies/bypass-gateways-from-endpoints.yaml")}, pw, &errOut)
		pw.Close()
		done <- exitCode(err, &errOut)
	}()
	sc := bufio.NewScanner(pr)
	var out strings.Builder
	var socks, fwProxy string
	for sc.Scan() {
		line := sc.Text()
		out.WriteString(line + "\n")
		if m := regexp.MustCompile(`firewall proxy: http://(\S+)`).FindStringSubmatch(line); m != nil {
			fwProxy = m[1]
		}
		if m := regexp.MustCompile(`ready: socks5 (\S+); tunnel up over dtls`).FindStringSubmatch(line); m != nil {
			socks = m[1]
			break
		}
	}
	require.NotEmpty(t, socks, "lab output:\n%s\n%s", out.String(), errOut.String())
	require.NotEmpty(t, fwProxy)
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		_, _ = io.Copy(&out, pr)
	}()

	pool := func(name string) *x509.CertPool {
		b, err := os.ReadFile(filepath.Join(dir, name))
		require.NoError(t, err)
		p := x509.NewCertPool()
		require.True(t, p.AppendCertsFromPEM(b))
		return p
	}
	dialer, err := proxy.SOCKS5("tcp", socks, nil, proxy.Direct)
	require.NoError(t, err)
	cl := &http.Client{Transport: &http.Transport{
		DialContext:     dialer.(proxy.ContextDialer).DialContext,
		TLSClientConfig: &tls.Config{RootCAs: pool("internet-ca.pem")},
	}, Timeout: 20 * time.Second}
	resp, err := cl.Get("https://www.social.test/")
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, 200, resp.StatusCode)
	assert.Contains(t, string(body), "www.social.test")

	// A real service on this machine is outside the lab: the SOCKS5
	// listener refuses it instead of dialling it (issue 9: it reached an
	// unrelated server on 127.0.77.2).
	outside, err := net.Listen("tcp", "127.0.77.2:0")
	require.NoError(t, err)
	defer outside.Close()
	reached := make(chan struct{}, 1)
	go func() {
		if c, err := outside.Accept(); err == nil {
			reached <- struct{}{}
			c.Close()
		}
	}()
	_, err = dialer.Dial("tcp", outside.Addr().String())
	require.Error(t, err)
	assert.Contains(t, err.Error(), "not allowed")
	select {
	case <-reached:
		t.Fatal("the lab's SOCKS5 listener connected to a real service outside the lab")
	default:
	}

	// Through the firewall's explicit proxy the site is decrypted: the
	// certificate comes from the enterprise CA.
	pu, _ := url.Parse("http://" + fwProxy)
	var issuer string
	cl2 := &http.Client{Transport: &http.Transport{
		Proxy: http.ProxyURL(pu),
		TLSClientConfig: &tls.Config{RootCAs: pool("enterprise-ca.pem"), VerifyConnection: func(cs tls.ConnectionState) error {
			issuer = cs.PeerCertificates[0].Issuer.CommonName
			return nil
		}},
	}, Timeout: 20 * time.Second}
	resp, err = cl2.Get("https://app.files.test/")
	require.NoError(t, err)
	resp.Body.Close()
	cl2.CloseIdleConnections()
	cl.CloseIdleConnections()
	assert.Contains(t, issuer, "Enterprise")

	// The lab's DNS server answers its names with the real addresses the
	// servers listen on (lab.json), for a proxy that resolves them.
	var labInfo struct {
		DNS      string
		Gateways []struct {
			Name string
			TCP  []string
		}
	}
	lj, err := os.ReadFile(filepath.Join(dir, "lab.json"))
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(lj, &labInfo))
	require.NotEmpty(t, labInfo.DNS)
	r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "udp", labInfo.DNS)
	}}
	rctx, rcancel := context.WithTimeout(context.Background(), 10*time.Second)
	ips, err := r.LookupHost(rctx, labInfo.Gateways[0].Name)
	rcancel()
	require.NoError(t, err)
	gwHost, _, _ := net.SplitHostPort(labInfo.Gateways[0].TCP[0])
	assert.Equal(t, []string{gwHost}, ips)

	cancel()
	select {
	case code := <-done:
		assert.Equal(t, 0, code, errOut.String())
	case <-time.After(30 * time.Second):
		t.Fatal("lab did not stop")
	}
	<-copied
	assert.Contains(t, out.String(), "flow to www.social.test:443")
	for _, f := range []string{"internet-ca.pem", "enterprise-ca.pem", "gateway.jsonl", "firewall.jsonl", "firewall.pan-traffic.csv",
		"firewall.pan-decryption.csv", "firewall.fortios.log", "firewall.cef.log", "client-history.json", "gateway.pem", "device.pem", "hosts", "lab.json"} {
		assert.FileExists(t, filepath.Join(dir, f))
	}
	// What a person needs to be the laptop with real tools.
	fi, err := os.Stat(filepath.Join(dir, "device-key.pem"))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm(), "the device key is private")
	_, err = tls.LoadX509KeyPair(filepath.Join(dir, "device.pem"), filepath.Join(dir, "device-key.pem"))
	require.NoError(t, err, "the device certificate and key are a pair")
	pin, err := os.ReadFile(filepath.Join(dir, "pin.txt"))
	require.NoError(t, err)
	assert.Regexp(t, `^sha256/[A-Za-z0-9+/=]{44}\n$`, string(pin))
	assert.Contains(t, out.String(), "gateway pin:   "+strings.TrimSpace(string(pin)))
	hosts, err := os.ReadFile(filepath.Join(dir, "hosts"))
	require.NoError(t, err)
	assert.Regexp(t, `(?m)^127\.0\.113\.9\tgateway-acme\.sse\.test$`, string(hosts))
	var info struct {
		DNS      string
		Gateways []struct {
			Name string
			TCP  []string
		}
	}
	b, err := os.ReadFile(filepath.Join(dir, "lab.json"))
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, &info))
	require.NotEmpty(t, info.Gateways)
	assert.Contains(t, out.String(), "real sockets tcp "+info.Gateways[0].TCP[0])
	assert.Contains(t, out.String(), "dns:           "+info.DNS)
	fw, err := os.ReadFile(filepath.Join(dir, "firewall.jsonl"))
	require.NoError(t, err)
	assert.Contains(t, string(fw), `"sni":"app.files.test"`)
	assert.Contains(t, string(fw), `"outcome":"decrypted"`)
}

// TestLabRefusesPlantedLink: a gateway.jsonl symlink planted in the lab's
// directory is refused, not written through.
func TestLabRefusesPlantedLink(t *testing.T) {
	victim := filepath.Join(t.TempDir(), "victim")
	require.NoError(t, os.WriteFile(victim, []byte("precious"), 0o644))
	dir := t.TempDir()
	require.NoError(t, os.Symlink(victim, filepath.Join(dir, "gateway.jsonl")))
	_, errOut, code := run(t, context.Background(), "lab", "--socks", "127.0.0.1:0", "--dir", dir)
	assert.NotEqual(t, 0, code)
	assert.Contains(t, errOut, "refusing to write")
	b, err := os.ReadFile(victim)
	require.NoError(t, err)
	assert.Equal(t, "precious", string(b))
}

// TestComposeKeysPrivate: compose writes the node configurations, which
// hold private keys, readable by their owner only, and refuses a planted
// link.
func TestComposeKeysPrivate(t *testing.T) {
	dir := t.TempDir()
	_, errOut, code := run(t, context.Background(), "compose", "--dir", dir)
	require.Equal(t, 0, code, errOut)
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	var keys int
	for _, e := range entries {
		fi, err := e.Info()
		require.NoError(t, err)
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		require.NoError(t, err)
		if strings.Contains(string(b), "PRIVATE KEY") {
			keys++
			assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm(), "%s holds a private key", e.Name())
		}
	}
	assert.Positive(t, keys, "the node configurations hold private keys")

	victim := filepath.Join(t.TempDir(), "victim")
	require.NoError(t, os.WriteFile(victim, []byte("precious"), 0o644))
	dir = t.TempDir()
	require.NoError(t, os.Symlink(victim, filepath.Join(dir, "compose.yaml")))
	_, errOut, code = run(t, context.Background(), "compose", "--dir", dir)
	assert.NotEqual(t, 0, code)
	assert.Contains(t, errOut, "refusing to write")
	b, err := os.ReadFile(victim)
	require.NoError(t, err)
	assert.Equal(t, "precious", string(b))
}

// TestCheck reviews the catalogue's recommended policy (exit 0), one that
// works over TLS only (warnings: exit 3) and an SNI-only one (spoofable:
// exit 1), with a progress line per question on stderr.
func TestCheck(t *testing.T) {
	out, errOut, code := run(t, context.Background(), "check", "--policy", abs(t, "../../scenarios/policies/bypass-gateways-from-endpoints.yaml"))
	assert.Equal(t, 0, code, out)
	assert.Contains(t, out, "OK: 6 OK, 0 warning(s), 0 problem(s)")
	assert.Regexp(t, `(?m)^check: \[6/6\] OK `, errOut, "progress on a stderr that is no terminal")
	out, _, code = run(t, context.Background(), "check", "--policy", abs(t, "../../scenarios/policies/sni-and-ip.yaml"))
	assert.Equal(t, 3, code, out)
	assert.Regexp(t, `WARN\s+Tunnel over DTLS`, out)
	assert.Contains(t, out, "- name: allow-dtls-to-sse", "the rule to add")
	out, _, code = run(t, context.Background(), "check", "--policy", abs(t, "../../scenarios/policies/sni-only.yaml"))
	assert.Equal(t, 1, code, out)
	assert.Regexp(t, `PROBLEM\s+Over-bypass`, out)
	assert.Contains(t, out, `OVER-BYPASSED, rule "no-decrypt-sse" (line 4)`)
	_, errOut, code = run(t, context.Background(), "check")
	assert.Equal(t, 2, code)
	assert.Contains(t, errOut, "give exactly one of --policy FILE, --panos FILE or --fortios FILE")
}

// TestCheckVendorConfigs reviews the realistic PAN-OS and FortiOS
// configurations: both carry the four common mistakes, and check finds
// each. The translated policy written with --write-policy reads back.
func TestCheckVendorConfigs(t *testing.T) {
	for _, tt := range []struct {
		flag, file, path, exempt string
	}{
		{"--panos", "../../vendorconf/panos/testdata/acme-realistic.xml", "trust:untrust", "decryption exclusion 1"},
		{"--fortios", "../../vendorconf/fortios/testdata/acme-realistic.conf", "port2:port1", "internet exempt 1"},
	} {
		t.Run(tt.flag, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "translated.yaml")
			stdout, _, code := run(t, context.Background(), "check", tt.flag, abs(t, tt.file), "--path", tt.path, "--write-policy", out)
			assert.Equal(t, 1, code, stdout)
			assert.Contains(t, stdout, "Not translated exactly", "the notes are listed")
			assert.Regexp(t, `OK\s+Tunnel over DTLS`, stdout, "DTLS to the primary is allowed")
			assert.Regexp(t, `WARN\s+Failover to the backup gateway\s+works over TLS only on the backup`, stdout, "backup range missing from the UDP rule")
			assert.Regexp(t, `rule "block-quic" \(line \d+\), deny`, stdout, "UDP/443 dropped by the block-QUIC rule")
			assert.Contains(t, stdout, `spoofed SNI gateway-acme.sse.test to the origin 192.0.2.10:443: OVER-BYPASSED, rule "`+tt.exempt+`"`, "SNI-only exemption")
			assert.Regexp(t, `WARN\s+A regional gateway name \(gateway-acme.eu.sse.test\)`, stdout, "the wildcard misses the regional name")
			back, err := policy.Load(out)
			require.NoError(t, err)
			assert.NotEmpty(t, back.Rules)
		})
	}
	for _, args := range [][]string{
		{"check", "--panos", "a.xml", "--fortios", "b.conf"},
		{"check", "--policy", "p.yaml", "--path", "trust:untrust"},
		{"check", "--panos", "a.xml", "--path", "trust"},
		{"check", "--panos", "a.xml", "--laptop", "laptop"},
	} {
		_, errOut, code := run(t, context.Background(), args...)
		assert.Equal(t, 2, code, args)
		assert.Contains(t, errOut, "check: ", args)
	}
	_, errOut, code := run(t, context.Background(), "check", "--panos", abs(t, "../../vendorconf/panos/testdata/malformed.xml"))
	assert.Equal(t, 2, code)
	assert.Regexp(t, `malformed.xml:\d+: malformed XML`, errOut, "malformed input is one error with file:line")
}

var _ = net.Listen

func TestParseInterspersed(t *testing.T) {
	tests := []struct {
		args []string
		pos  []string
		out  string
	}{
		{[]string{"visibility", "--out", "d"}, []string{"visibility"}, "d"},
		{[]string{"--out", "d", "visibility", "udp-blocked"}, []string{"visibility", "udp-blocked"}, "d"},
		{[]string{"a", "--out=d", "b"}, []string{"a", "b"}, "d"},
		{[]string{"a", "--", "--out", "b"}, []string{"a", "--out", "b"}, "x"},
		{nil, nil, "x"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			fs := flag.NewFlagSet("t", flag.ContinueOnError)
			out := fs.String("out", "x", "")
			pos, err := parseInterspersed(fs, tt.args)
			require.NoError(t, err)
			assert.Equal(t, tt.pos, pos)
			assert.Equal(t, tt.out, *out)
		})
	}
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	_, err := parseInterspersed(fs, []string{"a", "--nope"})
	assert.Error(t, err, "an unknown flag after an ID is still an error")
}

// TestRunPANVersion writes the bundle's PAN-OS files in the layout asked
// for: 75 TRAFFIC fields for 9.1 (and no DECRYPTION log), 115 by default.
func TestRunPANVersion(t *testing.T) {
	for _, tt := range []struct {
		version string
		fields  int
	}{{"9.1", 75}, {"", 115}} {
		dir := t.TempDir()
		args := []string{"run", "visibility", "--out", dir}
		if tt.version != "" {
			args = append(args, "--pan-version", tt.version)
		}
		out, _, code := run(t, context.Background(), args...)
		require.Equal(t, 0, code, out)
		files, err := filepath.Glob(filepath.Join(dir, "logs", "*", "firewall.pan-traffic.csv"))
		require.NoError(t, err)
		require.NotEmpty(t, files)
		data, err := os.ReadFile(files[0])
		require.NoError(t, err)
		recs, err := csv.NewReader(bytes.NewReader(data)).ReadAll()
		require.NoError(t, err)
		require.NotEmpty(t, recs)
		assert.Len(t, recs[0], tt.fields, "version %q", tt.version)
	}
	_, errOut, code := run(t, context.Background(), "run", "visibility", "--pan-version", "8.0")
	assert.Equal(t, 2, code)
	assert.Contains(t, errOut, "choices: 9.1, 10.0, 10.1")
}

func TestServeFirewallVendorFlags(t *testing.T) {
	dir := t.TempDir()
	ca, err := pki.NewCA(pki.Config{}, "Test CA", "test")
	require.NoError(t, err)
	keyPEM, err := ca.KeyPEM()
	require.NoError(t, err)
	rsaCA, err := pki.NewCA(pki.Config{Algorithm: pki.RSA2048}, "Test RSA CA", "test")
	require.NoError(t, err)
	rsaKeyPEM, err := rsaCA.KeyPEM()
	require.NoError(t, err)
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, data, 0o600))
		return p
	}
	base := []string{"serve", "firewall", "--ca-cert", write("ca.pem", ca.CertPEM()), "--ca-key", write("ca.key", keyPEM),
		"--policy", write("p.yaml", []byte("rules:\n  - {name: a, action: allow}\n")), "--proxy", "--listen", "127.0.0.1:0"}
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--pan-version", "8.1"}, `--pan-version: fwlog: unknown PAN-OS version "8.1"`},
		{[]string{"--forge-key", "shared"}, `--forge-key "shared" is not upstream or fixed`},
		{[]string{"--ecdsa-ca-cert", "x.pem"}, "--ecdsa-ca-cert needs its -key file too"},
		{[]string{"--ecdsa-ca-cert", write("rsa.pem", rsaCA.CertPEM()), "--ecdsa-ca-key", write("rsa.key", rsaKeyPEM)}, "ECDSACA has a *rsa.PrivateKey key"},
	} {
		_, errOut, code := run(t, context.Background(), append(base, tt.args...)...)
		assert.Equal(t, 2, code, tt.args)
		assert.Contains(t, errOut, tt.want, tt.args)
	}
}

// TestContainerRolesRefuseAHost: a container role does not run where
// nothing shows a container, unless told it is one.
func TestContainerRolesRefuseAHost(t *testing.T) {
	err := requireContainer("gateway", "", false)
	require.Error(t, err)
	assert.Equal(t, 2, exitCode(err, io.Discard))
	assert.Contains(t, err.Error(), "reconfigures the network of the machine")
	assert.Contains(t, err.Error(), "--i-am-in-a-container")
	assert.NoError(t, requireContainer("gateway", "", true), "the override")
	assert.NoError(t, requireContainer("gateway", "/.dockerenv exists", false))
}

// TestServeConfigEnv: with --config-env a container role reads its node
// configuration from the environment (the container runner's hand-over),
// the firewall and the gateway taking it as a container role.
func TestServeConfigEnv(t *testing.T) {
	for _, tt := range []struct {
		role, env string
		want      string
	}{
		{"client", `{"role": "origin", "name": "origins"}`, `serve client: $PINWALL_NODE_CONFIG configures role "origin"`},
		{"firewall", `{"role": "gateway"}`, `serve firewall: $PINWALL_NODE_CONFIG configures role "gateway"`},
		{"gateway", `{"role": "firewall"}`, `serve gateway: $PINWALL_NODE_CONFIG configures role "firewall"`},
		{"origin", `{"role":`, `$PINWALL_NODE_CONFIG: unexpected end of JSON input`},
	} {
		t.Run(tt.role, func(t *testing.T) {
			t.Setenv(node.ConfigEnv, tt.env)
			_, errOut, code := run(t, context.Background(), "serve", tt.role, "--config-env", "--i-am-in-a-container")
			assert.Equal(t, 2, code)
			assert.Contains(t, errOut, tt.want)
		})
	}
}
