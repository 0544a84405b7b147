package policy

import (
	"bytes"
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"go.yaml.in/yaml/v3"
)

// String returns a compact form of the match, such as
// "proto=tcp port=443,8000-8080 sni=*.sse.test", or "any".
func (m Match) String() string {
	var parts []string
	add := func(key string, vals []string) {
		if len(vals) > 0 {
			parts = append(parts, key+"="+strings.Join(vals, ","))
		}
	}
	add("src", prefixStrings(m.Src))
	add("dst", prefixStrings(m.Dst))
	add("dst-fqdn", m.DstFQDN)
	if m.Proto != "" && m.Proto != ProtoAny {
		parts = append(parts, "proto="+string(m.Proto))
	}
	ports := make([]string, len(m.Port))
	for i, p := range m.Port {
		ports[i] = p.String()
	}
	add("port", ports)
	snis := make([]string, len(m.SNI))
	for i, s := range m.SNI {
		snis[i] = string(s)
	}
	add("sni", snis)
	add("sni-regex", m.SNIRegex)
	if m.NoSNI {
		parts = append(parts, "no-sni")
	}
	apps := make([]string, len(m.App))
	for i, a := range m.App {
		apps[i] = string(a)
	}
	add("app", apps)
	if len(parts) == 0 {
		return "any"
	}
	return strings.Join(parts, " ")
}

func prefixStrings(ps []netip.Prefix) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		if p.IsSingleIP() {
			out[i] = p.Addr().String()
		} else {
			out[i] = p.String()
		}
	}
	return out
}

// String returns the options that differ from the defaults, such as
// "client-cert=learn exclusion-ttl=1h", or "".
func (o Options) String() string {
	var parts []string
	if o.SNICertCheck != "" && o.SNICertCheck != SNICertCheckNone {
		parts = append(parts, "sni-cert-check="+string(o.SNICertCheck))
	}
	if o.ClientCert != "" && o.ClientCert != ClientCertBlock {
		parts = append(parts, "client-cert="+string(o.ClientCert))
	}
	if o.LearnOnClientReject {
		parts = append(parts, "learn-on-client-reject")
	}
	if o.ExclusionTTL != 0 && o.ExclusionTTL != DefaultExclusionTTL {
		parts = append(parts, "exclusion-ttl="+formatDuration(o.ExclusionTTL))
	}
	if o.UntrustedCert != "" && o.UntrustedCert != UntrustedCertUntrustedCA {
		parts = append(parts, "untrusted-cert="+string(o.UntrustedCert))
	}
	if !o.Logs() {
		parts = append(parts, "log=false")
	}
	return strings.Join(parts, " ")
}

// Describe returns a table of the rules in order, the implicit default rule
// last, then the FQDN objects: for reports.
func (p *Policy) Describe() string {
	var b bytes.Buffer
	w := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "#\trule\tmatch\taction\toptions\tline")
	for i, r := range p.Rules {
		line := "-"
		if r.Line > 0 {
			line = strconv.Itoa(r.Line)
		}
		fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\t%s\n", i+1, r.Name, r.Match, r.Action, dash(r.Options.String()), line)
	}
	def := p.Default()
	fmt.Fprintf(w, "-\t%s\t%s\t%s\t-\t-\n", def.Name, def.Match, def.Action)
	_ = w.Flush()
	names := make([]string, 0, len(p.Objects.FQDN))
	for name := range p.Objects.FQDN {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		o := p.Objects.FQDN[name].WithDefaults()
		fmt.Fprintf(&b, "fqdn object %s = %s (max-ips %d, min-refresh %s)\n", name, o.FQDN, o.MaxIPs, formatDuration(o.MinRefresh))
	}
	return b.String()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// formatDuration writes d without zero trailing units: 12h, 1h30m, 30s.
func formatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

