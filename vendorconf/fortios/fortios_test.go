package fortios

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/pinwall/pinwall/mitm/policy"
	"github.com/pinwall/pinwall/vendorconf"
)

var update = flag.Bool("update", false, "rewrite the golden files")

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var path = vendorconf.Options{From: []string{"port2"}, To: []string{"port1"}}

func load(t *testing.T, file string, opts vendorconf.Options) *vendorconf.Translation {
	t.Helper()
	tr, err := Load(file, opts)
	require.NoError(t, err)
	return tr
}

// TestGolden compares each configuration's translation report and
// translated policy with its golden file.
func TestGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/*.conf")
	require.NoError(t, err)
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			tr := load(t, file, path)
			var b bytes.Buffer
			require.NoError(t, tr.Report(&b))
			y, err := tr.Policy.Marshal()
			require.NoError(t, err)
			b.WriteString("\n--- translated policy ---\n")
			b.Write(y)
			golden := strings.TrimSuffix(file, ".conf") + ".golden"
			if *update {
				require.NoError(t, os.WriteFile(golden, b.Bytes(), 0o644))
			}
			want, err := os.ReadFile(golden)
			require.NoError(t, err)
			assert.Equal(t, string(want), b.String())
			back, err := policy.Parse("translated.yaml", y)
			require.NoError(t, err)
			assert.Len(t, back.Rules, len(tr.Policy.Rules))
		})
	}
}

func tcp(dst, sni string) policy.Session {
	return policy.Session{Src: netip.MustParseAddrPort("10.10.10.66:50000"), Dst: netip.MustParseAddrPort(dst),
		Proto: policy.ProtoTCP, SNI: sni, HasSNI: sni != "", App: policy.AppSSL}
}

func udp(dst string, app policy.App) policy.Session {
	return policy.Session{Src: netip.MustParseAddrPort("10.10.10.100:50000"), Dst: netip.MustParseAddrPort(dst), Proto: policy.ProtoUDP, App: app}
}

// TestRealisticMistakes decides the sessions that show each mistake of the
// realistic configuration with the translated policy.
func TestRealisticMistakes(t *testing.T) {
	tr := load(t, "testdata/acme-realistic.conf", path)
	// The Bank exemption is an FQDN address: take it out to decide without
	// a resolver.
	p := *tr.Policy
	p.Rules = nil
	for _, r := range tr.Policy.Rules {
		if len(r.Match.DstFQDN) == 0 {
			p.Rules = append(p.Rules, r)
		}
	}
	eng, err := policy.NewEngine(&p, policy.EngineConfig{})
	require.NoError(t, err)
	for _, tt := range []struct {
		name   string
		s      policy.Session
		rule   string
		id     int
		action policy.Action
	}{
		{"DTLS to the primary is allowed", udp("203.0.113.9:443", policy.AppDTLS), "sse-dtls", 1, policy.ActionAllow},
		{"DTLS to the backup is denied with QUIC", udp("203.0.113.137:443", policy.AppDTLS), "block-quic", 2, policy.ActionBlock},
		{"TLS to the primary is exempt", tcp("203.0.113.9:443", "gateway-acme.sse.test"), "internet exempt 1", 3, policy.ActionNoDecrypt},
		{"the SNI alone is exempt, anywhere", tcp("192.0.2.10:443", "gateway-acme.sse.test"), "internet exempt 1", 3, policy.ActionNoDecrypt},
		{"one label misses the regional name", tcp("203.0.113.41:443", "gateway-acme.eu.sse.test"), "internet deep-inspection", 3, policy.ActionDecrypt},
		{"other ports pass", tcp("192.0.2.10:8443", "www.social.test"), "internet", 3, policy.ActionAllow},
	} {
		d := eng.Decide(context.Background(), tt.s)
		assert.Equal(t, tt.rule, d.RuleName, tt.name)
		assert.Equal(t, tt.id, d.Rule.ID, tt.name)
		assert.Equal(t, tt.action, d.Action, tt.name)
	}
	d := eng.Decide(context.Background(), tcp("192.0.2.10:443", "www.social.test"))
	assert.Equal(t, policy.ClientCertBlock, d.Options.ClientCert, "client-certificate block")
	assert.Equal(t, policy.UntrustedCertUntrustedCA, d.Options.UntrustedCert, "untrusted-server-cert allow")
	exempt := eng.Decide(context.Background(), tcp("192.0.2.10:443", "gateway-acme.sse.test"))
	assert.Equal(t, policy.SNICertCheckNone, exempt.Options.SNICertCheck, "sni-server-cert-check disable")
}

// TestConstructs checks how each construct translates.
func TestConstructs(t *testing.T) {
	tr := load(t, "testdata/constructs.conf", path)
	assert.Equal(t, "VDOM root", tr.Scope)
	byName := map[string]policy.Rule{}
	for _, r := range tr.Policy.Rules {
		byName[r.Name] = r
	}
	tunnel := byName["tunnel"]
	assert.Equal(t, 6, tunnel.ID)
	assert.Contains(t, tunnel.Match.Dst, netip.MustParsePrefix("203.0.113.40/29"), "iprange")
	assert.Equal(t, []policy.PortRange{policy.Port(443), policy.Port(8443), {Lo: 8000, Hi: 8080}}, tunnel.Match.Port,
		"tcp-portrange with a source range, a range, and a duplicate merged")
	assert.Equal(t, policy.ProtoUDP, byName["tunnel 2"].Match.Proto)
	assert.Equal(t, []string{"sse-fqdn"}, byName["tunnel 3"].Match.DstFQDN, "fqdn address")
	cert := byName["tunnel certificate-inspection"]
	assert.Equal(t, policy.ActionNoDecrypt, cert.Action)
	assert.Equal(t, policy.SNICertCheckStrict, cert.Options.SNICertCheck, "sni-server-cert-check strict")
	assert.Equal(t, []policy.SNIPattern{"*.sse.test", "*.*.sse.test"}, byName["deep exempt 1"].Match.SNI, "wildcard-fqdn group")
	assert.Equal(t, policy.SNICertCheckStrict, byName["deep exempt 1"].Options.SNICertCheck, "enable read as strict, noted")
	assert.Equal(t, []string{`^gateway-[a-z-]+\.sse\.test$`}, byName["deep exempt 2"].Match.SNIRegex, "regex")
	assert.Contains(t, byName["deep exempt 3"].Match.Dst, netip.MustParsePrefix("203.0.113.136/30"), "address exemption")
	deep := byName["deep deep-inspection"]
	assert.Equal(t, []policy.PortRange{policy.Port(443)}, deep.Match.Port, "service HTTPS within https ports 443 8443")
	assert.Equal(t, policy.ClientCertBlock, deep.Options.ClientCert, "client-certificate inspect, read as block")
	assert.Equal(t, policy.UntrustedCertBlock, deep.Options.UntrustedCert)
	all := byName["all-ports deep-inspection"]
	assert.Empty(t, all.Match.Port, "config ssl inspect-all: every port")
	assert.Equal(t, policy.ClientCertBypass, all.Options.ClientCert)
	assert.Equal(t, policy.UntrustedCertIgnore, all.Options.UntrustedCert)
	assert.Equal(t, policy.ActionAllow, byName["no-utm"].Action, "utm-status disable: no inspection")
	assert.NotContains(t, byName, "no-utm deep-inspection")
	for _, skipped := range []string{"from-servers", "dmz", "negated", "isdb", "odd"} {
		assert.NotContains(t, byName, skipped)
	}
	for _, what := range []string{"policy 3", "geography", "not a contiguous netmask", "exclude-member", "contains itself",
		"gate*.sse.test", "protocol ICMP", "sctp-portrange", "fortiguard-category 31", "address6", "(unclosed", "allowlist",
		"schedule workhours", "groups vpn-users", "application-list", "wildcard-fqdn *.sse.test", "several VDOMs"} {
		assert.True(t, noted(tr, what), "%s is noted", what)
	}
}

func noted(tr *vendorconf.Translation, s string) bool {
	for _, n := range tr.Notes {
		if strings.Contains(n.What, s) || strings.Contains(n.Why, s) {
			return true
		}
	}
	return false
}

func TestVDOMScope(t *testing.T) {
	tr := load(t, "testdata/constructs.conf", vendorconf.Options{Scope: "branch"})
	assert.Equal(t, "VDOM branch", tr.Scope)
	require.Len(t, tr.Policy.Rules, 1)
	assert.Equal(t, "policy 1", tr.Policy.Rules[0].Name)
	_, err := Load("testdata/constructs.conf", vendorconf.Options{Scope: "hq"})
	assert.ErrorContains(t, err, `no VDOM "hq" (there is: root, branch)`)
}

// TestErrors checks that malformed input is one error naming file:line.
func TestErrors(t *testing.T) {
	for _, tt := range []struct {
		name, in, want string
	}{
		{"end inside edit", "config firewall policy\n    edit 1\n        set action accept\nend\n", `x.conf:4: end while edit 1 (line 2) is open: a next is missing`},
		{"never closed", "config firewall policy\n    edit 1\n    next\n", `x.conf:1: config firewall policy is never closed (the file ends before its end)`},
		{"edit outside config", "edit 1\n", `x.conf:1: edit outside a config block`},
		{"next without edit", "config firewall policy\nnext\nend\n", `x.conf:2: next without an open edit (config firewall policy, line 1, is open)`},
		{"unknown verb", "config firewall policy\n    edit 1\n        sett action accept\n", `x.conf:3: unexpected "sett"`},
		{"unclosed quote", "config firewall address\n    edit \"lan\n", `x.conf:2: a quoted value (") is never closed`},
		{"set at top level", "set hostname fw\n", `x.conf:1: set outside a config block`},
		{"no policy table", "config system global\n    set hostname \"fw\"\nend\n", `x.conf:1: no config firewall policy found`},
		{"end without config", "end\n", `x.conf:1: end without an open config`},
		{"edit with two names", "config firewall address\n    edit a b\n", `x.conf:2: edit takes one name or number, got 2 words`},
		{"several VDOMs none root", "config vdom\nedit a\nconfig firewall policy\nend\nnext\nedit b\nconfig firewall policy\nend\nnext\nend\n",
			`x.conf:1: the configuration has several VDOMs (a, b) and none is root: choose one with --scope`},
	} {
		_, err := Translate("x.conf", []byte(tt.in), vendorconf.Options{})
		require.Error(t, err, tt.name)
		var se *vendorconf.SyntaxError
		assert.True(t, errors.As(err, &se), "%s: %T", tt.name, err)
		assert.Contains(t, err.Error(), tt.want, tt.name)
	}
}

func TestTokenize(t *testing.T) {
	stmts, err := tokenize("x", []byte("# comment\n  set comment \"a \\\"quoted\\\" word\" 'single' bare\\ word\n\nset cert \"-----BEGIN\nLINE\n-----END\"\nset tag a#b\n"))
	require.NoError(t, err)
	require.Len(t, stmts, 3)
	assert.Equal(t, []string{"set", "comment", `a "quoted" word`, "single", "bare word"}, stmts[0].words)
	assert.Equal(t, 2, stmts[0].line)
	assert.Equal(t, []string{"set", "cert", "-----BEGIN\nLINE\n-----END"}, stmts[1].words)
	assert.Equal(t, 4, stmts[1].line)
	assert.Equal(t, []string{"set", "tag", "a#b"}, stmts[2].words)
	assert.Equal(t, 7, stmts[2].line, "lines count the breaks inside quotes")
}
