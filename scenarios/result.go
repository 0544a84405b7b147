package scenarios

import (
	"time"

	"github.com/pinwall/pinwall/client"
	"github.com/pinwall/pinwall/failure"
	"github.com/pinwall/pinwall/gateway"
	"github.com/pinwall/pinwall/harness"
	"github.com/pinwall/pinwall/interceptors"
	"github.com/pinwall/pinwall/mitm/fwlog"
)

// Verdict is a run's result against its expectation.
type Verdict string

// Verdicts.
const (
	Pass Verdict = "pass"
	Fail Verdict = "fail"
	// Error: the run could not be carried out.
	Error Verdict = "error"
	// Incomplete: the run was interrupted.
	Incomplete Verdict = "incomplete"
	// NotRun: the run was not carried out on its firewall (a third-party
	// tool that cannot express the policy, or a row that skips the tool);
	// Error says why. It is neither a pass nor a failure.
	NotRun Verdict = "not-run"
)

// Observed is the summary of what a run showed.
type Observed struct {
	Tunnel   TunnelObserved        `json:"tunnel"`
	Flows    FlowsObserved         `json:"flows"`
	Failure  *FailureObserved      `json:"failure"`
	Attempts *harness.AttemptStats `json:"attempts,omitempty"`
	// RecoveryMS is the time from the first failed tunnel attempt to the
	// first tunnel up (learned exclusions), when both happened.
	RecoveryMS int64 `json:"recovery_ms,omitempty"`
	// UpAfterMS is how long the first tunnel took.
	UpAfterMS int64 `json:"up_after_ms,omitempty"`
}

// TunnelObserved is the tunnel's end state.
type TunnelObserved struct {
	// State is "up" or "down".
	State string `json:"state"`
	// Transport is "dtls" or "tls" while up, empty when down.
	Transport string `json:"transport,omitempty"`
	Gateway   string `json:"gateway,omitempty"`
	Addr      string `json:"addr,omitempty"`
	// Fallback is the cause that sent the client to TLS, if any.
	Fallback string `json:"fallback,omitempty"`
	// Failovers counts moves to a backup gateway.
	Failovers int `json:"failovers,omitempty"`
}

// FlowsObserved counts the workload's flows.
type FlowsObserved struct {
	Attempted int `json:"attempted"`
	Completed int `json:"completed"`
	Verified  int `json:"verified"`
	Tunnelled int `json:"tunnelled"`
	Direct    int `json:"direct"`
	Retried   int `json:"retried"`
	// Reopened counts flows the client opened again, transparently,
	// because a tunnel broke before the gateway acknowledged them.
	Reopened int `json:"reopened,omitempty"`
	// Lost lists every flow not verified and why.
	Lost []LostFlow `json:"lost,omitempty"`
}

// LostFlow is one flow that was not verified, and why.
type LostFlow struct {
	Index    int           `json:"index"`
	Site     string        `json:"site"`
	TunnelID string        `json:"tunnel_id,omitempty"`
	Gateway  string        `json:"gateway,omitempty"`
	Leg      failure.Leg   `json:"leg,omitempty"`
	Cause    failure.Cause `json:"cause,omitempty"`
	// InFlight: in flight on a tunnel when it went down.
	InFlight bool   `json:"in_flight"`
	Why      string `json:"why"`
}

// FailureObserved is the run's failing leg and cause, and who said so.
type FailureObserved struct {
	Leg   failure.Leg   `json:"leg"`
	Cause failure.Cause `json:"cause"`
	// Source says which logs attributed it ("client", "client+firewall", …).
	Source string `json:"source"`
	Detail string `json:"detail,omitempty"`
	// Session is the firewall session that explains the failure, if any.
	Session uint64 `json:"session,omitempty"`
	// Basis is every fact the leg and cause rest on, with its source:
	// the client, the gateway's log, the firewall's log, a flow.
	Basis []failure.Evidence `json:"basis,omitempty"`
}

// Check is one expectation and whether it held.
type Check struct {
	Name     string `json:"name"`
	Expected string `json:"expected"`
	Observed string `json:"observed"`
	Pass     bool   `json:"pass"`
}

// Result is one run's evidence.
type Result struct {
	ID string `json:"id"`
	// Variant is the variant's label ("with-fix/sni-and-ip"); Role its
	// role in comparisons (empty: none).
	Variant  string `json:"variant"`
	Role     Role   `json:"role,omitempty"`
	Title    string `json:"title"`
	Describe string `json:"describe,omitempty"`
	Mode     string `json:"mode"`
	// Firewall is what stood in the firewall's place: pinwall, or a
	// third-party tool; empty in runs without a firewall.
	Firewall string `json:"firewall,omitempty"`
	// ToolSource is the source of the difference from pinwall's firewall
	// this run expected of its tool; NotApplicable lists the checks left
	// out because they read pinwall's firewall log.
	ToolSource    string   `json:"tool_source,omitempty"`
	NotApplicable []string `json:"not_applicable,omitempty"`

	Expected Expect    `json:"expected"`
	Observed Observed  `json:"observed"`
	Checks   []Check   `json:"checks"`
	Findings []Finding `json:"findings"`
	Verdict  Verdict   `json:"verdict"`
	Error    string    `json:"error,omitempty"`

	FirewallLog   []fwlog.Record         `json:"firewall_log"`
	GatewayLog    []gateway.Event        `json:"gateway_log"`
	ClientHistory []client.Transition    `json:"client_history"`
	Flows         []harness.FlowOutcome  `json:"flow_outcomes,omitempty"`
	Probes        []harness.ProbeResult  `json:"probes,omitempty"`
	Events        []harness.AppliedEvent `json:"events,omitempty"`
	Roles         harness.Roles          `json:"roles"`
	Policy        string                 `json:"policy,omitempty"`
	// PolicyFile is the file the firewall's policy came from (the
	// scenario file itself for a policy written inline); PolicyNote is
	// what the policy file says it is (its leading comment).
	PolicyFile string `json:"policy_file,omitempty"`
	PolicyNote string `json:"policy_note,omitempty"`
	// PolicyFindings are what the policy itself does beyond the tunnel,
	// read from its rules (PolicyFindings), whether or not the run met it.
	PolicyFindings []Finding `json:"policy_findings,omitempty"`
	// Interceptor is a third-party firewall's evidence: its generated
	// configuration, logs and version.
	Interceptor *harness.InterceptorEvidence `json:"interceptor,omitempty"`
	ClientError string                       `json:"client_error,omitempty"`

	Started    time.Time `json:"started"`
	DurationMS int64     `json:"duration_ms"`

	// Capture is the run's packet capture, when the runner made one; the
	// evidence bundle writes it as logs/<run>/capture.pcapng and keys.log.
	Capture *harness.Capture `json:"-"`
}

// Key identifies the result: "id/label", with "@tool" when a third-party
// tool stood in the firewall's place.
func (r Result) Key() string {
	k := r.ID + "/" + r.Variant
	if r.Firewall != "" && r.Firewall != string(interceptors.Pinwall) {
		k += "@" + r.Firewall
	}
	return k
}
