package reports

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pinwall/pinwall/scenarios"
)

// Each answer says what it is missing instead of inventing an answer.
func TestAnswersWithoutTheirScenarios(t *testing.T) {
	qs := answers(nil, nil)
	require.Len(t, qs, 3)
	require.Contains(t, qs[0].Answer, "Not measured")
	require.Equal(t, []string{"visibility"}, qs[0].Missing)
	require.Contains(t, qs[1].Answer, "Not measured")
	require.Equal(t, []string{"decrypt-pinned", "decrypt-mtls", "double-decrypt"}, qs[1].Missing)
	require.Contains(t, qs[2].Answer, "not measured in this run")
	require.Empty(t, qs[2].Table)

	// An error result is named, not used.
	rs := fixtureResults()
	vis := rs[0]
	vis.Verdict, vis.Error = scenarios.Error, "boom"
	qs = answers(nil, []scenarios.Result{vis})
	require.Contains(t, qs[0].Answer, "Not measured")
	require.Contains(t, strings.Join(qs[0].Points, "\n"), "`visibility/baseline` did not complete (error: boom)")
}

// The answers come from the data: change the data and the answer changes.
func TestAnswersFollowTheData(t *testing.T) {
	rs := fixtureResults()
	qs := answers(fixtureScenarios(), rs)
	require.Contains(t, qs[0].Answer, "Only the gateway")
	require.Contains(t, qs[0].Answer, "`203.0.113.9 (gateway-acme.sse.test)`")
	require.Contains(t, qs[0].Answer, "12 inner flows to 3 sites")

	// A session straight to a site's address is no longer "only the gateway".
	rec := rs[0].FirewallLog[0]
	rec.SessionID, rec.Dst, rec.SNI = 2, ap("192.0.2.10:443"), "www.social.test"
	rs[0].FirewallLog = append(rs[0].FirewallLog, rec)
	qs = answers(fixtureScenarios(), rs)
	require.Contains(t, qs[0].Answer, "Not only the gateway")
	require.Contains(t, qs[0].Answer, "`192.0.2.10 (www.social.test)`")

	// bypass-fqdn: the measured fraction, and the table's verdicts.
	q3 := qs[2]
	var fqdn []string
	for _, row := range q3.Table {
		if strings.HasPrefix(row[0], "`bypass-fqdn/") {
			fqdn = append(fqdn, row[2]+": "+row[3])
		}
	}
	require.Equal(t, []string{
		"fails: tunnel down (`firewall-gateway` / `client-certificate-required`): 3 of 4 tunnel attempts failed",
		"works: up tls, 4/4 attempts up",
	}, fqdn)
	require.Contains(t, strings.Join(q3.Points, "\n"), "3 of 4 tunnel attempts failed (75%)")
}

func TestMarkdownEscaping(t *testing.T) {
	require.Equal(t, `\*.sse.test misses `+"`*.sse.test`", mdInline("*.sse.test misses `*.sse.test`"))
	require.Equal(t, "bad_certificate and \\_x\\_", mdInline("bad_certificate and _x_"))
	require.Equal(t, `a \| b`, mdCell("a | b"))
	require.Equal(t, "a b", mdCell("a\nb"))
	require.Equal(t, `<code>x</code> &lt;b&gt; `+"`", string(codeHTML("`x` <b> `")))
}
