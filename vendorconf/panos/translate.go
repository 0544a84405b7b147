package panos

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
		return nil, fmt.Errorf("panos: %w", err)
	}
	if fi.Size() > vendorconf.MaxFileBytes {
		return nil, vendorconf.Errorf(path, 0, "file is %d bytes, more than the %d a configuration may have", fi.Size(), vendorconf.MaxFileBytes)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("panos: %w", err)
	}
	return Translate(path, data, opts)
}

// Translate reads a PAN-OS configuration (XML) and returns it as a pinwall
// policy. file names it in errors and in the rules' comments. Errors are
// *vendorconf.SyntaxError with the line: malformed XML, a document that is
// not a PAN-OS configuration, a scope that does not exist, or a value PAN-OS
// itself would not accept (an address that does not parse).
func Translate(file string, data []byte, opts vendorconf.Options) (*vendorconf.Translation, error) {
	root, err := parseXML(file, data)
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
		// A bug of the translation, not of the input: say so plainly.
		return nil, fmt.Errorf("panos: %s: the translated policy is invalid (a pinwall bug): %w", file, err)
	}
	slices.SortStableFunc(t.notes, func(a, b vendorconf.Note) int { return a.Line - b.Line })
	return &vendorconf.Translation{
		Vendor: vendorconf.PANOS, File: file, Scope: t.scopeName, Read: t.read(),
		Policy: t.b.Policy, DefaultWhy: t.defaultWhy, Notes: t.notes,
	}, nil
}

type translator struct {
	file string
	opts vendorconf.Options
	b    *vendorconf.Builder

	config, shared, scope *node
	scopeName             string
	panorama              bool
	dg                    *node // Panorama device group

	notes    []vendorconf.Note
	seenNote map[string]bool

	nSecurity, nDecryption, nExclusions int
	defaultWhy                          string
}

func (t *translator) note(line int, what, why, assumption string) {
	key := fmt.Sprintf("%d\x00%s\x00%s", line, what, why)
	if t.seenNote[key] {
		return
	}
	t.seenNote[key] = true
	t.notes = append(t.notes, vendorconf.Note{Line: line, What: what, Why: why, Assumption: assumption})
}

func (t *translator) errorf(line int, format string, args ...any) error {
	return vendorconf.Errorf(t.file, line, format, args...)
}

func (t *translator) at(line int) string { return t.file + ":" + strconv.Itoa(line) }

func (t *translator) read() string {
	return fmt.Sprintf("%d security rules, %d decryption rules, %d decryption exclusions read",
		t.nSecurity, t.nDecryption, t.nExclusions)
}

// run finds the scope, then translates the rulebases.
func (t *translator) run(root *node) error {
	config := root
	if root.name == "response" {
		config = root.path("result", "config")
	}
	if config == nil || config.name != "config" {
		return t.errorf(root.line, "the document starts with <%s>, not <config>: is this a PAN-OS configuration?", root.name)
	}
	t.config, t.shared = config, config.child("shared")
	if err := t.pickScope(); err != nil {
		return err
	}
	t.noteUnmodelled()

	sec, dec := t.rulebase("security"), t.rulebase("decryption")
	t.nSecurity, t.nDecryption = len(sec), len(dec)
	excl := t.exclusions()

	var decClauses []decRule
	for _, r := range dec {
		if d, ok := t.decryptionRule(r); ok {
			decClauses = append(decClauses, d)
		}
	}
	for _, r := range sec {
		t.securityRule(r, excl, decClauses)
	}
	t.defaults()
	if len(t.opts.From) == 0 && len(t.opts.To) == 0 {
		t.note(0, "zones", "no path was given, so every rule's from and to zones were taken to include the laptop's path",
			"rules of every zone pair apply; pass --path FROM:TO (zones) to read the configuration for one")
	}
	return nil
}

