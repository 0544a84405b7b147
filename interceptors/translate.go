package interceptors

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/pinwall/pinwall/mitm/policy"
	"github.com/pinwall/pinwall/strictyaml"
)

// Verdict is what an nftables rule does with a LAN connection.
type Verdict string

// The verdicts.
const (
	// Accept forwards the connection around the tool (masqueraded).
	Accept Verdict = "accept"
	// Drop drops it (TCP: answered with a reset, so the client learns at
	// once, as from a firewall's deny).
	Drop Verdict = "drop"
	// ToTool redirects it into the tool's transparent listener.
	ToTool Verdict = "tool"
)

// Rule is one nftables rule for the LAN's traffic of one protocol. A zero
// field matches anything; a Rule whose fields are all zero matches
// everything.
type Rule struct {
	// From names the policy rule it comes from, "default" for the
	// default action, or "tls-ports" for the redirect of what the tool
	// decides itself.
	From  string             `json:"from"`
	Src   []netip.Prefix     `json:"src,omitempty"`
	Dst   []netip.Prefix     `json:"dst,omitempty"`
	Ports []policy.PortRange `json:"ports,omitempty"`
	// Verdict applies to a matching connection; evaluation stops there.
	Verdict Verdict `json:"verdict"`
}

// String renders the rule as nft would list it, roughly.
func (r Rule) String() string {
	var b strings.Builder
	if len(r.Src) > 0 {
		fmt.Fprintf(&b, "saddr %s ", set(r.Src))
	}
	if len(r.Dst) > 0 {
		fmt.Fprintf(&b, "daddr %s ", set(r.Dst))
	}
	if len(r.Ports) > 0 {
		fmt.Fprintf(&b, "dport %s ", set(r.Ports))
	}
	v := string(r.Verdict)
	if r.Verdict == ToTool {
		v = "redirect to the tool"
	}
	return fmt.Sprintf("%s%s  # %s", b.String(), v, r.From)
}

func set[T fmt.Stringer](xs []T) string {
	if len(xs) == 1 {
		return xs[0].String()
	}
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = x.String()
	}
	return "{ " + strings.Join(s, ", ") + " }"
}

// File is a file of the tool's configuration.
type File struct {
	Path    string `json:"path"`
	Mode    uint32 `json:"mode"`
	Content string `json:"content"`
}

// Log is a file the tool writes that goes into the evidence.
type Log struct {
	// Name is its name in the evidence ("squid-access.log").
	Name string `json:"name"`
	// Path is where the tool writes it.
	Path string `json:"path"`
	// What says what it holds.
	What string `json:"what"`
}

// Config is a policy translated for one tool.
type Config struct {
	Kind Kind `json:"kind"`
	Tool Tool `json:"tool"`
	// Policy names the policy file translated.
	Policy string `json:"policy,omitempty"`
	// TCP and UDP are the nftables rules for the LAN's connections, in
	// order; each list ends with a rule matching everything.
	TCP []Rule `json:"tcp"`
	UDP []Rule `json:"udp"`
	// Port is the tool's transparent listener, where ToTool redirects.
	Port uint16 `json:"port"`
	// Files are the tool's configuration files.
	Files []File `json:"files"`
	// Setup runs, in order, before the tool starts.
	Setup [][]string `json:"setup,omitempty"`
	// Command runs the tool in the foreground; Env is added to its
	// environment; its standard output and error go to Stdout.
	Command []string `json:"command"`
	Env     []string `json:"env,omitempty"`
	Stdout  string   `json:"stdout"`
	// Logs are the files the tool writes (Stdout among them).
	Logs []Log `json:"logs"`
	// Notes say what a reader of the evidence should know about the
	// translation: what goes around the tool, what it checks anyway.
	Notes []string `json:"notes,omitempty"`
}

