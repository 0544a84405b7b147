package client_test

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/pinwall/pinwall/client"
	"github.com/pinwall/pinwall/failure"
	"github.com/pinwall/pinwall/fault"
	"github.com/pinwall/pinwall/gateway"
	"github.com/pinwall/pinwall/harness"
	"github.com/pinwall/pinwall/harness/harnesstest"
	"github.com/pinwall/pinwall/hostnet"
	"github.com/pinwall/pinwall/tunnel"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func testCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func requireAllVerified(t *testing.T, outs []harness.FlowOutcome) {
	t.Helper()
	for _, o := range outs {
		require.True(t, o.Verified, "flow %d to %s (%s): %v", o.Index, o.Site, o.Size, o.Err)
	}
}

func flowEvents(evs []gateway.Event) []gateway.Event {
	var out []gateway.Event
	for _, e := range evs {
		if e.Event == gateway.EventFlow {
			out = append(out, e)
		}
	}
	return out
}

// TestManyFlowsBothTransports runs 100 concurrent flows from 1 byte to
// 16 MiB over each transport and checks every payload at both ends and
// every destination in the gateway's log.
func TestManyFlowsBothTransports(t *testing.T) {
	sizes := make([]harness.ByteSize, 50)
	base := []harness.ByteSize{1, 100, 1 << 10, 16 << 10, 64 << 10, 256 << 10}
	for i := range sizes {
		sizes[i] = base[i%len(base)]
	}
	sizes[7] = 16 << 20 // flows 7 and 57 carry 16 MiB each way
	sizes[33] = 1 << 20
	for _, tr := range []client.TransportMode{client.TransportTLS, client.TransportDTLS} {
		t.Run(string(tr), func(t *testing.T) {
			topo := harnesstest.Start(t, harness.Spec{Client: harness.ClientSpec{Transport: tr}})
			ctx := testCtx(t, 3*time.Minute)
			st, err := topo.Client.WaitUp(ctx)
			require.NoError(t, err)
			require.EqualValues(t, tr, st.Transport)

			outs := topo.RunWorkload(ctx, harness.Workload{Flows: 100, Concurrency: 100, Sizes: sizes, Retries: -1, Timeout: 2 * time.Minute})
			requireAllVerified(t, outs)
			sum := harness.Summarize(outs)
			assert.Equal(t, 100, sum.Tunnelled)
			for _, o := range outs {
				assert.Equal(t, st.TunnelID, o.TunnelID, "every flow rides the one tunnel")
				assert.Equal(t, 1, o.Attempts)
			}

			require.NoError(t, topo.Settle(ctx))
			flows := flowEvents(topo.GatewayEvents())
			require.Equal(t, 100, len(flows), "the gateway logs every inner flow")
			sites := map[string]int{}
			for _, e := range flows {
				sites[e.Host]++
				assert.Equal(t, "ok", e.Result)
				assert.Equal(t, string(tr), e.Transport)
				assert.Equal(t, "alice@acme.test", e.Device.User)
				assert.Equal(t, "10.10.10.100", netip.MustParseAddrPort(e.Client).Addr().String(), "no firewall: the gateway sees the laptop")
			}
			assert.Len(t, sites, 3, "flows reached several origins: %v", sites)
		})
	}
}