// pickScope chooses the vsys or device group to read.
func (t *translator) pickScope() error {
	dev := t.config.path("devices", "entry")
	vsys := dev.path("vsys").entries()
	dgs := dev.path("device-group").entries()
	var choices []string
	var pool []*node
	kind := "vsys"
	switch {
	case len(vsys) > 0:
		pool = vsys
	case len(dgs) > 0:
		pool, kind, t.panorama = dgs, "device group", true
	default:
		// A Panorama configuration with shared policy only.
		if t.shared.path("pre-rulebase") != nil || t.shared.path("post-rulebase") != nil {
			t.panorama = true
			return nil
		}
		line := t.config.line
		if d := t.config.child("devices"); d != nil {
			line = d.line
		}
		return t.errorf(line, "no vsys (devices/entry/vsys/entry) or device group (devices/entry/device-group/entry) found: is this a PAN-OS running configuration?")
	}
	for _, e := range pool {
		choices = append(choices, e.nameAttr())
	}
	switch {
	case t.opts.Scope != "":
		for _, e := range pool {
			if e.nameAttr() == t.opts.Scope {
				t.scope = e
			}
		}
		if t.scope == nil {
			return t.errorf(pool[0].line, "no %s %q (there is: %s)", kind, t.opts.Scope, strings.Join(choices, ", "))
		}
	case len(pool) == 1:
		t.scope = pool[0]
	case kind == "vsys":
		t.scope = pool[0]
		for _, e := range pool {
			if e.nameAttr() == "vsys1" {
				t.scope = e
			}
		}
		t.note(t.scope.line, "vsys", fmt.Sprintf("the configuration has several vsys (%s)", strings.Join(choices, ", ")),
			fmt.Sprintf("read %s; choose another with --scope", t.scope.nameAttr()))
	default:
		return t.errorf(pool[0].line, "the configuration has several device groups (%s): choose one with --scope", strings.Join(choices, ", "))
	}
	t.scopeName = kind + " " + t.scope.nameAttr()
	if t.panorama {
		t.dg = t.scope
	}
	return nil
}

// noteUnmodelled records settings that exist but that pinwall leaves out.
func (t *translator) noteUnmodelled() {
	sd := t.shared.path("ssl-decrypt")
	if sd == nil {
		return
	}
	for _, kind := range []string{"forward-trust-certificate", "forward-untrust-certificate"} {
		c := sd.child(kind)
		if c == nil {
			continue
		}
		var algs []string
		for _, k := range c.kids {
			if k.text != "" {
				algs = append(algs, k.name+" "+k.text)
			}
		}
		if len(algs) > 0 {
			t.note(c.line, "ssl-decrypt "+kind+" ("+strings.Join(algs, ", ")+")",
				"the certificates live in the firewall's key store, not in the configuration",
				"pinwall signs with its own enterprise CA (and its own untrusted CA for forward untrust); an RSA and an ECDSA CA can be set with serve --ca-cert/--ecdsa-ca-cert")
		}
	}
}

// rulebase returns the rules of one rulebase in evaluation order.
func (t *translator) rulebase(kind string) []*node {
	if !t.panorama {
		return t.scope.path("rulebase", kind, "rules").entries()
	}
	var out []*node
	out = append(out, t.shared.path("pre-rulebase", kind, "rules").entries()...)
	if t.dg != nil {
		out = append(out, t.dg.path("pre-rulebase", kind, "rules").entries()...)
		out = append(out, t.dg.path("post-rulebase", kind, "rules").entries()...)
	}
	return append(out, t.shared.path("post-rulebase", kind, "rules").entries()...)
}

// lookup finds a named object of a kind ("address", "service",
// "profiles/decryption") in the scope, then in shared.
func (t *translator) lookup(kind, name string) *node {
	parts := strings.Split(kind, "/")
	for _, where := range []*node{t.scope, t.shared} {
		if e := where.path(parts...).entry(name); e != nil {
			return e
		}
	}
	return nil
}

// ruleName is a rule's name for notes.
func ruleWhat(kind string, r *node) string { return fmt.Sprintf("%s rule %q", kind, r.nameAttr()) }

