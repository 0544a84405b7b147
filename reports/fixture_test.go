package reports

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/pinwall/pinwall/client"
	"github.com/pinwall/pinwall/failure"
	"github.com/pinwall/pinwall/gateway"
	"github.com/pinwall/pinwall/harness"
	"github.com/pinwall/pinwall/mitm/fwlog"
	"github.com/pinwall/pinwall/scenarios"
	"github.com/pinwall/pinwall/tunnel"
)

// The fixture: a deterministic set of results covering every verdict and
// the shapes the report draws — a passing baseline, a fail-close interception
// and its fix, a reconnect pair with attempts, a failed expectation, an
// error and an incomplete run — with fixed times and logical addresses.

var t0 = time.Date(2026, time.January, 15, 9, 30, 0, 0, time.UTC)

func at(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }

func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

func ip(s string) netip.Addr { return netip.MustParseAddr(s) }

func fixtureRoles() harness.Roles {
	return harness.Roles{
		Laptop: ip("10.10.10.100"), FirewallIn: ip("10.10.10.254"), FirewallOut: ip("198.51.100.1"),
		Gateways: map[string][]netip.Addr{
			"gateway-acme.sse.test":        {ip("203.0.113.9"), ip("203.0.113.10")},
			"gateway-backup-acme.sse.test": {ip("203.0.113.137"), ip("203.0.113.138")},
		},
		Origins: map[string]netip.Addr{
			"www.social.test": ip("192.0.2.10"), "app.files.test": ip("192.0.2.20"), "login.mail.test": ip("192.0.2.30"),
		},
	}
}

func fixtureMeta() Meta {
	return Meta{
		Version: "v0.9.0", Commit: "0123456789abcdef0123456789abcdef01234567",
		GoVersion: "go1.26.8", OS: "linux", Arch: "amd64", Mode: "inproc",
		Started: t0, Ended: t0.Add(12 * time.Second),
		CAs: []CA{
			{Name: "internet", SHA256: "1111111111111111111111111111111111111111111111111111111111111111"},
			{Name: "tenant device", SHA256: "2222222222222222222222222222222222222222222222222222222222222222"},
			{Name: "enterprise", SHA256: "3333333333333333333333333333333333333333333333333333333333333333"},
		},
		Interrupted: true,
		CommandLine: []string{"pinwall", "run", "--out", "out", "visibility", "decrypt-pinned", "bypass-fqdn", "udp-blocked", "sni-spoof", "backup-gateway"},
		Provenance: &Provenance{
			Pinwall: Build{Module: "github.com/pinwall/pinwall", Version: "v0.9.0", Commit: "0123456789abcdef0123456789abcdef01234567", CommitTime: "2026-01-14T18:00:00Z"},
			Go:      "go1.26.8", OS: "linux", Arch: "amd64", Kernel: "6.1.0-test",
			Modules: []Module{{Path: "github.com/pion/dtls/v3", Version: "v3.1.15"}, {Path: "github.com/hashicorp/yamux", Version: "v0.1.2"}},
		},
	}
}

