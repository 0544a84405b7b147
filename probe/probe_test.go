package probe_test

import (
	"context"
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/pinwall/pinwall/capture"
	"github.com/pinwall/pinwall/mitm/policy"
	"github.com/pinwall/pinwall/probe"
	"github.com/pinwall/pinwall/probe/probetest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func runField(t *testing.T, pol *policy.Policy, opts probetest.Options) (*probe.Result, *probetest.Field) {
	t.Helper()
	ctx := context.Background()
	f, err := probetest.Start(ctx, pol, opts)
	require.NoError(t, err)
	t.Cleanup(func() { f.Close() })
	res, err := probe.Run(ctx, probe.Config{Bundle: f.Bundle, Identity: f.Identity, Stack: f.Laptop(), Label: "test", StepTimeout: 2 * time.Second, Rate: 50})
	require.NoError(t, err)
	return res, f
}

// TestProbeThroughProxy sends the TCP attempts and the TLS tunnel through
// the firewall's explicit proxy (CONNECT), as --proxy does.
func TestProbeThroughProxy(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the whole probe")
	}
	pol, err := policy.Load("../scenarios/policies/udp-blocked.yaml")
	require.NoError(t, err)
	ctx := context.Background()
	f, err := probetest.Start(ctx, pol, probetest.Options{NoDecoy: true})
	require.NoError(t, err)
	t.Cleanup(func() { f.Close() })
	proxy := &url.URL{Scheme: "http", Host: f.Topology.Firewall.ProxyAddr.String()}
	rec := capture.New(capture.Config{})
	res, err := probe.Run(ctx, probe.Config{Bundle: f.Bundle, Identity: f.Identity, Stack: f.Laptop(), Proxy: proxy, StepTimeout: 2 * time.Second, Rate: 50, Capture: rec})
	require.NoError(t, err)
	require.NoError(t, probe.Unreachable(res))
	assert.Equal(t, proxy.Redacted(), res.Proxy)
	for _, a := range res.Observed.TLS {
		assert.Equal(t, proxy.Redacted(), a.Via, a.Key)
	}
	assert.True(t, res.Observed.TLS[0].Passed(), "%+v", res.Observed.TLS[0])
	tun := res.Observed.Tunnel
	require.True(t, tun.Up, tun.Error)
	assert.Equal(t, "tls", string(tun.Transport), "UDP/443 is blocked: the tunnel falls back to TLS, through the proxy")
	assert.Equal(t, proxy.Redacted(), tun.Via)
	assert.Equal(t, len(tun.Flows), tun.Verified())
	// The capture records the connections to the proxy (the CONNECTs and
	// the TLS inside them), with the secrets of the sessions inside.
	assert.Positive(t, rec.Packets())
	assert.Positive(t, rec.KeyLog().Lines())
}
