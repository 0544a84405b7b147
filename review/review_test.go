package review_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/pinwall/pinwall/client"
	"github.com/pinwall/pinwall/harness"
	"github.com/pinwall/pinwall/mitm/policy"
	"github.com/pinwall/pinwall/pki"
	"github.com/pinwall/pinwall/review"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func pkiSet(t *testing.T) *pki.Set {
	t.Helper()
	set, err := pki.NewSet(pki.Config{}, harness.DefaultTenant)
	require.NoError(t, err)
	return set
}

func reviewFile(t *testing.T, set *pki.Set, name string, cs harness.ClientSpec) *review.Report {
	t.Helper()
	pol, err := policy.Load(filepath.Join("..", "scenarios", "policies", name))
	require.NoError(t, err)
	return reviewPolicy(t, set, pol, cs)
}

func reviewPolicy(t *testing.T, set *pki.Set, pol *policy.Policy, cs harness.ClientSpec) *review.Report {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var progress []string
	rep, err := review.Run(ctx, review.Input{Policy: pol, Client: cs}, review.Options{PKI: set,
		Progress: func(done, total int, a review.Answer) { progress = append(progress, review.Progress(done, total, a)) }})
	require.NoError(t, err)
	require.Len(t, progress, len(rep.Answers), "a progress line per answer")
	for i, a := range rep.Answers {
		require.NoError(t, a.Err, "%s", a.ID)
		assert.Contains(t, strings.Join(progress, "\n"), a.Level.String()+" "+strings.Repeat(" ", 7-len(a.Level.String()))+a.Topic,
			"the progress line gives the final level of %s", a.ID)
		if a.Level != review.OK {
			assert.NotEmpty(t, a.Advice, "answer %d (%s, %s) has advice: %s", i, a.ID, a.Level, a.Summary)
		}
		for _, adv := range a.Advice {
			if adv.YAML == "" {
				continue
			}
			// Every snippet is a policy rule as the user would paste it
			// into their file (whose objects it may name).
			objs, err := (&policy.Policy{Objects: pol.Objects}).Marshal()
			require.NoError(t, err)
			_, err = policy.Parse("advice.yaml", []byte(strings.Replace(string(objs), "rules: []\n", "rules:\n"+adv.YAML, 1)))
			assert.NoError(t, err, "%s: advice YAML parses:\n%s", a.ID, adv.YAML)
		}
	}
	return rep
}

func levels(rep *review.Report) map[string]review.Level {
	out := map[string]review.Level{}
	for _, a := range rep.Answers {
		out[a.ID] = a.Level
	}
	return out
}

func answer(t *testing.T, rep *review.Report, id string) review.Answer {
	t.Helper()
	for _, a := range rep.Answers {
		if a.ID == id {
			return a
		}
	}
	t.Fatalf("no answer %q", id)
	return review.Answer{}
}

