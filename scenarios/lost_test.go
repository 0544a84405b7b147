package scenarios

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

// TestLostCheck: "none" allows no lost flow; "in-flight-only" allows the
// flows in flight on a tunnel that went down, and names every lost flow.
func TestLostCheck(t *testing.T) {
	inFlight := LostFlow{Index: 3, Site: "www.social.test", InFlight: true, Why: "in flight on tunnel 1234"}
	other := LostFlow{Index: 5, Site: "app.files.test", Why: "no tunnel took it: tunnel-down on client-gateway"}
	tests := []struct {
		name string
		rule LostRule
		lost []LostFlow
		pass bool
	}{
		{"none lost, none allowed", LostNone, nil, true},
		{"in flight, none allowed", LostNone, []LostFlow{inFlight}, false},
		{"in flight allowed", LostInFlightOnly, []LostFlow{inFlight}, true},
		{"another loss", LostInFlightOnly, []LostFlow{inFlight, other}, false},
	}
	for _, tt := range tests {
		_, _, observed, pass := lostCheck(tt.rule, tt.lost)
		assert.Equal(t, tt.pass, pass, tt.name)
		for _, l := range tt.lost {
			assert.Contains(t, observed, l.Why, "%s: every lost flow is named with why", tt.name)
		}
	}
}
