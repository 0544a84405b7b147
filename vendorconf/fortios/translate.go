package fortios

import (
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/pinwall/pinwall/mitm/policy"
	"github.com/pinwall/pinwall/vendorconf"
)

// Load reads and translates the configuration file at path.
func Load(path string, opts vendorconf.Options) (*vendorconf.Translation, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("fortios: %w", err)
	}
	if fi.Size() > vendorconf.MaxFileBytes {
		return nil, vendorconf.Errorf(path, 0, "file is %d bytes, more than the %d a configuration may have", fi.Size(), vendorconf.MaxFileBytes)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("fortios: %w", err)
	}
	return Translate(path, data, opts)
}

// Translate reads a FortiOS configuration (CLI text) and returns it as a
// pinwall policy. file names it in errors and in the rules' comments. Errors
// are *vendorconf.SyntaxError with the line.
func Translate(file string, data []byte, opts vendorconf.Options) (*vendorconf.Translation, error) {
	root, err := parseCLI(file, data)
	if err != nil {
		return nil, err
	}
	t := &translator{file: file, opts: opts.WithDefaults(), b: vendorconf.NewBuilder(file), seenNote: map[string]bool{}}
	if err := t.run(root); err != nil {
		return nil, err
	}
	if t.b.Full() {
		return nil, vendorconf.Errorf(file, 0, "%v", vendorconf.ErrTooManyRules)
	}
	if err := t.b.Policy.Validate(); err != nil {
		return nil, fmt.Errorf("fortios: %s: the translated policy is invalid (a pinwall bug): %w", file, err)
	}
	slices.SortStableFunc(t.notes, func(a, b vendorconf.Note) int { return a.Line - b.Line })
	return &vendorconf.Translation{
		Vendor: vendorconf.FortiOS, File: file, Scope: t.scopeName,
		Read:   fmt.Sprintf("%d firewall policies, %d SSL/SSH inspection profiles read", t.nPolicies, t.nProfiles),
		Policy: t.b.Policy, DefaultWhy: "FortiOS implicit deny (policy 0)", Notes: t.notes,
	}, nil
}

type translator struct {
	file string
	opts vendorconf.Options
	b    *vendorconf.Builder

	root, scope *block // scope: the VDOM's edit, or the root
	scopeName   string

	notes    []vendorconf.Note
	seenNote map[string]bool

	nPolicies, nProfiles int
}

func (t *translator) note(line int, what, why, assumption string) {
	key := fmt.Sprintf("%d\x00%s\x00%s", line, what, why)
	if t.seenNote[key] {
		return
	}
	t.seenNote[key] = true
	t.notes = append(t.notes, vendorconf.Note{Line: line, What: what, Why: why, Assumption: assumption})
}

func (t *translator) at(line int) string { return t.file + ":" + strconv.Itoa(line) }

// table returns the config block of a table ("firewall policy") in the
// scope, or globally.
func (t *translator) table(name string) *block {
	if c := t.scope.config(name); c != nil {
		return c
	}
	if g := t.root.config("global"); g != nil {
		if c := g.config(name); c != nil {
			return c
		}
	}
	return t.root.config(name)
}

func (t *translator) run(root *block) error {
	t.root, t.scope = root, root
	var vdoms []*block // the VDOM edits that hold tables
	var names []string
	vline := 0
	for _, k := range root.kids {
		if k.kind != "config" || k.name != "vdom" {
			continue
		}
		if vline == 0 {
			vline = k.line
		}
		for _, e := range k.edits() {
			if !slices.Contains(names, e.name) {
				names = append(names, e.name)
			}
			// A VDOM is first declared (an empty edit), then configured.
			if len(e.kids) > 0 {
				vdoms = append(vdoms, e)
			}
		}
	}
	if len(vdoms) > 0 {
		want := t.opts.Scope
		if want == "" {
			want = "root"
		}
		var pick *block
		for _, e := range vdoms {
			if e.name == want {
				pick = e
			}
		}
		switch {
		case pick != nil:
		case t.opts.Scope != "":
			return vendorconf.Errorf(t.file, vline, "no VDOM %q (there is: %s)", t.opts.Scope, strings.Join(names, ", "))
		case len(vdoms) == 1:
			pick = vdoms[0]
		default:
			return vendorconf.Errorf(t.file, vline, "the configuration has several VDOMs (%s) and none is root: choose one with --scope", strings.Join(names, ", "))
		}
		t.scope, t.scopeName = pick, "VDOM "+pick.name
		if len(names) > 1 && t.opts.Scope == "" {
			t.note(pick.line, "VDOM "+pick.name, fmt.Sprintf("the configuration has several VDOMs (%s)", strings.Join(names, ", ")),
				"read "+pick.name+"; choose another with --scope")
		}
	}
	pols := t.table("firewall policy")
	if pols == nil {
		return vendorconf.Errorf(t.file, 1, "no config firewall policy found: is this a FortiOS configuration (show full-configuration)?")
	}
	t.nProfiles = len(t.table("firewall ssl-ssh-profile").edits())
	for _, p := range pols.edits() {
		t.nPolicies++
		t.policy(p)
	}
	t.b.Policy.DefaultAction = policy.ActionBlock
	if len(t.opts.From) == 0 && len(t.opts.To) == 0 {
		t.note(0, "interfaces", "no path was given, so every policy's srcintf and dstintf were taken to include the laptop's path",
			"policies of every interface pair apply; pass --path IN:OUT (interfaces) to read the configuration for one")
	}
	return nil
}