// Params are the paths and ports of the firewall container the
// configuration refers to.
type Params struct {
	// Dir holds the tools' configuration directories.
	Dir string
	// CACert and CAKey are the enterprise CA the tool forges with (PEM).
	CACert, CAKey string
	// Trust is the PEM bundle of CAs the tool verifies servers against.
	Trust string
	// DNS is the address of a resolver answering the topology's names
	// (the firewall node serves one on loopback).
	DNS string
	// Out is where the tool's logs go.
	Out string
	// Port is the tool's transparent listener.
	Port uint16
	// TLSPorts are the TCP ports the firewall intercepts for TLS.
	TLSPorts []uint16
}

// DefaultParams are the firewall container's paths.
func DefaultParams() Params {
	return Params{Dir: "/etc/pinwall", CACert: "/etc/pinwall/ca.pem", CAKey: "/etc/pinwall/ca-key.pem",
		Trust: "/etc/pinwall/trust.pem", DNS: "127.0.0.1", Out: "/out", Port: 15001, TLSPorts: []uint16{443, 8443}}
}

// prule is a policy rule with where it stands; the default action is the
// last, with index -1.
type prule struct {
	i     int
	r     policy.Rule
	field string
}

func (p prule) name() string { return p.r.Name }

func (p prule) isDefault() bool { return p.i < 0 }

// appliesTo reports whether the rule can match proto at all.
func (p prule) appliesTo(proto policy.Proto) bool {
	m := p.r.Match.Proto
	return m == "" || m == policy.ProtoAny || m == proto
}

// onPort reports whether the rule can match destination port port.
func (p prule) onPort(port uint16) bool {
	if len(p.r.Match.Port) == 0 {
		return true
	}
	for _, r := range p.r.Match.Port {
		if r.Contains(port) {
			return true
		}
	}
	return false
}

// pass reports whether the rule lets the session through undecrypted.
func (p prule) pass() bool {
	return p.r.Action == policy.ActionAllow || p.r.Action == policy.ActionNoDecrypt
}

// translator carries what every tool's translation shares.
type translator struct {
	kind  Kind
	pol   *policy.Policy
	p     Params
	rules []prule
	notes []string
}

// refuse is the error for what the tool cannot express: the policy file,
// the rule's line, the field concerned and what the tool lacks.
func (t *translator) refuse(pr prule, field, format string, args ...any) error {
	f := pr.field
	if field != "" {
		f = strictyaml.Join(f, field)
	}
	return &strictyaml.Error{File: t.pol.File, Line: pr.r.Line, Field: f,
		Msg: fmt.Sprintf("%s %s cannot express rule %q: ", t.kind, Tools[t.kind].Version, pr.name()) + fmt.Sprintf(format, args...),
		Err: ErrUnsupported}
}

func (t *translator) note(format string, args ...any) {
	t.notes = append(t.notes, fmt.Sprintf(format, args...))
}

// Translate translates pol for kind (a third-party tool). An error that
// wraps ErrUnsupported is a *strictyaml.Error naming the policy file,
// the rule's line and field, and what the tool lacks.
func Translate(kind Kind, pol *policy.Policy, p Params) (*Config, error) {
	if !kind.IsThirdParty() {
		return nil, fmt.Errorf("interceptors: %q is not a third-party interceptor", kind.OrPinwall())
	}
	if err := kind.Validate(); err != nil {
		return nil, fmt.Errorf("interceptors: %w", err)
	}
	if pol == nil {
		return nil, fmt.Errorf("interceptors: no policy")
	}
	if err := pol.Validate(); err != nil {
		return nil, err
	}
	t := &translator{kind: kind, pol: pol, p: p}
	for i, r := range pol.Rules {
		t.rules = append(t.rules, prule{i: i, r: r, field: strictyaml.Index("rules", i)})
	}
	def := pol.Default()
	t.rules = append(t.rules, prule{i: -1, r: *def, field: "default-action"})
	for _, x := range []struct {
		field string
		set   bool
	}{{"udp-idle-timeout", pol.UDPIdleTimeout != 0}, {"tcp-idle-timeout", pol.TCPIdleTimeout != 0}} {
		if x.set {
			return nil, &strictyaml.Error{File: pol.File, Field: x.field, Err: ErrUnsupported,
				Msg: fmt.Sprintf("%s %s: pinwall does not translate idle timeouts: the tool's and the kernel's own apply", kind, Tools[kind].Version)}
		}
	}
	udp, err := t.udp()
	if err != nil {
		return nil, err
	}
	var c *Config
	switch kind {
	case Mitmproxy:
		c, err = t.mitmproxy()
	case Squid:
		c, err = t.squid()
	case SSLsplit:
		c, err = t.sslsplit()
	}
	if err != nil {
		return nil, err
	}
	c.Kind, c.Tool, c.Policy, c.UDP, c.Port = kind, Tools[kind], pol.File, udp, p.Port
	c.Notes = append(c.Notes, t.notes...)
	return c, nil
}

