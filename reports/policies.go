package reports

import (
	"fmt"
	"strings"

	"github.com/pinwall/pinwall/scenarios"
)

// RecommendedPolicy is the catalogue's one recommended fix, the policy
// every with-fix row uses with pinwall's firewall and every report and
// summary points to.
const RecommendedPolicy = "scenarios/policies/bypass-gateways-from-endpoints.yaml"

// RecommendedFixText is the recommended fix in words, as every answer and
// summary gives it.
const RecommendedFixText = "Exempt the gateways by their published addresses exactly — primary and backup — with no-decrypt for TCP/443 " +
	"and allow for UDP/443 (DTLS), from the endpoints' source range only, placed above any QUIC block; decrypt the rest. " +
	"A server name is at most an additional condition, and only where the firewall checks it against the server's certificate"

// policyLines says, for a scenario's runs, which policy each ran and what
// that policy is ("the recommended fix", "too broad: ...") in its file's
// own words, one line per run label and file.
func policyLines(rs []*scenarios.Result) []string {
	var out []string
	seen := map[string]bool{}
	for _, r := range rs {
		if r.PolicyFile == "" {
			continue
		}
		label := variantLabel(*r)
		if r.Firewall != "" && r.Firewall != "pinwall" {
			label += " on " + r.Firewall
		}
		key := label + "\x00" + r.PolicyFile
		if seen[key] {
			continue
		}
		seen[key] = true
		note := r.PolicyNote
		switch {
		case strings.HasSuffix(r.PolicyFile, ".yaml") && strings.Contains(r.PolicyFile, "policies/"):
		default:
			note = "written inline in the scenario file"
		}
		line := fmt.Sprintf("`%s`: `%s`", label, r.PolicyFile)
		if note != "" {
			line += " — " + note
		}
		for _, f := range r.PolicyFindings {
			line += fmt.Sprintf(" Policy finding, %s: `%s` — %s.", f.Severity, f.ID, f.Detail)
		}
		out = append(out, line)
	}
	return out
}
