package harness_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/pinwall/pinwall/client"
	"github.com/pinwall/pinwall/harness"
	"github.com/pinwall/pinwall/tunnel"
)

// TestReconnectionObserved: a hold ends once, after the events, the tunnel
// came up again or every gateway was tried to the end (a DTLS failure the
// client followed with TLS at the same gateway is not the end).
func TestReconnectionObserved(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	gws := []string{"primary", "backup"}
	failed := func(ms int, gw, tr string) client.Transition {
		return client.Transition{Time: at(ms), Event: client.EventAttemptFailed, Gateway: gw, Transport: tunnel.Transport(tr)}
	}
	fallback := func(ms int, gw string) client.Transition {
		return client.Transition{Time: at(ms), Event: client.EventFallback, Gateway: gw}
	}
	for _, tc := range []struct {
		name string
		h    []client.Transition
		want bool
	}{
		{name: "nothing yet", want: false},
		{name: "up before the events only", h: []client.Transition{{Time: at(0), Event: client.EventUp, Gateway: "primary"}}, want: false},
		{name: "up again after the events", h: []client.Transition{{Time: at(0), Event: client.EventUp}, {Time: at(500), Event: client.EventDown}, {Time: at(900), Event: client.EventUp, Gateway: "backup"}}, want: true},
		{name: "primary tried, backup not yet", h: []client.Transition{failed(400, "primary", "dtls"), fallback(400, "primary"), failed(401, "primary", "tls")}, want: false},
		{name: "backup's DTLS failed, its TLS still to come", h: []client.Transition{failed(400, "primary", "dtls"), fallback(400, "primary"), failed(401, "primary", "tls"), failed(700, "backup", "dtls"), fallback(700, "backup")}, want: false},
		{name: "every gateway tried to the end", h: []client.Transition{failed(400, "primary", "dtls"), fallback(400, "primary"), failed(401, "primary", "tls"), failed(700, "backup", "dtls"), fallback(700, "backup"), failed(701, "backup", "tls")}, want: true},
		{name: "failures before the events do not count", h: []client.Transition{failed(100, "primary", "tls"), failed(200, "backup", "tls"), failed(401, "primary", "tls")}, want: false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, harness.ReconnectionObserved(tc.h, at(300), gws))
		})
	}
}