// udp translates the rules for UDP into nftables rules, exactly as
// pinwall's firewall decides UDP: by address, port and protocol, never by
// SNI (a rule naming SNI never matches a datagram, a no-sni rule always
// does), a decrypt or no-decrypt rule allowing the flow undecrypted.
func (t *translator) udp() ([]Rule, error) {
	var out []Rule
	for _, pr := range t.rules {
		if !pr.appliesTo(policy.ProtoUDP) || len(pr.r.Match.SNI) > 0 {
			continue
		}
		r, err := t.l4(pr, "UDP")
		if err != nil {
			return nil, err
		}
		r.Verdict = Accept
		if pr.r.Action == policy.ActionBlock {
			r.Verdict = Drop
		}
		out = append(out, r)
		if r.matchesAll() {
			break
		}
	}
	return out, nil
}

// matchesAll reports whether r matches every connection.
func (r Rule) matchesAll() bool { return len(r.Src) == 0 && len(r.Dst) == 0 && len(r.Ports) == 0 }

// l4 is the nftables match of a rule by address and port. A rule whose
// SNI matters is not one (the caller decides what that means).
func (t *translator) l4(pr prule, what string) (Rule, error) {
	m := pr.r.Match
	if len(m.DstFQDN) > 0 {
		return Rule{}, t.refuse(pr, "match.dst-fqdn",
			"an FQDN address object holds the addresses the firewall resolved, refreshed as it goes (max-ips, min-refresh); neither %s nor nftables (which decides %s here) has one, and a fixed list of addresses would not drift as the row measures", t.kind, what)
	}
	return Rule{From: pr.name(), Src: m.Src, Dst: m.Dst, Ports: m.Port}, nil
}

// nonTLS translates the TCP rules for the ports the tool does not see
// (no TLS there: a rule naming SNI never matches, a no-sni one always
// does, decrypt has nothing to decrypt and allows).
func (t *translator) nonTLS() ([]Rule, error) {
	var out []Rule
	for _, pr := range t.rules {
		if !pr.appliesTo(policy.ProtoTCP) || len(pr.r.Match.SNI) > 0 || t.onlyTLSPorts(pr) {
			continue
		}
		r, err := t.l4(pr, "connections on ports other than "+portList(t.p.TLSPorts))
		if err != nil {
			return nil, err
		}
		r.Verdict = Accept
		if pr.r.Action == policy.ActionBlock {
			r.Verdict = Drop
		}
		out = append(out, r)
		if r.matchesAll() {
			break
		}
	}
	return out, nil
}

// onlyTLSPorts reports whether every port the rule names is a TLS port
// (the rule cannot match what the tool does not see).
func (t *translator) onlyTLSPorts(pr prule) bool {
	if len(pr.r.Match.Port) == 0 {
		return false
	}
	for _, r := range pr.r.Match.Port {
		if r.Lo != r.Hi || !slices.Contains(t.p.TLSPorts, r.Lo) {
			return false
		}
	}
	return true
}

// tlsPortsOf is the rule's ports among the TLS ports.
func (t *translator) tlsPortsOf(pr prule) []policy.PortRange {
	var out []policy.PortRange
	for _, p := range t.p.TLSPorts {
		if pr.onPort(p) {
			out = append(out, policy.Port(p))
		}
	}
	return out
}

