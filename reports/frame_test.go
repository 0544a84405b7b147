package reports

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pinwall/pinwall/scenarios"
)

// catalogueScenarios returns the catalogue's scenarios with these ids.
func catalogueScenarios(t *testing.T, ids ...string) []*scenarios.Scenario {
	t.Helper()
	cat, err := scenarios.Catalogue()
	require.NoError(t, err)
	ss, err := scenarios.Find(cat, ids...)
	require.NoError(t, err)
	return ss
}

// Every report opens with what it is, says what is simulated, and no
// longer claims that every part is real.
func TestFrameInEveryReport(t *testing.T) {
	dir := writeFixture(t)
	for _, f := range []string{MarkdownFile, HTMLFile} {
		data, err := os.ReadFile(filepath.Join(dir, f))
		require.NoError(t, err)
		s := string(data)
		assert.NotContains(t, s, "Each scenario runs a real", f)
		for _, want := range []string{"What this is", "Simulated", "may not conclude", "pinwall check --panos", "pinwall probe",
			"Audit frame", "Operator", "Reproducibility", "Control mapping", "PINWALLSIMULATED"} {
			assert.Contains(t, s, want, f)
		}
		what := strings.Index(s, "What this is</h2>")
		if f == MarkdownFile {
			what = strings.Index(s, "## What this is")
		}
		require.Positive(t, what, f)
		assert.Less(t, what, strings.Index(s, "Verdicts</h2>")+strings.Index(s, "## Verdicts")+1, "%s: What this is comes before the verdicts", f)
	}
}

// The bundle holds the scenario and policy files the runs were made
// from, the check output, and logs/README.md saying the vendor logs are
// generated; the manifest covers them all.
func TestBundleInputsAndReadme(t *testing.T) {
	dir := t.TempDir()
	meta := fixtureMeta()
	meta.Checks = []CheckOutput{{Policy: "scenarios/policies/decrypt-all.yaml", Command: "pinwall check --policy scenarios/policies/decrypt-all.yaml", ExitCode: 1, Output: "answers\n"}}
	require.NoError(t, Write(dir, meta, catalogueScenarios(t, "decrypt-pinned", "sni-spoof"), fixtureResults()))
	manifest, err := os.ReadFile(filepath.Join(dir, ManifestFile))
	require.NoError(t, err)
	for _, f := range []string{"inputs/decrypt-pinned.yaml", "inputs/sni-spoof.yaml", "inputs/policies/decrypt-all.yaml",
		"checks/decrypt-all.txt", "logs/README.md"} {
		_, err := os.Stat(filepath.Join(dir, filepath.FromSlash(f)))
		require.NoError(t, err, f)
		assert.Contains(t, string(manifest), "  "+f+"\n", f)
	}
	readme, err := os.ReadFile(filepath.Join(dir, "logs", "README.md"))
	require.NoError(t, err)
	assert.Contains(t, string(readme), "generated")
	check, err := os.ReadFile(filepath.Join(dir, "checks", "decrypt-all.txt"))
	require.NoError(t, err)
	assert.Contains(t, string(check), "$ pinwall check --policy scenarios/policies/decrypt-all.yaml\n# exit status 1\n")

	// A second bundle into the same directory without inputs removes the
	// first one's.
	require.NoError(t, Write(dir, fixtureMeta(), fixtureScenarios(), fixtureResults()))
	for _, f := range []string{"inputs", "checks"} {
		_, err := os.Stat(filepath.Join(dir, f))
		assert.True(t, os.IsNotExist(err), f)
	}
}

// The reproducible parts leave out what changes from run to run: the same
// outcomes at other times give the same digest; another outcome changes it.
func TestReproducibleDigest(t *testing.T) {
	a := fixtureResults()
	b := fixtureResults()
	for i := range b {
		b[i].Started = b[i].Started.Add(3600e9)
		b[i].DurationMS += 17
	}
	assert.Equal(t, ReproducibleDigest(a), ReproducibleDigest(b))
	b[0].Observed.Tunnel.State = "down"
	assert.NotEqual(t, ReproducibleDigest(a), ReproducibleDigest(b))
}

// The shipped template parses, and the report lists its controls with the
// runs that bear on them.
func TestControlsTemplate(t *testing.T) {
	data, err := os.ReadFile("../docs/controls-template.yaml")
	require.NoError(t, err)
	c, err := ParseControls("controls-template.yaml", data)
	require.NoError(t, err)
	meta := fixtureMeta()
	meta.Controls = c
	sec := controlSection(meta, fixtureResults())
	require.Len(t, sec.Rows, 2)
	assert.Contains(t, sec.Rows[1][1], "`decrypt-pinned/")
	assert.Contains(t, sec.Paras[0], "not pinwall's")
}

func TestControlsErrors(t *testing.T) {
	for _, tc := range []struct{ name, text, want string }{
		{"no controls", "organisation: x\n", "controls"},
		{"empty list", "controls: []\n", "controls: lists no control"},
		{"missing rows", "controls:\n  - id: A\n", "controls[0]"},
		{"duplicate", "controls:\n  - id: A\n    rows: [x]\n  - id: A\n    rows: [y]\n", "c.yaml:4"},
		{"bad row", "controls:\n  - id: A\n    rows: ['a b']\n", "controls[0].rows[0]"},
		{"unknown field", "controls:\n  - id: A\n    rows: [x]\n    owner: me\n", "c.yaml:4"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseControls("c.yaml", []byte(tc.text))
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

// A run that passed as expected with its tunnel down says so in the JUnit
// XML: a CI reader seeing 0 failures is not misled.
func TestJUnitCarriesObserved(t *testing.T) {
	dir := writeFixture(t)
	data, err := os.ReadFile(filepath.Join(dir, JUnitFile))
	require.NoError(t, err)
	s := string(data)
	i := strings.Index(s, `<testcase name="decrypt-pinned/without-fix/fail-close"`)
	require.Positive(t, i)
	tc := s[i : i+strings.Index(s[i:], "</testcase>")]
	assert.Contains(t, tc, `<property name="pinwall.verdict" value="as expected">`)
	assert.Contains(t, tc, `<property name="pinwall.observed.tunnel" value="down">`)
	assert.Contains(t, tc, "AS EXPECTED — observed: tunnel down")
	assert.NotContains(t, tc, "<failure")
}

// FuzzParseControls: any input parses and validates, or fails with an
// error naming the file.
func FuzzParseControls(f *testing.F) {
	if data, err := os.ReadFile("../docs/controls-template.yaml"); err == nil {
		f.Add(data)
	}
	f.Add([]byte("controls:\n  - { id: A-1, rows: [sni-spoof/with-fix] }\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseControls("fuzz.yaml", data)
		if err != nil {
			if !assert.Contains(t, err.Error(), "fuzz.yaml") {
				t.FailNow()
			}
			return
		}
		require.NoError(t, c.Validate())
		meta := fixtureMeta()
		meta.Controls = c
		require.Len(t, controlSection(meta, fixtureResults()).Rows, len(c.Controls))
	})
}