// policy translates one firewall policy.
func (t *translator) policy(p *block) {
	id, err := strconv.Atoi(p.name)
	if err != nil || id < 0 {
		t.note(p.line, "firewall policy "+p.name, "a policy is edited by its number", "left out")
		return
	}
	name := p.get("name")
	what := fmt.Sprintf("firewall policy %d", id)
	if name != "" {
		what += fmt.Sprintf(" %q", name)
	} else {
		name = fmt.Sprintf("policy %d", id)
	}
	if p.get("status") == "disable" {
		t.note(p.line, what, "the policy is disabled", "left out, as FortiOS skips it")
		return
	}
	if !t.opts.OnPath(p.values("srcintf"), p.values("dstintf")) {
		t.note(p.line, what, fmt.Sprintf("its interfaces (%s to %s) are not the laptop's path (%s to %s)",
			strings.Join(p.values("srcintf"), ","), strings.Join(p.values("dstintf"), ","), strings.Join(t.opts.From, ","), strings.Join(t.opts.To, ",")),
			"left out: it never sees the laptop's sessions")
		return
	}
	for _, neg := range []string{"srcaddr-negate", "dstaddr-negate", "service-negate"} {
		if p.get(neg) == "enable" {
			t.note(p.lineOf(neg), what+" "+neg, "a pinwall rule cannot match everything but some addresses or services",
				"the policy is left out; check it by hand")
			return
		}
	}
	if !t.sourceHoldsLaptop(p, what) {
		return
	}
	for _, k := range []string{"users", "groups", "fsso-groups"} {
		if vs := p.values(k); len(vs) > 0 {
			t.note(p.lineOf(k), what+" "+k+" "+strings.Join(vs, ","), "a user match pinwall cannot know", "read as matching the laptop's user")
		}
	}
	if s := p.get("schedule"); s != "" && s != "always" {
		t.note(p.lineOf("schedule"), what+" schedule "+s, "a schedule pinwall does not evaluate", "read as always in force")
	}
	if p.get("internet-service") == "enable" {
		t.note(p.lineOf("internet-service"), what+" internet-service", "Internet Service Database entries are FortiGuard data pinwall cannot know",
			"the policy is left out")
		return
	}
	if al := p.get("application-list"); al != "" {
		t.note(p.lineOf("application-list"), what+" application-list "+al, "pinwall does not model application control profiles",
			"assumed to block nothing the tunnel, the probes or the sites use; block QUIC with a policy to see its effect")
	}
	dst := t.destClauses(p, what)
	svc := t.serviceClauses(p, what)
	var clauses []vendorconf.Clause
	for _, d := range dst {
		for _, s := range svc {
			if c, ok := vendorconf.Intersect(d, s); ok {
				clauses = append(clauses, c)
			}
		}
	}
	if len(clauses) == 0 {
		t.note(p.line, what, "its destinations and services hold nothing pinwall can match", "left out")
		return
	}
	comment := fmt.Sprintf("%s firewall policy %d", t.at(p.line), id)
	if n := p.get("name"); n != "" {
		comment += fmt.Sprintf(" %q", n)
	}
	switch act := p.get("action"); act {
	case "accept":
	case "deny", "":
		for _, c := range clauses {
			t.b.Add(policy.Rule{Name: name, ID: id, Match: c.Match(), Action: policy.ActionBlock, Line: p.line, Comment: comment + " (deny)"}, "")
		}
		return
	default:
		t.note(p.lineOf("action"), what+" action "+act, "not accept or deny", "left out")
		return
	}
	insp := t.inspection(p, what)
	for _, c := range clauses {
		if c.CouldBeTCP() && insp.mode != "disable" {
			t.inspectRules(p, id, name, comment, c, insp)
		}
		t.b.Add(policy.Rule{Name: name, ID: id, Match: c.Match(), Action: policy.ActionAllow, Line: p.line, Comment: comment}, "")
	}
}

