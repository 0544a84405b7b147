package netsetup_test

import (
	"errors"
	"net/netip"
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pinwall/pinwall/netsetup"
)

var (
	pfx  = netip.MustParsePrefix
	addr = netip.MustParseAddr
)

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  netsetup.Config
		want []string // substrings of the error; none means valid
	}{
		{name: "zero config is valid"},
		{name: "gateway pool", cfg: netsetup.Config{
			Addrs: []netsetup.Addr{{Prefix: pfx("203.0.113.10/32")}, {Prefix: pfx("203.0.113.11/32"), Iface: "eth0"}},
		}},
		{name: "firewall", cfg: netsetup.Config{
			Routes:  []netsetup.Route{{Dst: pfx("203.0.113.0/24"), Via: addr("198.51.100.20")}},
			Forward: true,
			Intercept: &netsetup.Intercept{
				InIface: "eth0", TCPPorts: []uint16{443}, TCPTo: 8443, UDPPorts: []uint16{443}, UDPTo: 8443,
				Masquerade: pfx("10.10.10.0/24"),
			},
		}},
		{name: "IPv6 and unmasked", cfg: netsetup.Config{
			Addrs:      []netsetup.Addr{{Prefix: pfx("2001:db8::1/128")}},
			Routes:     []netsetup.Route{{Dst: pfx("203.0.113.7/24"), Via: addr("198.51.100.20")}, {Dst: pfx("192.0.2.0/24")}},
			DefaultVia: addr("2001:db8::1"),
		}, want: []string{
			`Addrs[0]: "2001:db8::1/128" is not an IPv4`,
			"Routes[0]: destination 203.0.113.7/24 has host bits set (want 203.0.113.0/24)",
			`Routes[1]: next hop "invalid IP" is not an IPv4 address`,
			"DefaultVia 2001:db8::1 is not an IPv4 address",
		}},
		{name: "intercept contradictions", cfg: netsetup.Config{
			Intercept: &netsetup.Intercept{TCPPorts: []uint16{443}, UDPPorts: []uint16{0}, Masquerade: pfx("10.10.10.0/24"), Table: 254},
		}, want: []string{
			"set InIface or LAN",
			"TCPPorts [443] need TCPTo",
			"UDPPorts [0] need UDPTo",
			"port 0 cannot be intercepted",
			"Masquerade rewrites forwarded traffic, set Forward",
			"Table 254 is reserved",
		}},
		{name: "intercept nothing", cfg: netsetup.Config{Intercept: &netsetup.Intercept{LAN: pfx("10.10.10.0/24")}},
			want: []string{"nothing to do"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if len(tt.want) == 0 {
				assert.NoError(t, err)
				return
			}
			require.Error(t, err)
			for _, w := range tt.want {
				assert.Contains(t, err.Error(), w)
			}
		})
	}
}

func TestOpError(t *testing.T) {
	err := error(&netsetup.OpError{Op: "add route 203.0.113.0/24 via 198.51.100.20", Err: os.ErrPermission})
	assert.Equal(t, "netsetup: add route 203.0.113.0/24 via 198.51.100.20: permission denied (does the container have NET_ADMIN?)", err.Error())
	assert.ErrorIs(t, err, os.ErrPermission)
	var oe *netsetup.OpError
	require.True(t, errors.As(err, &oe))
	assert.Equal(t, "add route 203.0.113.0/24 via 198.51.100.20", oe.Op)
}
