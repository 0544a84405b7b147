package mitm_test

import (
	"context"
	"crypto/tls"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pinwall/pinwall/client"
	"github.com/pinwall/pinwall/failure"
	"github.com/pinwall/pinwall/gateway"
	"github.com/pinwall/pinwall/harness"
	"github.com/pinwall/pinwall/harness/harnesstest"
	"github.com/pinwall/pinwall/mitm/fwlog"
	"github.com/pinwall/pinwall/tunnel"
)

// Policies of the catalogue rows.
const (
	decryptAll = `rules:
  - name: block-quic
    match: { proto: udp, port: [443] }
    action: block
  - name: decrypt-all
    match: { proto: tcp, port: [443] }
    action: decrypt
`
	udpBlocked = `rules:
  - name: block-quic
    match: { proto: udp, port: [443] }
    action: block
  - name: allow-rest
    action: allow
`
	udpAllowedToGateways = `rules:
  - name: allow-dtls-to-sse
    match: { proto: udp, port: [443], dst: [203.0.113.0/24] }
    action: allow
  - name: block-quic
    match: { proto: udp, port: [443] }
    action: block
  - name: allow-rest
    action: allow
`
	bypassSNIExact = `rules:
  - name: no-decrypt-sse
    match: { sni: [gateway-acme.sse.test, gateway-backup-acme.sse.test] }
    action: no-decrypt
` + decryptRest
	bypassSNIWildcard = `rules:
  - name: no-decrypt-sse
    match: { sni: ["*.sse.test"] }
    action: no-decrypt
` + decryptRest
	bypassIP = `rules:
  - name: allow-dtls-to-sse
    match: { proto: udp, port: [443], dst: [203.0.113.0/24] }
    action: allow
  - name: no-decrypt-sse
    match: { proto: tcp, dst: [203.0.113.0/24] }
    action: no-decrypt
` + decryptRest
	bypassFQDN = `objects:
  fqdn:
    sse-gateway: { fqdn: gateway-acme.sse.test, max-ips: 32, min-refresh: 30s }
rules:
  - name: no-decrypt-sse
    match: { proto: tcp, dst-fqdn: [sse-gateway] }
    action: no-decrypt
` + decryptRest
	spoofSNIOnly = `rules:
  - name: no-decrypt-sse
    match: { sni: [gateway-acme.sse.test] }
    action: no-decrypt
` + decryptRest
	spoofSNIAndIP = `rules:
  - name: no-decrypt-sse
    match: { sni: [gateway-acme.sse.test], dst: [203.0.113.0/24] }
    action: no-decrypt
` + decryptRest
	spoofStrict = `rules:
  - name: no-decrypt-sse
    match: { sni: [gateway-acme.sse.test] }
    action: no-decrypt
    options: { sni-cert-check: strict }
` + decryptRest
	decryptRest = `  - name: block-quic
    match: { proto: udp, port: [443] }
    action: block
  - name: decrypt-rest
    match: { proto: tcp, port: [443] }
    action: decrypt
`
)

func decryptAllWith(clientCert string) string {
	return `rules:
  - name: block-quic
    match: { proto: udp, port: [443] }
    action: block
  - name: decrypt-all
    match: { proto: tcp, port: [443] }
    action: decrypt
    options: { client-cert: ` + clientCert + ` }
`
}

func testCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func withFirewall(policy string, spec harness.Spec) harness.Spec {
	spec.Firewall = &harness.FirewallSpec{PolicyYAML: policy}
	return spec
}

var gatewayRange = netip.MustParsePrefix("203.0.113.0/24")

func records(topo *harness.Topology, keep func(fwlog.Record) bool) []fwlog.Record {
	var out []fwlog.Record
	for _, r := range topo.Firewall.Records() {
		if keep == nil || keep(r) {
			out = append(out, r)
		}
	}
	return out
}

