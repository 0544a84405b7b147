package policy

import (
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/pinwall/pinwall/strictyaml"
)

// Session is what the firewall knows about a session when it decides.
type Session struct {
	// Src and Dst are the session's addresses as the firewall sees them.
	Src, Dst netip.AddrPort
	// Proto is ProtoTCP or ProtoUDP.
	Proto Proto
	// SNI is the ClientHello's server name; meaningful only with HasSNI.
	SNI string
	// HasSNI is false for a ClientHello without SNI and for non-TLS traffic.
	HasSNI bool
	// App is the application the firewall identified from the session's
	// first bytes (ssl, dtls, quic, unknown-udp, web-browsing, …); empty
	// when it identified none. Only rules with an app match look at it.
	App App
}

// normalize unmaps 4in6 addresses and canonicalizes the SNI.
func (s Session) normalize() Session {
	s.Src = netip.AddrPortFrom(s.Src.Addr().Unmap(), s.Src.Port())
	s.Dst = netip.AddrPortFrom(s.Dst.Addr().Unmap(), s.Dst.Port())
	s.SNI = canonicalName(s.SNI)
	s.HasSNI = s.HasSNI && s.SNI != ""
	return s
}

func canonicalName(name string) string {
	return strings.ToLower(strings.TrimSuffix(strings.TrimSpace(name), "."))
}

// PortRange is an inclusive range of ports; one port has Lo == Hi. Its text
// form is "443" or "8000-8080".
type PortRange struct {
	Lo, Hi uint16
}

// Port returns the range holding only p.
func Port(p uint16) PortRange { return PortRange{p, p} }

// Contains reports whether p is in the range.
func (r PortRange) Contains(p uint16) bool { return r.Lo <= p && p <= r.Hi }

// String returns the text form.
func (r PortRange) String() string {
	if r.Lo == r.Hi {
		return strconv.Itoa(int(r.Lo))
	}
	return fmt.Sprintf("%d-%d", r.Lo, r.Hi)
}

// MarshalText returns the text form.
func (r PortRange) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// UnmarshalText parses "443" or "8000-8080". Its errors are
// *strictyaml.Error, so that Parse can place them.
func (r *PortRange) UnmarshalText(b []byte) error {
	s := strings.TrimSpace(string(b))
	lo, hi, isRange := strings.Cut(s, "-")
	l, err := parsePort(lo)
	if err != nil {
		return err
	}
	h := l
	if isRange {
		if h, err = parsePort(hi); err != nil {
			return err
		}
	}
	pr := PortRange{l, h}
	if msg := pr.check(); msg != "" {
		return strictyaml.Errorf("", "%s", msg)
	}
	*r = pr
	return nil
}

func parsePort(s string) (uint16, error) {
	s = strings.TrimSpace(s)
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		if len(s) > 0 && strings.Trim(s, "0123456789") == "" {
			return 0, strictyaml.Errorf("", "port %s is out of range 1-65535", s)
		}
		return 0, strictyaml.Errorf("", "%q is not a port or port range (write 443 or 8000-8080)", s)
	}
	if n < 1 || n > 65535 {
		return 0, strictyaml.Errorf("", "port %d is out of range 1-65535", n)
	}
	return uint16(n), nil
}

func (r PortRange) check() string {
	switch {
	case r.Lo == 0 || r.Hi == 0:
		return "port 0 is out of range 1-65535"
	case r.Lo > r.Hi:
		return fmt.Sprintf("port range %d-%d is backwards (write %d-%d)", r.Lo, r.Hi, r.Hi, r.Lo)
	}
	return ""
}

// SNIPattern is a server name to match against a ClientHello's SNI: exact,
// or with "*" labels, each matching exactly one label, so "*.sse.test"
// matches "gateway-acme.sse.test" but neither "gateway-acme.eu.sse.test" nor
// "sse.test". A "**" label matches one or more labels, so "**.sse.test"
// matches both gateway names (PAN-OS custom URL categories write it "*";
// their "^" is pinwall's "*"). Matching ignores case and a trailing dot.
type SNIPattern string

