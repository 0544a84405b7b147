package panos

import (
	"fmt"
	"strings"

	"github.com/pinwall/pinwall/mitm/policy"
	"github.com/pinwall/pinwall/vendorconf"
)

// exclusion is one custom SSL Decryption Exclusion.
type exclusion struct {
	host policy.SNIPattern
	line int
}

// exclusions reads shared/ssl-decrypt/ssl-exclude-cert (and the same list
// in Panorama templates).
func (t *translator) exclusions() []exclusion {
	lists := []*node{t.shared.path("ssl-decrypt", "ssl-exclude-cert")}
	for _, tmpl := range t.config.path("devices", "entry", "template").entries() {
		lists = append(lists, tmpl.path("config", "shared", "ssl-decrypt", "ssl-exclude-cert"))
	}
	var out []exclusion
	for _, l := range lists {
		for _, e := range l.entries() {
			t.nExclusions++
			host := e.nameAttr()
			what := fmt.Sprintf("SSL decryption exclusion %q", host)
			if e.child("exclude") != nil && !e.yes("exclude") {
				t.note(e.line, what, "its exclude setting is no", "left out, as PAN-OS does not exclude it")
				continue
			}
			var p policy.SNIPattern
			if err := p.UnmarshalText([]byte(host)); err != nil {
				t.note(e.line, what, "not a hostname pattern pinwall can match: "+err.Error(), "left out")
				continue
			}
			out = append(out, exclusion{host: p, line: e.line})
		}
	}
	if len(out) > 0 {
		t.note(out[0].line, "SSL decryption exclusions",
			"PAN-OS compares an exclusion to the SNI or to the name in the server's certificate",
			"pinwall compares it to the SNI (\"*\" is one label, as PAN-OS documents); predefined exclusions from content updates are not in the configuration and are taken to cover none of the simulated names")
	}
	return out
}

// decRule is a decryption rule read into clauses.
type decRule struct {
	name    string
	line    int
	action  policy.Action
	clauses []vendorconf.Clause
	options policy.Options
	what    string
}

// decryptionRule reads a decryption rule; ok is false when it does not
// apply or matches nothing pinwall can see.
func (t *translator) decryptionRule(r *node) (decRule, bool) {
	what := ruleWhat("decryption", r)
	if !t.applies("decryption", r) {
		return decRule{}, false
	}
	d := decRule{name: r.nameAttr(), line: r.line, what: what}
	switch act := r.textOf("action"); act {
	case "decrypt":
		d.action = policy.ActionDecrypt
	case "no-decrypt":
		d.action = policy.ActionNoDecrypt
	case "decrypt-and-forward":
		d.action = policy.ActionDecrypt
		t.note(r.path("action").line, what+" action decrypt-and-forward", "pinwall does not forward decrypted traffic to a security chain",
			"read as decrypt")
	case "":
		return d, t.noteFalse(r.line, what, "the rule has no action", "left out")
	default:
		return d, t.noteFalse(r.child("action").line, what+" action "+act, "not decrypt or no-decrypt", "left out")
	}
	typ := "ssl-forward-proxy"
	if ty := r.child("type"); ty != nil && len(ty.kids) > 0 {
		typ = ty.kids[0].name
	}
	if typ != "ssl-forward-proxy" {
		return d, t.noteFalse(r.child("type").line, what+" type "+typ,
			"only SSL Forward Proxy rules concern a laptop's outbound TLS", "left out")
	}
	dst, ok := t.destClauses(r, what)
	if !ok {
		return d, false
	}
	svc, ok := t.serviceClauses(r, what)
	if !ok {
		return d, false
	}
	names, ok := t.categories(r, what)
	if !ok {
		return d, false
	}
	for _, a := range dst {
		for _, s := range svc {
			c, ok := vendorconf.Intersect(a, s)
			if !ok {
				continue
			}
			if c.Proto == "" {
				c.Proto = policy.ProtoTCP // decryption applies to TLS over TCP
			}
			if c.Proto != policy.ProtoTCP {
				continue
			}
			c.SNI = names
			d.clauses = append(d.clauses, c)
		}
	}
	if len(d.clauses) == 0 {
		return d, t.noteFalse(r.line, what, "it matches no TCP service", "left out: decryption applies to TLS over TCP")
	}
	d.options = t.profile(r, d.action, what)
	return d, true
}