// sourceHoldsLaptop checks srcaddr against the laptop.
func (t *translator) sourceHoldsLaptop(p *block, what string) bool {
	srcs := p.values("srcaddr")
	if len(srcs) == 0 || len(srcs) == 1 && srcs[0] == "all" {
		return true
	}
	var set addrSet
	for _, s := range srcs {
		set.add(t.resolveAddr(s, p.lineOf("srcaddr"), what+" srcaddr", map[string]bool{}))
	}
	if vendorconf.ContainsAddr(set.prefixes, t.opts.Laptop) && len(set.prefixes) > 0 {
		t.note(p.lineOf("srcaddr"), what+" srcaddr", "the source holds the laptop",
			"translated without a source, so that the review's probe host on the same LAN meets the policy as the laptop does")
		return true
	}
	if set.unknown || len(set.fqdn) > 0 {
		t.note(p.lineOf("srcaddr"), what+" srcaddr", "whether its source holds the laptop depends on objects pinwall cannot evaluate",
			"read as if it does")
		return true
	}
	t.note(p.line, what, fmt.Sprintf("its source does not hold the laptop %s", t.opts.Laptop),
		"left out: it never sees the laptop's sessions (pass --laptop to read the configuration for another address)")
	return false
}

// addrSet is what address names resolve to.
type addrSet struct {
	prefixes []netip.Prefix
	fqdn     []fqdnRef
	wildcard []wildcardRef
	unknown  bool
	any      bool
}

type fqdnRef struct {
	object, name string
	line         int
}

type wildcardRef struct {
	pattern string
	line    int
}

func (s *addrSet) add(o addrSet) {
	s.prefixes = append(s.prefixes, o.prefixes...)
	s.fqdn = append(s.fqdn, o.fqdn...)
	s.wildcard = append(s.wildcard, o.wildcard...)
	s.unknown = s.unknown || o.unknown
	s.any = s.any || o.any
}

// resolveAddr resolves an address or address group name.
func (t *translator) resolveAddr(name string, line int, what string, seen map[string]bool) addrSet {
	if seen[name] {
		t.note(line, what+" "+name, "the address group contains itself", "the loop is cut")
		return addrSet{}
	}
	seen[name] = true
	if a := t.table("firewall address").edit(name); a != nil {
		return t.addressObject(a)
	}
	if g := t.table("firewall addrgrp").edit(name); g != nil {
		var out addrSet
		for _, m := range g.values("member") {
			out.add(t.resolveAddr(m, g.lineOf("member"), what+" group "+name, seen))
		}
		if g.get("exclude") == "enable" {
			t.note(g.lineOf("exclude"), fmt.Sprintf("address group %q exclude-member %s", name, strings.Join(g.values("exclude-member"), ",")),
				"a pinwall rule cannot match a group minus some members", "the excluded members are ignored (the group matches more)")
		}
		return out
	}
	if name == "all" {
		return addrSet{any: true}
	}
	t.note(line, what+" "+name, "no address or address group of that name is defined", "treated as holding no address")
	return addrSet{unknown: true}
}

