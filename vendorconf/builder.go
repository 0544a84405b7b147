package vendorconf

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/pinwall/pinwall/mitm/policy"
)

// Clause is one conjunction a vendor rule matches: every set field must
// hold. A vendor rule whose match pinwall cannot write as one policy.Match
// (destinations mixing addresses and FQDN objects, services mixing TCP and
// UDP ports) becomes several clauses.
type Clause struct {
	Dst      []netip.Prefix
	DstFQDN  []string
	Proto    policy.Proto
	Ports    []policy.PortRange
	SNI      []policy.SNIPattern
	SNIRegex []string
	App      []policy.App
}

// Match returns the clause as a policy match.
func (c Clause) Match() policy.Match {
	return policy.Match{Dst: c.Dst, DstFQDN: c.DstFQDN, Proto: c.Proto, Port: c.Ports, SNI: c.SNI, SNIRegex: c.SNIRegex, App: c.App}
}

// CouldBeTCP reports whether the clause can match a TCP session.
func (c Clause) CouldBeTCP() bool {
	if c.Proto != "" && c.Proto != policy.ProtoAny && c.Proto != policy.ProtoTCP {
		return false
	}
	if len(c.App) == 0 {
		return true
	}
	return slices.ContainsFunc(c.App, func(a policy.App) bool { return AppProto(a) == policy.ProtoTCP })
}

// AppProto is the transport an application identified by pinwall runs on.
func AppProto(a policy.App) policy.Proto {
	switch a {
	case policy.AppDTLS, policy.AppQUIC, policy.AppUnknownUDP:
		return policy.ProtoUDP
	}
	return policy.ProtoTCP
}

// Intersect returns the clause matching what both a and b match, and false
// when nothing can. FQDN objects cannot be intersected with each other by
// address, so two FQDN lists keep only the names they share.
func Intersect(a, b Clause) (Clause, bool) {
	var out Clause
	var empty bool
	if out.Dst, empty = IntersectPrefixes(a.Dst, b.Dst); empty {
		return Clause{}, false
	}
	switch {
	case len(a.DstFQDN) == 0:
		out.DstFQDN = b.DstFQDN
	case len(b.DstFQDN) == 0:
		out.DstFQDN = a.DstFQDN
	default:
		for _, n := range a.DstFQDN {
			if slices.Contains(b.DstFQDN, n) {
				out.DstFQDN = append(out.DstFQDN, n)
			}
		}
		if len(out.DstFQDN) == 0 {
			return Clause{}, false
		}
	}
	switch {
	case a.Proto == "" || a.Proto == policy.ProtoAny:
		out.Proto = b.Proto
	case b.Proto == "" || b.Proto == policy.ProtoAny || a.Proto == b.Proto:
		out.Proto = a.Proto
	default:
		return Clause{}, false
	}
	if out.Ports, empty = intersectPorts(a.Ports, b.Ports); empty {
		return Clause{}, false
	}
	// Name matches: one side has them (decryption rules and exemptions);
	// when both do, both must hold, which a match cannot say: keep the
	// narrower (b's, the more specific rule by convention of the callers).
	out.SNI, out.SNIRegex = a.SNI, a.SNIRegex
	if len(b.SNI) > 0 || len(b.SNIRegex) > 0 {
		out.SNI, out.SNIRegex = b.SNI, b.SNIRegex
	}
	switch {
	case len(a.App) == 0:
		out.App = b.App
	case len(b.App) == 0:
		out.App = a.App
	default:
		for _, x := range a.App {
			if slices.Contains(b.App, x) {
				out.App = append(out.App, x)
			}
		}
		if len(out.App) == 0 {
			return Clause{}, false
		}
	}
	if len(out.App) > 0 && (out.Proto == policy.ProtoTCP || out.Proto == policy.ProtoUDP) {
		out.App = slices.DeleteFunc(slices.Clone(out.App), func(a policy.App) bool { return AppProto(a) != out.Proto })
		if len(out.App) == 0 {
			return Clause{}, false
		}
	}
	return out, true
}

func intersectPorts(a, b []policy.PortRange) ([]policy.PortRange, bool) {
	switch {
	case len(a) == 0:
		return b, false
	case len(b) == 0:
		return a, false
	}
	var out []policy.PortRange
	for _, x := range a {
		for _, y := range b {
			lo, hi := max(x.Lo, y.Lo), min(x.Hi, y.Hi)
			if lo <= hi && !slices.Contains(out, policy.PortRange{Lo: lo, Hi: hi}) {
				out = append(out, policy.PortRange{Lo: lo, Hi: hi})
			}
		}
	}
	return out, len(out) == 0
}

// Builder collects translated rules into a policy, giving each a name the
// policy accepts and no other rule has.
type Builder struct {
	Policy *policy.Policy
	names  map[string]bool
	next   map[string]int // next number to try per base name
}

// MaxRules bounds a translation: a rule base crossed with a decryption rule
// base cannot grow past it.
const MaxRules = 10000

// ErrTooManyRules is returned (wrapped in a SyntaxError by the readers)
// when a translation would pass MaxRules.
var ErrTooManyRules = fmt.Errorf("the translation would have more than %d pinwall rules", MaxRules)

// NewBuilder starts a policy read from file.
func NewBuilder(file string) *Builder {
	return &Builder{Policy: &policy.Policy{File: file, Objects: policy.Objects{FQDN: map[string]policy.FQDNObject{}}}, names: map[string]bool{}, next: map[string]int{}}
}

// Add appends r, renaming it when its name is not a valid policy rule name
// or is taken: the first rule keeps the name, the next ones get " via
// <via>" (when via is not empty) or a number.
func (b *Builder) Add(r policy.Rule, via string) {
	if len(b.Policy.Rules) >= MaxRules {
		return
	}
	base := SanitizeName(r.Name)
	name := base
	if b.names[name] && via != "" {
		name = truncate(base+" via "+SanitizeName(via), 63)
	}
	if b.names[name] {
		i := max(b.next[base], 2)
		for ; b.names[name]; i++ {
			suffix := fmt.Sprintf(" %d", i)
			name = truncate(base, 63-len(suffix)) + suffix
		}
		b.next[base] = i
	}
	b.names[name] = true
	r.Name = name
	b.Policy.Rules = append(b.Policy.Rules, r)
}

// Full reports whether the builder reached MaxRules (and dropped rules).
func (b *Builder) Full() bool { return len(b.Policy.Rules) >= MaxRules }

// FQDN adds (or reuses) an FQDN object for name and returns the object's
// name.
func (b *Builder) FQDN(object, fqdn string, line int) string {
	object = SanitizeName(object)
	if o, ok := b.Policy.Objects.FQDN[object]; ok && o.FQDN == fqdn {
		return object
	}
	for i := 2; ; i++ {
		if _, taken := b.Policy.Objects.FQDN[object]; !taken {
			break
		}
		object = fmt.Sprintf("%s-%d", truncate(object, 60), i)
	}
	b.Policy.Objects.FQDN[object] = policy.FQDNObject{FQDN: fqdn, Line: line}
	return object
}

// SanitizeName makes s a valid policy name: characters other than letters,
// digits, space, '-', '_' and '.' become '-', at most 63 characters.
func SanitizeName(s string) string {
	var b strings.Builder
	for _, c := range strings.TrimSpace(s) {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_', c == '.', c == ' ':
			b.WriteRune(c)
		default:
			b.WriteByte('-')
		}
	}
	out := truncate(strings.TrimSpace(b.String()), 63)
	if out == "" || out == policy.DefaultRuleName {
		out = "rule-" + out
	}
	return out
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.TrimSpace(s[:n])
}
