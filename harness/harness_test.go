package harness_test

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/stretchr/testify/suite"
	"go.uber.org/goleak"

	"github.com/pinwall/pinwall/client"
	"github.com/pinwall/pinwall/failure"
	"github.com/pinwall/pinwall/fault"
	"github.com/pinwall/pinwall/harness"
	"github.com/pinwall/pinwall/harness/harnesstest"
	"github.com/pinwall/pinwall/interceptors"
	"github.com/pinwall/pinwall/mitm/fwlog"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestByteSize(t *testing.T) {
	tests := []struct {
		in   string
		want harness.ByteSize
		err  bool
	}{
		{"1", 1, false}, {"64KiB", 64 << 10, false}, {"16MiB", 16 << 20, false}, {"1GB", 1e9, false},
		{"2 KiB", 2 << 10, false}, {"-1", 0, true}, {"lots", 0, true}, {"1.5MiB", 0, true},
	}
	for _, tt := range tests {
		var b harness.ByteSize
		err := b.UnmarshalText([]byte(tt.in))
		if tt.err {
			assert.Error(t, err, tt.in)
			continue
		}
		require.NoError(t, err, tt.in)
		assert.Equal(t, tt.want, b, tt.in)
	}
	assert.Equal(t, "16MiB", harness.ByteSize(16<<20).String())
	assert.Equal(t, "1000B", harness.ByteSize(1000).String())
}

func TestSpecDefaultsAndValidation(t *testing.T) {
	s := harness.Spec{}.WithDefaults()
	assert.Equal(t, "acme", s.Tenant)
	assert.Equal(t, []string{harness.PrimaryGateway, harness.BackupGateway}, s.Client.Gateways)
	assert.Equal(t, []netip.Addr{netip.MustParseAddr("203.0.113.9"), netip.MustParseAddr("203.0.113.10")}, s.Gateways[0].Addrs())
	require.NoError(t, s.Validate())

	tests := map[string]harness.Spec{
		"laptop outside LAN": {Laptop: netip.MustParseAddr("192.168.1.5")},
		"unknown gateway":    {Client: harness.ClientSpec{Gateways: []string{"nope.test"}}},
		"proxy without fw":   {Client: harness.ClientSpec{UpstreamProxy: "firewall"}},
		"loss out of range":  {Client: harness.ClientSpec{UDPLoss: 2}},
		"extra host outside": {ExtraHosts: []harness.HostSpec{{Name: "x", Addr: netip.MustParseAddr("10.9.9.9")}}},
	}
	for name, spec := range tests {
		assert.Error(t, spec.Validate(), name)
	}
	roles := harness.RolesOf(harness.Spec{Firewall: &harness.FirewallSpec{}}.WithDefaults())
	assert.True(t, roles.IsGateway(netip.MustParseAddr("203.0.113.137")))
	assert.True(t, roles.IsOrigin(netip.MustParseAddr("192.0.2.10")))
	assert.Equal(t, "198.51.100.1", roles.FirewallOut.String())
}

// UserSuite is what a user's own suite looks like: a topology built in
// code with typed options, a workload, the observations, testify.
type UserSuite struct {
	suite.Suite
	topo *harness.Topology
}

func (s *UserSuite) SetupTest() {
	s.topo = harnesstest.New(s.T(),
		harness.WithFirewallPolicy("rules: [{name: block-quic, match: {proto: udp, port: [443]}, action: block}, {name: allow, action: allow}]"),
		harness.WithTransport(client.TransportAuto),
	)
}

func (s *UserSuite) TestTunnelFallsBackAndFirewallSeesOnlyTheGateway() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	flows := s.topo.RunWorkload(ctx, harness.Workload{Flows: 6})
	obs, err := s.topo.Observe(ctx, flows)
	s.Require().NoError(err)
	s.Equal(6, obs.Summary.Verified)
	s.Equal("tls", string(obs.Tunnel.Transport))
	for _, r := range obs.Firewall {
		s.True(obs.Roles.IsGateway(r.Dst.Addr()), "only gateway addresses: %s", r.Dst)
		if r.Proto == fwlog.ProtoUDP {
			s.Equal(fwlog.ActionDeny, r.Action)
		}
	}
}

