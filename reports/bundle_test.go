package reports

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pinwall/pinwall/mitm/fwlog"
	"github.com/pinwall/pinwall/scenarios"
)

// verifyManifest recomputes every hash of dir's manifest and requires the
// manifest to list exactly the bundle's files (all but itself and those in
// except).
func verifyManifest(t *testing.T, dir string, except ...string) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, ManifestFile))
	require.NoError(t, err)
	listed := map[string]bool{}
	var order []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		sum, path, ok := strings.Cut(sc.Text(), "  ")
		require.True(t, ok, "line %q: want \"<sha256>  <path>\"", sc.Text())
		require.Len(t, sum, 64)
		require.False(t, filepath.IsAbs(path), path)
		content, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(path)))
		require.NoError(t, err)
		got := sha256.Sum256(content)
		require.Equal(t, hex.EncodeToString(got[:]), sum, path)
		listed[path] = true
		order = append(order, path)
	}
	require.True(t, sort.StringsAreSorted(order), "manifest sorted by path")
	skip := map[string]bool{ManifestFile: true}
	for _, e := range except {
		skip[e] = true
	}
	var onDisk []string
	require.NoError(t, filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		require.NoError(t, err)
		if d.IsDir() {
			return nil
		}
		rel, err := filepath.Rel(dir, p)
		require.NoError(t, err)
		if rel = filepath.ToSlash(rel); !skip[rel] {
			onDisk = append(onDisk, rel)
		}
		return nil
	}))
	sort.Strings(onDisk)
	require.Equal(t, onDisk, order, "the manifest lists every file of the bundle")
}

func TestManifestVerifies(t *testing.T) {
	dir := writeFixture(t)
	verifyManifest(t, dir)

	sha, err := exec.LookPath("sha256sum")
	if err != nil {
		t.Skip("sha256sum is not on PATH; the Go check above verified every hash")
	}
	cmd := exec.Command(sha, "--strict", "-c", ManifestFile)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "sha256sum -c: %s", out)
}

func TestBundleFiles(t *testing.T) {
	dir := writeFixture(t)
	rs := fixtureResults()
	for _, f := range []string{EvidenceFile, SchemaFile, MarkdownFile, HTMLFile, JUnitFile, ManifestFile} {
		require.FileExists(t, filepath.Join(dir, f))
	}
	for i, d := range logDirs(rs) {
		for _, f := range logFileNames() {
			require.FileExists(t, filepath.Join(dir, filepath.FromSlash(d), f), rs[i].Key())
		}
	}
	// Every firewall record is in the JSON lines, readable by fwlog.
	f, err := os.Open(filepath.Join(dir, "logs", "decrypt-pinned__without-fix__fail-close", FirewallJSONL))
	require.NoError(t, err)
	defer f.Close()
	recs, err := fwlog.ReadJSONL(f)
	require.NoError(t, err)
	require.Equal(t, rs[1].FirewallLog, recs)
	// Each vendor file has a line per record (PAN decryption: per decrypted record).
	for _, tc := range []struct {
		file  string
		lines int
	}{{FirewallPANTraffic, 2}, {FirewallPANDecryption, 1}, {FirewallCEF, 2}} {
		data, err := os.ReadFile(filepath.Join(dir, "logs", "decrypt-pinned__without-fix__fail-close", tc.file))
		require.NoError(t, err)
		require.Equal(t, tc.lines, strings.Count(string(data), "\n"), tc.file)
	}
	fortios, err := os.ReadFile(filepath.Join(dir, "logs", "decrypt-pinned__without-fix__fail-close", FirewallFortiOS))
	require.NoError(t, err)
	require.Contains(t, string(fortios), `type="traffic"`)
}

// A second Write into the same directory replaces the earlier bundle: its
// log directories go, files Write does not own stay (and are not listed).
func TestWriteReplacesStaleBundle(t *testing.T) {
	dir := t.TempDir()
	old := fixtureResults()
	require.NoError(t, Write(dir, fixtureMeta(), fixtureScenarios(), old))
	require.DirExists(t, filepath.Join(dir, "logs", "bypass-fqdn__without-fix"))

	require.NoError(t, os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("mine"), 0o644))
	keep := filepath.Join(dir, "logs", "visibility__baseline", "my-notes.txt")
	require.NoError(t, os.WriteFile(keep, []byte("mine too"), 0o644))

	require.NoError(t, Write(dir, fixtureMeta(), fixtureScenarios(), old[:1]))
	require.NoDirExists(t, filepath.Join(dir, "logs", "bypass-fqdn__without-fix"))
	require.FileExists(t, filepath.Join(dir, "notes.txt"))
	require.FileExists(t, keep)
	verifyManifest(t, dir, "notes.txt", "logs/visibility__baseline/my-notes.txt")

	ev := readEvidence(t, dir)
	require.Len(t, ev.Results, 1)
}