// TestCataloguePolicies reviews the catalogue's policies and checks the
// grade of each answer against what each policy is known to do.
func TestCataloguePolicies(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a review per policy")
	}
	const ok, warn, problem = review.OK, review.Warn, review.Problem
	tests := []struct {
		file  string
		want  map[string]review.Level
		level review.Level
		says  map[string]string
	}{
		{"bypass-gateways-from-endpoints.yaml", map[string]review.Level{"dtls": ok, "tls": ok, "failover": ok, "over-bypass": ok, "regional": ok, "lint": ok}, ok, nil},
		{"bypass-whole-range-any-source.yaml", map[string]review.Level{"dtls": ok, "tls": ok, "failover": ok, "over-bypass": warn, "lint": ok}, warn,
			map[string]string{"over-bypass": "a host beside the gateways (203.0.113.50"}},
		{"bypass-sni-wildcard.yaml", map[string]review.Level{"tls": ok, "failover": ok, "over-bypass": problem, "regional": warn}, problem,
			map[string]string{"regional": "if the tenant is moved to a regional gateway name"}},
		{"sni-and-ip.yaml", map[string]review.Level{"dtls": warn, "tls": ok, "failover": ok, "over-bypass": warn, "lint": ok}, warn,
			map[string]string{"dtls": `works over TLS only: UDP/443 to gateway-acme.sse.test denied by rule "block-quic"`}},
		{"sni-only.yaml", map[string]review.Level{"dtls": warn, "tls": ok, "over-bypass": problem}, problem,
			map[string]string{"over-bypass": "spoofed SNI gateway-acme.sse.test to the origin 192.0.2.10:443"}},
		{"decrypt-all.yaml", map[string]review.Level{"dtls": problem, "tls": problem, "failover": problem, "over-bypass": ok}, problem,
			map[string]string{"tls": "client-certificate-required on firewall-gateway"}},
		{"decrypt-all-cc-learn.yaml", map[string]review.Level{"dtls": warn, "tls": warn}, warn,
			map[string]string{"tls": "learned a decryption exclusion"}},
		{"bypass-primary-only.yaml", map[string]review.Level{"dtls": ok, "tls": ok, "failover": problem, "over-bypass": problem}, problem,
			map[string]string{"failover": "did not come up on the backup gateway-backup-acme.sse.test"}},
		{"bypass-fqdn.yaml", map[string]review.Level{"fqdn-drift": problem, "over-bypass": problem}, problem,
			map[string]string{"fqdn-drift": "FQDN drift: "}},
		{"allow-all.yaml", map[string]review.Level{"dtls": ok, "tls": ok, "failover": ok, "over-bypass": ok, "regional": ok, "lint": ok}, ok, nil},
	}
	set := pkiSet(t)
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			rep := reviewFile(t, set, tt.file, harness.ClientSpec{})
			got := levels(rep)
			for id, l := range tt.want {
				assert.Equal(t, l.String(), got[id].String(), "%s: %s", id, answer(t, rep, id).Summary)
			}
			assert.Equal(t, tt.level, rep.Level())
			for id, s := range tt.says {
				assert.Contains(t, answer(t, rep, id).Summary, s)
			}
			_, hasFQDN := got["fqdn-drift"]
			assert.Equal(t, tt.file == "bypass-fqdn.yaml", hasFQDN, "the FQDN question is asked of FQDN bypasses only")
		})
	}
}

// TestAdviceFixes applies the advice of a failing policy's answers and
// reviews the result: it no longer fails.
func TestAdviceFixes(t *testing.T) {
	if testing.Short() {
		t.Skip("runs two reviews")
	}
	set := pkiSet(t)
	pol, err := policy.Load("../scenarios/policies/decrypt-all.yaml")
	require.NoError(t, err)
	rep := reviewPolicy(t, set, pol, harness.ClientSpec{})
	tls := answer(t, rep, "tls")
	require.Equal(t, review.Problem, tls.Level)
	require.Len(t, tls.Advice, 1)
	assert.Contains(t, tls.Advice[0].Say, `add this rule before rule "decrypt-all" (line 9)`)
	fixed, err := policy.Parse("fixed.yaml", []byte("rules:\n"+tls.Advice[0].YAML+
		"  - { name: block-quic, match: { proto: udp, port: [443] }, action: block }\n  - { name: decrypt-all, match: { proto: tcp, port: [443] }, action: decrypt }\n"))
	require.NoError(t, err)
	rep = reviewPolicy(t, set, fixed, harness.ClientSpec{})
	got := levels(rep)
	assert.Equal(t, review.OK, got["tls"], answer(t, rep, "tls").Summary)
	assert.Equal(t, review.OK, got["failover"], answer(t, rep, "failover").Summary)
	assert.Equal(t, review.Warn, got["dtls"], "UDP/443 is still blocked: TLS only")
}