// interceptionFailed reports a client error caused by decryption of its
// tunnel: the pinned client refused the forgery, or the firewall gave up
// first because the gateway demanded a device certificate it could not
// present (and answered the client with a handshake_failure alert).
func interceptionFailed(err error) bool {
	switch failure.CauseOf(err) {
	case failure.CausePinMismatch, failure.CauseHandshakeFailed:
		return true
	}
	return false
}

func toGateway(r fwlog.Record) bool { return gatewayRange.Contains(r.Dst.Addr()) }

func drain(t *testing.T, topo *harness.Topology, ctx context.Context) {
	t.Helper()
	require.NoError(t, topo.Drain(ctx))
}

func requireVerified(t *testing.T, outs []harness.FlowOutcome) {
	t.Helper()
	for _, o := range outs {
		require.True(t, o.Verified, "flow %d to %s: %v", o.Index, o.Site, o.Err)
	}
}

// visibility: no decryption. The firewall sees only the gateway, over UDP
// with app dtls, one session for many flows; the gateway sees every flow.
func TestVisibility(t *testing.T) {
	topo := harnesstest.Start(t, withFirewall("", harness.Spec{}))
	ctx := testCtx(t, time.Minute)
	st, err := topo.Client.WaitUp(ctx)
	require.NoError(t, err)
	require.Equal(t, tunnel.TransportDTLS, st.Transport)
	requireVerified(t, topo.RunWorkload(ctx, harness.Workload{Flows: 30}))
	drain(t, topo, ctx)

	recs := records(topo, nil)
	require.Len(t, recs, 1, "thirty flows, one firewall session")
	r := recs[0]
	assert.Equal(t, fwlog.ProtoUDP, r.Proto)
	assert.Equal(t, fwlog.AppDTLS, r.App)
	assert.Equal(t, "10.10.10.100", r.Src.Addr().String())
	assert.True(t, toGateway(r), "destination %s is a gateway address", r.Dst)
	assert.EqualValues(t, 443, r.Dst.Port())
	assert.Equal(t, "198.51.100.1", r.NATSrc.Addr().String())
	assert.Equal(t, harness.PrimaryGateway, r.SNI)
	assert.Positive(t, r.PacketsSent)
	assert.Equal(t, "datagrams", r.PacketsSource)
	assert.Regexp(t, `^[0-9a-f]{32}$`, r.JA3, "the DTLS ClientHello's JA3")
	assert.Regexp(t, `^d`, r.JA4, "a DTLS JA4 starts with d")
	assert.Positive(t, r.RuleID)

	var hosts []string
	for _, e := range topo.GatewayEvents() {
		if e.Event == gateway.EventFlow {
			hosts = append(hosts, e.Host)
			assert.Equal(t, "198.51.100.1", netip.MustParseAddrPort(e.Client).Addr().String(), "the gateway sees the firewall's NAT address")
		}
	}
	assert.Len(t, hosts, 30)
	for _, o := range harness.DefaultOrigins[:3] {
		assert.Contains(t, hosts, o.Name)
		for _, r := range recs {
			assert.NotEqual(t, o.Addr, r.Dst.Addr(), "no session to any origin IP")
		}
	}
}

