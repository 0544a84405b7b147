package probe_test

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pinwall/pinwall/capture"
	"github.com/pinwall/pinwall/capture/capturetest"
	"github.com/pinwall/pinwall/mitm/policy"
	"github.com/pinwall/pinwall/probe"
	"github.com/pinwall/pinwall/probe/probetest"
)

// TestProbeCapture records the probe's own connections behind a firewall
// that decrypts all but the gateway's SNI, writes the evidence bundle and
// reads its capture with tshark: every packet is between the laptop and a
// bundle address; the TLS handshakes to them are decrypted from the
// secrets inside the file with no option (the TLS 1.3 Certificate
// messages are readable: the gateway's own, the firewall's forgery, the
// device certificate); with the bundle's dissector, the tunnel's inner
// flows are seen inside its decrypted records.
func TestProbeCapture(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the whole probe")
	}
	capturetest.RequireTshark(t)
	pol, err := policy.Load("../scenarios/policies/sni-only.yaml")
	require.NoError(t, err)
	ctx := context.Background()
	f, err := probetest.Start(ctx, pol, probetest.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { f.Close() })
	rec := capture.New(capture.Config{})
	res, err := probe.Run(ctx, probe.Config{Bundle: f.Bundle, Identity: f.Identity, Stack: f.Laptop(), Label: "test",
		StepTimeout: 2 * time.Second, Rate: 50, Capture: rec})
	require.NoError(t, err)
	require.NoError(t, probe.Unreachable(res))
	dir := t.TempDir()
	require.NoError(t, probe.WriteEvidence(dir, res, probe.EvidenceOptions{Capture: rec}))

	// Listed in the manifest and in evidence.json.
	man, err := os.ReadFile(filepath.Join(dir, probe.ManifestFile))
	require.NoError(t, err)
	assert.Contains(t, string(man), "  "+probe.CaptureFile+"\n")
	assert.Contains(t, string(man), "  "+probe.KeyLogFile+"\n")
	assert.Contains(t, string(man), "  pinwall.lua\n")
	ev := readEvidence(t, dir)
	require.NotNil(t, ev.Capture)
	assert.Equal(t, []string{probe.CaptureLeg}, ev.Capture.Legs)
	assert.Positive(t, ev.Capture.KeyLines)
	assert.Positive(t, ev.Capture.Packets)
	st, err := os.Stat(filepath.Join(dir, probe.KeyLogFile))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), st.Mode().Perm(), "the secrets are private")

	file := filepath.Join(dir, probe.CaptureFile)
	assert.Empty(t, capturetest.AnalysisFlags(t, file), "Wireshark's TCP analysis flags nothing")
	bundle := map[string]bool{f.Bundle.Primary.Addr.Addr().String(): true, f.Bundle.Backup.Addr.Addr().String(): true, f.Bundle.Decoy.Addr().String(): true}
	laptop := map[string]bool{}
	for _, l := range capturetest.Lines(capturetest.Tshark(t, "-r", file, "-T", "fields", "-e", "ip.src", "-e", "ip.dst")) {
		src, dst, _ := strings.Cut(l, "\t")
		switch {
		case bundle[dst]:
			laptop[src] = true
		case bundle[src]:
			laptop[dst] = true
		default:
			t.Errorf("a packet outside the bundle's addresses: %s → %s", src, dst)
		}
	}
	assert.Len(t, laptop, 1, "one laptop: %v", laptop)

	// The ClientHellos name what the attempts sent, to bundle addresses.
	hellos := capturetest.Lines(capturetest.Tshark(t, "-r", file, "-Y", "tls.handshake.type == 1", "-T", "fields", "-e", "ip.dst", "-e", "tls.handshake.extensions_server_name"))
	var snis []string
	for _, l := range hellos {
		dst, sni, _ := strings.Cut(l, "\t")
		assert.True(t, bundle[dst], l)
		snis = append(snis, sni)
	}
	assert.Contains(t, snis, f.Bundle.Primary.Name)
	assert.Contains(t, snis, f.Bundle.ControlName)
	assert.Contains(t, snis, "", "attempt C sends no server name")

	// Decrypted: TLS 1.3 sends its Certificate encrypted, so tshark reads
	// one only with the secrets. The gateway's own chain, the firewall's
	// forgery for the attempts it intercepted, and the device certificate
	// the laptop sent.
	certs := capturetest.Lines(capturetest.Tshark(t, "-r", file, "-Y", "tls.handshake.type == 11", "-T", "fields", "-e", "ip.src", "-e", "x509sat.printableString"))
	require.NotEmpty(t, certs, "no Certificate decrypted")
	var issuers, device []string
	for _, l := range certs {
		src, names, _ := strings.Cut(l, "\t")
		switch {
		case bundle[src]:
			issuers = append(issuers, strings.Split(names, ",")...)
		case laptop[src]:
			device = append(device, strings.Split(names, ",")...)
		default:
			t.Errorf("a Certificate from %s", src)
		}
	}
	assert.Contains(t, device, f.Identity.Device.Leaf.Subject.CommonName, "the device certificate, decrypted")
	forged := slices.ContainsFunc(res.Observed.TLS, func(a probe.Attempt) bool { return a.Intercepted() })
	require.True(t, forged, "sni-only decrypts the attempts without the gateway's name")
	assert.Contains(t, issuers, "pinwall Enterprise Forward Trust CA", "the firewall's forgery, decrypted")
	// Inside the tunnel (TLS or DTLS, decrypted), with pinwall's dissector
	// from the bundle: the inner flows to the built-in origin and the
	// record fetch, to a gateway's address.
	targets := map[string]bool{}
	for _, l := range capturetest.Lines(capturetest.Tshark(t, "-X", "lua_script:"+filepath.Join(dir, "pinwall.lua"), "-o", "sctp.tsn_analysis:FALSE",
		"-r", file, "-Y", "pinwall.request", "-T", "fields", "-e", "ip.dst", "-e", "pinwall.target")) {
		dst, target, _ := strings.Cut(l, "\t")
		assert.True(t, bundle[dst], l)
		targets[target] = true
	}
	assert.Equal(t, map[string]bool{probe.OriginName + ":80": true, probe.RecordName + ":80": true}, targets, "the tunnel's inner flows, decrypted")
	keys, err := os.ReadFile(filepath.Join(dir, probe.KeyLogFile))
	require.NoError(t, err)
	n := 0
	for sc := bufio.NewScanner(strings.NewReader(string(keys))); sc.Scan(); n++ {
	}
	assert.Equal(t, ev.Capture.KeyLines, n)
}

func readEvidence(t *testing.T, dir string) probe.Evidence {
	t.Helper()
	var ev probe.Evidence
	data, err := os.ReadFile(filepath.Join(dir, probe.EvidenceFile))
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(data, &ev))
	return ev
}
