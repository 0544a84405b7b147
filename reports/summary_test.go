package reports

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// summaryMaxLines bounds summary.md: one printed page.
const summaryMaxLines = 110

// The one-page summary speaks plainly: none of the report's internals'
// words, and one page.
func TestSummaryPlain(t *testing.T) {
	dir := writeFixture(t)
	md, err := os.ReadFile(filepath.Join(dir, SummaryMarkdownFile))
	require.NoError(t, err)
	html, err := os.ReadFile(filepath.Join(dir, SummaryHTMLFile))
	require.NoError(t, err)
	for name, data := range map[string]string{SummaryMarkdownFile: string(md), SummaryHTMLFile: string(html)} {
		low := strings.ToLower(data)
		for _, word := range []string{"yamux", "sctp", "leg client-firewall", "client-firewall", "firewall-gateway", "multiplex", "pion"} {
			assert.NotContains(t, low, word, name)
		}
		for _, want := range []string{"set rulebase decryption rules sse-no-decrypt", "config firewall policy", "Why it is safe",
			"After the change", "pinwall probe", "Glossary", "What this is"} {
			assert.Contains(t, data, want, name)
		}
	}
	lines := strings.Count(string(md), "\n")
	assert.LessOrEqual(t, lines, summaryMaxLines, "summary.md is one page")
	for _, ext := range []string{"<link", "<script", "src=", "url("} {
		assert.NotContains(t, string(html), ext, "summary.html is self-contained")
	}
}

// With the customer's gateways, the fix names them and not the
// simulation's documentation addresses.
func TestSummaryCustomerGateways(t *testing.T) {
	g, err := ParseGateways("gw.yaml", []byte(`vendor: Example SSE
endpoints: [172.16.0.0/16]
gateways:
  - { name: gw1.example-sse.net, addresses: [198.18.0.0/24] }
  - { name: gw1-backup.example-sse.net, addresses: [198.18.8.0/24], backup: true }
`))
	require.NoError(t, err)
	meta := fixtureMeta()
	meta.Gateways = g
	dir := t.TempDir()
	require.NoError(t, Write(dir, meta, fixtureScenarios(), fixtureResults()))
	md, err := os.ReadFile(filepath.Join(dir, SummaryMarkdownFile))
	require.NoError(t, err)
	s := string(md)
	assert.Contains(t, s, "set address sse-gw1 ip-netmask 198.18.0.0/24")
	assert.Contains(t, s, "set subnet 198.18.8.0 255.255.255.0")
	assert.Contains(t, s, "172.16.0.0/16")
	assert.Contains(t, s, "Example SSE")
	assert.NotContains(t, s, "203.0.113.")
}
