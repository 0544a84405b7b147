package reports

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pinwall/pinwall/scenarios"
)

// TestEndToEnd runs two real scenarios in process and writes their bundle.
func TestEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("runs real scenarios; skipped with -short")
	}
	all, err := scenarios.Catalogue()
	require.NoError(t, err)
	ss, err := scenarios.Find(all, "visibility", "decrypt-pinned")
	require.NoError(t, err)
	runs, err := scenarios.AllRuns(ss)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	results := scenarios.Execute(ctx, runs, scenarios.ExecOptions{Parallel: 2})
	end := time.Now()
	require.Len(t, results, len(runs))

	version, commit := BuildInfo()
	dir := t.TempDir()
	meta := Meta{Version: version, Commit: commit, Started: start, Ended: end, CommandLine: []string{"pinwall", "run", "visibility", "decrypt-pinned"}}
	require.NoError(t, Write(dir, meta, ss, results))
	verifyManifest(t, dir)

	md, err := os.ReadFile(filepath.Join(dir, MarkdownFile))
	require.NoError(t, err)
	report := string(md)
	gw := results[0].Roles.Gateways["gateway-acme.sse.test"]
	require.NotEmpty(t, gw)
	require.Contains(t, report, gw[0].String(), "the report names the gateway's address")
	require.Contains(t, report, "Only the gateway")
	for _, r := range results {
		require.Contains(t, report, "#### "+r.Key()+" — "+string(r.Verdict))
	}
	require.Contains(t, report, "FAILING STEP", "the fail-close handshake marks its failing step")
	require.Contains(t, report, "**Leg and cause** attributed from: client (presented chain issued by CN=pinwall Enterprise Forward Trust CA",
		"the report says which evidence the leg and cause rest on")
	require.Contains(t, report, "firewall log (session ", "the firewall's log confirms")

	var schema map[string]any
	require.NoError(t, json.Unmarshal(Schema(), &schema))
	data, err := os.ReadFile(filepath.Join(dir, EvidenceFile))
	require.NoError(t, err)
	var doc any
	require.NoError(t, json.Unmarshal(data, &doc))
	require.Empty(t, schemaValidator{root: schema}.validate(schema, doc, "$"))

	html, err := os.ReadFile(filepath.Join(dir, HTMLFile))
	require.NoError(t, err)
	checkSelfContained(t, html)
	t.Logf("\n%s", VerdictTable(results))
}

// TestReproducible runs a small subset of the catalogue twice, each with
// its own certificate authorities, and proves what the report's
// reproducibility statement says: the reproducible parts (verdicts,
// outcomes, failing legs and causes, findings, checks) and their digest
// are the same, while the times differ.
func TestReproducible(t *testing.T) {
	if testing.Short() {
		t.Skip("runs real scenarios; skipped with -short")
	}
	all, err := scenarios.Catalogue()
	require.NoError(t, err)
	ss, err := scenarios.Find(all, "decrypt-pinned", "udp-blocked")
	require.NoError(t, err)
	runs, err := scenarios.AllRuns(ss)
	require.NoError(t, err)
	var parts [2][]Reproducible
	var digests [2]string
	var started [2]time.Time
	for i := range 2 {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		results := scenarios.Execute(ctx, runs, scenarios.ExecOptions{Parallel: 2})
		cancel()
		require.Len(t, results, len(runs))
		parts[i], digests[i] = ReproducibleParts(results), ReproducibleDigest(results)
		started[i] = results[0].Started
	}
	require.Equal(t, parts[0], parts[1])
	require.Equal(t, digests[0], digests[1])
	require.NotEqual(t, started[0], started[1], "times are not part of what reproduces")
}
