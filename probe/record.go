package probe

import (
	"net/netip"
	"time"

	"github.com/pinwall/pinwall/gateway"
)

// The field gateway's built-in test origins (package fieldgw), reached
// only through its tunnel.
const (
	// OriginName serves package origin's flows on port 80.
	OriginName = "origin.probe.pinwall.test"
	// RecordName serves the gateway's record of a probe's attempts on
	// port 80 (GET /record).
	RecordName = "record.probe.pinwall.test"
)

// Record is the gateway's record of one probe's attempts: the events of
// its device, and every event from the sources its tunnels came from,
// since Since.
type Record struct {
	Run    string    `json:"run"`
	Device string    `json:"device"`
	Since  time.Time `json:"since"`
	// Sources are the addresses the device's tunnels came from as the
	// gateway saw them (after any NAT).
	Sources []netip.Addr    `json:"sources"`
	Events  []gateway.Event `json:"events"`
	// Earlier counts the events in the window left out as an earlier
	// run's (its tunnels, or before its record was made).
	Earlier int `json:"earlier_runs_events,omitempty"`
}