// noteFalse records a note and returns false.
func (t *translator) noteFalse(line int, what, why, assumption string) bool {
	t.note(line, what, why, assumption)
	return false
}

// categories reads a decryption rule's URL categories into SNI patterns;
// nil for any. ok is false when every category is one pinwall cannot know.
func (t *translator) categories(r *node, what string) ([]policy.SNIPattern, bool) {
	ms := r.members("category")
	if isAny(ms) {
		return nil, true
	}
	var out []policy.SNIPattern
	for _, m := range ms {
		c := t.lookup("profiles/custom-url-category", m.value)
		if c == nil {
			t.note(m.line, what+" category "+m.value, "a PAN-OS URL category (PAN-DB) pinwall cannot know",
				"taken to hold none of the simulated sites or gateways")
			continue
		}
		if typ := c.textOf("type"); typ != "" && typ != "URL List" {
			t.note(c.line, fmt.Sprintf("custom URL category %q (type %s)", m.value, typ),
				"it matches PAN-DB categories pinwall cannot know", "taken to hold none of the simulated names")
			continue
		}
		for _, e := range c.members("list") {
			if p, ok := t.urlPattern(e, m.value); ok {
				out = append(out, p)
			}
		}
	}
	if len(out) == 0 {
		t.note(r.line, what, "none of its categories holds a name pinwall can match", "left out: it never matches")
		return nil, false
	}
	return out, true
}

// urlPattern turns a URL list entry into an SNI pattern: PAN-OS "*" is one
// or more labels (pinwall "**"), "^" exactly one (pinwall "*").
func (t *translator) urlPattern(e member, category string) (policy.SNIPattern, bool) {
	what := fmt.Sprintf("custom URL category %q entry %q", category, e.value)
	v := e.value
	for _, scheme := range []string{"http://", "https://"} {
		v = strings.TrimPrefix(strings.ToLower(v), scheme)
	}
	host, path, hasPath := strings.Cut(v, "/")
	if hasPath && path != "" && path != "*" {
		t.note(e.line, what, "a decryption rule sees the server name, not the path",
			"matched on the host "+host)
	}
	if _, ok := literalPrefix(host); ok {
		t.note(e.line, what, "an address in a URL list is matched against the URL's host, which a ClientHello's SNI never is",
			"left out")
		return "", false
	}
	labels := strings.Split(host, ".")
	for i, l := range labels {
		switch l {
		case "*":
			labels[i] = "**"
		case "^":
			labels[i] = "*"
		}
	}
	var p policy.SNIPattern
	if err := p.UnmarshalText([]byte(strings.Join(labels, "."))); err != nil {
		t.note(e.line, what, "not a host pattern pinwall can match: "+err.Error(), "left out")
		return "", false
	}
	return p, true
}

