package scenarios_test

import (
	"flag"
	"os"
	"regexp"
	"strings"
	"testing"
	"unicode"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pinwall/pinwall/interceptors"
	"github.com/pinwall/pinwall/scenarios"
)

var update = flag.Bool("update", false, "rewrite docs/scenarios.md from the catalogue")

// sourceLinks finds citations of docs/sources.md sections, which
// docs/scenarios.md (a sibling of sources.md) turns into links.
var sourceLinks = regexp.MustCompile(`docs/sources\.md#([A-Za-z0-9_-]+)`)

// TestScenarioDocs keeps docs/scenarios.md, the catalogue explained for
// non-developers, in step with the scenario files.
func TestScenarioDocs(t *testing.T) {
	all, err := scenarios.Catalogue()
	require.NoError(t, err)
	var b strings.Builder
	b.WriteString("# The scenarios, explained\n\n")
	b.WriteString("Each scenario is a YAML file in `scenarios/` that you can copy and edit (`pinwall run --file mine.yaml`; every key is in [scenario-format.md](scenario-format.md)). ")
	b.WriteString("Rows with a fix run twice, without and with it; the others run once as a baseline. ")
	b.WriteString("This page is generated from the files (`go test ./scenarios -run TestScenarioDocs -update`). ")
	b.WriteString("Where each simulated behaviour comes from: [sources](sources.md#by-scenario).\n\n")
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
			keys = append(keys, "`"+r.Variant+"`")
		}
		b.WriteString(strings.Join(keys, ", ") + ". Source: `scenarios/" + s.ID + ".yaml`.\n")
		if len(s.Sources) > 0 {
			b.WriteString("\nSources: " + sourceLinks.ReplaceAllString(strings.Join(s.Sources, "; "), "[$0](sources.md#$1)") + ".\n")
		}
		b.WriteString(toolsDoc(runs))
	}
	const path = "../docs/scenarios.md"
	if *update {
		require.NoError(t, os.WriteFile(path, []byte(b.String()), 0o644))
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err, "run with -update to create it")
	require.Equal(t, string(want), b.String(), "docs/scenarios.md is stale: go test ./scenarios -run TestScenarioDocs -update")
}

// toolsDoc says how a row's runs go with a third-party tool in the
// firewall's place: as with pinwall's, differently (and why), or not at all
// (and why).
func toolsDoc(runs []scenarios.Run) string {
	var b strings.Builder
	b.WriteString("\nWith a third-party tool in the firewall's place (`--mode containers --firewall KIND`):\n")
	for _, k := range interceptors.ThirdParty {
		var same, other []string
		for _, r := range runs {
			fr := r.ForFirewall(k)
			key := "`" + strings.TrimPrefix(strings.TrimSuffix(fr.Key(), "@"+string(k)), r.Scenario.ID+"/") + "`"
			switch {
			case fr.NotRun != "":
				other = append(other, key+" is not run: "+fr.NotRun)
			case fr.ToolSource != "":
				other = append(other, key+" expects a difference, "+fr.ToolSource)
			default:
				same = append(same, key)
			}
		}
		line := "- **" + string(k) + "**: "
		if len(same) > 0 {
			line += strings.Join(same, ", ") + " as with pinwall's firewall"
			if len(other) > 0 {
				line += "; "
			}
		}
		b.WriteString(line + strings.Join(other, "; ") + ".\n")
	}
	return b.String()
}

// sourcesDoc is the page every behaviour's sources are listed on.
const sourcesDoc = "../docs/sources.md"

// headingAnchors returns the GitHub anchors of a Markdown file's headings:
// lower case, punctuation other than '-' and '_' dropped, spaces as '-'.
func headingAnchors(t *testing.T, path string) map[string]bool {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	anchors := map[string]bool{}
	fenced := false
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "```") {
			fenced = !fenced
		}
		if fenced || !strings.HasPrefix(line, "#") {
			continue
		}
		title := strings.TrimSpace(strings.TrimLeft(line, "#"))
		var a strings.Builder
		for _, r := range strings.ToLower(title) {
			switch {
			case r == ' ':
				a.WriteRune('-')
			case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r):
				a.WriteRune(r)
			}
		}
		anchors[a.String()] = true
	}
	return anchors
}

// TestSourceAnchors checks that every scenario source citing docs/sources.md
// names a section that exists there.
func TestSourceAnchors(t *testing.T) {
	anchors := headingAnchors(t, sourcesDoc)
	require.True(t, anchors["forum-thread"], "%s has no forum-thread section", sourcesDoc)
	all, err := scenarios.Catalogue()
	require.NoError(t, err)
	cited := 0
	for _, s := range all {
		for _, src := range s.Sources {
			rest := src
			for {
				_, after, found := strings.Cut(rest, "docs/sources.md#")
				if !found {
					break
				}
				end := strings.IndexFunc(after, func(r rune) bool { return r != '-' && r != '_' && !unicode.IsLetter(r) && !unicode.IsDigit(r) })
				if end < 0 {
					end = len(after)
				}
				anchor := after[:end]
				assert.True(t, anchors[anchor], "scenarios/%s.yaml: source %q: %s has no section #%s", s.ID, src, sourcesDoc, anchor)
				cited++
				rest = after[end:]
			}
		}
	}
	assert.Positive(t, cited, "no scenario cites docs/sources.md")
}
