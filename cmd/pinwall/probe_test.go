package main

import (
	"context"
	"encoding/json"
	"net"
	"os"
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
	dir := t.TempDir()
	listen := freeTCPUDPPort(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() {
		_, _, code := run(t, ctx, "serve", "gateway", "--dir", dir, "--listen", listen)
		done <- code
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	bundle := filepath.Join(dir, "probe-bundle.json")
	require.Eventually(t, func() bool { _, err := os.Stat(bundle); return err == nil }, 10*time.Second, 20*time.Millisecond)
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
}
