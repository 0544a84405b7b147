package scenarios_test

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pinwall/pinwall/client"
	"github.com/pinwall/pinwall/failure"
	"github.com/pinwall/pinwall/gateway"
	"github.com/pinwall/pinwall/harness"
	"github.com/pinwall/pinwall/mitm/fwlog"
	"github.com/pinwall/pinwall/scenarios"
	"github.com/pinwall/pinwall/tunnel"
)

// The shapes of what the endpoints record, as a third-party interceptor
// leaves them: no firewall log pinwall can read.
var (
	device   = &failure.Cert{Subject: "SERIALNUMBER=LAPTOP-0001,CN=alice@acme.test", Issuer: "CN=acme Device CA", KeyType: "ECDSA P-256", SPKI: "sha256/device"}
	mitmLeaf = failure.Cert{Subject: "CN=gateway-acme.sse.test", Issuer: "CN=mitmproxy,O=mitmproxy", KeyType: "RSA 2048", SPKI: "sha256/forged"}
	gwLeaf   = failure.Cert{Subject: "CN=gateway-acme.sse.test", Issuer: "CN=pinwall Internet CA", KeyType: "ECDSA P-256", SPKI: "sha256/gateway"}
	t0       = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
)

// downObservation is a run whose tunnel never came up: the client's last
// TLS attempt failed with cause after seeing hs, and the gateway logged evs.
func downObservation(leg failure.Leg, cause failure.Cause, hs *failure.Handshake, evs ...gateway.Event) *harness.Observation {
	att := client.Transition{Time: t0.Add(300 * time.Millisecond), Event: client.EventAttemptFailed, Gateway: "gateway-acme.sse.test",
		Addr: "203.0.113.9:443", Transport: tunnel.TransportTLS, Leg: leg, Cause: cause, Error: "tls handshake: " + string(cause), TookMS: 300, Handshake: hs}
	return &harness.Observation{
		ClientLeg: leg, ClientCause: cause, ClientErrorText: att.Error,
		History: []client.Transition{att},
		Gateway: evs,
		Roles:   harness.Roles{Laptop: harness.DefaultLaptop, Gateways: map[string][]netip.Addr{"gateway-acme.sse.test": {netip.MustParseAddr("203.0.113.9")}}},
	}
}

func refused(at time.Duration, from string, cause failure.Cause, presented *failure.Cert, alert, reason string) gateway.Event {
	e := gateway.Event{Time: t0.Add(at), Event: gateway.EventTunnelRefused, Gateway: "gateway-acme.sse.test", Transport: "tls",
		Client: from, Cause: cause, Alert: alert, Reason: reason}
	if presented != nil {
		e.Presented = &gateway.CertInfo{Subject: presented.Subject, Issuer: presented.Issuer, SPKI: presented.SPKI}
	}
	return e
}