func TestUserSuite(t *testing.T) { suite.Run(t, new(UserSuite)) }

func TestInProcessRunnerEvents(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	plan := harness.Plan{
		Spec: harness.Spec{Client: harness.ClientSpec{Keepalive: 500 * time.Millisecond, FallbackTimeout: 300 * time.Millisecond}},
		// The applications do not retry: only the client can save a flow.
		Workload: harness.Workload{Flows: 12, Concurrency: 2, Spacing: 30 * time.Millisecond, Retries: -1},
		Events:   []harness.Event{{At: 100 * time.Millisecond, Do: harness.EventGatewayDown}},
	}
	obs, err := harness.InProcess{}.Run(ctx, plan)
	require.NoError(t, err)
	require.Len(t, obs.Events, 1)
	assert.Empty(t, obs.Events[0].Error)
	assert.Equal(t, harness.BackupGateway, obs.Tunnel.Gateway)
	for _, f := range obs.Flows {
		assert.Equal(t, 1, f.Attempts)
		if !f.Verified {
			// The only flows a client cannot save: those the dead gateway
			// had acknowledged, in flight when it died — each explained.
			assert.True(t, f.InFlight, "flow %d lost other than in flight (%s/%s): %s", f.Index, f.Leg, f.Cause, f.Error)
			assert.Contains(t, f.Lost, "in flight on tunnel", "flow %d", f.Index)
		}
	}
	t.Logf("%d of 12 flows verified, %d opened again by the client", obs.Summary.Verified, obs.Tunnel.Reopened)

	bad := harness.Plan{Events: []harness.Event{{Do: harness.EventPolicy}}}
	_, err = harness.InProcess{}.Run(ctx, bad)
	assert.Error(t, err, "a policy event needs a policy and a firewall")
}

func TestFirstUpAndRecovery(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	now := client.State{Up: true, Gateway: "gw2.test", Addr: "203.0.113.11:443", Transport: "tls", TunnelID: "t2", Since: t0.Add(9 * time.Second)}
	h := []client.Transition{
		{Time: t0, Event: client.EventAttemptFailed, Gateway: "gw1.test"},
		{Time: t0.Add(time.Second), Event: client.EventFallback, Gateway: "gw1.test"},
		{Time: t0.Add(2 * time.Second), Event: client.EventUp, Gateway: "gw1.test", Addr: "203.0.113.10:443", Transport: "tls", TunnelID: "t1"},
		{Time: t0.Add(5 * time.Second), Event: client.EventDown, Gateway: "gw1.test"},
		{Time: t0.Add(9 * time.Second), Event: client.EventUp, Gateway: "gw2.test", Addr: "203.0.113.11:443", Transport: "tls", TunnelID: "t2"},
	}
	first := harness.FirstUp(now, h)
	require.NotNil(t, first)
	assert.Equal(t, client.State{Up: true, Gateway: "gw1.test", Addr: "203.0.113.10:443", Transport: "tls", TunnelID: "t1", Since: t0.Add(2 * time.Second)}, *first)
	assert.Equal(t, 2*time.Second, harness.Recovery(h), "first failed attempt to the first up after it")
	assert.Nil(t, harness.FirstUp(client.State{}, h[:2]), "never up")
	assert.Zero(t, harness.Recovery(h[2:]), "no failed attempt")
}

// TestTopologyLifecycle: StartInProcess's context bounds the start only;
// Close is idempotent.
func TestTopologyLifecycle(t *testing.T) {
	t.Run("the components outlive the start context", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		topo, err := harness.StartInProcess(ctx, harness.Spec{}, harness.Options{})
		cancel()
		require.NoError(t, err)
		defer topo.Close()
		wctx, wcancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer wcancel()
		_, err = topo.Client.WaitUp(wctx)
		require.NoError(t, err, "the tunnel comes up after the start context ended")
		outs := topo.RunWorkload(wctx, harness.Workload{Flows: 2})
		for _, o := range outs {
			require.True(t, o.Verified, "flow %d: %v", o.Index, o.Err)
		}
		require.NoError(t, topo.Close())
		require.NoError(t, topo.Close())
	})
	t.Run("a start context already done", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		topo, err := harness.StartInProcess(ctx, harness.Spec{}, harness.Options{})
		require.ErrorIs(t, err, context.Canceled)
		require.Nil(t, topo)
	})
}

