package scenarios_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pinwall/pinwall/interceptors"
	"github.com/pinwall/pinwall/scenarios"
	"github.com/pinwall/pinwall/strictyaml"
)

const toolRow = `id: tooled
title: A row with per-tool expectations
summary: one line
firewall:
  policy:
    rules:
      - { name: block-quic, match: { proto: udp, port: [443] }, action: block }
      - { name: pass-gw, match: { proto: tcp, sni: [gateway-acme.sse.test] }, action: no-decrypt }
      - { name: decrypt-rest, match: { proto: tcp, port: [443] }, action: decrypt }
expect:
  tunnel: { state: up, transport: tls }
  findings: [dtls-blocked]
  no-findings: [tunnel-down]
  firewall:
    - { name: the tunnel passes, where: { dst: gateways }, each: { outcome: not-decrypted } }
tools:
  squid:
    source: "observed: squid 5.7 does it differently"
    client: { handshake-timeout: 1s }
    expect: { tunnel: { transport: dtls } }
variants:
  - variant: baseline
    tools:
      sslsplit: { source: "sslsplit(1)", skip: "not for this row" }
`

func loadRow(t *testing.T, src string) (*scenarios.Scenario, error) {
	t.Helper()
	file := filepath.Join(t.TempDir(), "row.yaml")
	require.NoError(t, os.WriteFile(file, []byte(src), 0o644))
	return scenarios.Load(file)
}

// TestForFirewall: the same run, resolved for each firewall kind.
func TestForFirewall(t *testing.T) {
	s, err := loadRow(t, toolRow)
	require.NoError(t, err)
	runs, err := s.Runs()
	require.NoError(t, err)
	base := runs[0]

	pw := base.ForFirewall(interceptors.Pinwall)
	assert.Equal(t, "tooled/baseline", pw.Key())
	assert.Empty(t, pw.NotRun)
	assert.Len(t, pw.Expect.Firewall, 1, "pinwall keeps its firewall checks")

	m := base.ForFirewall(interceptors.Mitmproxy)
	assert.Equal(t, "tooled/baseline@mitmproxy", m.Key())
	assert.Empty(t, m.NotRun)
	assert.Equal(t, interceptors.Mitmproxy, m.Plan.Spec.Firewall.Kind)
	assert.Empty(t, m.ToolSource, "no difference declared")
	assert.Empty(t, m.Expect.Firewall, "firewall checks read pinwall's log")
	assert.Equal(t, []scenarios.FindingID{}, m.Expect.Findings)
	assert.Equal(t, []scenarios.FindingID{scenarios.FindingTunnelDown}, m.Expect.NoFindings, "endpoint findings stay")
	require.Len(t, m.NotApplicable, 2)
	assert.Contains(t, m.NotApplicable[0], `1 firewall check(s) ("the tunnel passes")`)
	assert.Contains(t, m.NotApplicable[1], "dtls-blocked")
	assert.Len(t, base.Expect.Firewall, 1, "the base run is untouched")

	sq := base.ForFirewall(interceptors.Squid)
	assert.Equal(t, "observed: squid 5.7 does it differently", sq.ToolSource)
	assert.Equal(t, scenarios.TransportName("dtls"), sq.Expect.Tunnel.Transport)
	assert.Empty(t, sq.Expect.Tunnel.State, "the tool's tunnel section replaces the row's")
	assert.Equal(t, time.Second, sq.Plan.Spec.Client.HandshakeTimeout)
	assert.NotEmpty(t, sq.Plan.Spec.Client.Gateways, "the client keeps its defaults")
	assert.Equal(t, 5*time.Second, base.Plan.Spec.Client.HandshakeTimeout)

	ss := base.ForFirewall(interceptors.SSLsplit)
	assert.Equal(t, "not run on sslsplit: not for this row (sslsplit(1))", ss.NotRun)

	proxied := base
	proxied.Plan.Spec.Client.UpstreamProxy = "firewall"
	assert.Contains(t, proxied.ForFirewall(interceptors.Mitmproxy).NotRun, "explicit proxy")
}

func TestForFirewallRefusesWhatTheToolCannotExpress(t *testing.T) {
	src := strings.Replace(toolRow, "    tools:\n      sslsplit: { source: \"sslsplit(1)\", skip: \"not for this row\" }\n", "", 1)
	s, err := loadRow(t, src)
	require.NoError(t, err)
	runs, err := s.Runs()
	require.NoError(t, err)
	r := runs[0].ForFirewall(interceptors.SSLsplit)
	assert.Regexp(t, `row\.yaml:8: rules\[1\]\.match\.sni: sslsplit 0\.5\.5 cannot express rule "pass-gw"`, r.NotRun)
}

func TestToolSectionErrors(t *testing.T) {
	tests := map[string]struct{ from, to, field string }{
		"expect without a source":    {`source: "observed: squid 5.7 does it differently"`, `describe: x`, "tools.squid"},
		"firewall checks for a tool": {`expect: { tunnel: { transport: dtls } }`, `expect: { firewall: [] }`, "tools.squid.expect.firewall"},
		"an unknown tool":            {"  squid:\n", "  bluecoat:\n", "tools"},
		"skip with expect":           {`{ source: "sslsplit(1)", skip: "not for this row" }`, `{ source: "x", skip: "y", expect: {} }`, "variants[0].tools.sslsplit"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			require.Contains(t, toolRow, tt.from)
			_, err := loadRow(t, strings.Replace(toolRow, tt.from, tt.to, 1))
			var se *strictyaml.Error
			require.ErrorAs(t, err, &se)
			assert.True(t, strings.HasPrefix(se.Field, tt.field), "%v", err)
		})
	}
}