func TestWrongPinIsTypedAndSendsNothing(t *testing.T) {
	for _, tr := range []client.TransportMode{client.TransportTLS, client.TransportDTLS} {
		t.Run(string(tr), func(t *testing.T) {
			topo := harnesstest.Start(t, harness.Spec{Client: harness.ClientSpec{Transport: tr, Pin: harness.PinWrong, TunnelWait: 300 * time.Millisecond}})
			ctx := testCtx(t, 30*time.Second)
			wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			_, err := topo.Client.WaitUp(wctx)
			require.Error(t, err)
			fe, ok := failure.As(err)
			require.True(t, ok, "typed: %v", err)
			assert.Equal(t, failure.CausePinMismatch, fe.Cause)
			// Alone, the client takes an unpinned key for an interceptor's;
			// the gateway's log tells stale pins apart (scenarios.Attribute).
			assert.Equal(t, failure.LegClientFirewall, fe.Leg)
			var pm *failure.PinMismatchError
			require.ErrorAs(t, err, &pm)
			assert.Equal(t, topo.PKI.Internet.Cert.Subject.String(), pm.Issuer)
			assert.Equal(t, "ECDSA P-256", pm.Leaf.KeyType)
			assert.Contains(t, err.Error(), `issued by "`+topo.PKI.Internet.Cert.Subject.String()+`"`)
			require.Len(t, pm.Pins, 1)
			assert.NotEqual(t, pm.Pins[0], pm.Presented[0])

			// What the client saw rides in its history; the gateway saw
			// its own certificate refused.
			var seen *failure.Handshake
			for _, h := range topo.Client.History() {
				if h.Event == client.EventAttemptFailed && h.Cause == failure.CausePinMismatch {
					seen = h.Handshake
				}
			}
			require.NotNil(t, seen)
			require.NotEmpty(t, seen.Chain)
			assert.Equal(t, pm.Presented[0], seen.Chain[0].SPKI)
			assert.False(t, seen.Pinned)
			require.NotNil(t, seen.Device, "the device certificate it holds")
			assert.False(t, seen.CertSent, "it never got as far as sending it")
			var alerts []string
			for _, e := range topo.GatewayEvents() {
				if e.Event == gateway.EventTunnelRefused {
					alerts = append(alerts, e.Alert)
				}
			}
			assert.Contains(t, alerts, "bad_certificate", "the gateway logs the client's alert")

			_, err = topo.Client.Dial(ctx, "tcp", "www.social.test:443")
			assert.Equal(t, failure.CauseTunnelDown, failure.CauseOf(err), "fail-close refuses: %v", err)
			require.ErrorAs(t, err, &pm, "the refusal carries the pin mismatch")
			assert.Empty(t, flowEvents(topo.GatewayEvents()), "no flow reached the gateway")
			assert.Empty(t, topo.Origins.Records(), "no flow reached an origin")
		})
	}
}

func TestNoDeviceCertificateRefusedAndLogged(t *testing.T) {
	tests := []struct {
		tr    client.TransportMode
		mode  harness.DeviceCertMode
		cause failure.Cause
	}{
		{client.TransportTLS, harness.DeviceCertNone, failure.CauseClientCertRequired},
		{client.TransportDTLS, harness.DeviceCertNone, failure.CauseClientCertRequired},
		{client.TransportTLS, harness.DeviceCertForeign, failure.CauseClientCertRejected},
		{client.TransportDTLS, harness.DeviceCertForeign, failure.CauseClientCertRejected},
	}
	for _, tt := range tests {
		t.Run(string(tt.tr)+"/"+string(tt.mode), func(t *testing.T) {
			topo := harnesstest.Start(t, harness.Spec{Client: harness.ClientSpec{Transport: tt.tr, DeviceCert: tt.mode, Gateways: []string{harness.PrimaryGateway}}})
			ctx := testCtx(t, 3*time.Second)
			_, err := topo.Client.WaitUp(ctx)
			require.Error(t, err)
			assert.Equal(t, tt.cause, failure.CauseOf(err), "%v", err)

			var refused []gateway.Event
			for _, e := range topo.GatewayEvents() {
				if e.Event == gateway.EventTunnelRefused {
					refused = append(refused, e)
				}
				assert.NotEqual(t, gateway.EventTunnelOpen, e.Event)
			}
			require.NotEmpty(t, refused)
			e := refused[0]
			assert.Equal(t, string(tt.tr), e.Transport)
			assert.Equal(t, tt.cause, e.Cause)
			assert.Equal(t, "10.10.10.100", netip.MustParseAddrPort(e.Client).Addr().String())
			assert.NotEmpty(t, e.Reason)
			var seen *failure.Handshake
			for _, h := range topo.Client.History() {
				if h.Event == client.EventAttemptFailed {
					seen = h.Handshake
				}
			}
			require.NotNil(t, seen, "the client records what it saw")
			assert.True(t, seen.Pinned, "the gateway's own chain")
			assert.True(t, seen.CertRequested)
			assert.NotEmpty(t, seen.Alert, "the gateway's refusal came as an alert")
			if tt.mode == harness.DeviceCertForeign {
				require.NotNil(t, e.Presented, "the presented certificate is logged")
				assert.Contains(t, e.Presented.Issuer, "Some Other Device CA")
				assert.Contains(t, e.Presented.SPKI, "sha256/")
				assert.True(t, seen.CertSent)
				require.NotNil(t, seen.Device)
				assert.Equal(t, e.Presented.SPKI, seen.Device.SPKI, "the gateway logged the certificate the client sent")
			} else {
				assert.Nil(t, e.Presented)
				assert.False(t, seen.CertSent)
				assert.Nil(t, seen.Device)
			}
		})
	}
}

