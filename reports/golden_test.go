package reports

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// writeFixture writes the fixture bundle into a fresh directory.
func writeFixture(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	require.NoError(t, Write(dir, fixtureMeta(), fixtureScenarios(), fixtureResults()))
	return dir
}

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		require.NoError(t, os.MkdirAll("testdata", 0o755))
		require.NoError(t, os.WriteFile(path, got, 0o644))
		return
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err, "missing golden file; run go test ./reports -update")
	require.Equal(t, string(want), string(got), "%s differs; if the change is intended, run go test ./reports -update and review the diff", path)
}

func TestGolden(t *testing.T) {
	dir := writeFixture(t)
	for _, tc := range []struct{ file, golden string }{
		{MarkdownFile, "report.md.golden"},
		{JUnitFile, "junit.xml.golden"},
		{"logs/decrypt-pinned__without-fix__fail-close/" + FirewallPANDecryption, "fail-close.pan-decryption.csv.golden"},
	} {
		t.Run(tc.file, func(t *testing.T) {
			got, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(tc.file)))
			require.NoError(t, err)
			golden(t, tc.golden, got)
		})
	}
	t.Run("VerdictTable", func(t *testing.T) {
		golden(t, "verdict-table.txt.golden", []byte(VerdictTable(fixtureResults())))
	})
}

// The report must not depend on anything but its input: two renders are
// identical.
func TestDeterministic(t *testing.T) {
	a, b := writeFixture(t), writeFixture(t)
	for _, f := range []string{EvidenceFile, MarkdownFile, HTMLFile, JUnitFile, ManifestFile} {
		x, err := os.ReadFile(filepath.Join(a, f))
		require.NoError(t, err)
		y, err := os.ReadFile(filepath.Join(b, f))
		require.NoError(t, err)
		require.Equal(t, string(x), string(y), f)
	}
}