// profile reads the rule's decryption profile into rule options.
func (t *translator) profile(r *node, action policy.Action, what string) policy.Options {
	var o policy.Options
	name := r.textOf("profile")
	if name == "" || name == "None" {
		if action == policy.ActionDecrypt {
			o.ClientCert = policy.ClientCertLearn
			t.note(r.line, what+" (no decryption profile)", "without a profile nothing is blocked: sessions with client authentication are allowed, undecrypted",
				"client-cert learn (PAN-OS adds such servers to its local decryption exclusion cache); untrusted-cert untrusted-ca (Forward Untrust)")
		}
		return o
	}
	p := t.lookup("profiles/decryption", name)
	if p == nil {
		t.note(r.path("profile").line, what+" profile "+name, "no decryption profile of that name is defined",
			"read as a profile blocking nothing")
		if action == policy.ActionDecrypt {
			o.ClientCert = policy.ClientCertLearn
		}
		return o
	}
	pw := fmt.Sprintf("decryption profile %q", name)
	if action == policy.ActionNoDecrypt {
		np := p.child("ssl-no-proxy")
		if np.yes("block-untrusted-issuer") || np.yes("block-expired-certificate") {
			o.SNICertCheck = policy.SNICertCheckStrict
			t.note(np.line, pw+" ssl-no-proxy block-untrusted-issuer / block-expired-certificate",
				"PAN-OS checks the certificate of an undecrypted TLS 1.2 session (TLS 1.3 hides it)",
				"sni-cert-check strict: pinwall probes the server's certificate, which must chain to the trust store and cover the SNI")
		}
		return o
	}
	fp := p.child("ssl-forward-proxy")
	if fp.yes("block-client-cert") {
		o.ClientCert = policy.ClientCertBlock
	} else {
		o.ClientCert = policy.ClientCertLearn
	}
	if fp.yes("block-untrusted-issuer") {
		o.UntrustedCert = policy.UntrustedCertBlock
	} else {
		o.UntrustedCert = policy.UntrustedCertUntrustedCA
	}
	if fp.yes("block-expired-certificate") != fp.yes("block-untrusted-issuer") {
		t.note(fp.child("block-expired-certificate").lineOr(fp), pw+" block-expired-certificate",
			"pinwall takes one action for every certificate that does not verify",
			fmt.Sprintf("untrusted-cert %s, from block-untrusted-issuer", o.UntrustedCert))
	}
	for _, f := range []string{"block-unsupported-version", "block-unsupported-cipher", "block-unknown-cert", "block-timeout-cert", "block-if-no-resource", "restrict-cert-exts"} {
		if fp.yes(f) {
			t.note(fp.child(f).line, pw+" "+f, "pinwall's peers speak TLS 1.3 with common ciphers and certificates, and its revocation checks never time out",
				"no effect on the translation")
		}
	}
	if ps := p.child("ssl-protocol-settings"); ps != nil {
		if v := ps.textOf("max-version"); v != "" && v != "max" && v != "tls1-3" {
			t.note(ps.child("max-version").line, pw+" max-version "+v,
				"the firewall would offer the client and the server at most "+v+"; pinwall's firewall negotiates what both sides offer",
				"not modelled: a client that requires TLS 1.3 would also fail here")
		}
	}
	return o
}

// lineOr returns n's line, or fallback's when n is nil.
func (n *node) lineOr(fallback *node) int {
	if n != nil {
		return n.line
	}
	if fallback != nil {
		return fallback.line
	}
	return 0
}

// securityRule translates one security rule and, for an allow, the
// decryption decisions under it.
func (t *translator) securityRule(r *node, excl []exclusion, dec []decRule) {
	what := ruleWhat("security", r)
	if !t.applies("security", r) {
		return
	}
	if rt := r.textOf("rule-type"); rt == "intrazone" && len(t.opts.From) > 0 {
		// An intrazone rule sees sessions within one zone only.
		if !t.opts.OnPath(t.opts.To, t.opts.From) || !sameZones(t.opts.From, t.opts.To) {
			t.note(r.line, what+" rule-type intrazone", "the laptop's sessions cross zones", "left out")
			return
		}
	}
	if ms := r.members("category"); !isAny(ms) {
		t.note(ms[0].line, what+" category "+strings.Join(values(ms), ","),
			"a URL category in a security rule is matched on the URL, after decryption or from the SNI",
			"ignored: the rule is read as matching every category")
	}
	apps, ok := t.applications(r, what)
	if !ok {
		return
	}
	dst, ok := t.destClauses(r, what)
	if !ok {
		return
	}
	svc, ok := t.serviceClauses(r, what)
	if !ok {
		return
	}
	var clauses []vendorconf.Clause
	for _, a := range dst {
		for _, s := range svc {
			if c, ok := vendorconf.Intersect(a, s); ok {
				if c, ok = vendorconf.Intersect(c, vendorconf.Clause{App: apps}); ok {
					clauses = append(clauses, c)
				}
			}
		}
	}
	name := r.nameAttr()
	comment := fmt.Sprintf("%s security rule %q", t.at(r.line), name)
	act := r.textOf("action")
	switch act {
	case "allow":
	case "deny", "drop", "reset-client", "reset-server", "reset-both":
		for _, c := range clauses {
			t.b.Add(policy.Rule{Name: name, Match: c.Match(), Action: policy.ActionBlock, Line: r.line, Comment: comment + " (" + act + ")"}, "")
		}
		return
	default:
		t.note(r.line, what+" action "+act, "not an action pinwall knows", "left out")
		return
	}
	for _, c := range clauses {
		if c.CouldBeTCP() {
			t.decisions(c, r, excl, dec)
		}
		t.b.Add(policy.Rule{Name: name, Match: c.Match(), Action: policy.ActionAllow, Line: r.line, Comment: comment}, "")
	}
}

