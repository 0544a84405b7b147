package fortios

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/pinwall/pinwall/mitm/policy"
	"github.com/pinwall/pinwall/vendorconf"
)

// inspection is what a policy's SSL/SSH inspection profile does to HTTPS.
type inspection struct {
	name    string
	line    int
	mode    string // disable, certificate-inspection, deep-inspection
	ports   []policy.PortRange
	exempts []exempt
	// options of the decrypt rule.
	decrypt policy.Options
	// sniCheck applies to rules that exempt by name.
	sniCheck policy.SNICertCheck
}

// exempt is one ssl-exempt entry read as a clause.
type exempt struct {
	id     string
	clause vendorconf.Clause
	byName bool
	line   int
	what   string
}

// builtin inspection profiles FortiOS ships (their names; contents
// inferred: no-inspection inspects nothing, certificate-inspection reads
// the SNI and certificate, deep-inspection decrypts HTTPS on 443).
var builtinProfiles = map[string]string{
	"no-inspection":          "disable",
	"certificate-inspection": "certificate-inspection",
	"deep-inspection":        "deep-inspection",
	"custom-deep-inspection": "deep-inspection",
}

// inspection reads the policy's profile. A policy inspects only with
// utm-status enable (inferred: FortiOS applies security profiles, the SSL
// inspection profile among them, only then).
func (t *translator) inspection(p *block, what string) inspection {
	name := p.get("ssl-ssh-profile")
	if p.get("utm-status") != "enable" {
		if name != "" && name != "no-inspection" {
			t.note(p.lineOf("ssl-ssh-profile"), what+" ssl-ssh-profile "+name, "utm-status is not enable, so no security profile applies (inferred)",
				"nothing is inspected: the policy's sessions are allowed undecrypted")
		}
		return inspection{mode: "disable"}
	}
	if name == "" {
		name = "no-inspection"
		t.note(p.line, what+" ssl-ssh-profile", "the policy names no SSL/SSH inspection profile", "read as no-inspection, FortiOS's default for a policy with security profiles")
	}
	prof := t.table("firewall ssl-ssh-profile").edit(name)
	if prof == nil {
		mode, ok := builtinProfiles[name]
		if !ok {
			t.note(p.lineOf("ssl-ssh-profile"), what+" ssl-ssh-profile "+name, "no SSL/SSH profile of that name is defined", "read as no-inspection")
			return inspection{mode: "disable"}
		}
		t.note(p.lineOf("ssl-ssh-profile"), what+" ssl-ssh-profile "+name, "a FortiOS built-in profile missing from the configuration",
			fmt.Sprintf("read as %s on TCP 443 with FortiOS's defaults (inferred)", mode))
		return inspection{name: name, mode: mode, ports: []policy.PortRange{policy.Port(443)}, decrypt: policy.Options{ClientCert: policy.ClientCertBypass}}
	}
	return t.profile(prof)
}

