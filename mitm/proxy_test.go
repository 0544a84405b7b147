package mitm_test

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pinwall/pinwall/client"
	"github.com/pinwall/pinwall/gateway"
	"github.com/pinwall/pinwall/harness"
	"github.com/pinwall/pinwall/mitm/fwlog"
	"github.com/pinwall/pinwall/tunnel"
)

// noDecryptGateways passes the gateways' TLS undecrypted (by SNI) and
// decrypts the rest.
const noDecryptGateways = `rules:
  - name: no-decrypt-sse
    match: { sni: [gateway-acme.sse.test, gateway-backup-acme.sse.test] }
    action: no-decrypt
  - name: decrypt-rest
    match: { proto: tcp, port: [443] }
    action: decrypt
`

// The client's upstream proxy: the TLS tunnel goes through the firewall's
// explicit CONNECT proxy rather than being intercepted on its way out.
func TestClientThroughFirewallProxy(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	topo, err := harness.StartInProcess(ctx, harness.Spec{
		Firewall: &harness.FirewallSpec{PolicyYAML: noDecryptGateways},
		Client:   harness.ClientSpec{Transport: client.TransportTLS, UpstreamProxy: "firewall"},
	}, harness.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, topo.Close()) })

	st, err := topo.Client.WaitUp(ctx)
	require.NoError(t, err)
	assert.Equal(t, tunnel.TransportTLS, st.Transport)
	outs := topo.RunWorkload(ctx, harness.Workload{Flows: 5})
	for _, o := range outs {
		require.True(t, o.Verified, "flow %d to %s: %v", o.Index, o.Site, o.Err)
	}
	require.NoError(t, topo.Drain(ctx))

	recs := topo.Firewall.Records()
	require.Len(t, recs, 1, "one session: the tunnel through the proxy, nothing intercepted")
	r := recs[0]
	assert.Equal(t, fwlog.ProtoTCP, r.Proto)
	assert.Equal(t, st.Gateway, r.HostnameHint, "the CONNECT target names the gateway")
	assert.Equal(t, st.Gateway, r.SNI)
	assert.Equal(t, harness.DefaultLaptop, r.Src.Addr(), "the source is the laptop")
	// The firewall resolved the CONNECT target itself: with a rotating
	// name its answer need not be the address the client looked up (and
	// reports in st.Addr).
	assert.True(t, gatewayRange.Contains(r.Dst.Addr()), "destination %s is a gateway address", r.Dst)
	assert.EqualValues(t, 443, r.Dst.Port())
	assert.Equal(t, harness.DefaultFWOutside, r.NATSrc.Addr())
	assert.Equal(t, "no-decrypt-sse", r.Rule)
	assert.Equal(t, fwlog.AppSSL, r.App)
	assert.Equal(t, fwlog.OutcomeNotDecrypted, r.Outcome())
	assert.Positive(t, r.BytesSent)
	assert.Positive(t, r.BytesReceived)

	var opens int
	for _, e := range topo.GatewayEvents() {
		if e.Event == gateway.EventTunnelOpen {
			opens++
			assert.Equal(t, r.NATSrc.Addr(), netip.MustParseAddrPort(e.Client).Addr(), "the gateway sees the firewall's NAT address")
			assert.Equal(t, string(tunnel.TransportTLS), e.Transport)
			assert.Equal(t, st.Gateway, e.Gateway)
		}
	}
	assert.Equal(t, 1, opens)
}

// The explicit proxy refuses what it cannot carry, and says why in HTTP.
func TestProxyRefusals(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	topo, err := harness.StartInProcess(ctx, harness.Spec{Firewall: &harness.FirewallSpec{PolicyYAML: noDecryptGateways}},
		harness.Options{NoClient: true})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, topo.Close()) })
	laptop := topo.Hosts["laptop"]

	tests := []struct {
		name    string
		request string
		status  int
	}{
		{"CONNECT to a name nobody resolves", "CONNECT nosuch.test:443 HTTP/1.1\r\nHost: nosuch.test:443\r\n\r\n", http.StatusBadGateway},
		{"GET", "GET http://www.social.test/ HTTP/1.1\r\nHost: www.social.test\r\n\r\n", http.StatusMethodNotAllowed},
		{"POST", "POST http://www.social.test/ HTTP/1.1\r\nHost: www.social.test\r\nContent-Length: 0\r\n\r\n", http.StatusMethodNotAllowed},
		{"CONNECT without a port", "CONNECT www.social.test HTTP/1.1\r\nHost: www.social.test\r\n\r\n", http.StatusBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := laptop.DialContext(ctx, "tcp", topo.Firewall.ProxyAddr.String())
			require.NoError(t, err)
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			_, err = io.WriteString(c, tt.request)
			require.NoError(t, err)
			br := bufio.NewReader(c)
			resp, err := http.ReadResponse(br, nil)
			require.NoError(t, err)
			resp.Body.Close()
			assert.Equal(t, tt.status, resp.StatusCode)
			if tt.status == http.StatusMethodNotAllowed {
				assert.Equal(t, "CONNECT", resp.Header.Get("Allow"))
			}
			// Then the proxy hangs up.
			_, err = br.ReadByte()
			assert.ErrorIs(t, err, io.EOF)
		})
	}
	assert.Empty(t, topo.Firewall.Records(), "a refused proxy request is not a session")
	assert.Eventually(t, func() bool { return topo.Firewall.ActiveSessions() == 0 }, 10*time.Second, 5*time.Millisecond)
}
