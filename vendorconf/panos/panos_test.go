package panos

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

var path = vendorconf.Options{From: []string{"trust"}, To: []string{"untrust"}}

func load(t *testing.T, file string, opts vendorconf.Options) *vendorconf.Translation {
	t.Helper()
	tr, err := Load(file, opts)
	require.NoError(t, err)
	return tr
}

// TestGolden compares each configuration's translation report and
// translated policy with its golden file.
func TestGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/*.xml")
	require.NoError(t, err)
	for _, file := range files {
		if strings.HasPrefix(filepath.Base(file), "malformed") {
			continue
		}
		t.Run(filepath.Base(file), func(t *testing.T) {
			opts := path
			if strings.Contains(file, "panorama") {
				opts = vendorconf.Options{}
			}
			tr := load(t, file, opts)
			var b bytes.Buffer
			require.NoError(t, tr.Report(&b))
			y, err := tr.Policy.Marshal()
			require.NoError(t, err)
			b.WriteString("\n--- translated policy ---\n")
			b.Write(y)
			golden := strings.TrimSuffix(file, ".xml") + ".golden"
			if *update {
				require.NoError(t, os.WriteFile(golden, b.Bytes(), 0o644))
			}
			want, err := os.ReadFile(golden)
			require.NoError(t, err)
			assert.Equal(t, string(want), b.String())

			// The written policy reads back as the same rules.
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
	tr := load(t, "testdata/acme-realistic.xml", path)
	eng, err := policy.NewEngine(tr.Policy, policy.EngineConfig{})
	require.NoError(t, err)
	for _, tt := range []struct {
		name   string
		s      policy.Session
		rule   string
		action policy.Action
	}{
		{"DTLS to the primary is allowed", udp("203.0.113.9:443", policy.AppDTLS), "allow-sse-dtls", policy.ActionAllow},
		{"DTLS to the backup is dropped with QUIC", udp("203.0.113.137:443", policy.AppDTLS), "block-quic", policy.ActionBlock},
		{"QUIC anywhere is dropped", udp("192.0.2.10:443", policy.AppQUIC), "block-quic", policy.ActionBlock},
		{"TLS to the primary is excluded", tcp("203.0.113.9:443", "gateway-acme.sse.test"), "decryption exclusion 1", policy.ActionNoDecrypt},
		{"the SNI alone is excluded, anywhere", tcp("192.0.2.10:443", "gateway-acme.sse.test"), "decryption exclusion 1", policy.ActionNoDecrypt},
		{"one label misses the regional name", tcp("203.0.113.41:443", "gateway-acme.eu.sse.test"), "decrypt-all", policy.ActionDecrypt},
		{"a custom URL category is not decrypted", tcp("192.0.2.40:443", "www.bank.test"), "no-decrypt-finance", policy.ActionNoDecrypt},
		{"the rest is decrypted", tcp("192.0.2.10:443", "www.social.test"), "decrypt-all", policy.ActionDecrypt},
		{"internal addresses are not", tcp("10.1.2.3:443", "intranet.test"), "no-decrypt-internal", policy.ActionNoDecrypt},
	} {
		d := eng.Decide(context.Background(), tt.s)
		assert.Equal(t, tt.rule, d.RuleName, tt.name)
		assert.Equal(t, tt.action, d.Action, tt.name)
	}
	d := eng.Decide(context.Background(), tcp("192.0.2.10:443", "www.social.test"))
	assert.Equal(t, policy.ClientCertLearn, d.Options.ClientCert, "block-client-cert no: PAN-OS excludes and learns")
	assert.Equal(t, policy.UntrustedCertBlock, d.Options.UntrustedCert, "block-untrusted-issuer yes")
	assert.Equal(t, 120, tr.Policy.Rules[0].Line, "rules point back to their source line")
}

// TestConstructs checks how each construct translates.
func TestConstructs(t *testing.T) {
	tr := load(t, "testdata/constructs.xml", path)
	byName := map[string]policy.Rule{}
	for _, r := range tr.Policy.Rules {
		byName[r.Name] = r
	}
	assert.Equal(t, policy.ActionAllow, tr.Policy.DefaultAction, "interzone-default overridden")
	quic := byName["block-quic-app"]
	assert.Equal(t, []policy.App{policy.AppQUIC}, quic.Match.App, "application quic, application-default: any port")
	assert.Empty(t, quic.Match.Port)
	tunnel := byName["allow-tunnel"]
	assert.Contains(t, tunnel.Match.Dst, netip.MustParsePrefix("203.0.113.40/29"), "ip-range")
	assert.Contains(t, tunnel.Match.Dst, netip.MustParsePrefix("203.0.113.136/30"), "shared address in a vsys group")
	assert.Equal(t, []policy.App{policy.AppSSL}, tunnel.Match.App, "the TCP clause keeps the TCP application")
	assert.Equal(t, []policy.App{policy.AppDTLS}, byName["allow-tunnel 2"].Match.App)
	assert.Equal(t, []string{"sse-fqdn"}, byName["allow-tunnel 3"].Match.DstFQDN, "fqdn address object")
	names := byName["no-decrypt-sse-names"]
	assert.Equal(t, []policy.SNIPattern{"**.sse.test", "*.acme.test", "gateway-backup-acme.sse.test"}, names.Match.SNI,
		`URL list: "*" is one or more labels, "^" exactly one, paths dropped`)
	assert.Equal(t, policy.SNICertCheckStrict, names.Options.SNICertCheck, "ssl-no-proxy block-untrusted-issuer")
	strict := byName["decrypt-tcp-strict"]
	assert.Equal(t, policy.ClientCertBlock, strict.Options.ClientCert)
	assert.Equal(t, policy.UntrustedCertBlock, strict.Options.UntrustedCert)
	assert.Equal(t, []policy.PortRange{policy.Port(443), policy.Port(8443)}, strict.Match.Port, "the UDP service is no decryption's")
	lenient := byName["decrypt-rest"]
	assert.Equal(t, policy.ClientCertLearn, lenient.Options.ClientCert)
	assert.Equal(t, policy.UntrustedCertUntrustedCA, lenient.Options.UntrustedCert)
	assert.Equal(t, []policy.SNIPattern{"*.*.sse.test"}, byName["decryption exclusion 1"].Match.SNI)
	for _, skipped := range []string{"servers-only", "dmz-rule", "disabled-rule", "saas-only", "not-lan", "odd-objects", "ssh", "everything-but-sse"} {
		assert.NotContains(t, byName, skipped)
		assert.True(t, noted(tr, skipped), "%s is noted", skipped)
	}
	for _, what := range []string{"ip-wildcard", "dynamic address group", "10.0.0.300", "contains itself", "nowhere", "region US",
		"zscaler-tunnel", "source-user", "source-port", "Category Match", "192.0.2.55", "bad name!", "max-version tls1-2"} {
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

func TestPanoramaScope(t *testing.T) {
	tr := load(t, "testdata/panorama.xml", vendorconf.Options{})
	assert.Equal(t, "device group branches", tr.Scope)
	require.NotEmpty(t, tr.Policy.Rules)
	assert.Equal(t, "decryption exclusion 1", tr.Policy.Rules[0].Name, "template exclusions apply")
	assert.Equal(t, "shared-allow-rest", tr.Policy.Rules[len(tr.Policy.Rules)-1].Name, "shared post-rules come last")
	_, err := Load("testdata/panorama.xml", vendorconf.Options{Scope: "hq"})
	assert.ErrorContains(t, err, `no device group "hq" (there is: branches)`)
}

// TestErrors checks that malformed input is one error naming file:line.
func TestErrors(t *testing.T) {
	deep := "<config>" + strings.Repeat("<a>", 70) + strings.Repeat("</a>", 70) + "</config>"
	for _, tt := range []struct {
		name, in, want string
	}{
		{"unclosed element", "<config>\n<shared>\n</config>\n", `x.xml:3: malformed XML: element <shared> closed by </config>`},
		{"not XML", "config firewall policy\n", `x.xml:2: no XML element found`},
		{"empty", "", `x.xml:1: no XML element found`},
		{"not a configuration", "<?xml version=\"1.0\"?>\n<html/>\n", `x.xml:2: the document starts with <html>, not <config>`},
		{"no scope", "<config>\n  <devices/>\n</config>\n", `x.xml:2: no vsys (devices/entry/vsys/entry) or device group`},
		{"two roots", "<config/>\n<config/>\n", `x.xml:2: a second top-level element <config> after </config>`},
		{"nested too deep", deep, `x.xml:1: elements nested more than 64 deep`},
		{"several device groups", "<config><devices><entry><device-group>\n<entry name=\"a\"/><entry name=\"b\"/></device-group></entry></devices></config>",
			`x.xml:2: the configuration has several device groups (a, b): choose one with --scope`},
	} {
		_, err := Translate("x.xml", []byte(tt.in), vendorconf.Options{})
		require.Error(t, err, tt.name)
		var se *vendorconf.SyntaxError
		assert.True(t, errors.As(err, &se), "%s: %T", tt.name, err)
		assert.Contains(t, err.Error(), tt.want, tt.name)
	}
	_, err := Load("testdata/malformed.xml", vendorconf.Options{})
	assert.ErrorContains(t, err, "testdata/malformed.xml:5: malformed XML")
	_, err = Load("testdata/none.xml", vendorconf.Options{})
	assert.ErrorIs(t, err, os.ErrNotExist)
}

func TestLaptopOption(t *testing.T) {
	tr := load(t, "testdata/acme-realistic.xml", vendorconf.Options{From: path.From, To: path.To, Laptop: netip.MustParseAddr("10.99.0.5")})
	for _, r := range tr.Policy.Rules {
		assert.NotEqual(t, "allow-internet", r.Name, "LAN-Users does not hold 10.99.0.5")
	}
	assert.True(t, noted(tr, "does not hold the laptop 10.99.0.5"))
}