// addressObject resolves one "config firewall address" entry.
func (t *translator) addressObject(a *block) addrSet {
	typ := a.get("type")
	if typ == "" {
		typ = "ipmask"
	}
	what := fmt.Sprintf("address %q", a.name)
	switch typ {
	case "ipmask":
		sub := a.values("subnet")
		if len(sub) == 0 {
			// FortiOS's "all" is 0.0.0.0 0.0.0.0.
			return addrSet{any: true}
		}
		p, err := subnet(sub)
		if err != nil {
			t.note(a.lineOf("subnet"), what+" subnet "+strings.Join(sub, " "), err.Error(), "treated as holding no address")
			return addrSet{unknown: true}
		}
		if p.Bits() == 0 {
			return addrSet{any: true}
		}
		return addrSet{prefixes: []netip.Prefix{p}}
	case "iprange":
		lo, err1 := netip.ParseAddr(a.get("start-ip"))
		hi, err2 := netip.ParseAddr(a.get("end-ip"))
		if err1 != nil || err2 != nil {
			t.note(a.line, what+" iprange", "start-ip and end-ip must be addresses", "treated as holding no address")
			return addrSet{unknown: true}
		}
		ps, err := vendorconf.RangePrefixes(lo, hi)
		if err != nil {
			t.note(a.line, what+" iprange", err.Error(), "treated as holding no address")
			return addrSet{unknown: true}
		}
		return addrSet{prefixes: ps}
	case "fqdn":
		fq := strings.TrimSuffix(strings.ToLower(a.get("fqdn")), ".")
		return addrSet{fqdn: []fqdnRef{{object: a.name, name: fq, line: a.line}}}
	case "wildcard-fqdn":
		return addrSet{wildcard: []wildcardRef{{pattern: a.get("wildcard-fqdn"), line: a.lineOf("wildcard-fqdn")}}}
	default:
		t.note(a.line, what+" type "+typ, "pinwall reads ipmask, iprange, fqdn and wildcard-fqdn addresses", "treated as holding no address")
		return addrSet{unknown: true}
	}
}

// subnet parses "10.0.0.0 255.255.255.0" or "10.0.0.0/24".
func subnet(vs []string) (netip.Prefix, error) {
	if len(vs) == 1 {
		if p, err := netip.ParsePrefix(vs[0]); err == nil {
			return p.Masked(), nil
		}
		if a, err := netip.ParseAddr(vs[0]); err == nil && a.Zone() == "" {
			return netip.PrefixFrom(a, a.BitLen()), nil
		}
		return netip.Prefix{}, fmt.Errorf("not an address with a mask")
	}
	if len(vs) != 2 {
		return netip.Prefix{}, fmt.Errorf("a subnet is an address and a mask")
	}
	a, err := netip.ParseAddr(vs[0])
	if err != nil || !a.Is4() {
		return netip.Prefix{}, fmt.Errorf("%q is not an IPv4 address", vs[0])
	}
	m, err := netip.ParseAddr(vs[1])
	if err != nil || !m.Is4() {
		return netip.Prefix{}, fmt.Errorf("%q is not a netmask", vs[1])
	}
	b := m.As4()
	bits, ended := 0, false
	for _, x := range b {
		for i := 7; i >= 0; i-- {
			one := x>>i&1 == 1
			switch {
			case one && ended:
				return netip.Prefix{}, fmt.Errorf("%s is not a contiguous netmask", vs[1])
			case one:
				bits++
			default:
				ended = true
			}
		}
	}
	return netip.PrefixFrom(a, bits).Masked(), nil
}

// destClauses turns dstaddr into clauses: prefixes, FQDN objects.
// Wildcard FQDN addresses in a policy match addresses the FortiGate learned
// from DNS answers it saw, which pinwall does not simulate.
func (t *translator) destClauses(p *block, what string) []vendorconf.Clause {
	dsts := p.values("dstaddr")
	if len(dsts) == 0 {
		return []vendorconf.Clause{{}}
	}
	var set addrSet
	for _, d := range dsts {
		set.add(t.resolveAddr(d, p.lineOf("dstaddr"), what+" dstaddr", map[string]bool{}))
	}
	if set.any {
		return []vendorconf.Clause{{}}
	}
	for _, w := range set.wildcard {
		t.note(w.line, what+" dstaddr wildcard-fqdn "+w.pattern,
			"in a policy a wildcard FQDN address matches the addresses the FortiGate saw in DNS answers, which pinwall does not simulate",
			"treated as holding no address")
	}
	var out []vendorconf.Clause
	if len(set.prefixes) > 0 {
		out = append(out, vendorconf.Clause{Dst: set.prefixes})
	}
	if len(set.fqdn) > 0 {
		var names []string
		for _, f := range set.fqdn {
			names = append(names, t.b.FQDN(f.object, f.name, f.line))
		}
		out = append(out, vendorconf.Clause{DstFQDN: names})
	}
	return out
}

