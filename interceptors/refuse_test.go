package interceptors_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pinwall/pinwall/interceptors"
	"github.com/pinwall/pinwall/mitm/policy"
)

// TestTranslateEdges covers what the catalogue's policies do not: each
// policy is translated for one tool and either refused (with the file,
// line and field, and what the tool lacks) or translated so that the
// tool's configuration holds the given lines.
func TestTranslateEdges(t *testing.T) {
	cases := map[string]struct {
		kind   interceptors.Kind
		policy string
		refuse string   // part of the refusal
		holds  []string // parts of Describe
	}{
		"mitmproxy cannot match the client": {interceptors.Mitmproxy, `rules:
  - { name: lab, match: { proto: tcp, src: [10.10.10.0/25], sni: [a.test] }, action: no-decrypt }
  - { name: rest, match: { proto: tcp }, action: decrypt }
`, `x.yaml:2: rules[0].match.src: mitmproxy 8.1.1 cannot express rule "lab": mitmproxy's ignore_hosts and allow_hosts match the server's address or the SNI, never the client's`, nil},
		"mitmproxy cannot order a decrypt before a pass": {interceptors.Mitmproxy, `rules:
  - { name: inspect-bank, match: { proto: tcp, sni: [www.bank.test] }, action: decrypt }
  - { name: pass-banks, match: { proto: tcp, dst: [192.0.2.0/24] }, action: no-decrypt }
  - { name: rest, match: { proto: tcp }, action: decrypt }
`, `x.yaml:2: rules[0]: mitmproxy 8.1.1 cannot express rule "inspect-bank": mitmproxy cannot order rules`, nil},
		"mitmproxy cannot refuse by name": {interceptors.Mitmproxy, `rules:
  - { name: no-social, match: { proto: tcp, sni: [www.social.test] }, action: block }
  - { name: rest, match: { proto: tcp }, action: decrypt }
`, `rules[0].action: mitmproxy 8.1.1 cannot express rule "no-social": mitmproxy has no way to refuse a connection by name or address`, nil},
		"mitmproxy: one set for every port": {interceptors.Mitmproxy, `rules:
  - { name: pass-gw, match: { proto: tcp, port: [443], dst: [203.0.113.0/24] }, action: no-decrypt }
  - { name: rest, match: { proto: tcp, port: [443, 8443] }, action: decrypt }
`, `mitmproxy applies one ignore_hosts/allow_hosts set to every port it intercepts`, nil},
		"mitmproxy: address rules go to nftables before an SNI rule": {interceptors.Mitmproxy, `rules:
  - { name: block-lab, match: { proto: tcp, src: [10.10.10.128/25] }, action: block }
  - { name: pass-gw, match: { proto: tcp, sni: [gateway-acme.sse.test] }, action: no-decrypt }
  - { name: rest, match: { proto: tcp, port: [443] }, action: decrypt }
`, "", []string{"saddr 10.10.10.128/25 dport { 443, 8443 } drop  # block-lab", "dport 8443 accept  # pass-gw, default", "dport 443 redirect to the tool  # tls-ports", `  - '^gateway-acme\.sse\.test$'`}},
		"mitmproxy: allow_hosts when only some are decrypted": {interceptors.Mitmproxy, `rules:
  - { name: inspect-social, match: { proto: tcp, sni: ["*.social.test"] }, action: decrypt }
  - { name: rest, action: allow }
`, "", []string{"allow_hosts:", `  - '^[^.]+\.social\.test$'`, "dport { 443, 8443 } redirect to the tool"}},
		"squid: an ordered list with terminate and client addresses": {interceptors.Squid, `rules:
  - { name: lab, match: { proto: tcp, src: [10.10.10.128/25], sni: ["*.sse.test"] }, action: block }
  - { name: pass-gw, match: { proto: tcp, sni: [gateway-acme.sse.test], dst: [203.0.113.0/24] }, action: no-decrypt }
  - { name: rest, match: { proto: tcp, port: [443, 8000-8080] }, action: decrypt }
default-action: block
`, "", []string{
			"acl r0_src src 10.10.10.128/25", `acl r0_sni ssl::server_name_regex -i ^[^.]+\.sse\.test$`, "ssl_bump terminate r0_src r0_sni",
			"acl r1_dst dst 203.0.113.0/24", "ssl_bump splice r1_dst r1_sni", "acl r2_port port 443 8000-8080", "ssl_bump bump r2_port",
			"ssl_bump terminate all", "dport { 443, 8000-8080 } accept  # rest", "drop  # default"}},
		"squid cannot match a missing SNI": {interceptors.Squid, `rules:
  - { name: odd, match: { proto: tcp, no-sni: true }, action: block }
`, `rules[0].match.no-sni: squid 5.7 cannot express rule "odd": pinwall does not translate no-sni for squid`, nil},
		"sslsplit: one passthrough setting": {interceptors.SSLsplit, `rules:
  - { name: inspect-gw, match: { proto: tcp, dst: [203.0.113.0/24] }, action: decrypt, options: { client-cert: bypass } }
  - { name: rest, match: { proto: tcp }, action: decrypt }
`, `rules[1].options.client-cert: sslsplit 0.5.5 cannot express rule "rest": sslsplit's passthrough (-P) applies to every connection it splits`, nil},
		"sslsplit: client-cert bypass is passthrough": {interceptors.SSLsplit, `rules:
  - { name: all, match: { proto: tcp, port: [443] }, action: decrypt, options: { client-cert: bypass } }
`, "", []string{"Passthrough yes", "dport 443 redirect to the tool  # all", "also on any other TLS error"}},
		"idle timeouts are not translated": {interceptors.Squid, `udp-idle-timeout: 10s
rules:
  - { name: all, action: allow }
`, `x.yaml: udp-idle-timeout: squid 5.7: pinwall does not translate idle timeouts`, nil},
		"UDP is decided by address only": {interceptors.SSLsplit, `rules:
  - { name: dtls-by-name, match: { proto: udp, sni: [gateway-acme.sse.test] }, action: block }
  - { name: dtls, match: { proto: udp, port: [443], dst: [203.0.113.8/30] }, action: no-decrypt }
  - { name: quic, match: { proto: udp, port: [443] }, action: block }
`, "", []string{"daddr 203.0.113.8/30 dport 443 accept  # dtls", "dport 443 drop  # quic"}},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			pol, err := policy.Parse("x.yaml", []byte(c.policy))
			require.NoError(t, err)
			cfg, err := interceptors.Translate(c.kind, pol, interceptors.DefaultParams())
			if c.refuse != "" {
				require.ErrorIs(t, err, interceptors.ErrUnsupported)
				assert.Contains(t, err.Error(), c.refuse)
				return
			}
			require.NoError(t, err)
			d := cfg.Describe()
			for _, h := range c.holds {
				assert.Contains(t, d, h)
			}
			assert.NotContains(t, d, "dtls-by-name", "an SNI rule never matches a datagram")
		})
	}
}

func TestTranslateRefusesPinwall(t *testing.T) {
	pol, err := policy.Parse("x.yaml", []byte("rules: [{ name: a, action: allow }]\n"))
	require.NoError(t, err)
	_, err = interceptors.Translate(interceptors.Pinwall, pol, interceptors.DefaultParams())
	require.Error(t, err)
	_, err = interceptors.Translate("mitmdump", pol, interceptors.DefaultParams())
	require.ErrorContains(t, err, `"mitmdump" is not one of: pinwall, mitmproxy, squid, sslsplit`)
}
