package probe_test

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pinwall/pinwall/client"
	"github.com/pinwall/pinwall/probe"
)

// sample is a fixed result: interception at the primary, learned after one
// failure, the backup passed.
func sample() *probe.Result {
	at := time.Date(2026, 12, 7, 9, 30, 0, 0, time.UTC)
	bk := probe.Endpoint{Name: "backup-gw.test", Addr: netip.MustParseAddrPort("198.51.100.21:443")}
	res := &probe.Result{Run: "20261207T093000Z-000000000000", Label: "ACME HQ", BundleID: "b0b0", Started: at, Took: 4200 * time.Millisecond,
		Primary: probe.Endpoint{Name: "gw.test", Addr: netip.MustParseAddrPort("198.51.100.20:443")}, Backup: &bk}
	o := &res.Observed
	o.Connections = 17
	o.DTLS = []probe.DTLSResult{{Gateway: "gw.test", Addr: res.Primary.Addr, Outcome: "dropped", Leg: "client-gateway", Cause: "udp-unanswered"},
		{Gateway: bk.Name, Addr: bk.Addr, Outcome: "dropped", Leg: "client-gateway", Cause: "udp-unanswered"}}
	a := att("A", probe.Forged)
	a.What, a.Start, a.Addr, a.SNI = "primary's address, primary's name", at, res.Primary.Addr, "gw.test"
	a.Chain.Leaf.Subject, a.Chain.Leaf.KeyType, a.Chain.Leaf.Issuer, a.Chain.MimicsSubject = "CN=gw.test", "RSA 2048", "CN=Forward Trust", true
	a.Chain.NotBefore, a.Chain.NotAfter = at.AddDate(0, 0, -1), at.AddDate(1, 0, 0)
	a2 := att("A2", probe.Pinned)
	a2.What, a2.Start, a2.Addr, a2.SNI, a2.TunnelID = "primary's address, primary's name, again", at.Add(200*time.Millisecond), res.Primary.Addr, "gw.test", "00ff"
	c := att("C", probe.Pinned)
	c.What, c.Addr, c.TunnelID = "primary's address, no server name", res.Primary.Addr, "0100"
	b := att("B", probe.Pinned)
	b.What, b.Addr, b.SNI = "primary's address, control name (no client certificate asked)", res.Primary.Addr, "control.gw.test"
	d := att("D", probe.Pinned)
	d.What, d.Addr, d.SNI, d.TunnelID = "backup's address, backup's name", bk.Addr, bk.Name, "0101"
	o.TLS = []probe.Attempt{a, c, b, d}
	o.Learning = []probe.Attempt{a2}
	o.Tunnel = probe.TunnelResult{Gateways: []string{"gw.test", bk.Name}, Up: true, Transport: "tls", Gateway: "gw.test", FailMode: client.FailClose,
		Flows: []probe.FlowResult{{Verified: true}, {Verified: true}}}
	o.Backup = &probe.TunnelResult{Gateways: []string{bk.Name}, Up: true, Transport: "tls", Gateway: bk.Name, FailMode: client.FailClose, Flows: []probe.FlowResult{{Verified: true}}}
	o.RecordError = "not fetched in this sample"
	probe.Conclude(res)
	return res
}

// provenance stands for reports.Provenance: it describes itself in rows.
type provenance map[string]string

func (p provenance) Describe() [][2]string {
	return [][2]string{{"pinwall", p["pinwall"]}, {"Go", p["go"]}}
}

// signature stands for reports.Signature (its JSON fields).
type signature struct {
	Signed      string `json:"signed"`
	Algorithm   string `json:"algorithm"`
	Fingerprint string `json:"fingerprint"`
	Namespace   string `json:"namespace"`
}

func TestEvidenceBundle(t *testing.T) {
	res := sample()
	dir := t.TempDir()
	require.NoError(t, probe.WriteEvidence(dir, res, probe.EvidenceOptions{Producer: "pinwall test",
		Provenance: provenance{"pinwall": "v0.0.0-test (commit 0000000)", "go": "go1.26"},
		Signature:  signature{Signed: "manifest.sha256", Algorithm: "ed25519", Fingerprint: "SHA256:test", Namespace: "file"}}))
	md, err := os.ReadFile(filepath.Join(dir, probe.MarkdownFile))
	require.NoError(t, err)
	golden(t, "testdata/report.md", string(md))
	html, err := os.ReadFile(filepath.Join(dir, probe.HTMLFile))
	require.NoError(t, err)
	golden(t, "testdata/report.html", string(html))
	man, err := os.ReadFile(filepath.Join(dir, probe.ManifestFile))
	require.NoError(t, err)
	lines := strings.Split(strings.TrimSpace(string(man)), "\n")
	assert.Len(t, lines, 4)
	for _, l := range lines {
		sum, name, ok := strings.Cut(l, "  ")
		require.True(t, ok, l)
		data, err := os.ReadFile(filepath.Join(dir, name))
		require.NoError(t, err)
		h := sha256.Sum256(data)
		assert.Equal(t, hex.EncodeToString(h[:]), sum, name)
	}
	var ev probe.Evidence
	data, err := os.ReadFile(filepath.Join(dir, probe.EvidenceFile))
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(data, &ev))
	assert.Equal(t, probe.EvidenceSchema, ev.Schema)
	assert.Equal(t, probe.Warn, ev.Level)
	assert.Len(t, ev.Result.Observed.TLS, 4, "the raw observations")
	ju, err := os.ReadFile(filepath.Join(dir, probe.JUnitFile))
	require.NoError(t, err)
	assert.Contains(t, string(ju), `<testcase name="tls" classname="probe">`)
	var text strings.Builder
	require.NoError(t, res.WriteText(&text))
	golden(t, "testdata/verdict.txt", text.String())
}