// udp-blocked: DTLS fails, the client falls back to TLS; the firewall logs
// a deny then a TCP/443 ssl session naming the gateway.
func TestUDPBlocked(t *testing.T) {
	tests := []struct {
		name      string
		policy    string
		transport tunnel.Transport
	}{
		{"without-fix", udpBlocked, tunnel.TransportTLS},
		{"with-fix", udpAllowedToGateways, tunnel.TransportDTLS},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			topo := harnesstest.Start(t, withFirewall(tt.policy, harness.Spec{Client: harness.ClientSpec{FallbackTimeout: 500 * time.Millisecond}}))
			ctx := testCtx(t, time.Minute)
			st, err := topo.Client.WaitUp(ctx)
			require.NoError(t, err)
			assert.Equal(t, tt.transport, st.Transport)
			requireVerified(t, topo.RunWorkload(ctx, harness.Workload{Flows: 10}))
			drain(t, topo, ctx)
			recs := records(topo, toGateway)
			if tt.transport == tunnel.TransportTLS {
				require.NotNil(t, st.Fallback)
				assert.Equal(t, failure.CauseUDPUnanswered, st.Fallback.Cause)
				require.GreaterOrEqual(t, len(recs), 2)
				deny := recs[0]
				assert.Equal(t, fwlog.ProtoUDP, deny.Proto)
				assert.Equal(t, fwlog.ActionDeny, deny.Action)
				assert.Equal(t, fwlog.EndPolicyDeny, deny.EndReason)
				assert.Equal(t, "block-quic", deny.Rule)
				tcp := records(topo, func(r fwlog.Record) bool { return toGateway(r) && r.Proto == fwlog.ProtoTCP })
				require.Len(t, tcp, 1)
				assert.Equal(t, fwlog.AppSSL, tcp[0].App)
				assert.Equal(t, harness.PrimaryGateway, tcp[0].SNI)
				assert.True(t, tcp[0].Start.After(deny.Start), "the deny comes first")
			} else {
				require.Len(t, recs, 1)
				assert.Equal(t, fwlog.AppDTLS, recs[0].App)
				assert.Equal(t, "allow-dtls-to-sse", recs[0].Rule)
			}
		})
	}
}

// decrypt-pinned: the pinned client aborts at the forged certificate.
func TestDecryptPinned(t *testing.T) {
	tests := []struct {
		name  string
		mode  client.FailMode
		fixed bool
	}{
		{"without-fix/fail-close", client.FailClose, false},
		{"without-fix/fail-open", client.FailOpen, false},
		{"with-fix", client.FailClose, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			policy := decryptAll
			if tt.fixed {
				policy = bypassSNIExact
			}
			spec := withFirewall(policy, harness.Spec{
				Gateway: harness.GatewayConfigSpec{AllowAnonymous: true},
				Client: harness.ClientSpec{Transport: client.TransportTLS, FailMode: tt.mode, TunnelWait: 300 * time.Millisecond,
					Trust: []harness.TrustStore{harness.TrustInternet, harness.TrustEnterprise}},
			})
			topo := harnesstest.Start(t, spec)
			ctx := testCtx(t, time.Minute)
			if tt.fixed {
				_, err := topo.Client.WaitUp(ctx)
				require.NoError(t, err)
				requireVerified(t, topo.RunWorkload(ctx, harness.Workload{Flows: 5}))
				drain(t, topo, ctx)
				tcp := records(topo, toGateway)
				require.NotEmpty(t, tcp)
				assert.Equal(t, fwlog.AppSSL, tcp[0].App)
				assert.Equal(t, fwlog.OutcomeNotDecrypted, tcp[0].Outcome())
				return
			}
			wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			_, err := topo.Client.WaitUp(wctx)
			cancel()
			require.Error(t, err)
			assert.Equal(t, failure.CausePinMismatch, failure.CauseOf(err))
			var pm *failure.PinMismatchError
			require.ErrorAs(t, err, &pm)
			assert.Contains(t, pm.Issuer, "Enterprise", "the client saw the enterprise CA's forgery")

			outs := topo.RunWorkload(ctx, harness.Workload{Flows: 4, Retries: -1})
			drain(t, topo, ctx)
			fails := records(topo, func(r fwlog.Record) bool { return toGateway(r) && r.Proto == fwlog.ProtoTCP })
			require.NotEmpty(t, fails)
			// The client keeps retrying until Drain closes it; the attempt
			// in flight then is cut short by the client itself, not rejected.
			abandoned := 0
			for _, r := range fails {
				require.NotNil(t, r.Decryption)
				assert.Equal(t, fwlog.OutcomeFailed, r.Decryption.Outcome)
				assert.Equal(t, failure.LegClientFirewall, r.Decryption.Leg)
				if r.Decryption.Cause == failure.CauseConnectionReset {
					abandoned++
					assert.Contains(t, []fwlog.EndReason{fwlog.EndTCPFin, fwlog.EndTCPRSTFromClient}, r.EndReason)
					continue
				}
				assert.Equal(t, failure.CauseForgedCertRejected, r.Decryption.Cause)
				assert.Equal(t, fwlog.EndDecryptCertValidation, r.EndReason)
				assert.NotEmpty(t, r.Decryption.ForgedFingerprint)
				assert.NotEmpty(t, r.Decryption.UpstreamFingerprint)
				assert.NotEqual(t, r.Decryption.ForgedFingerprint, r.Decryption.UpstreamFingerprint)
			}
			assert.LessOrEqual(t, abandoned, 1, "only the attempt in flight at shutdown is abandoned")
			assert.Greater(t, len(fails), abandoned, "the forgery was rejected")
			direct := records(topo, func(r fwlog.Record) bool { return !toGateway(r) && r.Proto == fwlog.ProtoTCP })
			if tt.mode == client.FailClose {
				for _, o := range outs {
					assert.Equal(t, failure.CauseTunnelDown, o.Cause)
				}
				assert.Empty(t, direct, "fail-close: nothing leaks direct")
				return
			}
			requireVerified(t, outs)
			require.Len(t, direct, 4, "fail-open: the firewall sees the real destinations")
			for _, r := range direct {
				assert.Equal(t, fwlog.OutcomeDecrypted, r.Decryption.Outcome)
				assert.Contains(t, []fwlog.App{fwlog.AppHTTP2, fwlog.AppWebBrowsing}, r.App)
				assert.True(t, strings.HasSuffix(r.SNI, ".test") && !strings.Contains(r.SNI, "sse"), r.SNI)
			}
		})
	}
}

