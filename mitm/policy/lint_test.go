package policy

import (
	"reflect"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func mustParse(t *testing.T, src string) *Policy {
	t.Helper()
	p, err := Parse("lint.yaml", []byte(src))
	require.NoError(t, err)
	return p
}

func TestCovers(t *testing.T) {
	tests := []struct {
		name   string
		c, m   string // match bodies, YAML flow style
		covers bool
	}{
		{"empty covers all", `{}`, `{proto: udp, port: [443], dst: [203.0.113.0/24], sni: [a.test]}`, true},
		{"proto any covers tcp", `{proto: any}`, `{proto: tcp}`, true},
		{"tcp does not cover any", `{proto: tcp}`, `{}`, false},
		{"tcp does not cover udp", `{proto: tcp}`, `{proto: udp}`, false},
		{"port range covers port", `{port: [400-500]}`, `{port: [443]}`, true},
		{"adjacent ranges merge", `{port: [1-442, 443, 444-600]}`, `{port: [400-500]}`, true},
		{"port does not cover any port", `{port: [443]}`, `{}`, false},
		{"port does not cover a wider range", `{port: [443]}`, `{port: [443-444]}`, false},
		{"wide prefix covers narrow", `{dst: [203.0.113.0/24]}`, `{dst: [203.0.113.8/30, 203.0.113.136]}`, true},
		{"narrow prefix does not cover wide", `{dst: [203.0.113.8/30]}`, `{dst: [203.0.113.0/24]}`, false},
		{"src too", `{src: [10.0.0.0/8]}`, `{src: [10.10.10.0/24]}`, true},
		{"prefix does not cover any address", `{dst: [203.0.113.0/24]}`, `{}`, false},
		{"wildcard covers a name of as many labels", `{sni: ["*.sse.test"]}`, `{sni: [gateway-acme.sse.test]}`, true},
		{"wildcard does not cover a deeper name", `{sni: ["*.sse.test"]}`, `{sni: [gateway-acme.eu.sse.test]}`, false},
		{"name does not cover a wildcard", `{sni: [gateway-acme.sse.test]}`, `{sni: ["*.sse.test"]}`, false},
		{"sni does not cover no-sni", `{sni: [a.test]}`, `{no-sni: true}`, false},
		{"sni does not cover any", `{sni: [a.test]}`, `{proto: tcp}`, false},
		{"no-sni covers no-sni", `{no-sni: true}`, `{no-sni: true, proto: tcp}`, true},
		{"no-sni does not cover sni", `{no-sni: true}`, `{sni: [a.test]}`, false},
		{"same fqdn object", `{dst-fqdn: [gw]}`, `{dst-fqdn: [gw], proto: tcp}`, true},
		{"fqdn object does not cover an address", `{dst-fqdn: [gw]}`, `{dst: [203.0.113.9]}`, false},
		{"two-star covers deeper names", `{sni: ["**.sse.test"]}`, `{sni: [gateway-acme.eu.sse.test, "*.sse.test"]}`, true},
		{"one-star does not cover two-star", `{sni: ["*.sse.test"]}`, `{sni: ["**.sse.test"]}`, false},
		{"a regex covers the exact names it matches", `{sni-regex: ["^gateway-[a-z]+\\.sse\\.test$"]}`, `{sni: [gateway-acme.sse.test]}`, true},
		{"a regex covers itself only", `{sni-regex: ["sse"]}`, `{sni-regex: ["sse\\.test"]}`, false},
		{"apps", `{app: [ssl, dtls]}`, `{app: [dtls]}`, true},
		{"app does not cover any app", `{app: [ssl]}`, `{proto: tcp}`, false},
		{"every field must cover", `{proto: tcp, port: [443], dst: [203.0.113.0/24]}`, `{proto: tcp, port: [443], dst: [198.51.100.0/24]}`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := mustParse(t, "objects: { fqdn: { gw: { fqdn: gw.test } } }\nrules:\n  - { name: c, match: "+tt.c+", action: allow }\n  - { name: m, match: "+tt.m+", action: allow }\n")
			assert.Equal(t, tt.covers, p.Rules[0].Match.Covers(p.Rules[1].Match))
		})
	}
}

// TestCoversKnowsEveryMatchField fails when Match gains a field Covers does
// not compare: shadowing would then be claimed for rules the new field
// tells apart.
func TestCoversKnowsEveryMatchField(t *testing.T) {
	known := []string{"Src", "Dst", "DstFQDN", "Proto", "Port", "SNI", "NoSNI", "SNIRegex", "App"}
	var fields []string
	for f := range reflect.TypeFor[Match]().Fields() {
		fields = append(fields, f.Name)
	}
	assert.ElementsMatch(t, known, fields, "teach Match.Covers (lint.go) the new fields, then list them here")
}

func TestLint(t *testing.T) {
	p := mustParse(t, `rules:
  - name: allow-dtls
    match: { proto: udp, port: [443], dst: [203.0.113.0/24] }
    action: allow
  - name: decrypt-udp
    match: { proto: udp, port: [443] }
    action: decrypt
  - name: no-decrypt-sse
    match: { proto: tcp, port: [443], dst: [203.0.113.0/24] }
    action: no-decrypt
  - name: no-decrypt-primary
    match: { proto: tcp, port: [443], dst: [203.0.113.8/30], sni: [gateway-acme.sse.test] }
    action: no-decrypt
  - name: decrypt-rest
    match: { proto: tcp, port: [443] }
    action: decrypt
  - name: block-rest
    action: block
`)
	got := p.Lint()
	require.Len(t, got, 2, "%+v", got)
	assert.Equal(t, LintFinding{Kind: LintUDPDecrypt, Rule: "decrypt-udp", Line: 5,
		Msg: "rule decrypt-udp decrypts UDP, which the firewall never decrypts: UDP it matches is allowed undecrypted"}, got[0])
	assert.Equal(t, LintFinding{Kind: LintShadowed, Rule: "no-decrypt-primary", Line: 11, By: "no-decrypt-sse", ByLine: 8,
		Msg: "rule no-decrypt-primary is never reached: rule no-decrypt-sse above it matches every session it would"}, got[1])
	assert.Empty(t, mustParse(t, "rules:\n  - { name: a, action: allow }\n").Lint())
}
