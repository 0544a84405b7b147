package scenarios_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pinwall/pinwall/scenarios"
	"github.com/pinwall/pinwall/strictyaml"
)

const good = `id: mine
title: My scenario
summary: one line
firewall:
  policy:
    rules:
      - { name: allow, action: allow }
variants:
  - variant: baseline
expect:
  tunnel: { state: up }
`

func TestScenarioFileErrors(t *testing.T) {
	tests := []struct {
		name    string
		src     string
		line    int
		field   string
		choices []string
	}{
		{"unknown top-level field", strings.Replace(good, "summary:", "sumary:", 1), 3, "", nil},
		{"bad role", strings.Replace(good, "variant: baseline", "variant: mine\n    role: with-fixes", 1), 10, "variants[0].role", []string{"without-fix", "with-fix", "baseline"}},
		{"bad variant label", strings.Replace(good, "variant: baseline", "variant: my label", 1), 9, "variants[0].variant", nil},
		{"missing policy file", strings.Replace(good, "  policy:\n    rules:\n      - { name: allow, action: allow }\n", "  policy-file: nowhere/p.yaml\n", 1), 5, "firewall.policy-file", nil},
		{"bad tunnel state", strings.Replace(good, "state: up", "state: upp", 1), 11, "expect.tunnel.state", []string{"up", "down"}},
		{"bad policy action", strings.Replace(good, "action: allow", "action: alow", 1), 7, "firewall.policy.rules[0].action", []string{"decrypt", "no-decrypt", "block", "allow"}},
		{"bad transport in a variant", strings.Replace(good, "  - variant: baseline\n", "  - variant: without-fix\n  - variant: with-fix\n    client: { transport: quic }\n", 1), 11, "variants[1].client.transport", []string{"auto", "tls", "dtls"}},
		{"bad count", strings.Replace(good, "tunnel: { state: up }", "flows: { verified: lots }", 1), 11, "expect.flows.verified", nil},
		{"missing id", strings.Replace(good, "id: mine\n", "", 1), 1, "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "mine.yaml")
			require.NoError(t, os.WriteFile(file, []byte(tt.src), 0o644))
			_, err := scenarios.Load(file)
			require.Error(t, err)
			var se *strictyaml.Error
			require.ErrorAs(t, err, &se, "%v", err)
			msg := err.Error()
			assert.NotContains(t, msg, "\n", "one line")
			assert.True(t, strings.HasPrefix(msg, file+":"), "names the file: %s", msg)
			assert.Equal(t, tt.line, se.Line, msg)
			if tt.field != "" {
				assert.Equal(t, tt.field, se.Field, msg)
			}
			for _, c := range tt.choices {
				assert.Contains(t, msg, c, "lists the valid choices")
			}
		})
	}
	file := filepath.Join(t.TempDir(), "ok.yaml")
	require.NoError(t, os.WriteFile(file, []byte(good), 0o644))
	s, err := scenarios.Load(file)
	require.NoError(t, err)
	runs, err := s.Runs()
	require.NoError(t, err)
	require.Len(t, runs, 1)
	assert.Equal(t, "mine/baseline", runs[0].Key())
}