// decrypt-mtls: a managed laptop (enterprise CA trusted, no pin) and a
// gateway that demands the device certificate, under each vendor
// behaviour for client authentication.
func TestDecryptMTLS(t *testing.T) {
	tests := []struct {
		behaviour string
		up        bool
	}{
		{"block", false},
		{"bypass", true},
		{"learn", true},
	}
	for _, tt := range tests {
		t.Run(tt.behaviour, func(t *testing.T) {
			spec := withFirewall(decryptAllWith(tt.behaviour), harness.Spec{
				Client: harness.ClientSpec{Pin: harness.PinNone, Transport: client.TransportTLS,
					Trust: []harness.TrustStore{harness.TrustInternet, harness.TrustEnterprise}},
			})
			topo := harnesstest.Start(t, spec)
			ctx := testCtx(t, time.Minute)
			wctx, cancel := context.WithTimeout(ctx, 15*time.Second)
			st, err := topo.Client.WaitUp(wctx)
			cancel()
			if tt.up {
				require.NoError(t, err)
				requireVerified(t, topo.RunWorkload(ctx, harness.Workload{Flows: 5}))
			} else {
				require.Error(t, err)
			}
			drain(t, topo, ctx)
			tcp := records(topo, func(r fwlog.Record) bool { return toGateway(r) && r.Proto == fwlog.ProtoTCP })
			require.NotEmpty(t, tcp)
			// Every behaviour starts the same way: the gateway refused the
			// firewall's certificate-less handshake and said why.
			var refusals int
			for _, e := range topo.GatewayEvents() {
				if e.Event == gateway.EventTunnelRefused {
					refusals++
					assert.Equal(t, failure.CauseClientCertRequired, e.Cause)
					assert.Equal(t, "198.51.100.1", netip.MustParseAddrPort(e.Client).Addr().String(), "the refused peer is the firewall")
				}
			}
			assert.Positive(t, refusals)
			first := tcp[0]
			switch tt.behaviour {
			case "block", "learn":
				assert.Equal(t, fwlog.OutcomeFailed, first.Decryption.Outcome)
				assert.Equal(t, failure.LegFirewallGateway, first.Decryption.Leg)
				assert.Equal(t, failure.CauseClientCertRequired, first.Decryption.Cause)
				assert.Equal(t, fwlog.EndDecryptCertValidation, first.EndReason)
			case "bypass":
				assert.Equal(t, fwlog.OutcomeExcluded, first.Decryption.Outcome)
			}
			if tt.behaviour == "learn" {
				last := tcp[len(tcp)-1]
				assert.Equal(t, fwlog.OutcomeExcluded, last.Decryption.Outcome, "later sessions pass undecrypted")
				assert.Contains(t, last.Decryption.Reason, "exclusion cache")
				assert.NotEmpty(t, topo.Firewall.Exclusions())
				assert.Equal(t, st.Addr, last.Dst.String())
			}
			if tt.behaviour == "block" {
				for _, r := range tcp {
					assert.Equal(t, fwlog.OutcomeFailed, r.Decryption.Outcome)
				}
			}
		})
	}
}

