package probe_test

import (
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/pinwall/pinwall/client"
	"github.com/pinwall/pinwall/failure"
	"github.com/pinwall/pinwall/probe"
)

func att(key string, o probe.Outcome) probe.Attempt {
	a := probe.Attempt{Key: key, Outcome: o, Addr: netip.MustParseAddrPort("203.0.113.9:443")}
	switch o {
	case probe.Pinned:
		a.Tunnel = key != "B" && key != "H"
	case probe.Forged:
		a.Chain = &probe.Chain{Issuer: "CN=Forward Trust"}
		a.Leg, a.Cause = failure.LegClientFirewall, failure.CausePinMismatch
	case probe.Failed:
		a.Leg, a.Cause = failure.LegClientFirewall, failure.CauseHandshakeFailed
	}
	return a
}

// TestConclude pins what each pattern of measurements concludes, the
// bypass table of docs/probe.md.
func TestConclude(t *testing.T) {
	P, X, F := probe.Pinned, probe.Forged, probe.Failed
	for _, tc := range []struct {
		name     string
		a        map[string]probe.Outcome
		learning []probe.Outcome
		keyedOn  string
		bypass   probe.Level
		tls      probe.Level
		findings []probe.FindingID
	}{
		{"no interception", map[string]probe.Outcome{"A": P, "B": P, "C": P, "F": P, "H": P}, nil, "no-interception", probe.OK, probe.OK, nil},
		{"by address", map[string]probe.Outcome{"A": P, "B": P, "C": P, "F": X, "H": X}, nil, "address", probe.OK, probe.OK, nil},
		{"client-certificate exclusion", map[string]probe.Outcome{"A": P, "B": X, "C": P, "F": P, "H": X}, nil, "client-certificate", probe.OK, probe.Warn, nil},
		{"sni, spoofable", map[string]probe.Outcome{"A": P, "B": X, "C": F, "F": P, "H": X}, nil, "sni", probe.Problem, probe.OK, []probe.FindingID{probe.FindingSNIRuleTooBroad}},
		{"sni and address", map[string]probe.Outcome{"A": P, "B": X, "C": F, "F": X, "H": X}, nil, "sni+address", probe.OK, probe.OK, nil},
		{"sni and a server check", map[string]probe.Outcome{"A": P, "B": X, "C": F, "F": F, "H": X}, nil, "sni+server-check", probe.OK, probe.OK, nil},
		{"sni, no decoy", map[string]probe.Outcome{"A": P, "B": X, "C": X}, nil, "sni", probe.Warn, probe.OK, nil},
		{"intercepted", map[string]probe.Outcome{"A": X, "B": X, "C": X}, []probe.Outcome{X, X}, "none", probe.OK, probe.Problem, []probe.FindingID{probe.FindingTunnelIntercepted}},
		{"learned", map[string]probe.Outcome{"A": F, "B": P, "C": P}, []probe.Outcome{P}, "none", probe.OK, probe.Warn, []probe.FindingID{probe.FindingExclusionLearned}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := &probe.Result{Primary: probe.Endpoint{Name: "gw.test", Addr: netip.MustParseAddrPort("203.0.113.9:443")}}
			o := &res.Observed
			o.DTLS = []probe.DTLSResult{{Gateway: "gw.test", Outcome: "passes"}}
			for _, k := range []string{"A", "C", "B", "F", "H"} {
				if out, ok := tc.a[k]; ok {
					o.TLS = append(o.TLS, att(k, out))
				}
			}
			for i, l := range tc.learning {
				o.Learning = append(o.Learning, att("A"+string(rune('2'+i)), l))
			}
			o.Tunnel = probe.TunnelResult{Up: true, Transport: "dtls", Gateway: "gw.test", FailMode: client.FailClose,
				Flows: []probe.FlowResult{{Verified: true}}}
			probe.Conclude(res)
			b := res.Answer(probe.AnswerBypass)
			assert.Equal(t, tc.keyedOn, b.KeyedOn, b.Summary)
			assert.Equal(t, tc.bypass, b.Level, b.Summary)
			assert.Equal(t, tc.tls, res.Answer(probe.AnswerTLS).Level, res.Answer(probe.AnswerTLS).Summary)
			var ids []probe.FindingID
			for _, f := range res.Findings {
				ids = append(ids, f.ID)
			}
			assert.Equal(t, tc.findings, ids)
			for _, a := range res.Answers {
				assert.NotEmpty(t, a.Summary, a.ID)
			}
			assert.Len(t, res.Questions, 3)
		})
	}
}
