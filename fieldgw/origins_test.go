package fieldgw

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pinwall/pinwall/client"
	"github.com/pinwall/pinwall/hostnet"
	"github.com/pinwall/pinwall/probe"
	"github.com/pinwall/pinwall/resolve"
)

func TestParseOrigin(t *testing.T) {
	o, err := ParseOrigin("Intranet.Example.test.=192.0.2.10:8443")
	require.NoError(t, err)
	assert.Equal(t, Origin{Name: "intranet.example.test", Addr: netip.MustParseAddrPort("192.0.2.10:8443")}, o)
	for _, tc := range []struct{ in, want string }{
		{"intranet.example.test", "want NAME=IP:PORT"},
		{"intranet.example.test=intranet:443", "the gateway resolves no name"},
		{"intranet.example.test=192.0.2.10", "not IP:PORT"},
		{"bad_name=192.0.2.10:443", "not a host name"},
		{OriginName + "=192.0.2.10:443", "built-in origin"},
		{"x.test=0.0.0.0:443", "want an IP address and a port"},
		{"x.test=192.0.2.10:0", "want an IP address and a port"},
	} {
		_, err := ParseOrigin(tc.in)
		require.Error(t, err, tc.in)
		assert.Contains(t, err.Error(), tc.want, tc.in)
	}
}

// TestOriginsAllowed runs the field gateway on loopback with one origin
// allowed (an HTTP server on loopback) and a pinwall client with a
// bundle's identity: a flow to the allowed name reaches it; a flow to
// another port of the same address, to its address by another name, or to
// anything else is refused; without Origins the same flow is refused.
func TestOriginsAllowed(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	other, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer other.Close()
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "intranet") }), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	allowed := netip.MustParseAddrPort(ln.Addr().String())
	otherPort := netip.MustParseAddrPort(other.Addr().String())

	for _, tc := range []struct {
		name    string
		origins []Origin
		reach   bool
	}{
		{"allowed", []Origin{{Name: "intranet.example.test", Addr: allowed}}, true},
		{"off by default", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hc, closeAll := fieldClient(t, tc.origins, allowed.Port(), otherPort.Port(), 80)
			defer closeAll()
			get := func(target string) (string, error) {
				resp, err := hc.Get("http://" + target + "/")
				if err != nil {
					return "", err
				}
				defer resp.Body.Close()
				b, err := io.ReadAll(resp.Body)
				if resp.StatusCode != http.StatusOK {
					return "", fmt.Errorf("%s: %s", resp.Status, b)
				}
				return string(b), err
			}
			body, err := get(fmt.Sprintf("intranet.example.test:%d", allowed.Port()))
			if tc.reach {
				require.NoError(t, err)
				assert.Equal(t, "intranet", body)
			} else {
				assert.Error(t, err)
			}
			_, err = get(fmt.Sprintf("intranet.example.test:%d", otherPort.Port()))
			require.Error(t, err, "another port of the allowed address")
			assert.Contains(t, err.Error(), "on leg gateway-origin", "the gateway refused it")
			if tc.reach {
				assert.Contains(t, err.Error(), "not one of the gateway's built-in test origins")
			}
			_, err = get(otherPort.String())
			require.Error(t, err, "another address")
			assert.Contains(t, err.Error(), "not one of the gateway's built-in test origins")
			_, err = get("elsewhere.example.test:80")
			assert.Error(t, err, "a name the gateway was not given")
		})
	}
}

// fieldClient starts a field gateway on a loopback port with origins and a
// client with its bundle's identity, steering ports into the tunnel.
func fieldClient(t *testing.T, origins []Origin, ports ...uint16) (*http.Client, func()) {
	t.Helper()
	st, err := LoadState(t.TempDir(), "gw.test", "control.gw.test")
	require.NoError(t, err)
	port := freePort(t)
	ctx, cancel := context.WithCancel(context.Background())
	listen := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port)
	s, err := Start(ctx, Config{State: st, Primary: Listener{Name: "gw.test", Stack: hostnet.OS{}, Listen: listen}, Origins: origins})
	require.NoError(t, err)
	b, err := s.IssueBundle()
	require.NoError(t, err)
	data, err := b.Marshal()
	require.NoError(t, err)
	_, id, err := probe.ParseBundle(data, time.Now())
	require.NoError(t, err)
	zone, err := resolve.NewZone(resolve.Record{Name: "gw.test", Addrs: []netip.Addr{listen.Addr()}})
	require.NoError(t, err)
	c, err := client.New(client.Config{Name: "t", Tenant: "t", Gateways: []string{"gw.test"}, Port: port, Transport: client.TransportTLS,
		Pins: id.Pins, DeviceCert: id.Device, FailMode: client.FailClose, Stack: hostnet.OS{}, Resolver: zone,
		Steering: client.Steering{Ports: ports, ExceptCIDRs: []netip.Prefix{}}})
	require.NoError(t, err)
	require.NoError(t, c.Start(ctx))
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	_, err = c.WaitUp(wctx)
	require.NoError(t, err)
	hc := &http.Client{Transport: &http.Transport{DialContext: c.Dial, DisableKeepAlives: true}, Timeout: 5 * time.Second}
	return hc, func() {
		hc.CloseIdleConnections()
		c.Close()
		s.Close()
		cancel()
	}
}

func freePort(t *testing.T) uint16 {
	t.Helper()
	for range 20 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		ap := netip.MustParseAddrPort(l.Addr().String())
		u, err := net.ListenPacket("udp", ap.String())
		l.Close()
		if err == nil {
			u.Close()
			return ap.Port()
		}
	}
	t.Fatal("no free port")
	return 0
}
