package policy

import (
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/pinwall/pinwall/strictyaml"
)

var update = flag.Bool("update", false, "rewrite golden files")

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func lines(ls ...string) string { return strings.Join(ls, "\n") + "\n" }

func TestLoadMinimal(t *testing.T) {
	p, err := Load("testdata/minimal.yaml")
	require.NoError(t, err)
	assert.Equal(t, "testdata/minimal.yaml", p.File)
	require.Len(t, p.Rules, 2)
	assert.Equal(t, Rule{
		Name:   "no-decrypt-sse",
		Match:  Match{SNI: []SNIPattern{"gateway-acme.sse.test", "gateway-backup-acme.sse.test"}},
		Action: ActionNoDecrypt,
		Line:   2,
	}, p.Rules[0])
	assert.Equal(t, Rule{
		Name:   "decrypt-rest",
		Match:  Match{Proto: ProtoTCP, Port: []PortRange{Port(443)}},
		Action: ActionDecrypt,
		Line:   5,
	}, p.Rules[1])
	assert.Equal(t, ActionAllow, p.Default().Action)
	assert.Equal(t, DefaultUDPIdleTimeout, p.IdleTimeout(ProtoUDP))
	assert.Equal(t, DefaultTCPIdleTimeout, p.IdleTimeout(ProtoTCP))
}

func TestLoadFull(t *testing.T) {
	p, err := Load("testdata/full.yaml")
	require.NoError(t, err)
	require.Len(t, p.Rules, 6)
	logOff := false
	assert.Equal(t, Options{Log: &logOff}, p.Rules[0].Options)
	assert.Equal(t, []netip.Prefix{netip.MustParsePrefix("10.10.10.0/24"), netip.MustParsePrefix("10.10.20.7/32")}, p.Rules[4].Match.Src)
	assert.Equal(t, []PortRange{Port(443), Port(8443), {8000, 8080}}, p.Rules[5].Match.Port)
	assert.Equal(t, Options{ClientCert: ClientCertLearn, LearnOnClientReject: true, ExclusionTTL: 90 * time.Minute}, p.Rules[5].Options)
	assert.Equal(t, FQDNObject{FQDN: "gateway-acme.sse.test", MaxIPs: 32, MinRefresh: 30 * time.Second, Line: 47}, p.Objects.FQDN["gw-primary"])
	assert.Equal(t, FQDNObject{FQDN: "gateway-backup-acme.sse.test", Line: 51}, p.Objects.FQDN["gw-backup"])
	assert.Equal(t, ActionBlock, p.Default().Action)
	assert.Equal(t, 45*time.Second, p.IdleTimeout(ProtoUDP))
	assert.Equal(t, time.Hour, p.IdleTimeout(ProtoTCP))
	assert.Equal(t, []int{4, 13, 22, 26, 30, 34}, []int{p.Rules[0].Line, p.Rules[1].Line, p.Rules[2].Line, p.Rules[3].Line, p.Rules[4].Line, p.Rules[5].Line})
}