// recordFunc is a fwlog.Logger calling a function.
type recordFunc func(fwlog.Record)

func (f recordFunc) Log(r fwlog.Record) error { f(r); return nil }

// TestSignals: Options.Records sees each firewall record as it is logged
// and Client.Changed wakes a waiter at the client's next change, so a
// caller can decide from signals without polling.
func TestSignals(t *testing.T) {
	denied := make(chan fwlog.Record, 16)
	spec := harness.Spec{
		Firewall: &harness.FirewallSpec{PolicyYAML: "rules:\n  - { name: block-quic, match: { proto: udp, port: [443] }, action: block }\n"},
		Client:   harness.ClientSpec{Transport: client.TransportDTLS, HandshakeTimeout: time.Minute},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	topo, err := harness.StartInProcess(ctx, spec, harness.Options{Records: recordFunc(func(r fwlog.Record) {
		if r.Action == fwlog.ActionDeny {
			denied <- r
		}
	})})
	require.NoError(t, err)
	defer topo.Close()
	changed := topo.Client.Changed()
	select {
	case r := <-denied:
		assert.Equal(t, "block-quic", r.Rule, "the deny is seen while the client still waits out its minute")
		assert.Equal(t, fwlog.ProtoUDP, r.Proto)
	case <-ctx.Done():
		t.Fatal("no deny record")
	}
	select {
	case <-changed:
		t.Fatal("the client has not changed yet: its DTLS attempt is still waiting")
	default:
	}

	// Without the firewall the tunnel comes up: that change closes the channel.
	up, err := harness.StartInProcess(ctx, harness.Spec{Client: harness.ClientSpec{Transport: client.TransportTLS}}, harness.Options{})
	require.NoError(t, err)
	defer up.Close()
	for ch := up.Client.Changed(); !up.Client.State().Up; ch = up.Client.Changed() {
		select {
		case <-ch:
		case <-ctx.Done():
			t.Fatal("no change came")
		}
	}
	assert.Equal(t, client.EventUp, up.Client.History()[len(up.Client.History())-1].Event)
}

// TestPlanEventValidation: unknown or malformed events are errors before
// anything starts, in every runner.
func TestPlanEventValidation(t *testing.T) {
	fw := &harness.FirewallSpec{}
	tests := map[string]struct {
		spec harness.Spec
		ev   harness.Event
		want string
	}{
		"unknown kind":            {harness.Spec{}, harness.Event{Do: "udp-loss"}, `unknown event "udp-loss"`},
		"impair without section":  {harness.Spec{}, harness.Event{Do: harness.EventImpair}, "needs an impair section"},
		"impair out of range":     {harness.Spec{}, harness.Event{Do: harness.EventImpair, Impair: &fault.Impairment{Loss: 2}}, "loss 2 is not within 0..1"},
		"impair another host":     {harness.Spec{}, harness.Event{Do: harness.EventImpair, Target: "origins", Impair: &fault.Impairment{Loss: 0.1}}, "only the laptop"},
		"restart without fw":      {harness.Spec{}, harness.Event{Do: harness.EventFirewallRestart}, "needs a firewall"},
		"pause without fw":        {harness.Spec{}, harness.Event{Do: harness.EventFirewallPause}, "needs a firewall"},
		"policy without policy":   {harness.Spec{Firewall: fw}, harness.Event{Do: harness.EventPolicy}, "needs a policy"},
		"kill an unknown gateway": {harness.Spec{}, harness.Event{Do: harness.EventGatewayDown, Target: "nope.test"}, "not one of the topology's gateways"},
		"impair on a kill":        {harness.Spec{}, harness.Event{Do: harness.EventGatewayDown, Impair: &fault.Impairment{Loss: 0.1}}, "impair belongs to impair events"},
	}
	for name, tt := range tests {
		p := harness.Plan{Spec: tt.spec.WithDefaults(), Events: []harness.Event{tt.ev}}
		err := p.Validate()
		require.Error(t, err, name)
		assert.Contains(t, err.Error(), tt.want, name)
		_, err = harness.InProcess{}.Run(context.Background(), p)
		assert.Error(t, err, "%s: the runner refuses it too", name)
	}
	ok := harness.Plan{Spec: harness.Spec{Firewall: fw}.WithDefaults(), Events: []harness.Event{
		{Do: harness.EventImpair, Impair: &fault.Impairment{Loss: 0.1, Latency: 10 * time.Millisecond, Jitter: time.Millisecond, Reorder: 0.1}},
		{Do: harness.EventFirewallRestart}, {Do: harness.EventGatewayDown, Target: harness.BackupGateway},
	}}
	assert.NoError(t, ok.Validate())
	assert.True(t, ok.Impairs())
}

// TestInProcessImpairEvent: an impair event degrades the laptop's
// datagrams mid-run (loss, latency with jitter, reordering) and clears
// after its duration; the DTLS tunnel carries every flow through it.
func TestInProcessImpairEvent(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	plan := harness.Plan{
		Spec: harness.Spec{Client: harness.ClientSpec{Transport: client.TransportDTLS, HandshakeTimeout: 10 * time.Second}},
		Workload: harness.Workload{Flows: 12, Concurrency: 3, Spacing: 100 * time.Millisecond, Retries: -1,
			Sizes: []harness.ByteSize{16 << 10}, Timeout: time.Minute},
		Events: []harness.Event{{At: 100 * time.Millisecond, Do: harness.EventImpair, Duration: 800 * time.Millisecond,
			Impair: &fault.Impairment{Loss: 0.05, Latency: 20 * time.Millisecond, Jitter: 5 * time.Millisecond, Reorder: 0.2, Seed: 3}}},
	}
	obs, err := harness.InProcess{}.Run(ctx, plan)
	require.NoError(t, err)
	require.Len(t, obs.Events, 1)
	assert.Empty(t, obs.Events[0].Error)
	for _, f := range obs.Flows {
		assert.True(t, f.Verified, "flow %d through the impaired path: %s/%s %s", f.Index, f.Leg, f.Cause, f.Error)
	}
	require.NotNil(t, obs.LaptopDatagrams)
	st := *obs.LaptopDatagrams
	t.Logf("laptop datagrams: %+v", st)
	assert.Positive(t, st.Dropped, "lost")
	assert.Positive(t, st.Delayed, "delayed")
	assert.Positive(t, st.Reordered, "sent ahead of delayed ones")
}

// TestInProcessFirewallRestart: a firewall restart ends every session
// through it, logged, and starts with an empty table; the client notices
// its dead tunnel and comes back; every flow is verified or failed with a
// named leg and cause.
func TestInProcessFirewallRestart(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	plan := harness.Plan{
		Spec: harness.Spec{
			Firewall: &harness.FirewallSpec{PolicyYAML: "rules: [{name: allow-all, action: allow}]"},
			Client:   harness.ClientSpec{Keepalive: 300 * time.Millisecond, FallbackTimeout: 300 * time.Millisecond, HandshakeTimeout: time.Second, TunnelWait: 3 * time.Second},
			// The gateway notices the tunnel the restart orphaned within a second.
			Gateway: harness.GatewayConfigSpec{Keepalive: 300 * time.Millisecond},
		},
		Workload: harness.Workload{Flows: 16, Concurrency: 2, Spacing: 100 * time.Millisecond, Retries: -1, Timeout: 10 * time.Second},
		Events:   []harness.Event{{At: 400 * time.Millisecond, Do: harness.EventFirewallRestart}},
		Hold:     3 * time.Second,
	}
	obs, err := harness.InProcess{}.Run(ctx, plan)
	require.NoError(t, err)
	require.Len(t, obs.Events, 1)
	require.Empty(t, obs.Events[0].Error)
	restart := obs.Events[0].Time
	var before, after int
	for _, r := range obs.Firewall {
		if r.Start.Before(restart) {
			before++
			assert.False(t, r.Time.After(restart.Add(time.Second)), "session %d from before the restart ended with it: %s", r.SessionID, r.Time)
		} else {
			after++
		}
	}
	assert.Positive(t, before, "sessions of the first firewall are logged")
	assert.Positive(t, after, "and of the restarted one")
	var downs int
	for _, h := range obs.History {
		if h.Event == "down" && h.Time.After(restart) {
			downs++
		}
	}
	assert.Positive(t, downs, "the client lost its tunnel with the firewall's session")
	assert.True(t, obs.Tunnel.Up, "and rebuilt it")
	for _, f := range obs.Flows {
		if !f.Verified {
			assert.NotEmpty(t, f.Leg, "flow %d: %s", f.Index, f.Error)
			assert.NotEmpty(t, f.Cause, "flow %d: %s", f.Index, f.Error)
		}
	}
	t.Logf("firewall restart: %d sessions before, %d after; %d of %d flows verified", before, after, obs.Summary.Verified, len(obs.Flows))
}

// TestExplainLost: a lost flow is "in flight" only when its tunnel went
// down after the flow started; other losses say how they failed.
func TestExplainLost(t *testing.T) {
	t0 := time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)
	history := []client.Transition{
		{Time: t0, Event: "up", TunnelID: "aaaaaaaaaaaa", Gateway: harness.PrimaryGateway},
		{Time: t0.Add(2 * time.Second), Event: "down", TunnelID: "aaaaaaaaaaaa", Error: "tunnel: keepalive timeout"},
		{Time: t0.Add(3 * time.Second), Event: "up", TunnelID: "bbbbbbbbbbbb", Gateway: harness.BackupGateway},
	}
	flows := []harness.FlowOutcome{
		{Index: 0, Verified: true, TunnelID: "aaaaaaaaaaaa", Started: t0},
		{Index: 1, TunnelID: "aaaaaaaaaaaa", Gateway: harness.PrimaryGateway, Transport: "dtls", Started: t0.Add(time.Second),
			Leg: failure.LegClientGateway, Cause: failure.CauseConnectionReset},
		{Index: 2, TunnelID: "bbbbbbbbbbbb", Gateway: harness.BackupGateway, Started: t0.Add(4 * time.Second),
			Leg: failure.LegGatewayOrigin, Cause: failure.CauseConnectionRefused},
		{Index: 3, Started: t0.Add(time.Second), Leg: failure.LegClientGateway, Cause: failure.CauseTunnelDown},
		{Index: 4, TunnelID: "aaaaaaaaaaaa", Started: t0.Add(3 * time.Second), Leg: failure.LegClientGateway, Cause: failure.CauseConnectionReset},
	}
	harness.ExplainLost(flows, history)
	assert.Empty(t, flows[0].Lost, "verified")
	assert.True(t, flows[1].InFlight)
	assert.Contains(t, flows[1].Lost, "in flight on tunnel aaaaaaaa to gateway-acme.sse.test over dtls when that tunnel went down 1s after the flow started")
	assert.Contains(t, flows[1].Lost, "keepalive timeout")
	assert.False(t, flows[2].InFlight)
	assert.Contains(t, flows[2].Lost, "failed on tunnel bbbbbbbb to gateway-backup-acme.sse.test: connection-refused on gateway-origin")
	assert.False(t, flows[3].InFlight)
	assert.Equal(t, "no tunnel took it: tunnel-down on client-gateway", flows[3].Lost)
	assert.False(t, flows[4].InFlight, "started after its tunnel went down: not in flight when it did")
}

func TestInProcessRefusesAThirdPartyFirewall(t *testing.T) {
	p := harness.Plan{Spec: harness.Spec{Firewall: &harness.FirewallSpec{Kind: interceptors.Squid}}}
	_, err := harness.InProcess{}.Run(context.Background(), p)
	require.ErrorIs(t, err, harness.ErrThirdPartyInProcess)
	assert.Contains(t, err.Error(), "the squid firewall runs only in containers (--mode containers)")
	bad := harness.Spec{Firewall: &harness.FirewallSpec{Kind: "bluecoat"}}
	assert.ErrorContains(t, bad.Validate(), `firewall kind: "bluecoat" is not one of: pinwall, mitmproxy, squid, sslsplit`)
}
