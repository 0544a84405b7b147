package netsetup_test

import (
	"context"
	"log"
	"net/netip"

	"github.com/pinwall/pinwall/netsetup"
)

// The firewall container of the container topology: routes to the gateway
// and origin ranges through their containers, TCP/443 and UDP/443 from the
// LAN intercepted to local port 8443, and the LAN's other traffic
// source-NATed. It runs with --cap-add NET_ADMIN --sysctl
// net.ipv4.ip_forward=1.
func ExampleApply() {
	undo, err := netsetup.Apply(context.Background(), netsetup.Config{
		Routes: []netsetup.Route{
			{Dst: netip.MustParsePrefix("203.0.113.0/24"), Via: netip.MustParseAddr("198.51.100.20")},
			{Dst: netip.MustParsePrefix("192.0.2.0/24"), Via: netip.MustParseAddr("198.51.100.30")},
		},
		Forward: true,
		Intercept: &netsetup.Intercept{
			LAN:      netip.MustParsePrefix("10.10.10.0/24"),
			TCPPorts: []uint16{443}, TCPTo: 8443,
			UDPPorts: []uint16{443}, UDPTo: 8443,
			Masquerade: netip.MustParsePrefix("10.10.10.0/24"),
		},
	})
	if err != nil {
		log.Fatal(err) // netsetup: add route ...: operation not permitted (does the container have NET_ADMIN?)
	}
	defer undo()
	// ... mitm.ListenTransparentTCP(ctx, ":8443"), mitm.ListenTransparentUDP(ctx, ":8443"),
	// then (*mitm.Firewall).ServeTransparent and ServeUDPTransparent.
}