// applies reports whether a rule can see the laptop's sessions: enabled, on
// the laptop's path, with the laptop among its sources.
func (t *translator) applies(kind string, r *node) bool {
	what := ruleWhat(kind, r)
	if r.yes("disabled") {
		t.note(r.line, what, "the rule is disabled", "left out, as PAN-OS skips it")
		return false
	}
	from, to := values(r.members("from")), values(r.members("to"))
	if !t.opts.OnPath(from, to) {
		t.note(r.line, what, fmt.Sprintf("its zones (%s to %s) are not the laptop's path (%s to %s)",
			strings.Join(from, ","), strings.Join(to, ","), strings.Join(t.opts.From, ","), strings.Join(t.opts.To, ",")),
			"left out: it never sees the laptop's sessions")
		return false
	}
	src := r.members("source")
	in, known := t.addrHolds(src, t.opts.Laptop, what+" source")
	if r.yes("negate-source") {
		in = !in
	}
	if !known {
		t.note(r.line, what, "whether its source holds the laptop depends on objects pinwall cannot evaluate",
			"read as if it does")
		in = true
	}
	if !in {
		t.note(r.line, what, fmt.Sprintf("its source does not hold the laptop %s", t.opts.Laptop),
			"left out: it never sees the laptop's sessions (pass --laptop to read the configuration for another address)")
		return false
	}
	if !isAny(src) {
		t.note(r.line, what+" source", "the source holds the laptop",
			"translated without a source, so that the review's probe host on the same LAN meets the rule as the laptop does")
	}
	for _, f := range []string{"source-user", "source-hip", "destination-hip"} {
		if ms := r.members(f); !isAny(ms) {
			t.note(ms[0].line, what+" "+f+" "+strings.Join(values(ms), ","),
				"a user or host-information match pinwall cannot know",
				"read as matching the laptop's user and host")
		}
	}
	return true
}

// addrHolds reports whether the address members hold a, and whether that
// could be decided.
func (t *translator) addrHolds(ms []member, a netip.Addr, what string) (in, known bool) {
	if isAny(ms) {
		return true, true
	}
	known = true
	for _, m := range ms {
		set := t.resolveAddr(m, what, map[string]bool{})
		if len(set.fqdn) > 0 || set.unknown {
			known = false
		}
		for _, p := range set.prefixes {
			if p.Contains(a) {
				return true, true
			}
		}
	}
	return false, known
}

// addrSet is what address members resolve to.
type addrSet struct {
	prefixes []netip.Prefix
	fqdn     []fqdnRef
	unknown  bool // something that could not be resolved (noted)
}

type fqdnRef struct {
	object, name string
	line         int
}

func (s *addrSet) add(o addrSet) {
	s.prefixes = append(s.prefixes, o.prefixes...)
	s.fqdn = append(s.fqdn, o.fqdn...)
	s.unknown = s.unknown || o.unknown
}

// resolveAddr resolves one member: a literal, an address object or group.
func (t *translator) resolveAddr(m member, what string, seen map[string]bool) addrSet {
	v := m.value
	if p, ok := literalPrefix(v); ok {
		return addrSet{prefixes: []netip.Prefix{p}}
	}
	if lo, hi, ok := strings.Cut(v, "-"); ok {
		if a, err1 := netip.ParseAddr(lo); err1 == nil {
			if b, err2 := netip.ParseAddr(hi); err2 == nil {
				ps, err := vendorconf.RangePrefixes(a, b)
				if err == nil {
					return addrSet{prefixes: ps}
				}
			}
		}
	}
	if seen[v] {
		t.note(m.line, what+" "+v, "the address group contains itself", "the loop is cut")
		return addrSet{}
	}
	seen[v] = true
	if o := t.lookup("address", v); o != nil {
		return t.addressObject(o, what)
	}
	if g := t.lookup("address-group", v); g != nil {
		var out addrSet
		for _, mm := range g.members("static") {
			out.add(t.resolveAddr(mm, what+" group "+v, seen))
		}
		if dyn := g.child("dynamic"); dyn != nil {
			t.note(dyn.line, fmt.Sprintf("dynamic address group %q (filter %s)", v, dyn.textOf("filter")),
				"its members are registered at run time (tags), not in the configuration",
				"treated as holding no address")
			out.unknown = true
		}
		return out
	}
	if e := t.lookup("external-list", v); e != nil {
		t.note(m.line, what+" external dynamic list "+v, "its addresses are fetched at run time",
			"treated as holding no address")
		return addrSet{unknown: true}
	}
	if len(v) == 2 && strings.ToUpper(v) == v {
		t.note(m.line, what+" region "+v, "a region (country) is matched with the firewall's geolocation database",
			"treated as holding none of the simulated addresses (documentation ranges)")
		return addrSet{unknown: true}
	}
	t.note(m.line, what+" "+v, "no address, address group or external list of that name is defined",
		"treated as holding no address")
	return addrSet{unknown: true}
}

