package policy

import (
	"fmt"
	"net/netip"
	"regexp"
	"sort"
	"strings"
)

// LintKind names a kind of policy lint finding.
type LintKind string

// The lint findings Lint reports.
const (
	// LintShadowed: an earlier rule matches every session the rule would,
	// so the rule is never reached.
	LintShadowed LintKind = "shadowed"
	// LintUDPDecrypt: a decrypt rule for UDP. The firewall decrypts TLS
	// over TCP only; UDP matching a decrypt rule passes undecrypted, so
	// the rule reads as inspection and acts as an allow.
	LintUDPDecrypt LintKind = "udp-decrypt"
)

// LintFinding is one lint finding about one rule.
type LintFinding struct {
	Kind LintKind
	// Rule and Line name the rule concerned (Line is 0 for rules built in
	// code).
	Rule string
	Line int
	// By and ByLine name the earlier rule of a LintShadowed finding.
	By     string
	ByLine int
	// Msg says what is wrong, in one sentence.
	Msg string
}

// Lint reports rules that cannot do what they say: rules shadowed by an
// earlier rule, and decrypt rules for UDP. It looks at the rules alone,
// without resolving FQDN objects: a rule is shadowed only when an earlier
// rule's match provably holds for every session the rule's match holds for.
func (p *Policy) Lint() []LintFinding {
	var out []LintFinding
	for i := range p.Rules {
		r := &p.Rules[i]
		if r.Action == ActionDecrypt && r.Match.Proto == ProtoUDP {
			out = append(out, LintFinding{Kind: LintUDPDecrypt, Rule: r.Name, Line: r.Line,
				Msg: fmt.Sprintf("rule %s decrypts UDP, which the firewall never decrypts: UDP it matches is allowed undecrypted", r.Name)})
		}
		for j := 0; j < i; j++ {
			e := &p.Rules[j]
			if e.Match.Covers(r.Match) {
				out = append(out, LintFinding{Kind: LintShadowed, Rule: r.Name, Line: r.Line, By: e.Name, ByLine: e.Line,
					Msg: fmt.Sprintf("rule %s is never reached: rule %s above it matches every session it would", r.Name, e.Name)})
				break
			}
		}
	}
	return out
}

// Covers reports whether every session m matches is also matched by c, as
// far as can be told from the two matches alone: dst-fqdn objects are
// compared by name, not resolved, so a match naming an object is covered
// only by one naming the same object (or none).
func (c Match) Covers(m Match) bool {
	return coversProto(c.Proto, m.Proto) &&
		coversPorts(c.Port, m.Port) &&
		coversPrefixes(c.Src, m.Src) &&
		coversPrefixes(c.Dst, m.Dst) &&
		coversNames(c.DstFQDN, m.DstFQDN) &&
		coversApps(c.App, m.App) &&
		coversSNI(c, m)
}

// coversApps: an empty list means any application.
func coversApps(c, m []App) bool {
	if len(c) == 0 {
		return true
	}
	if len(m) == 0 {
		return false
	}
	for _, a := range m {
		found := false
		for _, x := range c {
			found = found || x == a
		}
		if !found {
			return false
		}
	}
	return true
}

func coversProto(c, m Proto) bool {
	if c == "" || c == ProtoAny {
		return true
	}
	return m == c
}

// coversPorts: an empty list means any port.
func coversPorts(c, m []PortRange) bool {
	if len(c) == 0 {
		return true
	}
	if len(m) == 0 {
		return false
	}
	merged := mergePorts(c)
	for _, r := range m {
		inside := false
		for _, x := range merged {
			if x.Lo <= r.Lo && r.Hi <= x.Hi {
				inside = true
				break
			}
		}
		if !inside {
			return false
		}
	}
	return true
}

// mergePorts returns rs sorted, with overlapping and adjacent ranges merged.
func mergePorts(rs []PortRange) []PortRange {
	s := append([]PortRange(nil), rs...)
	sort.Slice(s, func(i, j int) bool { return s[i].Lo < s[j].Lo })
	out := s[:1]
	for _, r := range s[1:] {
		last := &out[len(out)-1]
		if uint32(r.Lo) <= uint32(last.Hi)+1 {
			last.Hi = max(last.Hi, r.Hi)
			continue
		}
		out = append(out, r)
	}
	return out
}

// coversPrefixes: an empty list means any address.
func coversPrefixes(c, m []netip.Prefix) bool {
	if len(c) == 0 {
		return true
	}
	if len(m) == 0 {
		return false
	}
	for _, p := range m {
		inside := false
		for _, q := range c {
			if q.Bits() <= p.Bits() && q.Contains(p.Addr()) {
				inside = true
				break
			}
		}
		if !inside {
			return false
		}
	}
	return true
}

// coversNames: an empty list means any destination.
func coversNames(c, m []string) bool {
	if len(c) == 0 {
		return true
	}
	if len(m) == 0 {
		return false
	}
	for _, n := range m {
		found := false
		for _, x := range c {
			found = found || x == n
		}
		if !found {
			return false
		}
	}
	return true
}

// coversSNI compares the sni and sni-regex fields (either may match when
// both are set). A regular expression of m is covered only by the same
// expression in c; an exact name of m also by a c expression it matches.
func coversSNI(c, m Match) bool {
	if c.NoSNI && !m.NoSNI {
		return false
	}
	if len(c.SNI) == 0 && len(c.SNIRegex) == 0 {
		return true
	}
	if len(m.SNI) == 0 && len(m.SNIRegex) == 0 {
		// c needs an SNI it names; m also takes other names or none.
		return false
	}
	for _, p := range m.SNI {
		inside := false
		for _, q := range c.SNI {
			if q.covers(p) {
				inside = true
				break
			}
		}
		if !inside && !strings.Contains(string(p), "*") {
			for _, expr := range c.SNIRegex {
				if re, err := regexp.Compile(expr); err == nil && re.MatchString(canonicalName(string(p))) {
					inside = true
					break
				}
			}
		}
		if !inside {
			return false
		}
	}
	for _, expr := range m.SNIRegex {
		found := false
		for _, x := range c.SNIRegex {
			found = found || x == expr
		}
		if !found {
			return false
		}
	}
	return true
}

// covers reports whether every name p matches is matched by q, where "*"
// stands for one label and "**" for one or more: q's "*" covers one label
// of p (a name or "*"), q's "**" one or more labels of any kind.
func (q SNIPattern) covers(p SNIPattern) bool {
	return coverLabels(strings.Split(canonicalName(string(q)), "."), strings.Split(canonicalName(string(p)), "."))
}

func coverLabels(ql, pl []string) bool {
	for len(ql) > 0 {
		if ql[0] == "**" {
			for k := 1; k <= len(pl); k++ {
				if coverLabels(ql[1:], pl[k:]) {
					return true
				}
			}
			return false
		}
		switch {
		case len(pl) == 0 || pl[0] == "**":
			return false
		case ql[0] != "*" && ql[0] != pl[0]:
			return false
		}
		ql, pl = ql[1:], pl[1:]
	}
	return len(pl) == 0
}