// TestPolicyFilePaths: a scenario's policy-file resolves beside the
// scenario file (with ../ too), else from the working directory, or is
// absolute; a missing one names what was tried, at the field's line and
// column.
func TestPolicyFilePaths(t *testing.T) {
	root := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(root, "policies"), 0o755))
	require.NoError(t, os.MkdirAll(filepath.Join(root, "mine"), 0o755))
	pol := "rules:\n  - { name: allow, action: allow }\n"
	require.NoError(t, os.WriteFile(filepath.Join(root, "policies", "p.yaml"), []byte(pol), 0o644))
	scenario := func(ref string) string {
		return "id: mine\ntitle: t\nsummary: s\nfirewall:\n  policy-file: " + ref + "\nvariants: [{variant: baseline}]\n"
	}
	t.Chdir(root)
	for _, ref := range []string{"../policies/p.yaml", "policies/p.yaml", filepath.Join(root, "policies", "p.yaml")} {
		t.Run(ref, func(t *testing.T) {
			file := filepath.Join(root, "mine", "s.yaml")
			require.NoError(t, os.WriteFile(file, []byte(scenario(ref)), 0o644))
			s, err := scenarios.Load(file)
			require.NoError(t, err)
			require.NotNil(t, s.Firewall.Policy)
			assert.Equal(t, "allow", s.Firewall.Policy.Rules[0].Name)
		})
	}
	// A copy of a catalogue scenario finds the catalogue's policies.
	file := filepath.Join(root, "mine", "s.yaml")
	require.NoError(t, os.WriteFile(file, []byte(scenario("policies/sni-only.yaml")), 0o644))
	require.NoError(t, os.Remove(filepath.Join(root, "policies", "p.yaml")))
	s, err := scenarios.Load(file)
	require.NoError(t, err)
	assert.Equal(t, "no-decrypt-sse", s.Firewall.Policy.Rules[0].Name)
	assert.Equal(t, "scenarios/policies/sni-only.yaml", s.Firewall.Policy.File)

	require.NoError(t, os.WriteFile(file, []byte(scenario("gone.yaml")), 0o644))
	_, err = scenarios.Load(file)
	require.Error(t, err)
	assert.Contains(t, err.Error(), file+":5:16: firewall.policy-file: cannot read gone.yaml: tried "+filepath.Join(root, "mine", "gone.yaml")+
		" (beside the scenario) and "+filepath.Join(root, "gone.yaml")+" (the working directory)")
}

// TestVariantLabels: labels are free words, their role comes from the
// first part or from role:, and two variants cannot share a label.
func TestVariantLabels(t *testing.T) {
	src := `id: mine
title: t
summary: s
variants:
  - variant: before
    role: without-fix
  - variant: with-fix/ranges
  - variant: with-fix/names
  - variant: just-curious
`
	s, err := scenarios.Parse(filepath.Join(t.TempDir(), "s.yaml"), []byte(src))
	require.NoError(t, err)
	runs, err := s.Runs()
	require.NoError(t, err)
	var got []string
	for _, r := range runs {
		got = append(got, r.Key()+" "+string(r.Role))
	}
	assert.Equal(t, []string{"mine/before without-fix", "mine/with-fix/ranges with-fix", "mine/with-fix/names with-fix", "mine/just-curious "}, got)
	_, err = scenarios.Parse("s.yaml", []byte(strings.Replace(src, "with-fix/names", "with-fix/ranges", 1)))
	require.ErrorContains(t, err, `s.yaml:8:14: variants[2].variant: variant "with-fix/ranges" appears twice (first as variants[1])`)
	_, err = scenarios.Parse("s.yaml", []byte(strings.Replace(src, "  - variant: just-curious\n", "  - variant: base\n    role: baseline\n", 1)))
	require.ErrorContains(t, err, "a scenario with a baseline has no fix to compare")
	_, err = scenarios.Parse("s.yaml", []byte(strings.Replace(src, "    role: without-fix\n", "    case: x\n", 1)))
	require.ErrorContains(t, err, `unknown field "case"`)
}

// TestCollides: a file of one's own cannot take a catalogue id.
func TestCollides(t *testing.T) {
	cat, err := scenarios.Catalogue()
	require.NoError(t, err)
	file := filepath.Join(t.TempDir(), "copy.yaml")
	s, err := scenarios.Parse(file, []byte("id: sni-spoof\ntitle: t\nsummary: s\nvariants: [{variant: baseline}]\n"))
	require.NoError(t, err)
	err = scenarios.Collides(s, cat)
	require.Error(t, err)
	assert.Contains(t, err.Error(), file+`:1:5: id: "sni-spoof" is the id of the catalogue's scenario scenarios/sni-spoof.yaml; give your scenario an id of its own`)
	s.ID = "my-sni-spoof"
	assert.NoError(t, scenarios.Collides(s, cat))
	assert.NoError(t, scenarios.Collides(cat[0], cat), "the catalogue's own scenario")
}

func TestFindNamesValidIDs(t *testing.T) {
	all, err := scenarios.Catalogue()
	require.NoError(t, err)
	_, err = scenarios.Find(all, "visibility", "nope")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "unknown scenario nope")
	assert.Contains(t, err.Error(), "bypass-fqdn")
}