func TestUDPDroppedFallsBackToTLS(t *testing.T) {
	const fallback = 500 * time.Millisecond
	topo := harnesstest.Start(t, harness.Spec{Client: harness.ClientSpec{UDPLoss: 1, FallbackTimeout: fallback}})
	ctx := testCtx(t, 30*time.Second)
	st, err := topo.Client.WaitUp(ctx)
	require.NoError(t, err)
	assert.Equal(t, tunnel.TransportTLS, st.Transport)
	require.NotNil(t, st.Fallback)
	assert.Equal(t, failure.CauseUDPUnanswered, st.Fallback.Cause)
	// The DTLS attempt gave up at the configured timeout, not before and
	// not much later: the fallback is bounded by configuration.
	assert.GreaterOrEqual(t, st.Fallback.TookMS, fallback.Milliseconds())
	assert.Less(t, st.Fallback.TookMS, (fallback + 5*time.Second).Milliseconds())

	requireAllVerified(t, topo.RunWorkload(ctx, harness.Workload{Flows: 10}))
	// It stays on TLS after a reconnect until the network changes.
	require.NoError(t, topo.ImpairLaptop(fault.Impairment{}), "the UDP path works again")
	require.NoError(t, topo.GatewayByName(harness.PrimaryGateway).Close())
	st = waitTunnel(t, topo.Client, ctx, func(s client.State) bool { return s.Up && s.Gateway == harness.BackupGateway })
	assert.Equal(t, tunnel.TransportTLS, st.Transport, "sticky TLS after fallback")
}