// double-decrypt: an insecure client (no pin, no device certificate)
// accepts the interception; the firewall decrypts an opaque multiplexed
// stream and still sees no inner destination.
func TestDoubleDecrypt(t *testing.T) {
	tests := []struct {
		name  string
		fixed bool
	}{{"without-fix", false}, {"with-fix", true}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cs := harness.ClientSpec{Transport: client.TransportTLS, Pin: harness.PinNone, DeviceCert: harness.DeviceCertNone,
				Trust: []harness.TrustStore{harness.TrustInternet, harness.TrustEnterprise}, TunnelWait: 300 * time.Millisecond}
			gw := harness.GatewayConfigSpec{AllowAnonymous: true}
			if tt.fixed {
				cs.Pin, cs.DeviceCert = harness.PinGateway, harness.DeviceCertValid
				gw.AllowAnonymous = false
			}
			topo := harnesstest.Start(t, withFirewall(decryptAll, harness.Spec{Client: cs, Gateway: gw}))
			ctx := testCtx(t, time.Minute)
			wctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			_, err := topo.Client.WaitUp(wctx)
			cancel()
			if tt.fixed {
				require.Error(t, err, "interception refused")
				assert.True(t, interceptionFailed(err), "%v", err)
				drain(t, topo, ctx)
				tcp := records(topo, func(r fwlog.Record) bool { return toGateway(r) && r.Proto == fwlog.ProtoTCP })
				require.NotEmpty(t, tcp)
				assert.Equal(t, fwlog.OutcomeFailed, tcp[0].Decryption.Outcome)
				return
			}
			require.NoError(t, err)
			requireVerified(t, topo.RunWorkload(ctx, harness.Workload{Flows: 10}))
			drain(t, topo, ctx)
			tcp := records(topo, func(r fwlog.Record) bool { return r.Proto == fwlog.ProtoTCP })
			require.Len(t, tcp, 1, "one tunnel session, no inner destination")
			r := tcp[0]
			assert.True(t, toGateway(r))
			assert.Equal(t, fwlog.OutcomeDecrypted, r.Decryption.Outcome)
			assert.Equal(t, fwlog.AppUnknownTCP, r.App, "the multiplexed tunnel is opaque to app-id")
			assert.Positive(t, r.BytesSent)
		})
	}
}

