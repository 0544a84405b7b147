package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/net/proxy"

	"github.com/pinwall/pinwall/capture/capturetest"
)

// TestRunCaptureSigned runs a scenario with a capture and a signature: the
// bundle holds each run's pcapng and key log and the dissector, its
// manifest verifies with ssh-keygen, evidence.json names the key and the
// provenance.
func TestRunCaptureSigned(t *testing.T) {
	if _, err := exec.LookPath("ssh-keygen"); err != nil {
		t.Skip("ssh-keygen not installed (Debian package openssh-client; .ci/run installs it)")
	}
	key := filepath.Join(t.TempDir(), "id_ed25519")
	out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key).CombinedOutput()
	require.NoError(t, err, "%s", out)
	dir := t.TempDir()
	stdout, stderr, code := run(t, context.Background(), "run", "double-decrypt", "--capture", "--sign", key, "--out", dir)
	require.Equal(t, 0, code, stdout+stderr)
	assert.Regexp(t, `Signed manifest.sha256 with the ed25519 key SHA256:\S+`, stdout)

	for _, f := range []string{"pinwall.lua", "manifest.sha256.sig", "signer.pub", "logs/double-decrypt__without-fix/capture.pcapng", "logs/double-decrypt__without-fix/keys.log"} {
		assert.FileExists(t, filepath.Join(dir, f))
	}
	cmd := exec.Command("ssh-keygen", "-Y", "verify", "-f", "allowed_signers", "-I", "pinwall-evidence", "-n", "file", "-s", "manifest.sha256.sig")
	cmd.Dir = dir
	m, err := os.Open(filepath.Join(dir, "manifest.sha256"))
	require.NoError(t, err)
	defer m.Close()
	cmd.Stdin = m
	out, err = cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	manifest, err := os.ReadFile(filepath.Join(dir, "manifest.sha256"))
	require.NoError(t, err)
	assert.Contains(t, string(manifest), "  logs/double-decrypt__without-fix/capture.pcapng\n", "the capture is covered by the signature")

	var ev struct {
		Meta struct {
			Signature struct {
				Fingerprint string `json:"fingerprint"`
			} `json:"signature"`
			Provenance struct {
				Pinwall struct {
					Commit string `json:"commit"`
				} `json:"pinwall"`
				Go string `json:"go"`
			} `json:"provenance"`
		} `json:"meta"`
		Results []struct {
			Capture struct {
				File    string   `json:"file"`
				Packets int      `json:"packets"`
				Legs    []string `json:"legs"`
			} `json:"capture"`
		} `json:"results"`
	}
	b, err := os.ReadFile(filepath.Join(dir, "evidence.json"))
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, &ev))
	assert.Regexp(t, `^SHA256:`, ev.Meta.Signature.Fingerprint)
	assert.NotEmpty(t, ev.Meta.Provenance.Go)
	assert.NotEmpty(t, ev.Meta.Provenance.Pinwall.Commit)
	require.Len(t, ev.Results, 2)
	assert.Equal(t, "logs/double-decrypt__without-fix/capture.pcapng", ev.Results[0].Capture.File)
	assert.Positive(t, ev.Results[0].Capture.Packets)
	assert.Equal(t, []string{"laptop-firewall", "firewall-gateway", "gateway-origins"}, ev.Results[0].Capture.Legs)

	// A key that cannot be used stops the run before it starts.
	bad := filepath.Join(t.TempDir(), "bad")
	require.NoError(t, os.WriteFile(bad, []byte("not a key"), 0o600))
	_, stderr, code = run(t, context.Background(), "run", "double-decrypt", "--sign", bad, "--out", t.TempDir())
	assert.Equal(t, 2, code)
	assert.Contains(t, stderr, "want an Ed25519 or ECDSA private key")
}

// TestLabCapture runs the lab with --capture and SSLKEYLOGFILE: a page
// fetched through the SOCKS listener is in the capture, decrypted at the
// origin's side, and every session secret is in the key log file.
func TestLabCapture(t *testing.T) {
	dir := t.TempDir()
	keylog := filepath.Join(t.TempDir(), "sslkeys.log")
	t.Setenv("SSLKEYLOGFILE", keylog)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	done := make(chan int, 1)
	var errOut strings.Builder
	go func() {
		err := dispatch(ctx, []string{"lab", "--socks", "127.0.0.1:0", "--dir", dir, "--capture", "--transport", "tls"}, pw, &errOut)
		pw.Close()
		done <- exitCode(err, io.Discard)
	}()
	sc := bufio.NewScanner(pr)
	var socks string
	for sc.Scan() {
		if m := regexp.MustCompile(`ready: socks5 (\S+); tunnel up`).FindStringSubmatch(sc.Text()); m != nil {
			socks = m[1]
			break
		}
	}
	require.NotEmpty(t, socks, errOut.String())
	rest := make(chan string, 1)
	go func() {
		b, _ := io.ReadAll(pr)
		rest <- string(b)
	}()
	ca, err := os.ReadFile(filepath.Join(dir, "internet-ca.pem"))
	require.NoError(t, err)
	pool := x509.NewCertPool()
	require.True(t, pool.AppendCertsFromPEM(ca))
	dialer, err := proxy.SOCKS5("tcp", socks, nil, proxy.Direct)
	require.NoError(t, err)
	tr := &http.Transport{DialContext: dialer.(proxy.ContextDialer).DialContext, TLSClientConfig: &tls.Config{RootCAs: pool}}
	resp, err := (&http.Client{Transport: tr, Timeout: 20 * time.Second}).Get("https://www.social.test/capture-me")
	require.NoError(t, err)
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	tr.CloseIdleConnections()

	cancel()
	select {
	case code := <-done:
		assert.Equal(t, 0, code, errOut.String())
	case <-time.After(30 * time.Second):
		t.Fatal("lab did not stop")
	}
	out := <-rest
	assert.Contains(t, out, "capture: "+filepath.Join(dir, "capture.pcapng"))
	assert.Contains(t, out, "session secrets appended to "+keylog)
	keys, err := os.ReadFile(keylog)
	require.NoError(t, err)
	assert.Contains(t, string(keys), "CLIENT_HANDSHAKE_TRAFFIC_SECRET ")
	capFile := filepath.Join(dir, "capture.pcapng")
	require.FileExists(t, capFile)

	capturetest.RequireTshark(t)
	assert.Empty(t, capturetest.AnalysisFlags(t, capFile))
	// Go's client speaks HTTP/1.1 over a dialer of its own.
	paths := capturetest.Lines(capturetest.Tshark(t, "-r", capFile, "-Y", "http.request", "-T", "fields", "-e", "frame.interface_name", "-e", "http.host", "-e", "http.request.uri"))
	assert.Equal(t, []string{"gateway-origins\twww.social.test\t/capture-me"}, paths)
}