// predefined FortiOS services, for configurations that do not list them
// (inferred from the names FortiOS ships).
var predefinedServices = map[string][]vendorconf.Clause{
	"ALL":     {{}},
	"ALL_TCP": {{Proto: policy.ProtoTCP}},
	"ALL_UDP": {{Proto: policy.ProtoUDP}},
	"HTTPS":   {{Proto: policy.ProtoTCP, Ports: []policy.PortRange{policy.Port(443)}}},
	"HTTP":    {{Proto: policy.ProtoTCP, Ports: []policy.PortRange{policy.Port(80)}}},
}

// serviceClauses turns service names into clauses, one per protocol.
func (t *translator) serviceClauses(p *block, what string) []vendorconf.Clause {
	svcs := p.values("service")
	if len(svcs) == 0 {
		t.note(p.line, what+" service", "the policy names no service", "read as ALL")
		return []vendorconf.Clause{{}}
	}
	var out []vendorconf.Clause
	for _, s := range svcs {
		cs, anyProto := t.resolveService(s, p.lineOf("service"), what, map[string]bool{})
		if anyProto {
			return []vendorconf.Clause{{}}
		}
		out = append(out, cs...)
	}
	return mergeServices(out)
}

func (t *translator) resolveService(name string, line int, what string, seen map[string]bool) (cs []vendorconf.Clause, any bool) {
	if seen[name] {
		return nil, false
	}
	seen[name] = true
	if s := t.table("firewall service custom").edit(name); s != nil {
		proto := s.get("protocol")
		if proto == "" {
			proto = "TCP/UDP/SCTP"
		}
		if proto == "IP" {
			if n := s.get("protocol-number"); n == "" || n == "0" {
				return nil, true // FortiOS's ALL is protocol IP, number 0
			}
		}
		if proto != "TCP/UDP/SCTP" && proto != "TCP/UDP/UDP-Lite/SCTP" {
			t.note(s.line, fmt.Sprintf("service %q protocol %s", name, proto), "pinwall matches TCP and UDP", "left out")
			return nil, false
		}
		for _, pk := range []struct {
			key   string
			proto policy.Proto
		}{{"tcp-portrange", policy.ProtoTCP}, {"udp-portrange", policy.ProtoUDP}} {
			vs := s.values(pk.key)
			if len(vs) == 0 {
				continue
			}
			ports, err := portRanges(vs)
			if err != nil {
				t.note(s.lineOf(pk.key), fmt.Sprintf("service %q %s %s", name, pk.key, strings.Join(vs, " ")), err.Error(), "left out")
				continue
			}
			cs = append(cs, vendorconf.Clause{Proto: pk.proto, Ports: ports})
		}
		if s.get("sctp-portrange") != "" {
			t.note(s.lineOf("sctp-portrange"), fmt.Sprintf("service %q sctp-portrange", name), "pinwall matches TCP and UDP", "the SCTP ports are left out")
		}
		return cs, false
	}
	if g := t.table("firewall service group").edit(name); g != nil {
		for _, m := range g.values("member") {
			c, any := t.resolveService(m, g.lineOf("member"), what, seen)
			if any {
				return nil, true
			}
			cs = append(cs, c...)
		}
		return cs, false
	}
	if c, ok := predefinedServices[name]; ok {
		t.note(line, what+" service "+name, "a FortiOS predefined service missing from the configuration",
			fmt.Sprintf("read as %s (inferred from the predefined service's name)", c[0].Match()))
		return c, len(c) == 1 && c[0].Proto == ""
	}
	t.note(line, what+" service "+name, "no service or service group of that name is defined", "left out")
	return nil, false
}

// portRanges reads FortiOS port ranges: "443", "8000-8080", "443:1024-65535"
// (destination:source; the source part is ignored).
func portRanges(vs []string) ([]policy.PortRange, error) {
	var out []policy.PortRange
	for _, v := range vs {
		dst, _, _ := strings.Cut(v, ":")
		var r policy.PortRange
		if err := r.UnmarshalText([]byte(dst)); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

func mergeServices(cs []vendorconf.Clause) []vendorconf.Clause {
	var out []vendorconf.Clause
	for _, c := range cs {
		merged := false
		for i := range out {
			if out[i].Proto == c.Proto {
				for _, r := range c.Ports {
					if !slices.Contains(out[i].Ports, r) {
						out[i].Ports = append(out[i].Ports, r)
					}
				}
				merged = true
			}
		}
		if !merged {
			out = append(out, c)
		}
	}
	return out
}