// addressObject resolves an <address> entry.
func (t *translator) addressObject(o *node, what string) addrSet {
	name := o.nameAttr()
	switch {
	case o.child("ip-netmask") != nil:
		v := o.textOf("ip-netmask")
		p, ok := literalPrefix(v)
		if !ok {
			t.note(o.line, fmt.Sprintf("address %q ip-netmask %q", name, v), "not an address or prefix", "treated as holding no address")
			return addrSet{unknown: true}
		}
		return addrSet{prefixes: []netip.Prefix{p}}
	case o.child("ip-range") != nil:
		v := o.textOf("ip-range")
		lo, hi, _ := strings.Cut(v, "-")
		a, err1 := netip.ParseAddr(strings.TrimSpace(lo))
		b, err2 := netip.ParseAddr(strings.TrimSpace(hi))
		if err1 != nil || err2 != nil {
			t.note(o.line, fmt.Sprintf("address %q ip-range %q", name, v), "not a range of two addresses", "treated as holding no address")
			return addrSet{unknown: true}
		}
		ps, err := vendorconf.RangePrefixes(a, b)
		if err != nil {
			t.note(o.line, fmt.Sprintf("address %q ip-range %q", name, v), err.Error(), "treated as holding no address")
			return addrSet{unknown: true}
		}
		return addrSet{prefixes: ps}
	case o.child("fqdn") != nil:
		fq := strings.TrimSuffix(strings.ToLower(o.textOf("fqdn")), ".")
		return addrSet{fqdn: []fqdnRef{{object: name, name: fq, line: o.line}}}
	default:
		kind := "no type"
		if len(o.kids) > 0 {
			kind = o.kids[0].name
		}
		t.note(o.line, fmt.Sprintf("address %q (%s)", name, kind), "pinwall reads ip-netmask, ip-range and fqdn addresses",
			"treated as holding no address")
		return addrSet{unknown: true}
	}
}

// literalPrefix parses an address or prefix; host bits are cleared, as
// PAN-OS accepts 10.1.1.5/24 for the subnet.
func literalPrefix(s string) (netip.Prefix, bool) {
	s = strings.TrimSpace(s)
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), true
	}
	if a, err := netip.ParseAddr(s); err == nil && a.Zone() == "" {
		return netip.PrefixFrom(a, a.BitLen()), true
	}
	return netip.Prefix{}, false
}

// destClauses turns destination members into clauses: one for the
// prefixes, one for the FQDN objects (pinwall ANDs the two fields, the rule
// ORs them). ok is false when the members hold nothing pinwall can match.
func (t *translator) destClauses(r *node, what string) ([]vendorconf.Clause, bool) {
	ms := r.members("destination")
	if isAny(ms) {
		if r.yes("negate-destination") {
			t.note(r.line, what, "negate-destination of any matches nothing", "left out")
			return nil, false
		}
		return []vendorconf.Clause{{}}, true
	}
	if r.yes("negate-destination") {
		t.note(r.line, what+" negate-destination", "a pinwall rule cannot match everything but some addresses",
			"left out; a negated destination usually exempts a few servers, check them by hand")
		return nil, false
	}
	var set addrSet
	for _, m := range ms {
		set.add(t.resolveAddr(m, what+" destination", map[string]bool{}))
	}
	var out []vendorconf.Clause
	if len(set.prefixes) > 0 {
		out = append(out, vendorconf.Clause{Dst: set.prefixes})
	}
	if len(set.fqdn) > 0 {
		var names []string
		for _, f := range set.fqdn {
			if !slices.Contains(names, f.object) {
				names = append(names, t.b.FQDN(f.object, f.name, f.line))
			}
		}
		out = append(out, vendorconf.Clause{DstFQDN: names})
	}
	if len(out) == 0 {
		t.note(r.line, what, "its destinations hold nothing pinwall can match", "left out")
		return nil, false
	}
	return out, true
}