func TestAttributeFromEndpoints(t *testing.T) {
	tests := []struct {
		name  string
		obs   *harness.Observation
		leg   failure.Leg
		cause failure.Cause
		basis []string // substrings of the basis line, in order
	}{
		{
			name: "an interceptor's chain: pin mismatch on the client's side of it",
			obs: downObservation(failure.LegClientFirewall, failure.CausePinMismatch,
				&failure.Handshake{Chain: []failure.Cert{mitmLeaf}, Device: device},
				refused(200*time.Millisecond, "127.0.0.1:40000", failure.CauseClientCertRequired, nil, "", "no device certificate presented")),
			leg: failure.LegClientFirewall, cause: failure.CausePinMismatch,
			basis: []string{"attributed from: client (presented chain issued by CN=mitmproxy,O=mitmproxy (subject CN=gateway-acme.sse.test, RSA 2048 key) holds no pinned gateway key)",
				"gateway log (1 handshake(s) from 127.0.0.1, none with this device's certificate)"},
		},
		{
			name: "an interceptor's chain, and the gateway saw nothing at all",
			obs: downObservation(failure.LegClientFirewall, failure.CauseUnknownAuthority,
				&failure.Handshake{Chain: []failure.Cert{mitmLeaf}, Device: device}),
			leg: failure.LegClientFirewall, cause: failure.CauseUnknownAuthority,
			basis: []string{"a CA the laptop does not trust", "gateway log (no handshake from this device)"},
		},
		{
			name: "the gateway's own chain refused (stale pins): the gateway saw the client's alert",
			obs: downObservation(failure.LegClientFirewall, failure.CausePinMismatch,
				&failure.Handshake{Chain: []failure.Cert{gwLeaf}, Device: device},
				refused(250*time.Millisecond, "10.10.10.100:50000", failure.CauseHandshakeFailed, nil, "bad_certificate", "remote error: tls: bad certificate")),
			leg: failure.LegClientGateway, cause: failure.CausePinMismatch,
			basis: []string{"gateway log (the handshake from 10.10.10.100:50000 ended with the peer's bad_certificate alert: the gateway's own certificate was refused)"},
		},
		{
			name: "a re-originating interceptor: alert to the client, a certificate-less handshake at the gateway",
			obs: downObservation(failure.LegClientGateway, failure.CauseHandshakeFailed,
				&failure.Handshake{Chain: []failure.Cert{mitmLeaf}, Device: device, CertRequested: true, CertSent: true, Alert: "handshake_failure"},
				refused(100*time.Millisecond, "127.0.0.1:40002", failure.CauseClientCertRequired, nil, "", "no device certificate presented")),
			leg: failure.LegFirewallGateway, cause: failure.CauseClientCertRequired,
			basis: []string{"client (alert handshake_failure after its device certificate, having accepted a chain issued by CN=mitmproxy,O=mitmproxy)",
				"gateway log (a handshake from 127.0.0.1:40002 without a device certificate, none with this device's (SERIALNUMBER=LAPTOP-0001,CN=alice@acme.test): another party made it)"},
		},
		{
			name: "the gateway refused this device's own certificate",
			obs: downObservation(failure.LegClientGateway, failure.CauseClientCertRejected,
				&failure.Handshake{Chain: []failure.Cert{gwLeaf}, Pinned: true, Device: device, CertRequested: true, CertSent: true, Alert: "bad_certificate"},
				refused(200*time.Millisecond, "10.10.10.100:50001", failure.CauseClientCertRejected, device, "", "device certificate not accepted: x509: certificate signed by unknown authority")),
			leg: failure.LegClientGateway, cause: failure.CauseClientCertRejected,
			basis: []string{"refused this device's certificate"},
		},
		{
			name: "a client without a device certificate is refused by the gateway itself",
			obs: downObservation(failure.LegClientGateway, failure.CauseClientCertRequired,
				&failure.Handshake{Chain: []failure.Cert{gwLeaf}, Pinned: true, CertRequested: true, Alert: "certificate_required"},
				refused(200*time.Millisecond, "10.10.10.100:50001", failure.CauseClientCertRequired, nil, "", "no device certificate presented")),
			leg: failure.LegClientGateway, cause: failure.CauseClientCertRequired,
			basis: []string{"the client has none"},
		},
		{
			name: "a gateway event outside the attempt's time is not evidence",
			obs: downObservation(failure.LegClientGateway, failure.CauseHandshakeFailed,
				&failure.Handshake{Device: device, Alert: "handshake_failure"},
				refused(-time.Minute, "127.0.0.1:40002", failure.CauseClientCertRequired, nil, "", "no device certificate presented")),
			leg: failure.LegClientGateway, cause: failure.CauseHandshakeFailed,
			basis: []string{"gateway log (no handshake logged during the attempt)"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := scenarios.Attribute(tt.obs)
			require.NotNil(t, f)
			assert.Equal(t, tt.leg, f.Leg, f.BasisLine())
			assert.Equal(t, tt.cause, f.Cause, f.BasisLine())
			line := f.BasisLine()
			for _, b := range tt.basis {
				assert.Contains(t, line, b)
			}
			assert.NotContains(t, line, "firewall log")
		})
	}
}

// The firewall's log refines and confirms: its side of the failure wins
// over a guess from the endpoints, and the basis cites it last.
func TestAttributeFirewallConfirms(t *testing.T) {
	obs := downObservation(failure.LegClientGateway, failure.CauseConnectionReset, &failure.Handshake{Device: device})
	obs.Firewall = []fwlog.Record{{SessionID: 7, Proto: fwlog.ProtoTCP,
		Src: netip.MustParseAddrPort("10.10.10.100:50000"), Dst: netip.MustParseAddrPort("203.0.113.9:443"),
		EndReason: fwlog.EndDecryptCertValidation,
		Decryption: &fwlog.Decryption{Outcome: fwlog.OutcomeFailed, Leg: failure.LegFirewallGateway, Cause: failure.CauseCertificateInvalid,
			Reason: "server certificate invalid"}}}
	f := scenarios.Attribute(obs)
	require.NotNil(t, f)
	assert.Equal(t, failure.LegFirewallGateway, f.Leg)
	assert.Equal(t, failure.CauseCertificateInvalid, f.Cause)
	assert.Equal(t, "client+gateway+firewall", f.Source)
	assert.Contains(t, f.BasisLine(), "firewall log (session 7: decrypt-cert-validation, server certificate invalid)")
	assert.EqualValues(t, 7, f.Session)
}

// A client pinning the wrong key, with no firewall anywhere: the client
// alone suspects an interceptor, the gateway's log shows the chain was its
// own.
func TestAttributeStalePinsInProcess(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	obs, err := harness.InProcess{}.Run(ctx, harness.Plan{
		Spec:     harness.Spec{Client: harness.ClientSpec{Transport: client.TransportTLS, Pin: harness.PinWrong, TunnelWait: 200 * time.Millisecond}},
		Workload: harness.Workload{Flows: 1},
		WaitUp:   time.Second,
	})
	require.NoError(t, err)
	assert.Equal(t, failure.LegClientFirewall, obs.ClientLeg, "the client's own view: not the pinned key")
	f := scenarios.Attribute(obs)
	require.NotNil(t, f)
	assert.Equal(t, failure.LegClientGateway, f.Leg, f.BasisLine())
	assert.Equal(t, failure.CausePinMismatch, f.Cause)
	assert.Contains(t, f.BasisLine(), "bad_certificate alert: the gateway's own certificate was refused")
}