// bypass-sni: exact names work; a one-label wildcard misses a regional name.
func TestBypassSNI(t *testing.T) {
	regional := "gateway-acme.eu.sse.test"
	tests := []struct {
		name     string
		policy   string
		gateways []harness.GatewaySpec
		up       bool
	}{
		{"exact", bypassSNIExact, nil, true},
		{"wildcard-regional-miss", bypassSNIWildcard, []harness.GatewaySpec{
			{Name: regional, Pool: []netip.Prefix{netip.MustParsePrefix("203.0.113.40/32")}},
		}, false},
		{"wildcard-covers-primary", bypassSNIWildcard, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			topo := harnesstest.Start(t, withFirewall(tt.policy, harness.Spec{Gateways: tt.gateways, Client: harness.ClientSpec{TunnelWait: 300 * time.Millisecond}}))
			ctx := testCtx(t, time.Minute)
			wctx, cancel := context.WithTimeout(ctx, 4*time.Second)
			st, err := topo.Client.WaitUp(wctx)
			cancel()
			if tt.up {
				require.NoError(t, err)
				assert.Equal(t, tunnel.TransportTLS, st.Transport, "block-quic drops DTLS: an SNI rule does not cover UDP")
				requireVerified(t, topo.RunWorkload(ctx, harness.Workload{Flows: 5}))
			} else {
				require.Error(t, err)
				assert.True(t, interceptionFailed(err), "%v", err)
			}
			drain(t, topo, ctx)
			tcp := records(topo, func(r fwlog.Record) bool { return toGateway(r) && r.Proto == fwlog.ProtoTCP })
			require.NotEmpty(t, tcp)
			if tt.up {
				assert.Equal(t, "no-decrypt-sse", tcp[0].Rule)
				assert.Equal(t, fwlog.OutcomeNotDecrypted, tcp[0].Decryption.Outcome)
			} else {
				assert.Equal(t, regional, tcp[0].SNI)
				assert.Equal(t, "decrypt-rest", tcp[0].Rule, "the wildcard did not match the regional name")
				assert.Equal(t, fwlog.OutcomeFailed, tcp[0].Decryption.Outcome)
			}
		})
	}
}

// bypass-ip: the gateway ranges, TCP and UDP: DTLS comes up.
func TestBypassIP(t *testing.T) {
	topo := harnesstest.Start(t, withFirewall(bypassIP, harness.Spec{}))
	ctx := testCtx(t, time.Minute)
	st, err := topo.Client.WaitUp(ctx)
	require.NoError(t, err)
	assert.Equal(t, tunnel.TransportDTLS, st.Transport)
	requireVerified(t, topo.RunWorkload(ctx, harness.Workload{Flows: 5}))
	drain(t, topo, ctx)
	recs := records(topo, toGateway)
	require.Len(t, recs, 1)
	assert.Equal(t, "allow-dtls-to-sse", recs[0].Rule)
	assert.Equal(t, fwlog.AppDTLS, recs[0].App)
}

// bypass-fqdn: the gateway name rotates over a pool larger than the FQDN
// object's cap; client and firewall resolve independently, so a measured
// fraction of tunnel attempts land on addresses the object lacks and are
// decrypted. IP ranges fix it.
func TestBypassFQDNFraction(t *testing.T) {
	pool := []harness.GatewaySpec{{Name: harness.PrimaryGateway, Pool: []netip.Prefix{netip.MustParsePrefix("203.0.113.64/26")}, Answer: 8, Rotate: true}}
	tests := []struct {
		name   string
		policy string
	}{{"without-fix", bypassFQDN}, {"with-fix", bypassIP}}
	const attempts = 20
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			topo := harnesstest.Start(t, withFirewall(tt.policy, harness.Spec{Gateways: pool, Client: harness.ClientSpec{Transport: client.TransportTLS}}))
			ctx := testCtx(t, 2*time.Minute)
			// Each attempt is a fresh client: a laptop reconnecting, each time
			// asking its own resolver.
			cfg, err := topo.ClientConfig()
			require.NoError(t, err)
			cfg.AttemptsPerGateway = 1
			decrypted := 0
			for i := 0; i < attempts; i++ {
				c, err := client.New(cfg)
				require.NoError(t, err)
				require.NoError(t, c.Start(ctx))
				wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				_, err = c.WaitOutcome(wctx)
				cancel()
				if err != nil {
					decrypted++
					assert.True(t, interceptionFailed(err), "%v", err)
				}
				c.Close()
			}
			fraction := float64(decrypted) / attempts
			t.Logf("%s: %d of %d tunnel attempts decrypted (%.0f%%)", tt.name, decrypted, attempts, 100*fraction)
			require.NoError(t, topo.Drain(ctx))
			if tt.name == "without-fix" {
				assert.Positive(t, fraction, "the FQDN object misses some of the client's addresses")
				snap := topo.Firewall.Engine().FQDNSnapshot()
				require.Contains(t, snap, "sse-gateway")
				assert.LessOrEqual(t, len(snap["sse-gateway"].Addrs), 32)
			} else {
				assert.Zero(t, decrypted)
			}
		})
	}
}

