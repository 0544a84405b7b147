package reports_test

import (
	"fmt"

	"github.com/pinwall/pinwall/failure"
	"github.com/pinwall/pinwall/reports"
	"github.com/pinwall/pinwall/scenarios"
)

func ExampleVerdictTable() {
	results := []scenarios.Result{
		{ID: "decrypt-pinned", Variant: "without-fix/fail-close", Role: scenarios.WithoutFix, Verdict: scenarios.Pass,
			Observed: scenarios.Observed{Tunnel: scenarios.TunnelObserved{State: "down"}, Flows: scenarios.FlowsObserved{Attempted: 6},
				Failure: &scenarios.FailureObserved{Leg: failure.LegClientFirewall, Cause: failure.CausePinMismatch}}},
		{ID: "decrypt-pinned", Variant: "with-fix", Role: scenarios.WithFix, Verdict: scenarios.Pass,
			Observed: scenarios.Observed{Tunnel: scenarios.TunnelObserved{State: "up", Transport: "tls"},
				Flows: scenarios.FlowsObserved{Attempted: 6, Completed: 6, Verified: 6}}},
	}
	fmt.Print(reports.VerdictTable(results))
	passed, total := reports.Summary(results)
	fmt.Printf("%d of %d runs as expected\n", passed, total)
	// Output:
	// SCENARIO        VARIANT                 OUTCOME               LEG / CAUSE                     EXPECTED?
	// decrypt-pinned  without-fix/fail-close  down, 0/6 verified    client-firewall / pin-mismatch  yes
	// decrypt-pinned  with-fix                up tls, 6/6 verified  -                               yes
	// 2 of 2 runs as expected
}
