// Package reports writes pinwall's evidence bundle: what a set of scenario
// runs showed, in forms that machines, auditors and people can each use.
//
// Write takes the scenarios and the scenarios.Result of every run (one per
// scenario × variant × case) and writes, into one directory:
//
//	evidence.json          every Result and the three answers, versioned
//	                       ("pinwall.evidence/v2"), with Meta
//	evidence.schema.json   the JSON Schema of evidence.json
//	report.md, report.html what the report is (real vs simulated, limits,
//	                       what a reader may conclude), the audit frame,
//	                       reproducibility, the control mapping and the
//	                       recommended fix (frame.go); then
//	                       the three questions answered from this run's data,
//	                       the verdict table, and per scenario its topology,
//	                       firewall and gateway logs side by side, the handshake
//	                       with the failing step marked, the without/with
//	                       comparison, checks and findings
//	summary.md, .html      one page for a customer's network team (summary.go):
//	                       plain answers, the fix as PAN-OS set commands and
//	                       FortiOS CLI (vendorfix.go), for Meta.Gateways
//	junit.xml              one testcase per run, for CI, with the observed
//	                       outcome as properties (junit_observed.go)
//	inputs/, checks/       the scenario, policy, gateways and controls files,
//	                       and `pinwall check` of each policy (Meta.Checks)
//	logs/README.md         says the vendor-format logs are generated
//	logs/<run>/…           the firewall log in each vendor format (fwlog), the
//	                       gateway log and the client's history
//	manifest.sha256        the SHA-256 of every other file, for sha256sum -c
//
// Data flows one way: Results → derived facts (facts.go: which firewall
// sessions carried the tunnel, which went direct, what each gateway's
// sessions became) → the answers (answers.go), the pictures (topology.go,
// sequence.go) and a view model (view.go) → text/template for Markdown and
// html/template for HTML (templates/). Nothing is computed in the templates.
//
// The HTML report is self-contained — inline CSS and inline SVG, no scripts,
// no external references — and prints on white, A4 landscape: every
// address, port and time in one piece (a nowrap span), each run's summary
// beside its handshake, and the raw log rows and passing checks in closed
// <details> that print only when opened (the catalogue prints in under 30
// pages). Gateway events say who made their connection: behind a
// decrypting firewall, a tunnel-open may be the firewall's own handshake. VerdictTable and Summary give
// the CLI the same verdicts as plain text.
package reports