// predefined PAN-OS services (inferred: the names PAN-OS ships,
// service-http TCP 80 and 8080, service-https TCP 443).
var predefinedServices = map[string][]vendorconf.Clause{
	"service-http":  {{Proto: policy.ProtoTCP, Ports: []policy.PortRange{policy.Port(80), policy.Port(8080)}}},
	"service-https": {{Proto: policy.ProtoTCP, Ports: []policy.PortRange{policy.Port(443)}}},
}

// serviceClauses turns service members into clauses (one per protocol).
func (t *translator) serviceClauses(r *node, what string) ([]vendorconf.Clause, bool) {
	ms := r.members("service")
	if isAny(ms) {
		return []vendorconf.Clause{{}}, true
	}
	var out []vendorconf.Clause
	for _, m := range ms {
		if m.value == "application-default" {
			t.note(m.line, what+" service application-default",
				"each application's default ports are App-ID content pinwall does not have",
				"the rule matches its applications on any port")
			return []vendorconf.Clause{{}}, true
		}
		out = append(out, t.resolveService(m, what, map[string]bool{})...)
	}
	if len(out) == 0 {
		t.note(r.line, what, "its services hold nothing pinwall can match", "left out")
		return nil, false
	}
	return mergeServices(out), true
}

func (t *translator) resolveService(m member, what string, seen map[string]bool) []vendorconf.Clause {
	v := m.value
	if seen[v] {
		return nil
	}
	seen[v] = true
	if s := t.lookup("service", v); s != nil {
		var out []vendorconf.Clause
		for _, proto := range []policy.Proto{policy.ProtoTCP, policy.ProtoUDP} {
			pn := s.path("protocol", string(proto))
			if pn == nil {
				continue
			}
			ports, err := parsePorts(pn.textOf("port"))
			if err != nil {
				t.note(pn.line, fmt.Sprintf("service %q port %q", v, pn.textOf("port")), err.Error(), "the service is left out")
				continue
			}
			if pn.textOf("source-port") != "" {
				t.note(pn.line, fmt.Sprintf("service %q source-port %s", v, pn.textOf("source-port")),
					"pinwall matches destination ports only", "the source port is ignored")
			}
			out = append(out, vendorconf.Clause{Proto: proto, Ports: ports})
		}
		if len(out) == 0 {
			t.note(s.line, fmt.Sprintf("service %q", v), "pinwall reads TCP and UDP services", "left out")
		}
		return out
	}
	if g := t.lookup("service-group", v); g != nil {
		var out []vendorconf.Clause
		for _, mm := range g.members("members") {
			out = append(out, t.resolveService(mm, what, seen)...)
		}
		return out
	}
	if c, ok := predefinedServices[v]; ok {
		t.note(m.line, what+" service "+v, "a PAN-OS predefined service, not in the configuration",
			fmt.Sprintf("read as %s (inferred from PAN-OS's predefined services)", c[0].Match()))
		return c
	}
	t.note(m.line, what+" service "+v, "no service or service group of that name is defined", "left out")
	return nil
}

// mergeServices joins clauses of the same protocol.
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

// parsePorts reads "443,8443,1000-2000".
func parsePorts(s string) ([]policy.PortRange, error) {
	var out []policy.PortRange
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		var r policy.PortRange
		if err := r.UnmarshalText([]byte(part)); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no port")
	}
	return out, nil
}

// knownApps are the App-IDs pinwall identifies.
var knownApps = map[string]policy.App{
	"ssl": policy.AppSSL, "web-browsing": policy.AppWebBrowsing, "http2": policy.AppHTTP2,
	"unknown-tcp": policy.AppUnknownTCP, "dtls": policy.AppDTLS, "quic": policy.AppQUIC, "unknown-udp": policy.AppUnknownUDP,
}
