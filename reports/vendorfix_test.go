package reports

import (
	"context"
	"net/netip"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pinwall/pinwall/mitm/policy"
	"github.com/pinwall/pinwall/vendorconf"
	"github.com/pinwall/pinwall/vendorconf/fortios"
)

// The FortiOS snippet, read back by pinwall's own FortiOS reader, is the
// recommended fix: the laptop's TLS to every gateway range is not
// decrypted and its UDP/443 is allowed, while a host beside the gateways
// is not exempted.
func TestFortiOSFixRoundTrip(t *testing.T) {
	cli := strings.Join(FortiOSCLI(SimulatedGateways()), "\n") + "\n"
	tr, err := fortios.Translate("fix.conf", []byte(cli), vendorconf.Options{Laptop: netip.MustParseAddr("10.10.10.100"), From: []string{"port2"}, To: []string{"port1"}})
	require.NoError(t, err, cli)
	eng, err := policy.NewEngine(tr.Policy, policy.EngineConfig{})
	require.NoError(t, err)
	decide := func(src, dst string, proto policy.Proto) policy.Decision {
		s := policy.Session{Src: netip.MustParseAddrPort(src + ":50000"), Dst: netip.MustParseAddrPort(dst + ":443"), Proto: proto}
		if proto == policy.ProtoTCP {
			s.SNI, s.HasSNI, s.App = "gateway-acme.sse.test", true, policy.AppSSL
		} else {
			s.App = policy.AppDTLS
		}
		return eng.Decide(context.Background(), s)
	}
	for _, gw := range []string{"203.0.113.9", "203.0.113.41", "203.0.113.100", "203.0.113.137"} {
		assert.Equal(t, policy.ActionNoDecrypt, decide("10.10.10.100", gw, policy.ProtoTCP).Action, "laptop TCP to %s", gw)
		assert.Equal(t, policy.ActionAllow, decide("10.10.10.100", gw, policy.ProtoUDP).Action, "laptop UDP to %s", gw)
	}
	// The reader drops a source that holds the laptop (vendorconf: the
	// translation is read for the laptop), so the guest outside the
	// endpoints' range is checked in the text instead.
	assert.Contains(t, cli, `set srcaddr "sse-endpoints1"`)
	assert.NotEqual(t, policy.ActionNoDecrypt, decide("10.10.10.100", "203.0.113.50", policy.ProtoTCP).Action, "a host beside the gateways")
}

func TestPANOSFixCommands(t *testing.T) {
	cmds := strings.Join(PANOSSetCommands(SimulatedGateways()), "\n")
	for _, want := range []string{
		`set address sse-gw1-1 ip-netmask 203.0.113.8/30 description "gateway-acme.sse.test primary"`,
		`set address sse-gw3 ip-netmask 203.0.113.136/30 description "gateway-backup-acme.sse.test backup"`,
		"set address-group sse-gateways static [ sse-gw1-1 sse-gw1-2 sse-gw2 sse-gw3 ]",
		"set address sse-endpoints1 ip-netmask 10.10.10.96/27",
		"set service sse-tunnel-udp protocol udp port 443",
		"source [ sse-endpoints1 ] destination sse-gateways application any service sse-tunnel-udp action allow",
		"type ssl-forward-proxy action no-decrypt",
		"move rulebase decryption rules sse-no-decrypt top",
	} {
		assert.Contains(t, cmds, want)
	}
	// Without the endpoints' range, a placeholder the reader must fill.
	g := SimulatedGateways()
	g.Endpoints = nil
	assert.Contains(t, strings.Join(PANOSSetCommands(g), "\n"), "source "+endpointsPlaceholder+" destination")
}