// sni-spoof: a host without the client sends a ClientHello naming the
// gateway to an origin IP.
func TestSNISpoof(t *testing.T) {
	rogue := harness.HostSpec{Name: "rogue", Addr: netip.MustParseAddr("10.10.10.66")}
	tests := []struct {
		name    string
		policy  string
		outcome fwlog.Outcome
		spliced bool
	}{
		{"sni-only", spoofSNIOnly, fwlog.OutcomeNotDecrypted, true},
		{"sni-and-ip", spoofSNIAndIP, fwlog.OutcomeFailed, false},
		{"strict-cert-check", spoofStrict, fwlog.OutcomeNotDecrypted, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			topo := harnesstest.Start(t, withFirewall(tt.policy, harness.Spec{ExtraHosts: []harness.HostSpec{rogue}}))
			ctx := testCtx(t, time.Minute)
			_, err := topo.Client.WaitUp(ctx)
			require.NoError(t, err, "the real tunnel is up in every variant")

			conn, err := topo.Hosts["rogue"].DialContext(ctx, "tcp", "192.0.2.10:443")
			require.NoError(t, err)
			tc := tls.Client(conn, &tls.Config{ServerName: harness.PrimaryGateway, InsecureSkipVerify: true})
			herr := tc.HandshakeContext(ctx)
			var issuer string
			if herr == nil {
				issuer = tc.ConnectionState().PeerCertificates[0].Issuer.CommonName
			}
			tc.Close()
			requireVerified(t, topo.RunWorkload(ctx, harness.Workload{Flows: 3}))
			drain(t, topo, ctx)

			spoof := records(topo, func(r fwlog.Record) bool { return r.Src.Addr() == rogue.Addr })
			require.Len(t, spoof, 1)
			r := spoof[0]
			assert.Equal(t, harness.PrimaryGateway, r.SNI)
			assert.Equal(t, "192.0.2.10", r.Dst.Addr().String())
			require.NotNil(t, r.Decryption)
			assert.Equal(t, tt.outcome, r.Decryption.Outcome)
			switch {
			case tt.spliced:
				assert.Equal(t, "no-decrypt-sse", r.Rule, "the SNI-only rule let the spoof through undecrypted")
				assert.Error(t, herr, "the origin does not serve the gateway's name, but the bytes reached it")
			case tt.name == "sni-and-ip":
				// Decryption was attempted: the firewall's own handshake
				// with the origin for the gateway's name fails, so the
				// spoof is blocked rather than passed.
				assert.Equal(t, "decrypt-rest", r.Rule)
				assert.Equal(t, failure.LegFirewallGateway, r.Decryption.Leg)
				assert.Error(t, herr)
				assert.Empty(t, issuer)
			default:
				assert.Equal(t, "no-decrypt-sse", r.Rule)
				assert.Equal(t, fwlog.EndDecryptCertValidation, r.EndReason, "blocked by the strict certificate check")
				assert.Error(t, herr)
			}
			// The real tunnel is unaffected.
			tunnelRecs := records(topo, func(r fwlog.Record) bool { return toGateway(r) })
			require.NotEmpty(t, tunnelRecs)
		})
	}
}