// TestTestdataGolden loads every example policy, compares its Describe with
// a golden file and checks that Marshal round-trips it.
func TestTestdataGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/*.yaml")
	require.NoError(t, err)
	require.NotEmpty(t, files)
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			p, err := Load(file)
			require.NoError(t, err)
			_, err = NewEngine(p, EngineConfig{Resolver: emptyResolver{}})
			require.NoError(t, err)

			golden := strings.TrimSuffix(file, ".yaml") + ".describe.golden"
			got := p.Describe()
			if *update {
				require.NoError(t, os.WriteFile(golden, []byte(got), 0o644))
			}
			want, err := os.ReadFile(golden)
			require.NoError(t, err)
			assert.Equal(t, string(want), got)

			assertRoundTrip(t, p)
		})
	}
}

// assertRoundTrip checks that Marshal's output parses back to p and that
// marshalling is a fixed point.
func assertRoundTrip(t *testing.T, p *Policy) {
	t.Helper()
	out, err := p.Marshal()
	require.NoError(t, err)
	back, err := Parse("marshalled.yaml", out)
	require.NoError(t, err, "%s", out)
	assert.Equal(t, normalized(p), normalized(back), "%s", out)
	again, err := back.Marshal()
	require.NoError(t, err)
	assert.Equal(t, string(out), string(again))
}

// normalized clears what Marshal does not keep: positions, the file name,
// and the difference between empty and nil lists.
func normalized(p *Policy) Policy {
	q := *p
	q.File, q.Comment = "", ""
	q.Rules = nil
	for _, r := range p.Rules {
		r.Line = 0
		m := &r.Match
		if len(m.Src) == 0 {
			m.Src = nil
		}
		if len(m.Dst) == 0 {
			m.Dst = nil
		}
		if len(m.DstFQDN) == 0 {
			m.DstFQDN = nil
		}
		if len(m.Port) == 0 {
			m.Port = nil
		}
		if len(m.SNI) == 0 {
			m.SNI = nil
		}
		if len(m.App) == 0 {
			m.App = nil
		}
		if len(m.SNIRegex) == 0 {
			m.SNIRegex = nil
		}
		r.Comment = ""
		q.Rules = append(q.Rules, r)
	}
	q.Objects.FQDN = nil
	for name, o := range p.Objects.FQDN {
		if q.Objects.FQDN == nil {
			q.Objects.FQDN = map[string]FQDNObject{}
		}
		o.Line = 0
		q.Objects.FQDN[name] = o
	}
	return q
}

func TestMarshalMinimal(t *testing.T) {
	p, err := Load("testdata/minimal.yaml")
	require.NoError(t, err)
	out, err := p.Marshal()
	require.NoError(t, err)
	assert.Equal(t, lines(
		"rules:",
		"  - name: no-decrypt-sse",
		"    match: {sni: [gateway-acme.sse.test, gateway-backup-acme.sse.test]}",
		"    action: no-decrypt",
		"  - name: decrypt-rest",
		"    match: {proto: tcp, port: [443]}",
		"    action: decrypt",
	), string(out))

	empty, err := (&Policy{}).Marshal()
	require.NoError(t, err)
	assert.Equal(t, "rules: []\n", string(empty))
	_, err = Parse("empty.yaml", empty)
	require.NoError(t, err)
}

func TestMarshalQuotesWhatNeedsIt(t *testing.T) {
	yes := true
	p := &Policy{
		Rules: []Rule{{
			Name:    "443",
			Match:   Match{SNI: []SNIPattern{"*.sse.test"}, Port: []PortRange{{8000, 8080}}, Proto: ProtoAny, NoSNI: false},
			Action:  ActionNoDecrypt,
			Options: Options{SNICertCheck: SNICertCheckStrict, Log: &yes},
		}},
		Objects:        Objects{FQDN: map[string]FQDNObject{"true": {FQDN: "gw.test", MinRefresh: 90 * time.Second}}},
		UDPIdleTimeout: 30 * time.Second,
	}
	assertRoundTrip(t, p)
	out, err := p.Marshal()
	require.NoError(t, err)
	assert.Contains(t, string(out), `'*.sse.test'`)
	assert.Contains(t, string(out), `min-refresh: 1m30s`)
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		line    int
		col     int
		field   string
		msg     string
		choices []string
	}{
		{
			name: "misspelt action",
			in: lines(
				"rules:",
				"  - name: a",
				"    action: decypt"),
			line: 3, col: 13, field: "rules[0].action",
			msg:     `"decypt" is not one of: decrypt, no-decrypt, block, allow`,
			choices: []string{"decrypt", "no-decrypt", "block", "allow"},
		},
		{
			name: "misspelt key",
			in: lines(
				"rules:",
				"  - name: a",
				"    action: allow",
				"  - name: b",
				"    acton: block"),
			line: 5, col: 5, field: "rules[1]",
			msg:     `unknown field "acton" (valid: name, match, action, options, id)`,
			choices: []string{"name", "match", "action", "options", "id"},
		},
		{
			name: "misspelt top-level key",
			in:   "rules: []\ndefault_action: block\n",
			line: 2, col: 1, field: "",
			msg:     `unknown field "default_action" (valid: rules, objects, default-action, udp-idle-timeout, tcp-idle-timeout)`,
			choices: []string{"rules", "objects", "default-action", "udp-idle-timeout", "tcp-idle-timeout"},
		},
		{
			name: "bad sni-regex",
			in: lines(
				"rules:",
				"  - name: a",
				"    match: {sni-regex: ['(sse']}",
				"    action: no-decrypt"),
			line: 3, col: 25, field: "rules[0].match.sni-regex[0]",
			msg: `"(sse" is not a regular expression: error parsing regexp: missing closing ): ` + "`(sse`",
		},
		{
			name: "unknown app",
			in: lines(
				"rules:",
				"  - name: a",
				"    match: {app: [zscaler]}",
				"    action: allow"),
			line: 3, col: 19, field: "rules[0].match.app[0]",
			msg:     `"zscaler" is not one of: ssl, web-browsing, http2, unknown-tcp, dtls, quic, unknown-udp`,
			choices: []string{"ssl", "web-browsing", "http2", "unknown-tcp", "dtls", "quic", "unknown-udp"},
		},
		{
			name: "untrusted-cert on a no-decrypt rule",
			in: lines(
				"rules:",
				"  - name: a",
				"    action: no-decrypt",
				"    options: {untrusted-cert: block}"),
			line: 4, col: 31, field: "rules[0].options.untrusted-cert",
			msg: "untrusted-cert applies only to decrypt rules, not to no-decrypt",
		},
		{
			name: "misspelt match key",
			in: lines(
				"rules:",
				"  - name: a",
				"    match: {dport: 443}",
				"    action: allow"),
			line: 3, col: 13, field: "rules[0].match",
			msg:     `unknown field "dport" (valid: src, dst, dst-fqdn, proto, port, sni, no-sni, sni-regex, app)`,
			choices: []string{"src", "dst", "dst-fqdn", "proto", "port", "sni", "no-sni", "sni-regex", "app"},
		},
		{
			name: "port out of range",
			in: lines(
				"rules:",
				"  - name: a",
				"    match: {port: [443, 70000]}",
				"    action: allow"),
			line: 3, col: 25, field: "rules[0].match.port[1]",
			msg: `port 70000 is out of range 1-65535`,
		},
		{
			name: "port zero",
			in: lines(
				"rules:",
				"  - name: a",
				"    match: {port: 0}",
				"    action: allow"),
			line: 3, col: 19, field: "rules[0].match.port[0]",
			msg: `port 0 is out of range 1-65535`,
		},
		{
			name: "port range backwards",
			in: lines(
				"rules:",
				"  - name: a",
				"    match:",
				"      port: 8080-8000",
				"    action: allow"),
			line: 4, col: 13, field: "rules[0].match.port[0]",
			msg: `port range 8080-8000 is backwards (write 8000-8080)`,
		},
		{
			name: "port that is a word",
			in: lines(
				"rules:",
				"  - name: a",
				"    match: {port: https}",
				"    action: allow"),
			line: 3, col: 19, field: "rules[0].match.port[0]",
			msg: `"https" is not a port or port range (write 443 or 8000-8080)`,
		},
		{
			name: "bad CIDR",
			in: lines(
				"rules:",
				"  - name: a",
				"    match:",
				"      dst: [203.0.113.0/24, 10.0.0.0/33]",
				"    action: allow"),
			line: 4, col: 29, field: "rules[0].match.dst[1]",
			msg: `"10.0.0.0/33" is not a CIDR prefix or IP address`,
		},
		{
			name: "CIDR with host bits",
			in: lines(
				"rules:",
				"  - name: a",
				"    match:",
				"      src: 10.10.10.5/24",
				"    action: allow"),
			line: 4, col: 12, field: "rules[0].match.src[0]",
			msg: `10.10.10.5/24 has host bits set (did you mean 10.10.10.0/24?)`,
		},
		{
			name: "star inside a label",
			in: lines(
				"rules:",
				"  - name: a",
				"    match:",
				"      sni:",
				"        - gateway-acme.sse.test",
				"        - gate*.sse.test",
				"    action: no-decrypt"),
			line: 6, col: 11, field: "rules[0].match.sni[1]",
			msg: `"gate*.sse.test": * must be a whole label, as in *.sse.test (exactly one label) or **.sse.test (one or more)`,
		},
		{
			name: "star alone",
			in: lines(
				"rules:",
				"  - name: a",
				"    match: {sni: '*'}",
				"    action: no-decrypt"),
			line: 3, col: 18, field: "rules[0].match.sni[0]",
			msg: `"*" alone would match only single-label names; leave sni out to match any name`,
		},
		{
			name: "unquoted wildcard",
			in: lines(
				"rules:",
				"  - name: a",
				"    match: {sni: [*.sse.test]}",
				"    action: no-decrypt"),
			line: 3, col: 19,
			msg: `syntax error: an unquoted * starts an alias; quote wildcards, as in "*.example.test"`,
		},
		{
			name: "empty rule name",
			in: lines(
				"rules:",
				"  - name: \"\"",
				"    action: allow"),
			line: 2, col: 11, field: "rules[0].name",
			msg: `rule name is empty`,
		},
		{
			name: "rule name with a comma",
			in: lines(
				"rules:",
				"  - name: a,b",
				"    action: allow"),
			line: 2, col: 11, field: "rules[0].name",
			msg: `rule name "a,b" has the character ',' (use letters, digits, space, '-', '_' and '.')`,
		},
		{
			name: "rule named default",
			in: lines(
				"rules:",
				"  - name: default",
				"    action: block"),
			line: 2, col: 11, field: "rules[0].name",
			msg: `the name "default" is reserved for the implicit rule; set default-action instead`,
		},
		{
			name: "duplicate rule names",
			in: lines(
				"rules:",
				"  - name: a",
				"    action: allow",
				"  - name: b",
				"    action: allow",
				"  - action: block",
				"    name: a"),
			line: 7, col: 11, field: "rules[2].name",
			msg: `duplicate rule name "a" (first used by rules[0])`,
		},
		{
			name: "missing action",
			in: lines(
				"rules:",
				"  - name: a",
				"    match: {proto: tcp}"),
			line: 2, col: 5, field: "rules[0]",
			msg: `missing required field "action"`,
		},
		{
			name: "missing rules",
			in:   "default-action: block\n",
			line: 1, col: 1, field: "",
			msg: `missing required field "rules"`,
		},
		{
			name: "bad proto",
			in: lines(
				"rules:",
				"  - name: a",
				"    match: {proto: icmp}",
				"    action: block"),
			line: 3, col: 20, field: "rules[0].match.proto",
			msg:     `"icmp" is not one of: tcp, udp, any`,
			choices: []string{"tcp", "udp", "any"},
		},
		{
			name: "sni with no-sni",
			in: lines(
				"rules:",
				"  - name: a",
				"    match:",
				"      sni: gw.sse.test",
				"      no-sni: true",
				"    action: no-decrypt"),
			line: 5, col: 15, field: "rules[0].match.no-sni",
			msg: `no-sni: true and sni cannot both hold; use two rules`,
		},
		{
			name: "client-cert on a block rule",
			in: lines(
				"rules:",
				"  - name: a",
				"    action: block",
				"    options:",
				"      client-cert: bypass"),
			line: 5, col: 20, field: "rules[0].options.client-cert",
			msg: `client-cert applies only to decrypt rules, not to block`,
		},
		{
			name: "client-cert choice",
			in: lines(
				"rules:",
				"  - name: a",
				"    action: decrypt",
				"    options: {client-cert: inspect}"),
			line: 4, col: 28, field: "rules[0].options.client-cert",
			msg:     `"inspect" is not one of: block, bypass, learn`,
			choices: []string{"block", "bypass", "learn"},
		},
		{
			name: "sni-cert-check on an allow rule",
			in: lines(
				"rules:",
				"  - name: a",
				"    action: allow",
				"    options: {sni-cert-check: strict}"),
			line: 4, col: 31, field: "rules[0].options.sni-cert-check",
			msg: `sni-cert-check applies only to decrypt and no-decrypt rules, not to allow`,
		},
		{
			name: "learn-on-client-reject on a no-decrypt rule",
			in: lines(
				"rules:",
				"  - name: a",
				"    action: no-decrypt",
				"    options: {learn-on-client-reject: true}"),
			line: 4, col: 39, field: "rules[0].options.learn-on-client-reject",
			msg: `learn-on-client-reject applies only to decrypt rules, not to no-decrypt`,
		},
		{
			name: "exclusion-ttl without learning",
			in: lines(
				"rules:",
				"  - name: a",
				"    action: decrypt",
				"    options: {exclusion-ttl: 1h}"),
			line: 4, col: 30, field: "rules[0].options.exclusion-ttl",
			msg: `exclusion-ttl has no effect without client-cert: learn or learn-on-client-reject: true`,
		},
		{
			name: "exclusion-ttl without a unit",
			in: lines(
				"rules:",
				"  - name: a",
				"    action: decrypt",
				"    options: {client-cert: learn, exclusion-ttl: 3600}"),
			line: 4, col: 50, field: "rules[0].options.exclusion-ttl",
			msg: `3600 is not a duration: it needs a unit (write 3600s)`,
		},
		{
			name: "log: yes",
			in: lines(
				"rules:",
				"  - name: a",
				"    action: allow",
				"    options: {log: yes}"),
			line: 4, col: 20, field: "rules[0].options.log",
			msg: `"yes" is not a boolean: write true`,
		},
		{
			name: "duplicate key in a match",
			in: lines(
				"rules:",
				"  - name: a",
				"    match: {port: 443, proto: tcp, port: 80}",
				"    action: allow"),
			line: 3, col: 36, field: "rules[0].match",
			msg: `duplicate key "port" (first at line 3)`,
		},
		{
			name: "undefined FQDN object",
			in: lines(
				"rules:",
				"  - name: a",
				"    match:",
				"      dst-fqdn: [gw-primary, gw-secondary]",
				"    action: no-decrypt",
				"objects:",
				"  fqdn:",
				"    gw-primary: {fqdn: gateway-acme.sse.test}",
				"    gw-backup: {fqdn: gateway-backup-acme.sse.test}"),
			line: 4, col: 30, field: "rules[0].match.dst-fqdn[1]",
			msg:     `undefined FQDN object "gw-secondary" (defined: gw-backup, gw-primary)`,
			choices: []string{"gw-backup", "gw-primary"},
		},
		{
			name: "undefined FQDN object, none defined",
			in: lines(
				"rules:",
				"  - name: a",
				"    match: {dst-fqdn: gw}",
				"    action: no-decrypt"),
			line: 3, col: 23, field: "rules[0].match.dst-fqdn[0]",
			msg: `undefined FQDN object "gw" (define it under objects.fqdn)`,
		},
		{
			name: "FQDN object with a wildcard",
			in: lines(
				"rules: []",
				"objects:",
				"  fqdn:",
				"    gw:",
				"      fqdn: \"*.sse.test\""),
			line: 5, col: 13, field: "objects.fqdn.gw.fqdn",
			msg: `name "*.sse.test" has a wildcard; an FQDN object needs one name`,
		},
		{
			name: "FQDN object with negative max-ips",
			in: lines(
				"rules: []",
				"objects:",
				"  fqdn:",
				"    gw: {fqdn: gw.sse.test, max-ips: -1}"),
			line: 4, col: 38, field: "objects.fqdn.gw.max-ips",
			msg: `max-ips must not be negative (0 means 32)`,
		},
		{
			name: "FQDN object without fqdn",
			in: lines(
				"rules: []",
				"objects:",
				"  fqdn:",
				"    gw: {max-ips: 8}"),
			line: 4, col: 9, field: "objects.fqdn.gw",
			msg: `missing required field "fqdn"`,
		},
		{
			name: "bad default action",
			in:   "rules: []\ndefault-action: deny\n",
			line: 2, col: 17, field: "default-action",
			msg:     `"deny" is not one of: decrypt, no-decrypt, block, allow`,
			choices: []string{"decrypt", "no-decrypt", "block", "allow"},
		},
		{
			name: "negative idle timeout",
			in:   "rules: []\nudp-idle-timeout: -5s\n",
			line: 2, col: 19, field: "udp-idle-timeout",
			msg: `udp-idle-timeout must be positive`,
		},
		{
			name: "rules given as a mapping",
			in:   "rules:\n  name: a\n  action: allow\n",
			line: 2, col: 3, field: "rules",
			msg: `expected a list, got a mapping`,
		},
		{
			name: "empty file",
			in:   "",
			line: 1, msg: "empty document",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("policy.yaml", []byte(tt.in))
			var e *strictyaml.Error
			require.ErrorAs(t, err, &e)
			assert.Equal(t, "policy.yaml", e.File)
			assert.Equal(t, tt.line, e.Line, "line")
			assert.Equal(t, tt.col, e.Column, "column")
			assert.Equal(t, tt.field, e.Field, "field")
			assert.Equal(t, tt.msg, e.Msg, "msg")
			assert.Equal(t, tt.choices, e.Choices, "choices")
		})
	}
}

func TestParseErrorFormat(t *testing.T) {
	_, err := Parse("policy.yaml", []byte(lines(
		"rules:",
		"  - name: no-decrypt-sse",
		"    match: { sni: [gateway-acme.sse.test] }",
		"    action: no-decrypt",
		"  - name: decrypt-rest",
		"    action: decypt")))
	require.Error(t, err)
	assert.Equal(t, `policy.yaml:6:13: rules[1].action: "decypt" is not one of: decrypt, no-decrypt, block, allow`, err.Error())
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load("testdata/does-not-exist.yaml")
	assert.ErrorIs(t, err, os.ErrNotExist)
	assert.True(t, strings.HasPrefix(err.Error(), "policy: "))
}

func TestValidateHandBuilt(t *testing.T) {
	tests := []struct {
		name string
		p    Policy
		want string
	}{
		{"empty action", Policy{Rules: []Rule{{Name: "a"}}}, `rules[0].action: "" is not one of: decrypt, no-decrypt, block, allow`},
		{"bad pattern", Policy{Rules: []Rule{{Name: "a", Action: ActionAllow, Match: Match{SNI: []SNIPattern{"a..b"}}}}}, `rules[0].match.sni[0]: name "a..b" has an empty label`},
		{"zero port", Policy{Rules: []Rule{{Name: "a", Action: ActionAllow, Match: Match{Port: []PortRange{{}}}}}}, `rules[0].match.port[0]: port 0 is out of range 1-65535`},
		{"invalid prefix", Policy{Rules: []Rule{{Name: "a", Action: ActionAllow, Match: Match{Dst: []netip.Prefix{{}}}}}}, `rules[0].match.dst[0]: invalid prefix`},
		{"bad proto", Policy{Rules: []Rule{{Name: "a", Action: ActionAllow, Match: Match{Proto: "sctp"}}}}, `rules[0].match.proto: "sctp" is not one of: tcp, udp, any`},
		{"negative ttl", Policy{Rules: []Rule{{Name: "a", Action: ActionDecrypt, Options: Options{ExclusionTTL: -1}}}}, `rules[0].options.exclusion-ttl: exclusion-ttl must be positive`},
		{"object name", Policy{Rules: []Rule{}, Objects: Objects{FQDN: map[string]FQDNObject{"a/b": {FQDN: "x.test"}}}}, `objects.fqdn["a/b"]: object name "a/b" has the character '/' (use letters, digits, space, '-', '_' and '.')`},
		{"negative min-refresh", Policy{Objects: Objects{FQDN: map[string]FQDNObject{"gw": {FQDN: "x.test", MinRefresh: -time.Second}}}}, `objects.fqdn.gw.min-refresh: min-refresh must not be negative (0 means 30s)`},
	}
	for _, tt := range tests {
		err := tt.p.Validate()
		require.Error(t, err, tt.name)
		assert.Equal(t, tt.want, err.Error(), tt.name)
		_, err = NewEngine(&tt.p, EngineConfig{})
		require.Error(t, err, tt.name)
		assert.Equal(t, "policy: "+tt.want, err.Error(), tt.name)
	}
}

func TestOptionsDefaults(t *testing.T) {
	o := Options{}.WithDefaults()
	require.NotNil(t, o.Log)
	assert.True(t, *o.Log)
	assert.Equal(t, ClientCertBlock, o.ClientCert)
	assert.Equal(t, SNICertCheckNone, o.SNICertCheck)
	assert.Equal(t, DefaultExclusionTTL, o.ExclusionTTL)
	assert.True(t, o.Logs())
	assert.False(t, o.Learns())
	assert.Equal(t, "", o.String(), "defaults are not shown")

	no := false
	o = Options{Log: &no, ClientCert: ClientCertLearn, ExclusionTTL: time.Hour}.WithDefaults()
	assert.False(t, o.Logs())
	assert.True(t, o.Learns())
	assert.Equal(t, "client-cert=learn exclusion-ttl=1h log=false", o.String())

	assert.Equal(t, FQDNObject{FQDN: "x", MaxIPs: 32, MinRefresh: 30 * time.Second}, FQDNObject{FQDN: "x"}.WithDefaults())
	assert.Equal(t, UntrustedCertUntrustedCA, Options{}.WithDefaults().UntrustedCert)
	assert.Equal(t, "untrusted-cert=block", Options{UntrustedCert: UntrustedCertBlock}.String())
}

// TestMarshalComments writes a rule's Comment above it and its ID, and
// reads neither the comment nor anything else lost back.
func TestMarshalComments(t *testing.T) {
	p := &Policy{Rules: []Rule{{
		Name: "exempt-sse", ID: 12, Comment: "from fortios.conf:41 (policy 12)",
		Match:  Match{Proto: ProtoUDP, App: []App{AppDTLS}},
		Action: ActionAllow,
	}}}
	out, err := p.Marshal()
	require.NoError(t, err)
	assert.Equal(t, lines(
		"rules:",
		"  - name: exempt-sse # from fortios.conf:41 (policy 12)",
		"    id: 12",
		"    match: {proto: udp, app: [dtls]}",
		"    action: allow",
	), string(out))
	back, err := Parse("marshalled.yaml", out)
	require.NoError(t, err)
	assert.Equal(t, normalized(p), normalized(back))
	assert.Empty(t, back.Rules[0].Comment, "comments are not read back")
}

func TestFormatDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		12 * time.Hour:                   "12h",
		90 * time.Minute:                 "1h30m",
		time.Minute:                      "1m",
		30 * time.Second:                 "30s",
		time.Hour + time.Second:          "1h0m1s",
		1500 * time.Millisecond:          "1.5s",
		0:                                "0s",
		time.Hour + 500*time.Millisecond: "1h0m0.5s",
	} {
		assert.Equal(t, want, formatDuration(d))
	}
}

func TestActionPermits(t *testing.T) {
	assert.True(t, ActionDecrypt.Permits())
	assert.True(t, ActionNoDecrypt.Permits())
	assert.True(t, ActionAllow.Permits())
	assert.False(t, ActionBlock.Permits())
}

// A policy file's leading comment, first paragraph, is what the policy
// says it is (reports quote it beside each run).
func TestParseComment(t *testing.T) {
	p, err := Parse("c.yaml", []byte("# The fix: no decryption\n# for the gateways.\n#\n# More detail.\nrules:\n  - { name: a, action: allow }\n"))
	require.NoError(t, err)
	assert.Equal(t, "The fix: no decryption for the gateways.", p.Comment)
	p, err = Parse("c.yaml", []byte("rules:\n  - { name: a, action: allow }\n# trailing\n"))
	require.NoError(t, err)
	assert.Empty(t, p.Comment)
}