func (t *translator) tlsPorts(ports []uint16) []policy.PortRange {
	out := make([]policy.PortRange, len(ports))
	for i, p := range ports {
		out[i] = policy.Port(p)
	}
	return out
}

func portList(ps []uint16) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = fmt.Sprint(p)
	}
	return strings.Join(s, ", ")
}

// checkDecryptOptions refuses the decrypt and no-decrypt options no tool
// has: an exclusion cache, learning from rejected forgeries, a
// certificate check on sessions passed through.
func (t *translator) checkCommonOptions(pr prule) error {
	o := pr.r.Options
	if o.ClientCert == policy.ClientCertLearn {
		return t.refuse(pr, "options.client-cert", "client-cert: learn needs a decryption exclusion cache (PAN-OS), which %s does not have", t.kind)
	}
	if o.LearnOnClientReject {
		return t.refuse(pr, "options.learn-on-client-reject", "learning from a client that rejects the forged certificate needs a decryption exclusion cache, which %s does not have", t.kind)
	}
	if o.SNICertCheck == policy.SNICertCheckStrict && pr.pass() {
		return t.refuse(pr, "options.sni-cert-check", "sni-cert-check: strict on a session passed through needs the server's certificate checked against the SNI while splicing (FortiGate sni-server-cert-check), which %s does not do", t.kind)
	}
	if o.Log != nil && !*o.Log {
		t.note("rule %q asks not to log; %s logs every session it handles", pr.name(), t.kind)
	}
	return nil
}

// uniqueSorted returns xs without repeats, in first-seen order.
func uniqueSorted(xs []string) []string {
	var out []string
	for _, x := range xs {
		if !slices.Contains(out, x) {
			out = append(out, x)
		}
	}
	return out
}

// Describe renders the translation for people: the nftables rules, the
// setup, the command, every file and the notes. The evidence bundle
// carries it beside the tool's logs.
func (c *Config) Describe() string {
	var b strings.Builder
	fmt.Fprintf(&b, "# %s %s (Debian package %s), from %s\n", c.Kind, c.Tool.Version, c.Tool.Package, orDash(c.Policy))
	section := func(title string, rules []Rule) {
		fmt.Fprintf(&b, "\n## nftables, LAN %s (first match wins)\n", title)
		for _, r := range rules {
			fmt.Fprintf(&b, "%s\n", r)
		}
	}
	section(fmt.Sprintf("TCP (tool: redirect to :%d)", c.Port), c.TCP)
	section("UDP (forwarded or dropped; nothing decrypts UDP)", c.UDP)
	if len(c.Setup) > 0 {
		b.WriteString("\n## setup\n")
		for _, s := range c.Setup {
			fmt.Fprintf(&b, "%s\n", strings.Join(s, " "))
		}
	}
	fmt.Fprintf(&b, "\n## command (output to %s)\n", c.Stdout)
	if len(c.Env) > 0 {
		fmt.Fprintf(&b, "%s ", strings.Join(c.Env, " "))
	}
	fmt.Fprintf(&b, "%s\n", strings.Join(c.Command, " "))
	for _, f := range c.Files {
		fmt.Fprintf(&b, "\n## file %s (%04o)\n%s", f.Path, f.Mode, f.Content)
	}
	b.WriteString("\n## logs\n")
	for _, l := range c.Logs {
		fmt.Fprintf(&b, "%s: %s\n", l.Name, l.What)
	}
	if len(c.Notes) > 0 {
		b.WriteString("\n## notes\n")
		for _, n := range c.Notes {
			fmt.Fprintf(&b, "- %s\n", n)
		}
	}
	return b.String()
}

// toolVerdict is where a tool that decides every decrypted connection
// itself (mitmproxy, sslsplit) has the kernel send a rule's traffic: into
// the tool to decrypt, dropped to block, past it otherwise.
func toolVerdict(a policy.Action) Verdict {
	switch a {
	case policy.ActionDecrypt:
		return ToTool
	case policy.ActionBlock:
		return Drop
	}
	return Accept
}
