package reports

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pinwall/pinwall/failure"
	"github.com/pinwall/pinwall/harness"
	"github.com/pinwall/pinwall/interceptors"
	"github.com/pinwall/pinwall/scenarios"
)

// toolResults are the same row on pinwall's firewall, on mitmproxy (with a
// declared difference and its evidence) and on sslsplit (not run).
func toolResults() []scenarios.Result {
	base := fixtureResults()[0]
	base.ID, base.Variant, base.Firewall = "bypass-ip", "without-fix", "pinwall"
	base.Observed.Tunnel = scenarios.TunnelObserved{State: "down"}
	base.Observed.Failure = &scenarios.FailureObserved{Leg: failure.LegFirewallGateway, Cause: failure.CauseClientCertRequired, Source: "client+firewall"}
	m := base
	m.Firewall, m.Mode = string(interceptors.Mitmproxy), "containers"
	m.FirewallLog = nil
	m.Observed.Failure = &scenarios.FailureObserved{Leg: failure.LegClientFirewall, Cause: failure.CausePinMismatch, Source: "client+endpoint"}
	m.ToolSource = "observed: mitmproxy 8.1.1 still forges"
	m.NotApplicable = []string{"1 firewall check(s): they read pinwall's firewall log"}
	m.Interceptor = &harness.InterceptorEvidence{Kind: interceptors.Mitmproxy, Version: "Mitmproxy: 8.1.1", VersionText: "Mitmproxy: 8.1.1\nPython: 3.11.2\n",
		Translation: "# mitmproxy 8.1.1\n", Files: []harness.NamedText{{Name: "config.yaml", What: "generated", Text: "mode: transparent\n"}},
		Logs:     []harness.NamedText{{Name: "mitmproxy-events.log", What: "event log", Text: "client connect\n", Truncated: 10}},
		Counters: []harness.RuleCount{{Chain: "prerouting-nat", Rule: "tls-ports", Packets: 1, Bytes: 60}}}
	s := base
	s.Firewall, s.Verdict, s.Error = string(interceptors.SSLsplit), scenarios.NotRun, "policies/x.yaml:4: rules[0].match.sni: sslsplit 0.5.5 cannot express rule"
	s.FirewallLog, s.Observed = nil, scenarios.Observed{}
	return []scenarios.Result{base, m, s}
}

func TestFirewallsSideBySide(t *testing.T) {
	rs := toolResults()
	dir := t.TempDir()
	require.NoError(t, Write(dir, fixtureMeta(), fixtureScenarios(), rs))
	verifyManifest(t, dir)

	md, err := os.ReadFile(filepath.Join(dir, MarkdownFile))
	require.NoError(t, err)
	for _, want := range []string{
		"## Firewalls side by side",
		"| Run | pinwall | mitmproxy | sslsplit |",
		"| `bypass-ip` without-fix | ✓ down",
		"client-firewall / pin-mismatch (differs) \\[1\\] | — not run \\[2\\] |",
		"1. `bypass-ip/without-fix` on mitmproxy: observed: mitmproxy 8.1.1 still forges",
		"2. `bypass-ip/without-fix` on sslsplit: policies/x.yaml:4",
		"without-fix on mitmproxy",
		"- Firewall: mitmproxy (`Mitmproxy: 8.1.1`) in the firewall's place; its generated configuration, logs, version and nftables counters are in `logs/bypass-ip__without-fix__mitmproxy/interceptor/`",
		"- Expected of mitmproxy where it differs from pinwall's firewall, because observed: mitmproxy 8.1.1 still forges",
		"- Not applicable here: 1 firewall check(s): they read pinwall's firewall log",
	} {
		assert.Contains(t, string(md), want)
	}
	html, err := os.ReadFile(filepath.Join(dir, HTMLFile))
	require.NoError(t, err)
	assert.Contains(t, string(html), `<h2 id="firewalls">Firewalls side by side</h2>`)
	assert.NotContains(t, string(md), "without-fix@mitmproxy` — fails", "the questions are answered from pinwall's firewall only")

	// The tool's evidence is files under its run's directory; evidence.json
	// names the logs rather than copying them.
	logs := filepath.Join(dir, "logs", "bypass-ip__without-fix__mitmproxy", InterceptorDir)
	for name, want := range map[string]string{
		"config.yaml": "mode: transparent\n", "mitmproxy-events.log": "client connect\n\n[pinwall: 10 more bytes left out]\n",
		VersionFile: "Mitmproxy: 8.1.1\nPython: 3.11.2\n", TranslationFile: "# mitmproxy 8.1.1\n",
	} {
		b, err := os.ReadFile(filepath.Join(logs, name))
		require.NoError(t, err, name)
		assert.Equal(t, want, string(b), name)
	}
	ev := readEvidence(t, dir)
	require.Len(t, ev.Results, 3)
	got := ev.Results[1].Interceptor
	require.NotNil(t, got)
	assert.Empty(t, got.Logs[0].Text)
	assert.Equal(t, "logs/bypass-ip__without-fix__mitmproxy/interceptor/mitmproxy-events.log", got.Logs[0].File)
	assert.Equal(t, scenarios.NotRun, ev.Results[2].Verdict)
	passed, total := Summary(rs)
	assert.Equal(t, [2]int{2, 2}, [2]int{passed, total}, "a run not carried out counts for nothing")

	var schema, doc map[string]any
	require.NoError(t, json.Unmarshal(Schema(), &schema))
	data, err := os.ReadFile(filepath.Join(dir, EvidenceFile))
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(data, &doc))
	assert.Empty(t, schemaValidator{root: schema}.validate(schema, doc, "$"))

	// Written again without the tool's run, nothing of it is left.
	require.NoError(t, Write(dir, fixtureMeta(), fixtureScenarios(), rs[:1]))
	_, err = os.Stat(logs)
	assert.True(t, os.IsNotExist(err), "the stale interceptor directory is removed")
	verifyManifest(t, dir)
	assert.False(t, strings.Contains(readFile(t, filepath.Join(dir, MarkdownFile)), "side by side"), "one firewall: no comparison")
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	return string(b)
}