// A run repeated under the same key gets its own log directory.
func TestWriteRepeatedKey(t *testing.T) {
	rs := fixtureResults()
	rs = append(rs, rs[0])
	dir := t.TempDir()
	require.NoError(t, Write(dir, fixtureMeta(), fixtureScenarios(), rs))
	require.DirExists(t, filepath.Join(dir, "logs", "visibility__baseline"))
	require.DirExists(t, filepath.Join(dir, "logs", "visibility__baseline__2"))
	ev := readEvidence(t, dir)
	require.Equal(t, "logs/visibility__baseline__2", ev.Results[len(ev.Results)-1].Logs)
}

// A record the vendor formats reject does not stop the bundle: Write
// reports it and still writes every file and the manifest.
func TestWriteReportsBadRecord(t *testing.T) {
	rs := fixtureResults()
	rs[0].FirewallLog = append(rs[0].FirewallLog, fwlog.Record{SessionID: 99, Proto: "sctp"})
	dir := t.TempDir()
	err := Write(dir, fixtureMeta(), fixtureScenarios(), rs)
	require.Error(t, err)
	require.Contains(t, err.Error(), "visibility/baseline")
	require.FileExists(t, filepath.Join(dir, HTMLFile))
	verifyManifest(t, dir)
}

func readEvidence(t *testing.T, dir string) *Evidence {
	t.Helper()
	f, err := os.Open(filepath.Join(dir, EvidenceFile))
	require.NoError(t, err)
	defer f.Close()
	ev, err := ReadEvidence(f)
	require.NoError(t, err)
	return ev
}

func TestEvidenceRoundTrip(t *testing.T) {
	dir := writeFixture(t)
	data, err := os.ReadFile(filepath.Join(dir, EvidenceFile))
	require.NoError(t, err)

	// It decodes into the typed form and encodes back to the same bytes.
	ev := readEvidence(t, dir)
	again, err := json.MarshalIndent(ev, "", "  ")
	require.NoError(t, err)
	require.JSONEq(t, string(data), string(again))
	require.Equal(t, SchemaV2, ev.Schema)
	require.Equal(t, fixtureMeta(), ev.Meta)
	require.Equal(t, 5, ev.Summary.Passed)
	require.Equal(t, 8, ev.Summary.Total)
	require.Equal(t, map[scenarios.Verdict]int{scenarios.Pass: 5, scenarios.Fail: 1, scenarios.Error: 1, scenarios.Incomplete: 1}, ev.Summary.ByVerdict)
	require.Len(t, ev.Scenarios, len(fixtureScenarios()))
	for i, r := range fixtureResults() {
		got := ev.Results[i]
		require.Equal(t, r.Key(), got.Key())
		require.Equal(t, r.Verdict, got.Verdict)
		require.Equal(t, r.Observed.Failure, got.Observed.Failure)
		require.Equal(t, len(r.FirewallLog), len(got.FirewallLog))
		require.Equal(t, len(r.GatewayLog), len(got.GatewayLog))
	}

	// The required fields, read as plain JSON.
	var doc map[string]any
	require.NoError(t, json.Unmarshal(data, &doc))
	require.Equal(t, "pinwall.evidence/v2", doc["schema"])
	meta := doc["meta"].(map[string]any)
	for _, k := range []string{"version", "commit", "go_version", "os", "arch", "mode", "started", "ended", "cas", "interrupted", "command_line"} {
		require.Contains(t, meta, k)
	}
	require.Equal(t, true, meta["interrupted"])
	cas := meta["cas"].([]any)
	require.Len(t, cas, 3)
	require.Contains(t, cas[0], "sha256")
	results := doc["results"].([]any)
	require.Len(t, results, 8)
	for _, x := range results {
		r := x.(map[string]any)
		for _, k := range []string{"id", "variant", "expected", "observed", "firewall_log", "gateway_log", "findings", "verdict", "checks", "logs"} {
			require.Contains(t, r, k, r["id"])
		}
		for _, k := range []string{"firewall_log", "gateway_log", "findings", "checks"} {
			require.IsType(t, []any{}, r[k], "%s of %s/%s is an array, never null", k, r["id"], r["variant"])
		}
		obs := r["observed"].(map[string]any)
		tun := obs["tunnel"].(map[string]any)
		require.Contains(t, []any{"up", "down"}, tun["state"])
		if tun["state"] == "down" {
			require.NotContains(t, tun, "transport", "no transport when the tunnel is down")
		} else {
			require.Contains(t, []any{"dtls", "tls"}, tun["transport"])
		}
		flows := obs["flows"].(map[string]any)
		for _, k := range []string{"attempted", "completed", "verified"} {
			require.Contains(t, flows, k)
		}
		require.Contains(t, obs, "failure")
		if f := obs["failure"]; f != nil {
			require.Contains(t, f, "leg")
			require.Contains(t, f, "cause")
		}
	}
	// The three answers, as the reports give them.
	answers := doc["answers"].([]any)
	require.Len(t, answers, 3)
	a2 := answers[1].(map[string]any)
	require.EqualValues(t, 2, a2["n"])
	require.Contains(t, a2["question"], "Can the firewall decrypt that tunnel")
	require.NotEmpty(t, a2["answer"])
	require.NotEmpty(t, a2["points"])
	// The label and the role.
	require.Equal(t, "without-fix/fail-close", results[1].(map[string]any)["variant"])
	require.Equal(t, "without-fix", results[1].(map[string]any)["role"])
}