func waitTunnel(t *testing.T, c *client.Client, ctx context.Context, ok func(client.State) bool) client.State {
	t.Helper()
	for {
		st := c.State()
		if ok(st) {
			return st
		}
		select {
		case <-ctx.Done():
			t.Fatalf("tunnel never reached the wanted state; last %+v", st)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func TestPrimaryDownBackupTakesOverNoFlowLost(t *testing.T) {
	for _, tr := range []client.TransportMode{client.TransportTLS, client.TransportDTLS} {
		t.Run(string(tr), func(t *testing.T) {
			topo := harnesstest.Start(t, harness.Spec{Client: harness.ClientSpec{Transport: tr}})
			ctx := testCtx(t, time.Minute)
			st, err := topo.Client.WaitUp(ctx)
			require.NoError(t, err)
			require.Equal(t, harness.PrimaryGateway, st.Gateway)

			done := make(chan []harness.FlowOutcome, 1)
			go func() {
				done <- topo.RunWorkload(ctx, harness.Workload{Flows: 60, Concurrency: 4, Spacing: 10 * time.Millisecond, Sizes: []harness.ByteSize{64 << 10}})
			}()
			// Close the primary once it has carried flows (not after a fixed
			// sleep, which a loaded machine can outlast before the first flow).
			require.Eventually(t, func() bool {
				n := 0
				for _, e := range flowEvents(topo.GatewayEvents()) {
					if e.Gateway == harness.PrimaryGateway {
						n++
					}
				}
				return n >= 2
			}, 30*time.Second, 5*time.Millisecond, "the primary carries flows")
			require.NoError(t, topo.GatewayByName(harness.PrimaryGateway).Close())
			outs := <-done
			requireAllVerified(t, outs)
			require.NoError(t, topo.Settle(ctx))

			st = topo.Client.State()
			assert.Equal(t, harness.BackupGateway, st.Gateway)
			var usedBackup, usedPrimary bool
			for _, e := range flowEvents(topo.GatewayEvents()) {
				usedBackup = usedBackup || e.Gateway == harness.BackupGateway
				usedPrimary = usedPrimary || e.Gateway == harness.PrimaryGateway
			}
			assert.True(t, usedPrimary && usedBackup, "flows went through both gateways")
			var events []string
			for _, h := range topo.Client.History() {
				events = append(events, h.Event)
			}
			assert.Contains(t, events, "failover")
		})
	}
}

// TestUnacknowledgedFlowReopenedOnBackup: a flow opened on a tunnel
// whose gateway has just gone silent (over DTLS the client learns it only
// when keepalives go unanswered) is never acknowledged; the client opens
// it again on the backup's tunnel, transparently — the application does
// not retry and sees its flow verified.
func TestUnacknowledgedFlowReopenedOnBackup(t *testing.T) {
	// Keepalives a second apart: the silence is noticed after 3 s, long
	// after the flows below are opened even on a loaded machine.
	topo := harnesstest.Start(t, harness.Spec{Client: harness.ClientSpec{Transport: client.TransportDTLS, Keepalive: time.Second,
		AttemptsPerGateway: 1, HandshakeTimeout: time.Second, TunnelWait: 10 * time.Second}})
	ctx := testCtx(t, time.Minute)
	st, err := topo.Client.WaitUp(ctx)
	require.NoError(t, err)
	require.Equal(t, harness.PrimaryGateway, st.Gateway)
	// The primary's host goes silent (every datagram to or from it lost),
	// as a crashed or powered-off machine does: nothing tells the client.
	topo.Hosts[harness.PrimaryGateway].Impair(hostnet.Impairment{Loss: 1})
	// At once: the dead tunnel still counts as up.
	outs := topo.RunWorkload(ctx, harness.Workload{Flows: 3, Concurrency: 3, Retries: -1, Sizes: []harness.ByteSize{4 << 10}})
	requireAllVerified(t, outs)
	for _, o := range outs {
		assert.Equal(t, 1, o.Attempts, "the application did not retry")
		assert.Positive(t, o.Reopened, "flow %d was opened again by the client", o.Index)
		assert.Equal(t, harness.BackupGateway, o.Gateway)
	}
	assert.EqualValues(t, 3, topo.Client.State().Reopened)
}

// TestConnTunnelEnded: a flow tells whether the tunnel carrying it ended,
// and why, so a failure seen by the application can be put on the tunnel.
func TestConnTunnelEnded(t *testing.T) {
	topo := harnesstest.Start(t, harness.Spec{Client: harness.ClientSpec{Transport: client.TransportTLS}})
	ctx := testCtx(t, 30*time.Second)
	_, err := topo.Client.WaitUp(ctx)
	require.NoError(t, err)
	nc, err := topo.Client.Dial(ctx, "tcp", "www.social.test:443")
	require.NoError(t, err)
	defer nc.Close()
	conn := nc.(*client.Conn)
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	assert.NoError(t, conn.TunnelEnded(short), "the tunnel lives")
	cancel()
	require.NoError(t, topo.GatewayByName(harness.PrimaryGateway).Close())
	assert.Error(t, conn.TunnelEnded(ctx), "the gateway's end ended the tunnel")
}

func TestFailCloseVersusFailOpen(t *testing.T) {
	tests := []struct {
		mode     client.FailMode
		verified bool
		route    client.Route
	}{
		{client.FailClose, false, ""},
		{client.FailOpen, true, client.RouteDirect},
	}
	for _, tt := range tests {
		t.Run(string(tt.mode), func(t *testing.T) {
			// The pin cannot match: no tunnel will ever come up.
			topo := harnesstest.Start(t, harness.Spec{Client: harness.ClientSpec{Pin: harness.PinWrong, FailMode: tt.mode, TunnelWait: 200 * time.Millisecond}})
			ctx := testCtx(t, 30*time.Second)
			outs := topo.RunWorkload(ctx, harness.Workload{Flows: 6, Retries: -1})
			for _, o := range outs {
				assert.Equal(t, tt.verified, o.Verified, "flow %d: %v", o.Index, o.Err)
				if tt.verified {
					assert.Equal(t, tt.route, o.Route)
				} else {
					assert.Equal(t, failure.CauseTunnelDown, o.Cause)
				}
			}
			if tt.mode == client.FailClose {
				assert.Empty(t, topo.Origins.Records(), "fail-close: nothing leaks direct")
			} else {
				assert.Len(t, topo.Origins.Records(), 6, "fail-open: the origins see the laptop directly")
				for _, r := range topo.Origins.Records() {
					assert.Equal(t, "10.10.10.100", netip.MustParseAddrPort(r.Peer).Addr().String())
				}
			}
			assert.Empty(t, flowEvents(topo.GatewayEvents()))
		})
	}
}

func TestSteeringExceptionsGoDirect(t *testing.T) {
	origins := append([]harness.OriginSpec{{Name: "intranet.corp.test", Addr: netip.MustParseAddr("10.20.0.10")}}, harness.DefaultOrigins...)
	topo := harnesstest.Start(t, harness.Spec{Origins: origins, Client: harness.ClientSpec{ExceptDomains: []string{"*.bank.test"}}})
	ctx := testCtx(t, 30*time.Second)
	_, err := topo.Client.WaitUp(ctx)
	require.NoError(t, err)

	outs := topo.RunWorkload(ctx, harness.Workload{Flows: 6, Sites: []string{"www.bank.test", "intranet.corp.test", "www.social.test"}})
	requireAllVerified(t, outs)
	require.NoError(t, topo.Settle(ctx))
	want := map[string]client.Route{"www.bank.test": client.RouteDirect, "intranet.corp.test": client.RouteDirect, "www.social.test": client.RouteTunnel}
	for _, o := range outs {
		assert.Equal(t, want[o.Site], o.Route, o.Site)
	}
	for _, e := range flowEvents(topo.GatewayEvents()) {
		assert.Equal(t, "www.social.test", e.Host, "only steered flows reach the gateway")
	}
	route, why := topo.Client.Steer("www.bank.test", 443)
	assert.Equal(t, client.RouteDirect, route)
	assert.Equal(t, "exception *.bank.test", why)
	route, why = topo.Client.Steer("www.social.test", 22)
	assert.Equal(t, client.RouteDirect, route)
	assert.Contains(t, why, "not steered")
}

func TestDTLSWithFivePercentLoss(t *testing.T) {
	topo := harnesstest.Start(t, harness.Spec{Client: harness.ClientSpec{Transport: client.TransportDTLS, UDPLoss: 0.05, HandshakeTimeout: 20 * time.Second}})
	ctx := testCtx(t, 3*time.Minute)
	st, err := topo.Client.WaitUp(ctx)
	require.NoError(t, err)
	require.Equal(t, tunnel.TransportDTLS, st.Transport)
	outs := topo.RunWorkload(ctx, harness.Workload{Flows: 30, Sizes: []harness.ByteSize{1, 1 << 10, 32 << 10}, Retries: -1, Timeout: 2 * time.Minute})
	requireAllVerified(t, outs)
	assert.Positive(t, topo.LaptopDatagrams().Dropped, "the path really lost datagrams")
	for _, o := range outs {
		assert.Equal(t, "dtls", o.Transport)
	}
}

var _ = errors.Is