// Marshal writes the policy as YAML that Parse reads back to an equal
// policy (but for Line, File and Comment, which is written as a comment
// after the rule's name). Fields at their zero value are left out;
// each rule's match is written on one line.
func (p *Policy) Marshal() ([]byte, error) {
	root := mapping(yaml.Style(0))
	rules := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq"}
	if len(p.Rules) == 0 {
		rules.Style = yaml.FlowStyle
	}
	for _, r := range p.Rules {
		rn := mapping(0)
		add(rn, "name", str(r.Name))
		if r.Comment != "" {
			rn.Content[1].LineComment = r.Comment
		}
		if r.ID != 0 {
			add(rn, "id", integer(r.ID))
		}
		if !r.Match.IsZero() || r.Match.Proto == ProtoAny {
			add(rn, "match", marshalMatch(&r.Match))
		}
		add(rn, "action", str(string(r.Action)))
		if on := marshalOptions(&r.Options); len(on.Content) > 0 {
			add(rn, "options", on)
		}
		rules.Content = append(rules.Content, rn)
	}
	add(root, "rules", rules)
	if len(p.Objects.FQDN) > 0 {
		names := make([]string, 0, len(p.Objects.FQDN))
		for name := range p.Objects.FQDN {
			names = append(names, name)
		}
		sort.Strings(names)
		fq := mapping(0)
		for _, name := range names {
			o := p.Objects.FQDN[name]
			on := mapping(0)
			add(on, "fqdn", str(o.FQDN))
			if o.MaxIPs != 0 {
				add(on, "max-ips", integer(o.MaxIPs))
			}
			if o.MinRefresh != 0 {
				add(on, "min-refresh", str(formatDuration(o.MinRefresh)))
			}
			add(fq, name, on)
		}
		objs := mapping(0)
		add(objs, "fqdn", fq)
		add(root, "objects", objs)
	}
	if p.DefaultAction != "" {
		add(root, "default-action", str(string(p.DefaultAction)))
	}
	if p.UDPIdleTimeout != 0 {
		add(root, "udp-idle-timeout", str(formatDuration(p.UDPIdleTimeout)))
	}
	if p.TCPIdleTimeout != 0 {
		add(root, "tcp-idle-timeout", str(formatDuration(p.TCPIdleTimeout)))
	}
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(root); err != nil {
		return nil, fmt.Errorf("policy: marshal: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("policy: marshal: %w", err)
	}
	return b.Bytes(), nil
}

func marshalMatch(m *Match) *yaml.Node {
	n := mapping(yaml.FlowStyle)
	seq := func(key string, vals []*yaml.Node) {
		if len(vals) > 0 {
			add(n, key, &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq", Style: yaml.FlowStyle, Content: vals})
		}
	}
	strs := func(ss []string) []*yaml.Node {
		out := make([]*yaml.Node, len(ss))
		for i, s := range ss {
			out[i] = str(s)
		}
		return out
	}
	seq("src", strs(prefixStrings(m.Src)))
	seq("dst", strs(prefixStrings(m.Dst)))
	seq("dst-fqdn", strs(m.DstFQDN))
	if m.Proto != "" {
		add(n, "proto", str(string(m.Proto)))
	}
	ports := make([]*yaml.Node, len(m.Port))
	for i, p := range m.Port {
		if p.Lo == p.Hi {
			ports[i] = integer(int(p.Lo))
		} else {
			ports[i] = str(p.String())
		}
	}
	seq("port", ports)
	snis := make([]*yaml.Node, len(m.SNI))
	for i, s := range m.SNI {
		snis[i] = str(string(s))
	}
	seq("sni", snis)
	seq("sni-regex", strs(m.SNIRegex))
	if m.NoSNI {
		add(n, "no-sni", &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: "true"})
	}
	apps := make([]*yaml.Node, len(m.App))
	for i, a := range m.App {
		apps[i] = str(string(a))
	}
	seq("app", apps)
	return n
}

func marshalOptions(o *Options) *yaml.Node {
	n := mapping(0)
	if o.SNICertCheck != "" {
		add(n, "sni-cert-check", str(string(o.SNICertCheck)))
	}
	if o.ClientCert != "" {
		add(n, "client-cert", str(string(o.ClientCert)))
	}
	if o.LearnOnClientReject {
		add(n, "learn-on-client-reject", &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: "true"})
	}
	if o.ExclusionTTL != 0 {
		add(n, "exclusion-ttl", str(formatDuration(o.ExclusionTTL)))
	}
	if o.UntrustedCert != "" {
		add(n, "untrusted-cert", str(string(o.UntrustedCert)))
	}
	if o.Log != nil {
		add(n, "log", &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: strconv.FormatBool(*o.Log)})
	}
	return n
}

func mapping(style yaml.Style) *yaml.Node {
	return &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Style: style}
}

func str(s string) *yaml.Node { return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s} }

func integer(i int) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!int", Value: strconv.Itoa(i)}
}

func add(m *yaml.Node, key string, val *yaml.Node) {
	m.Content = append(m.Content, str(key), val)
}