func fixtureScenarios() []*scenarios.Scenario {
	return []*scenarios.Scenario{
		{ID: "visibility", Title: "What the perimeter firewall logs for a tunnelling laptop",
			Summary: "No decryption - one DTLS session to a gateway address",
			Explain: "A laptop opens connections to three SaaS sites. The firewall decrypts nothing and logs one session to a gateway address; the gateway's log lists every site.",
			Setting: "no decryption", Sources: []string{"community forum thread (docs/sources.md#forum-thread)"}},
		{ID: "udp-blocked", Title: "The firewall blocks UDP/443",
			Summary: "UDP/443 is denied - DTLS fails and the client falls back to TLS",
			Explain: "Many firewalls block UDP/443 to force QUIC to TCP, which also stops DTLS.",
			Setting: "firewall denies UDP/443", Fix: "allow UDP/443 to the gateway ranges before the QUIC block",
			Sources: []string{`PAN "How to Block QUIC Protocol"`}},
		{ID: "decrypt-pinned", Title: "Decrypt everything, and the client pins the gateway key",
			Summary: "Decrypt-all meets a pinned client",
			Explain: "The firewall decrypts every TLS session. The client pins its gateway's key and refuses the forged certificate: the tunnel never comes up.",
			Setting: "decrypt all; client pins the gateway key", Fix: "no-decrypt rule for the gateway names",
			Sources: []string{`PAN-OS "SSL Forward Proxy Decryption Profile"`, `PAN-OS "New session end reasons"`}},
		{ID: "bypass-fqdn", Title: "A bypass rule by FQDN address object",
			Summary: "No-decrypt by FQDN object misses a measured fraction of tunnels",
			Explain: "The firewall's FQDN object holds the addresses it resolved itself; the client connects to others, which are decrypted and fail.",
			Setting: "no-decrypt rule by FQDN object; the gateway name rotates over a larger pool", Fix: "gateway ranges instead of an FQDN object",
			Sources: []string{`PAN "What is the FQDN Object Limit?"`}},
		{ID: "sni-spoof", Title: "A spoofed server name through an SNI-only bypass",
			Summary: "A ClientHello naming the gateway goes elsewhere",
			Explain: "A bypass keyed on the server name alone trusts whatever the ClientHello says.",
			Setting: "a host without the client names the gateway to an origin IP", Fix: "SNI plus gateway IP ranges",
			Sources: []string{`Shbair et al., "Efficiently Bypassing SNI-based HTTPS Filtering", IM 2015`}},
		{ID: "backup-gateway", Title: "The primary gateway goes down mid-run",
			Summary: "A bypass that covers only the primary",
			Explain: "The primary goes down; a bypass naming only the primary lets the backup's tunnel be decrypted.",
			Setting: "primary goes down mid-run", Fix: "cover both gateway names and ranges"},
	}
}

const policyDecryptAll = "#  rule         match               action   options  line\n" +
	"1  block-quic   proto=udp port=443  block    -        6\n" +
	"2  decrypt-all  proto=tcp port=443  decrypt  -        9\n" +
	"-  default      any                 allow    -        -\n"

const policyBypassSNI = "#  rule            match                     action      options  line\n" +
	"1  no-decrypt-sse  proto=tcp sni=gateway-acme.sse.test  no-decrypt  -  4\n" +
	"2  block-quic      proto=udp port=443        block       -        7\n" +
	"3  decrypt-rest    proto=tcp port=443        decrypt     -        10\n"

const policyFQDN = "#  rule            match                           action      options  line\n" +
	"1  no-decrypt-sse  dst-fqdn=sse-gateway proto=tcp  no-decrypt  -        8\n" +
	"2  decrypt-rest    proto=tcp port=443              decrypt     -        14\n" +
	"fqdn object sse-gateway = gateway-acme.sse.test (max-ips 32, min-refresh 30s)\n"

const policyAllowAll = "#  rule       match  action  options  line\n1  allow-all  any    allow   -        3\n"

func pass(name, expected, observed string) scenarios.Check {
	return scenarios.Check{Name: name, Expected: expected, Observed: observed, Pass: true}
}

func device() *gateway.Identity {
	return &gateway.Identity{User: "alice@acme.test", Device: "LAPTOP-0001", Tenant: "acme"}
}

