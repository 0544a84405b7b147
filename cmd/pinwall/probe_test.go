package main

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pinwall/pinwall/probe"
)

// freeTCPUDPPort returns a loopback port free on TCP and UDP (just now).
func freeTCPUDPPort(t *testing.T) string {
	t.Helper()
	for range 20 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		addr := l.Addr().String()
		u, err := net.ListenPacket("udp", addr)
		l.Close()
		if err == nil {
			u.Close()
			return addr
		}
	}
	t.Fatal("no free port")
	return ""
}

// TestServeGatewayAndProbe runs the field gateway from a fresh state
// directory and the probe against it on loopback (no firewall): the state's
// private keys and the bundle are 0600, the verdict is OK (exit 0), the
// evidence bundle checks.
func TestServeGatewayAndProbe(t *testing.T) {
	dir, bundle := startFieldGateway(t)
	for _, f := range []string{"gateway-key.pem", "device-ca-key.pem", "decoy-key.pem", "probe-bundle.json"} {
		st, err := os.Stat(filepath.Join(dir, f))
		require.NoError(t, err)
		assert.Equal(t, os.FileMode(0o600), st.Mode().Perm(), f)
	}
	out := filepath.Join(t.TempDir(), "ev")
	stdout, stderr, code := run(t, context.Background(), "probe", "--bundle", bundle, "--out", out, "--json", "--label", "loopback")
	require.Equal(t, 0, code, stderr)
	var res probe.Result
	require.NoError(t, json.Unmarshal([]byte(stdout), &res))
	assert.Equal(t, "loopback", res.Label)
	assert.True(t, res.Observed.Tunnel.Up)
	for _, f := range []string{"report.md", "report.html", "evidence.json", "junit.xml", "manifest.sha256"} {
		assert.FileExists(t, filepath.Join(out, f))
	}
	md, err := os.ReadFile(filepath.Join(out, "report.md"))
	require.NoError(t, err)
	assert.Contains(t, string(md), "Observed on loopback")
	runs, err := os.ReadFile(filepath.Join(dir, "probe-runs.jsonl"))
	require.NoError(t, err)
	assert.Contains(t, string(runs), res.Run, "the gateway logs the run under its id")
}

// startFieldGateway runs `serve gateway` on loopback until the test ends,
// with extra flags; it returns its state directory and its bundle.
func startFieldGateway(t *testing.T, extra ...string) (dir, bundle string) {
	t.Helper()
	dir = t.TempDir()
	listen := freeTCPUDPPort(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() {
		_, _, code := run(t, ctx, append([]string{"serve", "gateway", "--dir", dir, "--listen", listen}, extra...)...)
		done <- code
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	bundle = filepath.Join(dir, "probe-bundle.json")
	require.Eventually(t, func() bool { _, err := os.Stat(bundle); return err == nil }, 10*time.Second, 20*time.Millisecond)
	return dir, bundle
}

// TestProbeCaptureSigned runs the probe with --capture and --sign: the
// capture and its key log are in the bundle and its manifest, the manifest
// verifies with ssh-keygen, evidence.json names the key and the capture,
// the report says what was signed.
func TestProbeCaptureSigned(t *testing.T) {
	if _, err := exec.LookPath("ssh-keygen"); err != nil {
		t.Skip("ssh-keygen not installed (Debian package openssh-client; .ci/run installs it)")
	}
	key := filepath.Join(t.TempDir(), "id_ed25519")
	kout, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key).CombinedOutput()
	require.NoError(t, err, "%s", kout)
	_, bundle := startFieldGateway(t)
	out := filepath.Join(t.TempDir(), "ev")
	_, stderr, code := run(t, context.Background(), "probe", "--bundle", bundle, "--out", out, "--capture", "--sign", key, "--label", "loopback")
	require.Equal(t, 0, code, stderr)
	assert.Regexp(t, `signed manifest.sha256 with the ed25519 key SHA256:\S+`, stderr)
	manifest, err := os.ReadFile(filepath.Join(out, "manifest.sha256"))
	require.NoError(t, err)
	for _, f := range []string{"capture.pcapng", "keys.log", "evidence.json", "report.html"} {
		assert.Contains(t, string(manifest), "  "+f+"\n", "the signature covers %s", f)
	}
	cmd := exec.Command("ssh-keygen", "-Y", "verify", "-f", "allowed_signers", "-I", "pinwall-evidence", "-n", "file", "-s", "manifest.sha256.sig")
	cmd.Dir = out
	m, err := os.Open(filepath.Join(out, "manifest.sha256"))
	require.NoError(t, err)
	defer m.Close()
	cmd.Stdin = m
	vout, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", vout)
	var ev struct {
		Signature struct {
			Fingerprint string `json:"fingerprint"`
		} `json:"signature"`
		Capture struct {
			Packets  int      `json:"packets"`
			KeyLines int      `json:"key_lines"`
			Legs     []string `json:"legs"`
		} `json:"capture"`
	}
	data, err := os.ReadFile(filepath.Join(out, "evidence.json"))
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(data, &ev))
	assert.Regexp(t, `^SHA256:`, ev.Signature.Fingerprint)
	assert.Positive(t, ev.Capture.Packets)
	assert.Positive(t, ev.Capture.KeyLines)
	assert.Equal(t, []string{probe.CaptureLeg}, ev.Capture.Legs)
	md, err := os.ReadFile(filepath.Join(out, "report.md"))
	require.NoError(t, err)
	assert.Contains(t, string(md), ev.Signature.Fingerprint, "the report names the key")

	_, stderr, code = run(t, context.Background(), "probe", "--bundle", bundle, "--capture")
	assert.Equal(t, 2, code)
	assert.Contains(t, stderr, "give --out DIR")
}

func TestProbeBadBundle(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nope.json")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"probe"}, "--bundle FILE is required"},
		{[]string{"probe", "--bundle", missing}, missing},
		{[]string{"probe", "--bundle", missing, "--proxy", "socks5://10.0.0.1:1080"}, missing},
	} {
		_, stderr, code := run(t, context.Background(), tc.args...)
		assert.Equal(t, 2, code)
		assert.Contains(t, stderr, tc.want)
		assert.Equal(t, 1, strings.Count(strings.TrimSpace(stderr), "\n")+1, "one line: %q", stderr)
	}
	_, stderr, code := run(t, context.Background(), "serve", "gateway", "--dir", t.TempDir(), "--listen", "0.0.0.0:443")
	assert.Equal(t, 2, code)
	assert.Contains(t, stderr, "--advertise")
	for _, bad := range []string{"intranet.test", "intranet.test=intranet:443", "origin.probe.pinwall.test=192.0.2.1:80"} {
		_, stderr, code = run(t, context.Background(), "serve", "gateway", "--dir", t.TempDir(), "--listen", "127.0.0.1:0", "--origin", bad)
		assert.Equal(t, 2, code, bad)
		assert.Contains(t, stderr, bad, "the error names what was given")
	}
}