// profile reads a "config firewall ssl-ssh-profile" entry.
func (t *translator) profile(prof *block) inspection {
	pw := fmt.Sprintf("ssl-ssh-profile %q", prof.name)
	in := inspection{name: prof.name, line: prof.line}
	https := prof.config("https")
	ssl := prof.config("ssl")
	opts := https
	switch {
	case ssl != nil && ssl.get("inspect-all") != "" && ssl.get("inspect-all") != "disable":
		// Inspect SSL on every port.
		in.mode, opts = ssl.get("inspect-all"), ssl
	case https != nil:
		in.mode = https.get("status")
		if in.mode == "" {
			in.mode = "disable"
			t.note(https.line, pw+" https status", "not set", "read as disable")
		}
		in.ports = []policy.PortRange{policy.Port(443)}
		if vs := https.values("ports"); len(vs) > 0 {
			ps, err := portRanges(vs)
			if err != nil {
				t.note(https.lineOf("ports"), pw+" https ports "+strings.Join(vs, " "), err.Error(), "read as 443")
			} else {
				in.ports = ps
			}
		}
	default:
		t.note(prof.line, pw, "the profile has no config https or config ssl block", "read as inspecting nothing")
		in.mode = "disable"
		return in
	}
	get := func(key, old, def string) string {
		if v := opts.get(key); v != "" {
			return v
		}
		if old != "" {
			if v := opts.get(old); v != "" {
				return v
			}
		}
		return def
	}
	switch cc := get("client-certificate", "client-cert-request", "bypass"); cc {
	case "bypass":
		in.decrypt.ClientCert = policy.ClientCertBypass
	case "block":
		in.decrypt.ClientCert = policy.ClientCertBlock
	case "inspect":
		in.decrypt.ClientCert = policy.ClientCertBlock
		t.note(opts.lineOf("client-certificate"), pw+" client-certificate inspect",
			"the FortiGate keeps inspecting, but it has no client certificate to present to a server that demands one",
			"client-cert block: the server refuses the firewall's handshake (inferred)")
	default:
		t.note(opts.lineOf("client-certificate"), pw+" client-certificate "+cc, "not bypass, inspect or block", "read as bypass")
		in.decrypt.ClientCert = policy.ClientCertBypass
	}
	switch uc := get("untrusted-server-cert", "untrusted-cert", "allow"); uc {
	case "allow":
		in.decrypt.UntrustedCert = policy.UntrustedCertUntrustedCA
	case "block":
		in.decrypt.UntrustedCert = policy.UntrustedCertBlock
	case "ignore":
		in.decrypt.UntrustedCert = policy.UntrustedCertIgnore
	default:
		t.note(opts.lineOf("untrusted-server-cert"), pw+" untrusted-server-cert "+uc, "not allow, block or ignore", "read as allow")
		in.decrypt.UntrustedCert = policy.UntrustedCertUntrustedCA
	}
	if ex := get("expired-server-cert", "", "block"); ex != get("untrusted-server-cert", "untrusted-cert", "allow") {
		t.note(opts.lineOf("expired-server-cert"), pw+" expired-server-cert "+ex, "pinwall takes one action for every certificate that does not verify",
			fmt.Sprintf("untrusted-cert %s, from untrusted-server-cert", in.decrypt.UntrustedCert))
	}
	switch sc := get("sni-server-cert-check", "", "enable"); sc {
	case "strict":
		in.sniCheck = policy.SNICertCheckStrict
	case "enable":
		in.sniCheck = policy.SNICertCheckStrict
		t.note(opts.lineOf("sni-server-cert-check"), pw+" sni-server-cert-check enable",
			"FortiOS then matches exemptions on the certificate's name when it does not cover the SNI, so a spoofed SNI is inspected rather than exempted",
			"sni-cert-check strict on the rules that exempt by name: a spoofed SNI is blocked rather than exempted; either way it does not pass undecrypted")
	case "disable":
	default:
		t.note(opts.lineOf("sni-server-cert-check"), pw+" sni-server-cert-check "+sc, "not enable, strict or disable", "read as disable")
	}
	if q := opts.get("quic"); q == "inspect" {
		t.note(opts.lineOf("quic"), pw+" quic inspect", "FortiOS 7.4 can decrypt QUIC; pinwall never decrypts UDP",
			"QUIC the policy allows passes undecrypted")
	}
	for _, k := range []string{"unsupported-ssl-version", "unsupported-ssl-cipher", "unsupported-ssl-negotiation", "revoked-server-cert", "cert-validation-timeout", "cert-validation-failure", "cert-probe-failure"} {
		if v := opts.get(k); v == "block" {
			t.note(opts.lineOf(k), pw+" "+k+" block", "pinwall's peers speak TLS 1.3 with common ciphers, and its certificate checks never time out or fail to fetch",
				"no effect on the translation")
		}
	}
	for _, k := range []string{"allowlist", "ssl-exemption-ip-rating"} {
		if prof.get(k) == "enable" {
			t.note(prof.lineOf(k), pw+" "+k+" enable", "FortiGuard's allowlist and reputation data are not in the configuration",
				"taken to exempt none of the simulated names")
		}
	}
	for _, e := range prof.config("ssl-exempt").edits() {
		if x, ok := t.exempt(prof.name, e); ok {
			in.exempts = append(in.exempts, x)
		}
	}
	return in
}

// exempt reads one ssl-exempt entry.
func (t *translator) exempt(profile string, e *block) (exempt, bool) {
	typ := e.get("type")
	if typ == "" {
		typ = "fortiguard-category"
	}
	what := fmt.Sprintf("ssl-ssh-profile %q ssl-exempt %s", profile, e.name)
	switch typ {
	case "address":
		name := e.get("address")
		set := t.resolveAddr(name, e.lineOf("address"), what+" address", map[string]bool{})
		var c vendorconf.Clause
		switch {
		case set.any:
		case len(set.prefixes) > 0:
			c.Dst = set.prefixes
		case len(set.fqdn) > 0:
			for _, f := range set.fqdn {
				c.DstFQDN = append(c.DstFQDN, t.b.FQDN(f.object, f.name, f.line))
			}
		default:
			t.note(e.line, what+" address "+name, "the address holds nothing pinwall can match", "left out")
			return exempt{}, false
		}
		return exempt{id: e.name, clause: c, line: e.line, what: "address " + name}, true
	case "wildcard-fqdn":
		name := e.get("wildcard-fqdn")
		pats := t.wildcards(name, e.lineOf("wildcard-fqdn"), what)
		if len(pats) == 0 {
			return exempt{}, false
		}
		return exempt{id: e.name, clause: vendorconf.Clause{SNI: pats}, byName: true, line: e.line, what: "wildcard-fqdn " + name}, true
	case "regex":
		re := e.get("regex")
		if _, err := regexp.Compile(re); err != nil {
			t.note(e.lineOf("regex"), what+" regex "+re, "not a regular expression pinwall (RE2) can read: "+err.Error(), "left out")
			return exempt{}, false
		}
		t.note(e.lineOf("regex"), what+" regex "+re, "FortiOS matches the expression against the server name; whether it anchors it is not documented",
			"searched in the SNI, unanchored unless the expression anchors itself (inferred)")
		expr := re
		if strings.ToLower(re) != re {
			expr = "(?i)" + re // pinwall lower-cases the SNI it matches
		}
		return exempt{id: e.name, clause: vendorconf.Clause{SNIRegex: []string{expr}}, byName: true, line: e.line, what: "regex " + re}, true
	case "fortiguard-category":
		t.note(e.line, what+" fortiguard-category "+e.get("fortiguard-category"), "a FortiGuard category pinwall cannot know",
			"taken to hold none of the simulated sites or gateways")
	default:
		t.note(e.line, what+" type "+typ, "pinwall reads address, wildcard-fqdn, regex and fortiguard-category exemptions", "left out")
	}
	return exempt{}, false
}

