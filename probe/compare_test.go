package probe_test

import (
	"context"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pinwall/pinwall/mitm/policy"
	"github.com/pinwall/pinwall/probe"
	"github.com/pinwall/pinwall/probe/probetest"
	"github.com/pinwall/pinwall/review"
	"github.com/pinwall/pinwall/scenarios"
)

var update = flag.Bool("update", false, "rewrite the golden files: docs/probe-vs-check.md, testdata/")

// compared are the questions both the probe and check answer.
var compared = []string{probe.AnswerDTLS, probe.AnswerTLS, probe.AnswerFailover, probe.AnswerBypass}

// explained are the disagreements that are limits of what the probe can
// measure, not errors of either side: policy/question → why.
var explained = map[string]string{
	"bypass-fqdn/tls": "FQDN drift: check's client resolved the gateway's name to an address the firewall's FQDN object did not hold yet; " +
		"the probe resolves nothing (it uses the bundle's address, which the object held), so it cannot see drift",
	"bypass-fqdn/dtls": "follows from tls: check keeps a blocked DTLS a PROBLEM when TLS fails too",
	"bypass-fqdn/over-bypass": "check saw its firewall pass another name to the gateway's address on another port (8443) by this rule (it has no port); " +
		"the probe tries port 443 only, and could not tell it anyway: this policy decrypts no other port anywhere, and the probe cannot see which rule passed a session",
	"bypass-gateways-any-source/over-bypass":    fromOneSource,
	"sni-and-ip/over-bypass":                    fromOneSource,
	"sni-strict/over-bypass":                    fromOneSource,
	"bypass-whole-range-any-source/over-bypass": fromOneSource + "; and a host beside the gateways in their /24 is exempted too, an address the probe, which speaks only to the bundle's addresses, never tries",
}

// fromOneSource explains why the probe cannot see a bypass that is wider
// than the endpoints: it runs on one endpoint.
const fromOneSource = "check saw the rule exempt a LAN host without the client (it has no source condition); " +
	"the probe runs on one endpoint and sees the firewall only from that source, so a rule's breadth across sources is check's to judge"

type row struct {
	policy, question string
	check, probe     string
	checkLvl         review.Level
	probeLvl         probe.Level
	keyedOn          string
}

// TestProbeAgreesWithCheck runs the probe behind pinwall's firewall for
// every policy in scenarios/policies/ and compares its conclusions with
// review's (pinwall check --policy) on the same policy; docs/probe-vs-check.md
// is the table (go test ./probe -run TestProbeAgreesWithCheck -update).
func TestProbeAgreesWithCheck(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the probe and check on every policy (about a minute)")
	}
	files, err := filepath.Glob("../scenarios/policies/*.yaml")
	require.NoError(t, err)
	require.NotEmpty(t, files)
	var mu sync.Mutex
	rows := map[string][]row{}
	t.Run("policies", func(t *testing.T) {
		for _, file := range files {
			name := strings.TrimSuffix(filepath.Base(file), ".yaml")
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				pol, err := policy.Load(file)
				require.NoError(t, err)
				ctx := context.Background()
				rep, err := review.Run(ctx, review.Input{Policy: pol, Source: file}, review.Options{})
				require.NoError(t, err)
				res, f := runField(t, pol, probetest.Options{})
				// Nothing but the bundle's addresses: every session the
				// firewall logged of the laptop went to one of them.
				allowed := map[netip.AddrPort]bool{probetest.PrimaryAddr: true, probetest.BackupAddr: true, probetest.DecoyAddr: true}
				if f.Topology.Firewall != nil {
					for _, rec := range f.Topology.Firewall.Records() {
						assert.True(t, allowed[rec.Dst], "the probe sent %s %s to %s, not in the bundle", rec.Proto, rec.Src, rec.Dst)
					}
				}
				var rs []row
				for _, q := range compared {
					ca := answerOf(rep, q)
					pa := res.Answer(q)
					rs = append(rs, row{policy: name, question: q, check: ca.Summary, probe: pa.Summary, checkLvl: ca.Level, probeLvl: pa.Level, keyedOn: pa.KeyedOn})
				}
				mu.Lock()
				rows[name] = rs
				mu.Unlock()
			})
		}
	})
	var names []string
	for n := range rows {
		names = append(names, n)
	}
	slices.Sort(names)
	var b strings.Builder
	b.WriteString(probeVsCheckHead)
	b.WriteString("| policy | question | check | probe | agree |\n|---|---|---|---|---|\n")
	var unexplained []string
	agree, total := 0, 0
	for _, n := range names {
		for _, r := range rows[n] {
			total++
			ok := r.checkLvl.String() == r.probeLvl.String()
			verdict := "yes"
			if ok {
				agree++
			} else if why, has := explained[r.policy+"/"+r.question]; has {
				verdict = "no: " + why
			} else {
				verdict = "**no**"
				unexplained = append(unexplained, fmt.Sprintf("%s/%s: check %s (%s), probe %s (%s)", r.policy, r.question, r.checkLvl, r.check, r.probeLvl, r.probe))
			}
			p := r.probeLvl.String()
			if r.keyedOn != "" {
				p += " (keyed on " + r.keyedOn + ")"
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", r.policy, r.question, r.checkLvl, p, verdict)
		}
	}
	fmt.Fprintf(&b, "\n%d of %d answers agree.\n", agree, total)
	golden(t, "../docs/probe-vs-check.md", b.String())
	assert.Empty(t, unexplained, "the probe and check disagree; one of them is wrong")
}

const probeVsCheckHead = `# The probe against check

Generated by ` + "`go test ./probe -run TestProbeAgreesWithCheck -update`" + `; the test fails when this file is stale.

For every policy in ` + "`scenarios/policies/`" + `, the field probe (` + "`pinwall probe`" + `) ran on the
laptop behind pinwall's firewall (in process: the real firewall, the field gateway of package
fieldgw at the catalogue's gateway addresses, a decoy address outside the gateway ranges), and
` + "`pinwall check --policy`" + ` (package review) reviewed the same policy. The table compares the levels
of the questions both answer: the probe from what it measured on the network, check from its
own simulated runs. Where they disagree, the last column says why.

`

func answerOf(rep *review.Report, id string) review.Answer {
	for _, a := range rep.Answers {
		if a.ID == id {
			return a
		}
	}
	return review.Answer{Level: review.Problem, Summary: "no answer " + id}
}

func golden(t *testing.T, path, got string) {
	t.Helper()
	if *update {
		require.NoError(t, os.WriteFile(path, []byte(got), 0o644))
		return
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err, "missing %s; run go test ./probe -run %s -update", path, t.Name())
	require.Equal(t, string(want), got, "%s is stale; run go test ./probe -run %s -update and review the diff", path, t.Name())
}

// TestFindingIDsInCatalogue pins every finding id the probe can raise to
// the catalogue's set (scenarios.FindingID).
func TestFindingIDsInCatalogue(t *testing.T) {
	cat := scenarios.FindingID("").Choices()
	for _, id := range probe.FindingIDs {
		assert.Contains(t, cat, string(id), "the probe raises %q, which the catalogue does not know", id)
	}
	_ = time.Second
}