// UnmarshalText checks and canonicalizes a pattern (lower case, no trailing
// dot). Its errors are *strictyaml.Error.
func (p *SNIPattern) UnmarshalText(b []byte) error {
	s := canonicalName(string(b))
	if msg := checkHostname(s, true); msg != "" {
		return strictyaml.Errorf("", "%s", msg)
	}
	*p = SNIPattern(s)
	return nil
}

// Match reports whether name matches the pattern.
func (p SNIPattern) Match(name string) bool {
	pat, name := canonicalName(string(p)), canonicalName(name)
	if !strings.Contains(pat, "*") {
		return pat == name && name != ""
	}
	return matchLabels(strings.Split(pat, "."), strings.Split(name, "."))
}

// matchLabels matches name labels against pattern labels, where "*" stands
// for one label and "**" for one or more.
func matchLabels(pl, nl []string) bool {
	for len(pl) > 0 {
		switch {
		case pl[0] == "**":
			// One or more labels: try every split, shortest first.
			for k := 1; k <= len(nl); k++ {
				if !allNonEmpty(nl[:k]) {
					return false
				}
				if matchLabels(pl[1:], nl[k:]) {
					return true
				}
			}
			return false
		case len(nl) == 0 || nl[0] == "":
			return false
		case pl[0] != "*" && pl[0] != nl[0]:
			return false
		}
		pl, nl = pl[1:], nl[1:]
	}
	return len(nl) == 0
}

func allNonEmpty(labels []string) bool {
	for _, l := range labels {
		if l == "" {
			return false
		}
	}
	return true
}

// checkHostname returns why name is not a valid host name (or, with
// wildcard, SNI pattern), or "".
func checkHostname(name string, wildcard bool) string {
	s := canonicalName(name)
	switch {
	case s == "":
		return "empty name"
	case len(s) > 253:
		return fmt.Sprintf("name %q is longer than 253 characters", name)
	case s == "*":
		return `"*" alone would match only single-label names; leave sni out to match any name`
	case s == "**":
		return `"**" alone would match any name; leave sni out to match any name`
	}
	for _, label := range strings.Split(s, ".") {
		switch {
		case label == "":
			return fmt.Sprintf("name %q has an empty label", name)
		case len(label) > 63:
			return fmt.Sprintf("name %q has a label longer than 63 characters", name)
		case label == "*" || label == "**":
			if !wildcard {
				return fmt.Sprintf("name %q has a wildcard; an FQDN object needs one name", name)
			}
			continue
		case strings.Contains(label, "*"):
			if !wildcard {
				return fmt.Sprintf("name %q has a wildcard; an FQDN object needs one name", name)
			}
			return fmt.Sprintf("%q: * must be a whole label, as in *.sse.test (exactly one label) or **.sse.test (one or more)", name)
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return fmt.Sprintf("name %q has the character %q", name, c)
			}
		}
	}
	return ""
}

// matchStatic checks every field of m but sni, sni-regex and dst-fqdn.
func (m *Match) matchStatic(s Session) bool {
	if m.Proto != "" && m.Proto != ProtoAny && m.Proto != s.Proto {
		return false
	}
	if len(m.Port) > 0 && !anyPort(m.Port, s.Dst.Port()) {
		return false
	}
	if len(m.Src) > 0 && !anyPrefix(m.Src, s.Src.Addr()) {
		return false
	}
	if len(m.Dst) > 0 && !anyPrefix(m.Dst, s.Dst.Addr()) {
		return false
	}
	if m.NoSNI && s.HasSNI {
		return false
	}
	if len(m.App) > 0 && !slices.Contains(m.App, s.App) {
		return false
	}
	return true
}

// matchSNI checks the sni and sni-regex fields: with either set, the SNI
// must match one pattern or one expression (re, compiled from SNIRegex).
func (m *Match) matchSNI(s Session, re []*regexp.Regexp) bool {
	if len(m.SNI) == 0 && len(re) == 0 {
		return true
	}
	if !s.HasSNI {
		return false
	}
	for _, p := range m.SNI {
		if p.Match(s.SNI) {
			return true
		}
	}
	for _, r := range re {
		if r.MatchString(s.SNI) {
			return true
		}
	}
	return false
}

func anyPort(rs []PortRange, p uint16) bool {
	for _, r := range rs {
		if r.Contains(p) {
			return true
		}
	}
	return false
}

func anyPrefix(ps []netip.Prefix, a netip.Addr) bool {
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
