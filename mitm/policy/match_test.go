package policy

import (
	"context"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// tls returns a TCP session from the laptop to dst with the given SNI.
func tls(dst, sni string) Session {
	return Session{
		Src:    netip.MustParseAddrPort("10.10.10.100:50000"),
		Dst:    netip.MustParseAddrPort(dst),
		Proto:  ProtoTCP,
		SNI:    sni,
		HasSNI: sni != "",
	}
}

func udp(dst string) Session {
	return Session{
		Src:   netip.MustParseAddrPort("10.10.10.100:50000"),
		Dst:   netip.MustParseAddrPort(dst),
		Proto: ProtoUDP,
	}
}

func withApp(a App, s Session) Session {
	s.App = a
	return s
}

func from(src string, s Session) Session {
	s.Src = netip.MustParseAddrPort(src)
	return s
}

func TestDecideMatching(t *testing.T) {
	type check struct {
		s    Session
		want string // rule name
	}
	tests := []struct {
		name   string
		policy string
		checks []check
	}{
		{
			name: "exact SNI, case-insensitive, trailing dot ignored",
			policy: lines(
				"rules:",
				"  - name: sse",
				"    match: {sni: [gateway-acme.sse.test, Gateway-Backup-Acme.SSE.test.]}",
				"    action: no-decrypt"),
			checks: []check{
				{tls("203.0.113.7:443", "gateway-acme.sse.test"), "sse"},
				{tls("203.0.113.7:443", "GATEWAY-ACME.SSE.TEST."), "sse"},
				{tls("203.0.113.7:443", "gateway-backup-acme.sse.test"), "sse"},
				{tls("203.0.113.7:443", "gateway-acme.sse.test.evil.test"), "default"},
				{tls("203.0.113.7:443", "acme.sse.test"), "default"},
				{tls("203.0.113.7:443", ""), "default"},
				{udp("203.0.113.7:443"), "default"},
			},
		},
		{
			name: "wildcard matches exactly one label",
			policy: lines(
				"rules:",
				"  - name: one-label",
				"    match: {sni: ['*.sse.test']}",
				"    action: no-decrypt",
				"  - name: two-labels",
				"    match: {sni: ['*.*.sse.test']}",
				"    action: no-decrypt",
				"  - name: middle",
				"    match: {sni: ['gateway-acme.*.sse.test']}",
				"    action: no-decrypt"),
			checks: []check{
				{tls("203.0.113.7:443", "gateway-acme.sse.test"), "one-label"},
				{tls("203.0.113.7:443", "GATEWAY-BACKUP-ACME.sse.test"), "one-label"},
				// The regional miss: one * does not span two labels.
				{tls("203.0.113.7:443", "gateway-acme.eu.sse.test"), "two-labels"},
				{tls("203.0.113.7:443", "sse.test"), "default"},
				{tls("203.0.113.7:443", ".sse.test"), "default"},
				{tls("203.0.113.7:443", "a.b.c.sse.test"), "default"},
			},
		},
		{
			name: "wildcard alone misses regional names",
			policy: lines(
				"rules:",
				"  - name: sse-wildcard",
				"    match: {sni: ['*.sse.test']}",
				"    action: no-decrypt",
				"  - name: decrypt-rest",
				"    match: {proto: tcp, port: 443}",
				"    action: decrypt"),
			checks: []check{
				{tls("203.0.113.7:443", "gateway-acme.sse.test"), "sse-wildcard"},
				{tls("203.0.113.9:443", "gateway-acme.eu.sse.test"), "decrypt-rest"},
			},
		},
		{
			name: "application: a block-quic rule by App-ID leaves DTLS alone",
			policy: lines(
				"rules:",
				"  - name: block-quic",
				"    match: {proto: udp, port: 443, app: [quic]}",
				"    action: block",
				"  - name: tls-apps",
				"    match: {app: [ssl, web-browsing]}",
				"    action: decrypt"),
			checks: []check{
				{withApp(AppQUIC, udp("192.0.2.10:443")), "block-quic"},
				{withApp(AppDTLS, udp("203.0.113.9:443")), "default"},
				{udp("203.0.113.9:443"), "default"},
				{withApp(AppSSL, tls("192.0.2.10:443", "www.social.test")), "tls-apps"},
				{tls("192.0.2.10:443", "www.social.test"), "default"},
			},
		},
		{
			name: "sni-regex is searched, unanchored unless anchored",
			policy: lines(
				"rules:",
				"  - name: anchored",
				`    match: {sni-regex: ['^gateway-[a-z]+\.sse\.test$']}`,
				"    action: no-decrypt",
				"  - name: loose",
				`    match: {sni-regex: ['sse\.test'], sni: [www.social.test]}`,
				"    action: no-decrypt"),
			checks: []check{
				{tls("203.0.113.9:443", "gateway-acme.sse.test"), "anchored"},
				{tls("203.0.113.9:443", "GATEWAY-ACME.SSE.TEST."), "anchored"},
				{tls("192.0.2.10:443", "gateway-acme.sse.test.lookalike.test"), "loose"},
				{tls("192.0.2.10:443", "www.social.test"), "loose"},
				{tls("192.0.2.10:443", ""), "default"},
				{udp("203.0.113.9:443"), "default"},
			},
		},
		{
			name: "no-sni",
			policy: lines(
				"rules:",
				"  - name: no-sni",
				"    match: {no-sni: true}",
				"    action: allow",
				"  - name: rest",
				"    action: decrypt"),
			checks: []check{
				{tls("192.0.2.10:443", ""), "no-sni"},
				{udp("203.0.113.7:443"), "no-sni"},
				{Session{Dst: netip.MustParseAddrPort("192.0.2.10:443"), Proto: ProtoTCP, HasSNI: true}, "no-sni"},
				{tls("192.0.2.10:443", "www.social.test"), "rest"},
			},
		},
		{
			name: "source and destination prefixes",
			policy: lines(
				"rules:",
				"  - name: lan-to-gateways",
				"    match: {src: 10.10.10.0/24, dst: [203.0.113.0/24, 198.51.100.7]}",
				"    action: no-decrypt"),
			checks: []check{
				{tls("203.0.113.250:443", "x.test"), "lan-to-gateways"},
				{tls("198.51.100.7:443", "x.test"), "lan-to-gateways"},
				{tls("198.51.100.8:443", "x.test"), "default"},
				{from("10.10.11.1:40000", tls("203.0.113.1:443", "x.test")), "default"},
				{from("[::ffff:10.10.10.100]:40000", tls("[::ffff:203.0.113.1]:443", "x.test")), "lan-to-gateways"},
				{from("[2001:db8::1]:40000", tls("203.0.113.1:443", "x.test")), "default"},
			},
		},
		{
			name: "ports and ranges",
			policy: lines(
				"rules:",
				"  - name: web",
				"    match: {port: [443, 8000-8080]}",
				"    action: decrypt"),
			checks: []check{
				{tls("192.0.2.10:443", "a.test"), "web"},
				{tls("192.0.2.10:8000", "a.test"), "web"},
				{tls("192.0.2.10:8080", "a.test"), "web"},
				{tls("192.0.2.10:8081", "a.test"), "default"},
				{tls("192.0.2.10:80", "a.test"), "default"},
				{udp("192.0.2.10:443"), "web"},
			},
		},
		{
			name: "protocols",
			policy: lines(
				"rules:",
				"  - name: tcp",
				"    match: {proto: tcp, port: 443}",
				"    action: decrypt",
				"  - name: udp",
				"    match: {proto: udp, port: 443}",
				"    action: block",
				"  - name: any",
				"    match: {proto: any}",
				"    action: allow"),
			checks: []check{
				{tls("192.0.2.10:443", "a.test"), "tcp"},
				{udp("192.0.2.10:443"), "udp"},
				{udp("192.0.2.10:53"), "any"},
				{tls("192.0.2.10:80", ""), "any"},
			},
		},
		{
			name: "fields AND together: SNI plus gateway ranges resists spoofing",
			policy: lines(
				"rules:",
				"  - name: sse",
				"    match: {sni: gateway-acme.sse.test, dst: 203.0.113.0/24, proto: tcp}",
				"    action: no-decrypt",
				"  - name: rest",
				"    action: decrypt"),
			checks: []check{
				{tls("203.0.113.7:443", "gateway-acme.sse.test"), "sse"},
				{tls("192.0.2.10:443", "gateway-acme.sse.test"), "rest"},
				{tls("203.0.113.7:443", "www.social.test"), "rest"},
			},
		},
		{
			name: "first match wins",
			policy: lines(
				"rules:",
				"  - name: specific",
				"    match: {sni: gateway-acme.sse.test}",
				"    action: no-decrypt",
				"  - name: broad",
				"    match: {proto: tcp}",
				"    action: decrypt",
				"  - name: shadowed",
				"    match: {sni: www.social.test}",
				"    action: block"),
			checks: []check{
				{tls("203.0.113.7:443", "gateway-acme.sse.test"), "specific"},
				{tls("192.0.2.10:443", "www.social.test"), "broad"},
				{udp("192.0.2.10:443"), "default"},
			},
		},
		{
			name: "empty match matches everything",
			policy: lines(
				"rules:",
				"  - name: all",
				"    match: {}",
				"    action: block",
				"  - name: never",
				"    action: allow"),
			checks: []check{
				{tls("192.0.2.10:443", "a.test"), "all"},
				{udp("203.0.113.7:443"), "all"},
				{Session{}, "all"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Parse("match.yaml", []byte(tt.policy))
			require.NoError(t, err)
			e, err := NewEngine(p, EngineConfig{})
			require.NoError(t, err)
			for _, c := range tt.checks {
				d := e.Decide(context.Background(), c.s)
				assert.Equal(t, c.want, d.RuleName, "%+v", c.s)
				require.NotNil(t, d.Rule)
				assert.Equal(t, d.Rule.Name, d.RuleName)
				assert.Equal(t, d.Rule.Action, d.Action)
			}
		})
	}
}

func TestDecisionNumber(t *testing.T) {
	p, err := Parse("p.yaml", []byte(lines(
		"rules:",
		"  - {name: a, match: {proto: udp}, action: block}",
		"  - {name: b, id: 17, match: {proto: tcp}, action: allow}",
		"default-action: block")))
	require.NoError(t, err)
	e, err := NewEngine(p, EngineConfig{})
	require.NoError(t, err)
	d := e.Decide(context.Background(), udp("192.0.2.1:443"))
	assert.Equal(t, 1, d.Position)
	assert.Equal(t, 1, d.Number(), "no ID: the position")
	d = e.Decide(context.Background(), tls("192.0.2.1:443", ""))
	assert.Equal(t, 2, d.Position)
	assert.Equal(t, 17, d.Number(), "the vendor's ID")
	p2, err := Parse("p.yaml", []byte("rules:\n  - {name: a, match: {proto: udp}, action: block}\n"))
	require.NoError(t, err)
	e, err = NewEngine(p2, EngineConfig{})
	require.NoError(t, err)
	d = e.Decide(context.Background(), tls("192.0.2.1:443", ""))
	assert.Equal(t, 0, d.Number(), "the implicit rule is 0")
}

func TestDecideDefault(t *testing.T) {
	for _, tt := range []struct {
		yaml string
		want Action
	}{
		{"rules: []\n", ActionAllow},
		{"rules: []\ndefault-action: block\n", ActionBlock},
	} {
		p, err := Parse("d.yaml", []byte(tt.yaml))
		require.NoError(t, err)
		e, err := NewEngine(p, EngineConfig{})
		require.NoError(t, err)
		d := e.Decide(context.Background(), tls("192.0.2.10:443", "a.test"))
		assert.Equal(t, DefaultRuleName, d.RuleName)
		assert.Equal(t, tt.want, d.Action)
		require.NotNil(t, d.Rule)
		assert.True(t, d.Rule.Implicit())
		assert.Equal(t, 0, d.Rule.Line)
		assert.True(t, d.Options.Logs())
		assert.Equal(t, ClientCertBlock, d.Options.ClientCert)
	}
	var nilRule *Rule
	assert.True(t, nilRule.Implicit())
	assert.Equal(t, "<nil rule>", nilRule.String())
}

func TestDecisionOptions(t *testing.T) {
	p, err := Load("testdata/full.yaml")
	require.NoError(t, err)
	e, err := NewEngine(p, EngineConfig{Resolver: emptyResolver{}})
	require.NoError(t, err)
	d := e.Decide(context.Background(), from("10.10.10.100:1", tls("192.0.2.10:8443", "www.social.test")))
	assert.Equal(t, "decrypt-web", d.RuleName)
	assert.Equal(t, ClientCertLearn, d.Options.ClientCert)
	assert.True(t, d.Options.LearnOnClientReject)
	assert.Equal(t, "1h30m0s", d.Options.ExclusionTTL.String())
	assert.Equal(t, SNICertCheckNone, d.Options.SNICertCheck)

	d = e.Decide(context.Background(), udp("203.0.113.7:443"))
	assert.Equal(t, "allow-dtls-gateway", d.RuleName)
	assert.False(t, d.Options.Logs())

	d = e.Decide(context.Background(), tls("203.0.113.7:443", "gateway-acme.sse.test"))
	assert.Equal(t, "no-decrypt-sse", d.RuleName)
	assert.Equal(t, SNICertCheckStrict, d.Options.SNICertCheck)
}

func TestSNIPattern(t *testing.T) {
	tests := []struct {
		pattern, name string
		want          bool
	}{
		{"gateway-acme.sse.test", "gateway-acme.sse.test", true},
		{"gateway-acme.sse.test", "GATEWAY-ACME.SSE.TEST.", true},
		{"gateway-acme.sse.test.", "gateway-acme.sse.test", true},
		{"*.sse.test", "gateway-acme.sse.test", true},
		{"*.sse.test", "gateway-acme.eu.sse.test", false},
		{"*.sse.test", "sse.test", false},
		{"*.sse.test", ".sse.test", false},
		{"*.*.sse.test", "gateway-acme.eu.sse.test", true},
		{"gw.*.test", "gw.eu.test", true},
		{"gw.*.test", "gw.test", false},
		{"gateway-acme.sse.test", "", false},
		{"*.sse.test", "", false},
		{"**.sse.test", "gateway-acme.sse.test", true},
		{"**.sse.test", "gateway-acme.eu.sse.test", true},
		{"**.sse.test", "a.b.c.sse.test", true},
		{"**.sse.test", "sse.test", false},
		{"**.sse.test", ".sse.test", false},
		{"**.sse.test", "a..sse.test", false},
		{"gw.**.test", "gw.eu.west.test", true},
		{"gw.**.test", "gw.test", false},
		{"**.*.test", "a.b.test", true},
		{"**.*.test", "a.test", false},
		{"**.sse.test", "", false},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, SNIPattern(tt.pattern).Match(tt.name), "%s vs %s", tt.pattern, tt.name)
	}

	var p SNIPattern
	require.NoError(t, p.UnmarshalText([]byte("  *.SSE.Test. ")))
	assert.Equal(t, SNIPattern("*.sse.test"), p)
	require.NoError(t, p.UnmarshalText([]byte("**.SSE.test")))
	assert.Equal(t, SNIPattern("**.sse.test"), p)
	for _, bad := range []string{"", "*", "**", "***.sse.test", "gate*.sse.test", "a..b", "a b.test", "*x.test"} {
		assert.Error(t, p.UnmarshalText([]byte(bad)), bad)
	}
}

func TestPortRange(t *testing.T) {
	for in, want := range map[string]PortRange{"443": Port(443), "8000-8080": {8000, 8080}, " 1 - 65535 ": {1, 65535}, "80-80": Port(80)} {
		var r PortRange
		require.NoError(t, r.UnmarshalText([]byte(in)), in)
		assert.Equal(t, want, r, in)
	}
	for in, msg := range map[string]string{
		"0":                    "port 0 is out of range 1-65535",
		"65536":                "port 65536 is out of range 1-65535",
		"99999999999999999999": "port 99999999999999999999 is out of range 1-65535",
		"-1":                   `"" is not a port or port range (write 443 or 8000-8080)`,
		"80-":                  `"" is not a port or port range (write 443 or 8000-8080)`,
		"9-1":                  "port range 9-1 is backwards (write 1-9)",
		"1-2-3":                `"2-3" is not a port or port range (write 443 or 8000-8080)`,
	} {
		var r PortRange
		err := r.UnmarshalText([]byte(in))
		require.Error(t, err, in)
		assert.Equal(t, msg, err.Error(), in)
	}
	assert.Equal(t, "8000-8080", PortRange{8000, 8080}.String())
	b, err := Port(443).MarshalText()
	require.NoError(t, err)
	assert.Equal(t, "443", string(b))
}

func TestMatchString(t *testing.T) {
	p, err := Load("testdata/full.yaml")
	require.NoError(t, err)
	got := make([]string, len(p.Rules))
	for i, r := range p.Rules {
		got[i] = r.Match.String()
	}
	assert.Equal(t, []string{
		"dst=203.0.113.0/24 proto=udp port=443",
		"dst=203.0.113.0/24 proto=tcp sni=gateway-acme.sse.test,*.sse.test",
		"dst-fqdn=gw-primary,gw-backup proto=tcp port=443",
		"proto=udp port=443,80",
		"src=10.10.10.0/24,10.10.20.7 no-sni",
		"proto=tcp port=443,8443,8000-8080",
	}, got)
	assert.Equal(t, "any", Match{}.String())
	assert.Equal(t, "decrypt-rest: proto=tcp port=443 -> decrypt", (&Rule{Name: "decrypt-rest", Match: Match{Proto: ProtoTCP, Port: []PortRange{Port(443)}}, Action: ActionDecrypt}).String())
}
