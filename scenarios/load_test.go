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
		{"bad variant name", strings.Replace(good, "variant: baseline", "variant: with-fixes", 1), 9, "variants[0].variant", []string{"without-fix", "with-fix", "baseline"}},
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

func TestFindNamesValidIDs(t *testing.T) {
	all, err := scenarios.Catalogue()
	require.NoError(t, err)
	_, err = scenarios.Find(all, "visibility", "nope")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "unknown scenario nope")
	assert.Contains(t, err.Error(), "bypass-fqdn")
}