func TestEvidenceMatchesSchema(t *testing.T) {
	var schema map[string]any
	require.NoError(t, json.Unmarshal(Schema(), &schema), "the schema is JSON")
	require.Equal(t, "https://json-schema.org/draft/2020-12/schema", schema["$schema"])

	dir := writeFixture(t)
	data, err := os.ReadFile(filepath.Join(dir, EvidenceFile))
	require.NoError(t, err)
	var doc any
	require.NoError(t, json.Unmarshal(data, &doc))
	v := schemaValidator{root: schema}
	require.Empty(t, v.validate(schema, doc, "$"), "evidence.json against evidence.schema.json")

	// The bundle carries the schema it was written against.
	bundled, err := os.ReadFile(filepath.Join(dir, SchemaFile))
	require.NoError(t, err)
	require.Equal(t, Schema(), bundled)

	// The validator does catch violations.
	m := doc.(map[string]any)
	r0 := m["results"].([]any)[0].(map[string]any)
	r0["verdict"] = "maybe"
	delete(r0["observed"].(map[string]any)["tunnel"].(map[string]any), "state")
	delete(m["meta"].(map[string]any), "commit")
	errs := v.validate(schema, doc, "$")
	require.Len(t, errs, 3, "%v", errs)
}

func TestReadEvidenceRejectsOtherSchemas(t *testing.T) {
	_, err := ReadEvidence(strings.NewReader(`{"schema": "pinwall.evidence/v1"}`))
	require.ErrorContains(t, err, "pinwall.evidence/v2")
	_, err = ReadEvidence(strings.NewReader(`{`))
	require.Error(t, err)
}

// TestWriteRefusesPlantedLinks: a report.md symlink planted in the output
// directory, or a logs directory linked elsewhere, does not make Write
// overwrite anything outside it; the rest of the bundle is still written.
func TestWriteRefusesPlantedLinks(t *testing.T) {
	elsewhere := t.TempDir()
	victim := filepath.Join(elsewhere, "victim.md")
	require.NoError(t, os.WriteFile(victim, []byte("precious"), 0o644))
	dir := t.TempDir()
	require.NoError(t, os.Symlink(victim, filepath.Join(dir, MarkdownFile)))
	require.NoError(t, os.Symlink(elsewhere, filepath.Join(dir, LogsDir)))

	err := Write(dir, fixtureMeta(), fixtureScenarios(), fixtureResults())
	require.Error(t, err)
	require.Contains(t, err.Error(), "refusing to write")
	got, rerr := os.ReadFile(victim)
	require.NoError(t, rerr)
	require.Equal(t, "precious", string(got))
	entries, rerr := os.ReadDir(elsewhere)
	require.NoError(t, rerr)
	require.Len(t, entries, 1, "nothing written into the linked directory")
	require.FileExists(t, filepath.Join(dir, EvidenceFile))
	require.FileExists(t, filepath.Join(dir, ManifestFile))
}
