// Package scenarios is pinwall's catalogue: every simulated behaviour (with
// its source in docs/sources.md, cited in the file's sources field) as a
// YAML file that users can copy and edit, each run without and with the
// bypass rule that fixes it, and checked against a declarative expectation.
//
// A Scenario file holds a base (topology, client, gateway, firewall policy,
// workload, events, expectations) and a list of variants ("without-fix",
// "with-fix" or "baseline", with an optional case label) that override
// parts of it. Run turns each variant into a harness.Plan, runs it with a
// harness.Runner (in-process or in containers), derives what was observed
// (tunnel state and transport, flows, the failing leg and cause, findings)
// and checks every expectation field by field. The Results are what the
// reports package renders as evidence.
//
// Errors in a scenario file name the file, line and field, and list the
// valid choices (see strictyaml).
package scenarios
