package scenarios_test

import (
	"context"
	"fmt"

	"github.com/pinwall/pinwall/harness"
	"github.com/pinwall/pinwall/scenarios"
)

// A user's own check: run the catalogue's decrypt-pinned row in process and
// read what was observed. RunOne returns the same Result the CLI reports.
func Example() {
	all, err := scenarios.Catalogue()
	if err != nil {
		panic(err)
	}
	rows, err := scenarios.Find(all, "decrypt-pinned")
	if err != nil {
		panic(err)
	}
	runs, err := rows[0].Runs()
	if err != nil {
		panic(err)
	}
	for _, r := range runs {
		res := scenarios.RunOne(context.Background(), harness.InProcess{}, r)
		fail := "none"
		if f := res.Observed.Failure; f != nil {
			fail = string(f.Leg) + "/" + string(f.Cause)
		}
		tunnel := res.Observed.Tunnel.State // "up" or "down"
		if tr := res.Observed.Tunnel.Transport; tr != "" {
			tunnel += " over " + tr // "dtls" or "tls"; empty when down
		}
		fmt.Println(r.Key(), res.Verdict, "tunnel", tunnel, "failure", fail)
	}
	// Output:
	// decrypt-pinned/without-fix/fail-close pass tunnel down failure client-firewall/pin-mismatch
	// decrypt-pinned/without-fix/fail-open pass tunnel down failure client-firewall/pin-mismatch
	// decrypt-pinned/with-fix pass tunnel up over dtls failure none
}