// wildcards resolves an ssl-exempt wildcard-fqdn name: a "firewall
// wildcard-fqdn custom" or "group" entry, or a wildcard-fqdn address.
// FortiOS's "*" is read as one label (inferred, as in certificate names).
func (t *translator) wildcards(name string, line int, what string) []policy.SNIPattern {
	var raw []string
	var rawLine int
	if c := t.table("firewall wildcard-fqdn custom").edit(name); c != nil {
		raw, rawLine = []string{c.get("wildcard-fqdn")}, c.lineOf("wildcard-fqdn")
	} else if g := t.table("firewall wildcard-fqdn group").edit(name); g != nil {
		for _, m := range g.values("member") {
			if c := t.table("firewall wildcard-fqdn custom").edit(m); c != nil {
				raw = append(raw, c.get("wildcard-fqdn"))
			}
		}
		rawLine = g.line
	} else if a := t.table("firewall address").edit(name); a != nil && a.get("type") == "wildcard-fqdn" {
		raw, rawLine = []string{a.get("wildcard-fqdn")}, a.lineOf("wildcard-fqdn")
	} else {
		t.note(line, what+" wildcard-fqdn "+name, "no wildcard FQDN object of that name is defined", "left out")
		return nil
	}
	var out []policy.SNIPattern
	for _, r := range raw {
		var p policy.SNIPattern
		if err := p.UnmarshalText([]byte(r)); err != nil {
			t.note(rawLine, fmt.Sprintf("wildcard FQDN %q (%s)", name, r), "not a name pattern pinwall can match: "+err.Error(), "left out")
			continue
		}
		if strings.Contains(r, "*") {
			t.note(rawLine, fmt.Sprintf("wildcard FQDN %q = %s", name, r), "FortiOS does not document how many labels \"*\" stands for",
				"one label, as in certificate wildcards: "+r+" does not match a name with more labels (inferred)")
		}
		out = append(out, p)
	}
	return out
}

// inspectRules writes the inspection decisions for one accept clause: the
// exemptions, then decrypt (deep) or no-decrypt (certificate inspection)
// on the HTTPS ports.
func (t *translator) inspectRules(p *block, id int, name, comment string, c vendorconf.Clause, in inspection) {
	https, ok := vendorconf.Intersect(c, vendorconf.Clause{Proto: policy.ProtoTCP, Ports: in.ports})
	if !ok {
		return
	}
	via := name
	if in.mode == "deep-inspection" {
		for _, x := range in.exempts {
			ec, ok := vendorconf.Intersect(https, x.clause)
			if !ok {
				continue
			}
			var o policy.Options
			if x.byName {
				o.SNICertCheck = in.sniCheck
			}
			t.b.Add(policy.Rule{
				Name: fmt.Sprintf("%s exempt %s", name, x.id), ID: id, Match: ec.Match(),
				Action: policy.ActionNoDecrypt, Options: o, Line: x.line,
				Comment: fmt.Sprintf("%s ssl-exempt %s of ssl-ssh-profile %q (firewall policy %d, line %d)", t.at(x.line), x.what, in.name, id, p.line),
			}, via)
		}
		t.b.Add(policy.Rule{
			Name: name + " deep-inspection", ID: id, Match: https.Match(), Action: policy.ActionDecrypt, Options: in.decrypt, Line: p.line,
			Comment: fmt.Sprintf("%s, ssl-ssh-profile %q (deep-inspection)", comment, in.name),
		}, via)
		return
	}
	if in.mode == "certificate-inspection" {
		t.b.Add(policy.Rule{
			Name: name + " certificate-inspection", ID: id, Match: https.Match(), Action: policy.ActionNoDecrypt,
			Options: policy.Options{SNICertCheck: in.sniCheck}, Line: p.line,
			Comment: fmt.Sprintf("%s, ssl-ssh-profile %q (certificate-inspection)", comment, in.name),
		}, via)
	}
}