// TestLintAnswer: shadowed rules, UDP decryption and a bypass for the
// gateways that matches nothing the tunnel sends are warnings with advice.
func TestLintAnswer(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a review")
	}
	pol, err := policy.Parse("lint.yaml", []byte(`rules:
  - name: dtls-by-name
    match: { proto: udp, sni: [gateway-acme.sse.test] }
    action: allow
  - name: decrypt-quic
    match: { proto: udp, port: [443] }
    action: decrypt
  - name: no-decrypt-sse
    match: { proto: tcp, port: [443], dst: [203.0.113.0/24] }
    action: no-decrypt
  - name: no-decrypt-primary
    match: { proto: tcp, port: [443], dst: [203.0.113.8/30] }
    action: no-decrypt
  - name: decrypt-rest
    match: { proto: tcp, port: [443] }
    action: decrypt
`))
	require.NoError(t, err)
	rep := reviewPolicy(t, pkiSet(t), pol, harness.ClientSpec{})
	lint := answer(t, rep, "lint")
	require.Equal(t, review.Warn, lint.Level)
	all := strings.Join(lint.Details, "\n")
	assert.Contains(t, all, `rule "decrypt-quic" (line 5) decrypts UDP`)
	assert.Contains(t, all, `rule "no-decrypt-primary" (line 11) is never reached: rule "no-decrypt-sse" (line 8) above it`)
	assert.Contains(t, all, `rule "dtls-by-name" (line 2) names the gateways but matches nothing the tunnel sends: it names servers (sni) on UDP`)
	assert.Len(t, lint.Advice, 3)
	// The DTLS tunnel passes, undecrypted, on the UDP decrypt rule.
	assert.Equal(t, review.OK, answer(t, rep, "dtls").Level, answer(t, rep, "dtls").Summary)
	assert.Contains(t, answer(t, rep, "dtls").Summary, `carried by rule "decrypt-quic" (line 5)`)
}

// TestClientModes: a client set to one transport is not asked about the
// other, and a failing DTLS-only tunnel is a problem, not a warning.
func TestClientModes(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a review")
	}
	rep := reviewFile(t, pkiSet(t), "sni-and-ip.yaml", harness.ClientSpec{Transport: client.TransportDTLS})
	assert.Equal(t, review.OK, answer(t, rep, "tls").Level)
	assert.Contains(t, answer(t, rep, "tls").Summary, "not asked")
	assert.Equal(t, review.Problem, answer(t, rep, "dtls").Level)
}

func TestReportText(t *testing.T) {
	rep := &review.Report{Source: "p.yaml", Rules: 2, Client: "transport auto", Took: 1500 * time.Millisecond, Answers: []review.Answer{
		{ID: "dtls", Topic: "Tunnel over DTLS (UDP/443)", Level: review.Warn, Summary: "works over TLS only", Details: []string{"the firewall logged x"},
			Advice: []review.Advice{{Say: "Add", YAML: "  - name: a\n    action: allow\n"}}},
		{ID: "tls", Topic: "Tunnel over TLS (TCP/443)", Level: review.OK, Summary: "survives"},
	}}
	var b strings.Builder
	require.NoError(t, rep.Write(&b))
	assert.Equal(t, `WARN     Tunnel over DTLS (UDP/443)
         works over TLS only
         - the firewall logged x
         Fix: Add:
               - name: a
                 action: allow

OK       Tunnel over TLS (TCP/443)
         survives

WARN: 1 OK, 1 warning(s), 0 problem(s) in 2 answers (1.5s). The tunnel works; apply the fixes above to make it work as it should.
`, b.String())
	assert.Equal(t, review.Warn, rep.Level())
	assert.Equal(t, "Reviewing p.yaml (2 rules) against the tunnel of an endpoint client (transport auto).", rep.Heading())
}

func TestRunRefusesBadInput(t *testing.T) {
	_, err := review.Run(context.Background(), review.Input{}, review.Options{})
	assert.ErrorContains(t, err, "no policy")
	_, err = review.Run(context.Background(), review.Input{Policy: &policy.Policy{Rules: []policy.Rule{{Name: "default", Action: policy.ActionAllow}}}}, review.Options{})
	assert.ErrorContains(t, err, "reserved")
}