func fixtureResults() []scenarios.Result {
	roles := fixtureRoles()
	var out []scenarios.Result

	// 1. visibility/baseline: pass; one DTLS session, twelve flows.
	vis := scenarios.Result{ID: "visibility", Variant: "baseline", Role: scenarios.Baseline, Title: "What the perimeter firewall logs for a tunnelling laptop",
		Mode: "inproc", Roles: roles, Policy: policyAllowAll, Started: at(0), DurationMS: 240,
		Expected: scenarios.Expect{Tunnel: &scenarios.TunnelExpect{State: "up", Transport: "dtls"},
			Flows: &scenarios.FlowsExpect{Verified: scenarios.MustCount("all")}, Failure: &scenarios.FailureExpect{None: true}},
		Observed: scenarios.Observed{Tunnel: scenarios.TunnelObserved{State: "up", Transport: "dtls", Gateway: "gateway-acme.sse.test", Addr: "203.0.113.9:443"},
			Flows: scenarios.FlowsObserved{Attempted: 12, Completed: 12, Verified: 12, Tunnelled: 12}, UpAfterMS: 14},
		Checks: []scenarios.Check{
			pass("tunnel state", "up", "up"), pass("tunnel transport", "dtls", "dtls"),
			pass("flows verified (SHA-256 at both ends)", "all of 12", "12 of 12"), pass("failure", "none", "none"),
			pass("firewall: no session to any origin IP", "none record(s) where dst=origins", "0 of 1 record(s)"),
		},
		Findings: []scenarios.Finding{},
		FirewallLog: []fwlog.Record{{Time: at(236), Start: at(11), DurationMS: 225, SessionID: 1,
			Src: ap("10.10.10.100:37249"), Dst: ap("203.0.113.9:443"), NATSrc: ap("198.51.100.1:51699"),
			Proto: fwlog.ProtoUDP, App: fwlog.AppDTLS, SNI: "gateway-acme.sse.test", Rule: "allow-all", Action: fwlog.ActionAllow,
			EndReason: fwlog.EndAgedOut, BytesSent: 783282, BytesReceived: 788380, PacketsSent: 1080, PacketsReceived: 1018}},
		ClientHistory: []client.Transition{{Time: at(25), Event: "up", Gateway: "gateway-acme.sse.test", Addr: "203.0.113.9:443",
			Transport: tunnel.TransportDTLS, TunnelID: "t1", TookMS: 14}},
		Capture: &harness.Capture{PCAPNG: []byte("not really a pcapng: the bundle copies it"), KeyLog: []byte("CLIENT_RANDOM 00 11\n"),
			Packets: 4373, KeyLines: 81, SnapLen: 16 << 20, Source: harness.CaptureSynthesized,
			Legs: []string{harness.LegLaptopFirewall, harness.LegFirewallGateway, harness.LegGatewayOrigins}},
	}
	vis.GatewayLog = append(vis.GatewayLog, gateway.Event{Time: at(25), Event: gateway.EventTunnelOpen, Gateway: "gateway-acme.sse.test",
		TunnelID: "t1", Transport: "dtls", Client: "198.51.100.1:51699", Local: "203.0.113.9:443", Device: device()})
	sites := []string{"www.social.test", "app.files.test", "login.mail.test"}
	origins := []string{"192.0.2.10:443", "192.0.2.20:443", "192.0.2.30:443"}
	for i := range 12 {
		vis.GatewayLog = append(vis.GatewayLog, gateway.Event{Time: at(60 + 10*i), Event: gateway.EventFlow, Gateway: "gateway-acme.sse.test",
			TunnelID: "t1", Transport: "dtls", Client: "198.51.100.1:51699", Device: device(), FlowID: uint64(i + 1), StreamID: uint32(2*i + 2),
			Host: sites[i%3], Port: 443, Origin: origins[i%3], BytesUp: 2900 + int64(i), BytesDown: 3300 + int64(i), DurationMS: 40, Result: "ok"})
		vis.Flows = append(vis.Flows, harness.FlowOutcome{Index: i, Site: sites[i%3], Size: 1024, Route: client.RouteTunnel, Why: "steered",
			Transport: "dtls", TunnelID: "t1", Attempts: 1, Verified: true})
	}
	out = append(out, vis)

	// 2. decrypt-pinned/without-fix/fail-close: pass; the client rejects
	// the forged certificate and nothing leaks.
	failedRec := func(id uint64, startMS int, dst string) fwlog.Record {
		return fwlog.Record{Time: at(startMS + 2), Start: at(startMS), DurationMS: 2, SessionID: id,
			Src: ap(fmt.Sprintf("10.10.10.100:%d", 55900+id)), Dst: ap(dst), NATSrc: ap(fmt.Sprintf("198.51.100.1:%d", 40300+id)),
			Proto: fwlog.ProtoTCP, App: fwlog.AppSSL, SNI: "gateway-acme.sse.test", Rule: "decrypt-all", Action: fwlog.ActionResetBoth,
			Decryption: &fwlog.Decryption{Outcome: fwlog.OutcomeFailed, Reason: "client rejected the forged certificate: bad_certificate",
				Leg: failure.LegClientFirewall, Cause: failure.CauseForgedCertRejected,
				ClientStage: "client-firewall: handshake failed", ServerStage: "firewall-server: handshake completed",
				ForgedFingerprint:   "6e37580a5031d448a17f3b2625995b88a3108fb231808688a83c21cf4561ae5d",
				UpstreamFingerprint: "2b0b5a93970b2f514fedf73f97b1c0ff3fe542a5206169fdce6f0aa9ba0a5bdf",
				UpstreamIssuer:      "CN=pinwall Internet Root CA,O=pinwall simulated internet",
				UpstreamSubject:     "CN=gateway-acme.sse.test,O=pinwall simulated internet",
				ChainStatus:         fwlog.ChainTrusted, ErrorIndex: fwlog.ErrorIndexCertificate, ALPN: "pinwall-tunnel/1"},
			EndReason: fwlog.EndDecryptCertValidation}
	}
	udpDeny := func(id uint64, startMS int, dst, sni string) fwlog.Record {
		return fwlog.Record{Time: at(startMS), Start: at(startMS), SessionID: id, Src: ap(fmt.Sprintf("10.10.10.100:%d", 58000+id)), Dst: ap(dst),
			Proto: fwlog.ProtoUDP, App: fwlog.AppNotApplicable, SNI: sni, Rule: "block-quic", Action: fwlog.ActionDeny,
			EndReason: fwlog.EndPolicyDeny, BytesSent: 189, PacketsSent: 1}
	}
	pinErr := "verify gateway gateway-acme.sse.test: pin-mismatch on leg client-gateway: no pinned key for gateway-acme.sse.test; firewall session 2: client rejected the forged certificate: bad_certificate"
	closeRes := scenarios.Result{ID: "decrypt-pinned", Variant: "without-fix/fail-close", Role: scenarios.WithoutFix,
		Title: "Decrypt everything, and the client pins the gateway key", Mode: "inproc", Roles: roles, Policy: policyDecryptAll,
		Started: at(300), DurationMS: 808,
		Expected: scenarios.Expect{Tunnel: &scenarios.TunnelExpect{State: "down"},
			Failure: &scenarios.FailureExpect{Leg: "client-firewall", Cause: "pin-mismatch"}},
		Observed: scenarios.Observed{Tunnel: scenarios.TunnelObserved{State: "down"},
			Flows:   scenarios.FlowsObserved{Attempted: 3},
			Failure: &scenarios.FailureObserved{Leg: failure.LegClientFirewall, Cause: failure.CausePinMismatch, Source: "client+firewall", Detail: pinErr}},
		Checks: []scenarios.Check{
			pass("tunnel state", "down", "down"), pass("flows verified (SHA-256 at both ends)", "none of 3", "0 of 3"),
			pass("failing leg and cause", "leg client-firewall, cause pin-mismatch", "leg client-firewall, cause pin-mismatch"),
			pass("firewall: nothing leaks direct", "none record(s) where dst=origins", "0 of 2 record(s)"),
		},
		Findings: []scenarios.Finding{
			{ID: scenarios.FindingTunnelIntercepted, Severity: scenarios.Medium, Title: "The firewall broke tunnel sessions by decrypting them",
				Detail: "1 tunnel session(s) failed decryption: client rejected the forged certificate: bad_certificate (leg client-firewall, cause forged-certificate-rejected, end reason decrypt-cert-validation)"},
			{ID: scenarios.FindingTunnelDown, Severity: scenarios.High, Title: "The tunnel did not come up",
				Detail: "3 flow(s) refused with no tunnel; last client error: " + pinErr},
		},
		FirewallLog: []fwlog.Record{udpDeny(1, 311, "203.0.113.9:443", "gateway-acme.sse.test"), failedRec(2, 606, "203.0.113.9:443")},
		GatewayLog: []gateway.Event{
			{Time: at(608), Event: gateway.EventTunnelOpen, Gateway: "gateway-acme.sse.test", TunnelID: "t2", Transport: "tls", Client: "198.51.100.1:40302", Local: "203.0.113.9:443"},
			{Time: at(609), Event: gateway.EventTunnelClose, Gateway: "gateway-acme.sse.test", TunnelID: "t2", Transport: "tls", Client: "198.51.100.1:40302",
				Reason: "tunnel: session closed: yamux session ended by peer"},
		},
		ClientHistory: []client.Transition{
			{Time: at(605), Event: "attempt-failed", Gateway: "gateway-acme.sse.test", Addr: "203.0.113.9:443", Transport: tunnel.TransportDTLS,
				Leg: failure.LegClientGateway, Cause: failure.CauseUDPUnanswered, Error: "no datagram came back within 300ms", TookMS: 300},
			{Time: at(605), Event: "fallback", Gateway: "gateway-acme.sse.test", Addr: "203.0.113.9:443", Transport: tunnel.TransportTLS,
				Leg: failure.LegClientGateway, Cause: failure.CauseUDPUnanswered, TookMS: 300},
			{Time: at(609), Event: "attempt-failed", Gateway: "gateway-acme.sse.test", Addr: "203.0.113.9:443", Transport: tunnel.TransportTLS,
				Leg: failure.LegClientGateway, Cause: failure.CausePinMismatch, Error: pinErr, TookMS: 303},
		},
	}
	for i := range 3 {
		closeRes.Flows = append(closeRes.Flows, harness.FlowOutcome{Index: i, Site: sites[i], Size: 1024, Attempts: 1,
			Leg: failure.LegClientGateway, Cause: failure.CauseTunnelDown, Error: "no tunnel (fail-close)"})
	}
	out = append(out, closeRes)

	// 3. decrypt-pinned/with-fix: pass; the tunnel passes undecrypted over
	// TLS (UDP/443 stays blocked).
	fixed := scenarios.Result{ID: "decrypt-pinned", Variant: "with-fix", Role: scenarios.WithFix,
		Title: "Decrypt everything, and the client pins the gateway key", Mode: "inproc", Roles: roles, Policy: policyBypassSNI,
		Started: at(300), DurationMS: 334,
		Expected: scenarios.Expect{Tunnel: &scenarios.TunnelExpect{State: "up", Transport: "tls"}, Failure: &scenarios.FailureExpect{None: true}},
		Observed: scenarios.Observed{Tunnel: scenarios.TunnelObserved{State: "up", Transport: "tls", Gateway: "gateway-acme.sse.test",
			Addr: "203.0.113.9:443", Fallback: "udp-unanswered"}, Flows: scenarios.FlowsObserved{Attempted: 3, Completed: 3, Verified: 3, Tunnelled: 3}},
		Checks: []scenarios.Check{pass("tunnel state", "up", "up"), pass("tunnel transport", "tls", "tls"), pass("failure", "none", "none")},
		Findings: []scenarios.Finding{{ID: scenarios.FindingDTLSBlocked, Severity: scenarios.Low, Title: "UDP/443 to the gateway is blocked",
			Detail: "1 UDP/443 session(s) to gateway addresses were denied; the tunnel cannot use DTLS"}},
		FirewallLog: []fwlog.Record{
			udpDeny(1, 305, "203.0.113.9:443", "gateway-acme.sse.test"),
			{Time: at(630), Start: at(606), DurationMS: 24, SessionID: 2, Src: ap("10.10.10.100:44045"), Dst: ap("203.0.113.9:443"),
				NATSrc: ap("198.51.100.1:40411"), Proto: fwlog.ProtoTCP, App: fwlog.AppSSL, SNI: "gateway-acme.sse.test", Rule: "no-decrypt-sse",
				Action: fwlog.ActionAllow, Decryption: &fwlog.Decryption{Outcome: fwlog.OutcomeNotDecrypted, Reason: "no-decrypt rule no-decrypt-sse",
					ALPN: "pinwall-tunnel/1"}, EndReason: fwlog.EndTCPFin, BytesSent: 12001, BytesReceived: 15007},
		},
		GatewayLog: []gateway.Event{{Time: at(608), Event: gateway.EventTunnelOpen, Gateway: "gateway-acme.sse.test", TunnelID: "t3",
			Transport: "tls", Client: "198.51.100.1:40411", Local: "203.0.113.9:443", Device: device()}},
	}
	for i := range 3 {
		fixed.GatewayLog = append(fixed.GatewayLog, gateway.Event{Time: at(612 + i), Event: gateway.EventFlow, Gateway: "gateway-acme.sse.test",
			TunnelID: "t3", Transport: "tls", Client: "198.51.100.1:40411", Device: device(), FlowID: uint64(i + 1), Host: sites[i], Port: 443,
			Origin: origins[i], BytesUp: 3000, BytesDown: 3400, DurationMS: 5, Result: "ok"})
	}
	fixed.ClientHistory = []client.Transition{{Time: at(608), Event: "up", Gateway: "gateway-acme.sse.test", Addr: "203.0.113.9:443",
		Transport: tunnel.TransportTLS, TunnelID: "t3", TookMS: 303}}
	out = append(out, fixed)

	// 4 and 5. bypass-fqdn: reconnects, three of four decrypted and
	// refused without the fix, none with it.
	fqdn := func(v scenarios.Role, failed int) scenarios.Result {
		r := scenarios.Result{ID: "bypass-fqdn", Variant: string(v), Role: v, Title: "A bypass rule by FQDN address object", Mode: "inproc", Roles: roles,
			Policy: policyFQDN, Started: at(1200), DurationMS: 62,
			Observed: scenarios.Observed{Attempts: &harness.AttemptStats{Total: 4, Failed: failed}}}
		r.Roles.Gateways = map[string][]netip.Addr{"gateway-acme.sse.test": {ip("203.0.113.65"), ip("203.0.113.81"), ip("203.0.113.89"),
			ip("203.0.113.97"), ip("203.0.113.105"), ip("203.0.113.113")}}
		dsts := []string{"203.0.113.65:443", "203.0.113.81:443", "203.0.113.89:443", "203.0.113.97:443"}
		for i, d := range dsts {
			rec := fwlog.Record{Time: at(1205 + 10*i), Start: at(1203 + 10*i), DurationMS: 2, SessionID: uint64(i + 1),
				Src: ap(fmt.Sprintf("10.10.10.100:%d", 56161+i)), Dst: ap(d), NATSrc: ap(fmt.Sprintf("198.51.100.1:%d", 41000+i)),
				Proto: fwlog.ProtoTCP, App: fwlog.AppSSL, SNI: "gateway-acme.sse.test"}
			ev := gateway.Event{Time: at(1204 + 10*i), Gateway: "gateway-acme.sse.test", Transport: "tls",
				Client: fmt.Sprintf("198.51.100.1:%d", 41000+i), Local: d}
			if i < failed {
				rec.Rule, rec.Action, rec.EndReason = "decrypt-rest", fwlog.ActionResetBoth, fwlog.EndDecryptCertValidation
				rec.Decryption = &fwlog.Decryption{Outcome: fwlog.OutcomeFailed, Reason: "server requested a client certificate: session blocked (client-cert block)",
					Leg: failure.LegFirewallGateway, Cause: failure.CauseClientCertRequired, ServerStage: "firewall-server: handshake completed",
					ChainStatus: fwlog.ChainTrusted, ErrorIndex: fwlog.ErrorIndexCertificate}
				ev.Event, ev.Cause, ev.Reason = gateway.EventTunnelRefused, failure.CauseClientCertRequired, "no device certificate"
			} else {
				rec.Rule, rec.Action, rec.EndReason = "no-decrypt-sse", fwlog.ActionAllow, fwlog.EndTCPFin
				rec.Decryption = &fwlog.Decryption{Outcome: fwlog.OutcomeNotDecrypted, Reason: "no-decrypt rule no-decrypt-sse"}
				rec.BytesSent, rec.BytesReceived = 4100, 5200
				ev.Event, ev.Device, ev.TunnelID = gateway.EventTunnelOpen, device(), fmt.Sprintf("f%d", i)
			}
			r.FirewallLog = append(r.FirewallLog, rec)
			r.GatewayLog = append(r.GatewayLog, ev)
		}
		r.Findings = []scenarios.Finding{}
		if failed > 0 {
			r.Observed.Tunnel.State = "down"
			r.Observed.Failure = &scenarios.FailureObserved{Leg: failure.LegFirewallGateway, Cause: failure.CauseClientCertRequired, Source: "client+firewall",
				Detail: "tls handshake 203.0.113.89:443: handshake-failed on leg client-gateway: remote error: tls: handshake failure; firewall session 3: server requested a client certificate"}
			r.Expected = scenarios.Expect{Attempts: &scenarios.AttemptsExpect{FailedFraction: fraction(">0")}}
			r.Checks = []scenarios.Check{pass("tunnel attempts failed", "fraction >0", "3 of 4 (0.75)"),
				pass("finding partial-bypass raised", "raised", "tunnel-intercepted, partial-bypass")}
			r.Findings = []scenarios.Finding{
				{ID: scenarios.FindingTunnelIntercepted, Severity: scenarios.Medium, Title: "The firewall broke tunnel sessions by decrypting them",
					Detail: "3 tunnel session(s) failed decryption: server requested a client certificate (leg firewall-gateway, cause client-certificate-required, end reason decrypt-cert-validation)"},
				{ID: scenarios.FindingPartialBypass, Severity: scenarios.Medium, Title: "The bypass covers some tunnel sessions and not others",
					Detail: "3 tunnel session(s) failed decryption while 1 passed: the rule matches only part of what the client connects to"},
			}
		} else {
			r.Observed.Tunnel = scenarios.TunnelObserved{State: "up", Transport: "tls", Gateway: "gateway-acme.sse.test", Addr: "203.0.113.97:443"}
			r.Expected = scenarios.Expect{Attempts: &scenarios.AttemptsExpect{FailedFraction: fraction("=0")}}
			r.Checks = []scenarios.Check{pass("tunnel attempts failed", "fraction =0", "0 of 4 (0.00)")}
			r.Policy = "#  rule            match                   action      options  line\n1  no-decrypt-sse  dst=203.0.113.0/24 proto=tcp  no-decrypt  -  7\n"
		}
		return r
	}
	out = append(out, fqdn(scenarios.WithoutFix, 3), fqdn(scenarios.WithFix, 0))

	// 6. udp-blocked/with-fix: fail; the policy still blocks DTLS.
	ub := scenarios.Result{ID: "udp-blocked", Variant: "with-fix", Role: scenarios.WithFix, Title: "The firewall blocks UDP/443", Mode: "inproc", Roles: roles,
		Policy: policyDecryptAll, Started: at(2000), DurationMS: 450,
		Expected: scenarios.Expect{Tunnel: &scenarios.TunnelExpect{State: "up", Transport: "dtls", Fallback: "none"}},
		Observed: scenarios.Observed{Tunnel: scenarios.TunnelObserved{State: "up", Transport: "tls", Gateway: "gateway-acme.sse.test",
			Addr: "203.0.113.9:443", Fallback: "udp-unanswered"}, Flows: scenarios.FlowsObserved{Attempted: 2, Completed: 2, Verified: 2, Tunnelled: 2}},
		Checks: []scenarios.Check{
			pass("tunnel state", "up", "up"),
			{Name: "tunnel transport", Expected: "dtls", Observed: "tls", Pass: false},
			{Name: "tunnel fallback", Expected: "none", Observed: "udp-unanswered", Pass: false},
			{Name: "firewall: DTLS passes on the gateway-range rule", Expected: "1 record(s) where proto=udp dst=gateways; each app=dtls rule=allow-dtls-to-sse action=allow",
				Observed: "1 of 2 record(s); record 1 (session 1): app not-applicable, not dtls", Pass: false},
		},
		Findings: []scenarios.Finding{{ID: scenarios.FindingDTLSBlocked, Severity: scenarios.Low, Title: "UDP/443 to the gateway is blocked",
			Detail: "1 UDP/443 session(s) to gateway addresses were denied; the tunnel cannot use DTLS"}},
		FirewallLog: []fwlog.Record{
			udpDeny(1, 2010, "203.0.113.9:443", "gateway-acme.sse.test"),
			{Time: at(2450), Start: at(2412), DurationMS: 38, SessionID: 2, Src: ap("10.10.10.100:47000"), Dst: ap("203.0.113.9:443"),
				NATSrc: ap("198.51.100.1:47000"), Proto: fwlog.ProtoTCP, App: fwlog.AppSSL, SNI: "gateway-acme.sse.test", Rule: "allow-rest",
				Action: fwlog.ActionAllow, EndReason: fwlog.EndTCPFin, BytesSent: 9000, BytesReceived: 9900},
		},
		GatewayLog: []gateway.Event{
			{Time: at(2415), Event: gateway.EventTunnelOpen, Gateway: "gateway-acme.sse.test", TunnelID: "u1", Transport: "tls", Client: "198.51.100.1:47000", Device: device()},
			{Time: at(2420), Event: gateway.EventFlow, Gateway: "gateway-acme.sse.test", TunnelID: "u1", Transport: "tls", Client: "198.51.100.1:47000",
				FlowID: 1, Host: "www.social.test", Port: 443, Origin: "192.0.2.10:443", BytesUp: 100, BytesDown: 200, Result: "ok"},
			{Time: at(2425), Event: gateway.EventFlow, Gateway: "gateway-acme.sse.test", TunnelID: "u1", Transport: "tls", Client: "198.51.100.1:47000",
				FlowID: 2, Host: "app.files.test", Port: 443, Origin: "192.0.2.20:443", Result: "error", Error: "origin reset the connection"},
		},
		ClientHistory: []client.Transition{{Time: at(2415), Event: "up", Gateway: "gateway-acme.sse.test", Addr: "203.0.113.9:443",
			Transport: tunnel.TransportTLS, TunnelID: "u1"}},
	}
	out = append(out, ub)

	// 7. sni-spoof/without-fix: error; nothing observed.
	out = append(out, scenarios.Result{ID: "sni-spoof", Variant: "without-fix", Role: scenarios.WithoutFix, Title: "A spoofed server name through an SNI-only bypass",
		Mode: "inproc", Verdict: scenarios.Error, Started: at(3000), DurationMS: 5,
		Error: "harness: start firewall: listen tcp 127.10.10.254:0: bind: address already in use"})

	// 8. backup-gateway/with-fix: incomplete; interrupted before it started.
	out = append(out, scenarios.Result{ID: "backup-gateway", Variant: "with-fix", Role: scenarios.WithFix, Title: "The primary gateway goes down mid-run",
		Mode: "inproc", Verdict: scenarios.Incomplete, Started: at(3100), Error: "interrupted before it started"})

	for i := range out {
		if out[i].Verdict == "" {
			out[i].Verdict = scenarios.Pass
			for _, c := range out[i].Checks {
				if !c.Pass {
					out[i].Verdict = scenarios.Fail
				}
			}
		}
	}
	return out
}

func fraction(s string) scenarios.Fraction {
	var f scenarios.Fraction
	if err := f.UnmarshalText([]byte(s)); err != nil {
		panic(err)
	}
	return f
}