func sameZones(a, b []string) bool {
	for _, x := range a {
		for _, y := range b {
			if x == y {
				return true
			}
		}
	}
	return false
}

// decisions writes the decryption exclusions and rules under one allow
// clause.
func (t *translator) decisions(allow vendorconf.Clause, r *node, excl []exclusion, dec []decRule) {
	via := r.nameAttr()
	for i, x := range excl {
		c, ok := vendorconf.Intersect(allow, vendorconf.Clause{Proto: policy.ProtoTCP, SNI: []policy.SNIPattern{x.host}})
		if !ok {
			continue
		}
		t.b.Add(policy.Rule{
			Name: fmt.Sprintf("decryption exclusion %d", i+1), Match: c.Match(), Action: policy.ActionNoDecrypt, Line: x.line,
			Comment: fmt.Sprintf("%s SSL decryption exclusion %q, under security rule %q", t.at(x.line), string(x.host), via),
		}, via)
	}
	for _, d := range dec {
		for _, dc := range d.clauses {
			c, ok := vendorconf.Intersect(allow, dc)
			if !ok {
				continue
			}
			t.b.Add(policy.Rule{
				Name: d.name, Match: c.Match(), Action: d.action, Options: d.options, Line: d.line,
				Comment: fmt.Sprintf("%s decryption rule %q, under security rule %q", t.at(d.line), d.name, via),
			}, via)
		}
	}
}

// applications reads a security rule's applications; nil for any. ok is
// false when every application is one pinwall does not identify.
func (t *translator) applications(r *node, what string) ([]policy.App, bool) {
	ms := r.members("application")
	if isAny(ms) {
		return nil, true
	}
	var out []policy.App
	var unknown []string
	for _, m := range ms {
		if a, ok := knownApps[m.value]; ok {
			out = append(out, a)
			continue
		}
		if g := t.lookup("application-group", m.value); g != nil {
			for _, mm := range g.members("members") {
				if a, ok := knownApps[mm.value]; ok {
					out = append(out, a)
				} else {
					unknown = append(unknown, mm.value)
				}
			}
			continue
		}
		unknown = append(unknown, m.value)
	}
	if len(unknown) > 0 {
		t.note(ms[0].line, what+" application "+strings.Join(unknown, ","),
			"pinwall identifies only ssl, web-browsing, http2, dtls, quic and unknown-tcp/udp from a session's first bytes",
			"those applications are taken to match none of the tunnel's, the probes' or the sites' sessions")
	}
	if len(out) == 0 {
		t.note(r.line, what, "none of its applications is one pinwall identifies", "left out: it never matches")
		return nil, false
	}
	return out, true
}

// defaults sets the default action: PAN-OS's interzone-default denies
// unless the configuration overrides it.
func (t *translator) defaults() {
	t.b.Policy.DefaultAction = policy.ActionBlock
	t.defaultWhy = "PAN-OS interzone-default (deny)"
	var dsr []*node
	if t.scope != nil && !t.panorama {
		dsr = append(dsr, t.scope.path("rulebase", "default-security-rules", "rules"))
	} else {
		dsr = append(dsr, t.shared.path("post-rulebase", "default-security-rules", "rules"))
		if t.dg != nil {
			dsr = append(dsr, t.dg.path("post-rulebase", "default-security-rules", "rules"))
		}
	}
	for _, rules := range dsr {
		if e := rules.entry("interzone-default"); e != nil {
			switch e.textOf("action") {
			case "allow":
				t.b.Policy.DefaultAction = policy.ActionAllow
				t.defaultWhy = fmt.Sprintf("%s interzone-default overridden to allow", t.at(e.line))
			case "":
			default:
				t.defaultWhy = fmt.Sprintf("%s interzone-default (%s)", t.at(e.line), e.textOf("action"))
			}
		}
	}
}
