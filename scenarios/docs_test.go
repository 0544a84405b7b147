package scenarios_test

import (
	"flag"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pinwall/pinwall/scenarios"
)

var update = flag.Bool("update", false, "rewrite docs/scenarios.md from the catalogue")

// TestScenarioDocs keeps docs/scenarios.md, the catalogue explained for
// non-developers, in step with the scenario files.
func TestScenarioDocs(t *testing.T) {
	all, err := scenarios.Catalogue()
	require.NoError(t, err)
	var b strings.Builder
	b.WriteString("# The scenarios, explained\n\n")
	b.WriteString("Each scenario is a YAML file in `scenarios/` that you can copy and edit (`pinwall run --file mine.yaml`). ")
	b.WriteString("Rows with a fix run twice, without and with it; the others run once as a baseline. ")
	b.WriteString("This page is generated from the files (`go test ./scenarios -run TestScenarioDocs -update`).\n\n")
	b.WriteString("| id | setting | fix |\n|---|---|---|\n")
	for _, s := range all {
		fix := s.Fix
		if fix == "" {
			fix = "— (baseline)"
		}
		b.WriteString("| [`" + s.ID + "`](#" + s.ID + ") | " + s.Setting + " | " + fix + " |\n")
	}
	for _, s := range all {
		b.WriteString("\n## " + s.ID + "\n\n**" + s.Title + ".** " + s.Explain + "\n")
		runs, err := s.Runs()
		require.NoError(t, err)
		b.WriteString("\nRuns: ")
		var keys []string
		for _, r := range runs {
			k := "`" + string(r.Variant)
			if r.Case != "" {
				k += "/" + r.Case
			}
			keys = append(keys, k+"`")
		}
		b.WriteString(strings.Join(keys, ", ") + ". Source: `scenarios/" + s.ID + ".yaml`.\n")
		if len(s.Sources) > 0 {
			b.WriteString("\nSources: " + strings.Join(s.Sources, "; ") + ".\n")
		}
	}
	const path = "../docs/scenarios.md"
	if *update {
		require.NoError(t, os.WriteFile(path, []byte(b.String()), 0o644))
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err, "run with -update to create it")
	require.Equal(t, string(want), b.String(), "docs/scenarios.md is stale: go test ./scenarios -run TestScenarioDocs -update")
}
