package policy

import (
	"fmt"
	"net/netip"
	"os"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/pinwall/pinwall/strictyaml"
)

// Defaults, applied where a field is zero.
const (
	// DefaultRuleName names the implicit rule that applies when no rule
	// matches. No rule may use it.
	DefaultRuleName = "default"
	// DefaultMaxIPs is how many addresses an FQDN object holds (PAN-OS's
	// limit per object).
	DefaultMaxIPs = 32
	// DefaultMinRefresh is the floor between two lookups of an FQDN object.
	DefaultMinRefresh = 30 * time.Second
	// DefaultExclusionTTL is how long a learned decryption exclusion lasts
	// (PAN-OS keeps its exclusion cache entries 12 hours).
	DefaultExclusionTTL = 12 * time.Hour
	// DefaultUDPIdleTimeout and DefaultTCPIdleTimeout age idle sessions out.
	DefaultUDPIdleTimeout = 30 * time.Second
	DefaultTCPIdleTimeout = 3600 * time.Second
)

// Action is what a rule does with a session.
type Action string

// The actions.
const (
	// ActionDecrypt intercepts TLS with a forged certificate.
	ActionDecrypt Action = "decrypt"
	// ActionNoDecrypt permits the session and splices TLS untouched.
	ActionNoDecrypt Action = "no-decrypt"
	// ActionBlock denies the session.
	ActionBlock Action = "block"
	// ActionAllow permits the session without considering decryption (for
	// UDP, or non-TLS traffic).
	ActionAllow Action = "allow"
)

// Choices lists the valid actions.
func (Action) Choices() []string {
	return []string{string(ActionDecrypt), string(ActionNoDecrypt), string(ActionBlock), string(ActionAllow)}
}

// Permits reports whether the action lets the session through.
func (a Action) Permits() bool { return a != ActionBlock }

// Proto is a transport protocol.
type Proto string

// The protocols. The zero Proto in a Match means ProtoAny.
const (
	ProtoTCP Proto = "tcp"
	ProtoUDP Proto = "udp"
	ProtoAny Proto = "any"
)

// Choices lists the valid protocols.
func (Proto) Choices() []string {
	return []string{string(ProtoTCP), string(ProtoUDP), string(ProtoAny)}
}

// App is an application as the firewall identifies it from a session's
// first bytes, in PAN-OS App-ID vocabulary.
type App string

// The applications a rule can match.
const (
	AppSSL         App = "ssl"
	AppWebBrowsing App = "web-browsing"
	AppHTTP2       App = "http2"
	AppUnknownTCP  App = "unknown-tcp"
	AppDTLS        App = "dtls"
	AppQUIC        App = "quic"
	AppUnknownUDP  App = "unknown-udp"
)

// Choices lists the applications a rule can match.
func (App) Choices() []string {
	return []string{string(AppSSL), string(AppWebBrowsing), string(AppHTTP2), string(AppUnknownTCP),
		string(AppDTLS), string(AppQUIC), string(AppUnknownUDP)}
}

// UntrustedCertAction is what a decrypt rule does when the server's
// certificate chain does not verify against the firewall's trust store
// (unknown issuer, expired, or not for the name).
type UntrustedCertAction string

// The untrusted-certificate actions. The zero value means
// UntrustedCertUntrustedCA, what both vendors do by default.
const (
	// UntrustedCertUntrustedCA completes the handshake with the server and
	// presents the client a leaf signed by the firewall's untrusted CA, so
	// the client sees an untrusted certificate as it would without the
	// firewall (PAN-OS "Forward Untrust"; FortiOS untrusted-server-cert
	// allow, which re-signs with Fortinet_CA_Untrusted).
	UntrustedCertUntrustedCA UntrustedCertAction = "untrusted-ca"
	// UntrustedCertBlock resets the session (PAN-OS decryption profile
	// "Block sessions with untrusted issuers"; FortiOS block).
	UntrustedCertBlock UntrustedCertAction = "block"
	// UntrustedCertIgnore treats the certificate as trusted and signs the
	// forged leaf with the enterprise CA (FortiOS ignore).
	UntrustedCertIgnore UntrustedCertAction = "ignore"
)

// Choices lists the valid untrusted-certificate actions.
func (UntrustedCertAction) Choices() []string {
	return []string{string(UntrustedCertUntrustedCA), string(UntrustedCertBlock), string(UntrustedCertIgnore)}
}

// ClientCertAction is what a decrypt rule does when the server demands a
// client certificate, which the firewall cannot present on the client's
// behalf (FortiGate's client-certificate bypass|inspect|block; PAN-OS blocks
// or excludes).
type ClientCertAction string

// The client-certificate actions. The zero value means ClientCertBlock.
const (
	// ClientCertBlock fails the session.
	ClientCertBlock ClientCertAction = "block"
	// ClientCertBypass passes the session undecrypted.
	ClientCertBypass ClientCertAction = "bypass"
	// ClientCertLearn fails the session and adds the server to the
	// decryption exclusion cache, so later sessions pass undecrypted.
	ClientCertLearn ClientCertAction = "learn"
)

// Choices lists the valid client-certificate actions.
func (ClientCertAction) Choices() []string {
	return []string{string(ClientCertBlock), string(ClientCertBypass), string(ClientCertLearn)}
}

// SNICertCheck is whether the upstream server certificate must cover the
// ClientHello's SNI (FortiGate's sni-server-cert-check).
type SNICertCheck string

// The SNI/certificate checks. The zero value means SNICertCheckNone.
const (
	SNICertCheckNone   SNICertCheck = "none"
	SNICertCheckStrict SNICertCheck = "strict"
)

// Choices lists the valid checks.
func (SNICertCheck) Choices() []string {
	return []string{string(SNICertCheckNone), string(SNICertCheckStrict)}
}

// Policy is an ordered rule base with its address objects.
type Policy struct {
	// Rules are evaluated in order; the first match wins.
	Rules []Rule `yaml:"rules,required"`
	// Objects are the address objects rules refer to.
	Objects Objects `yaml:"objects"`
	// DefaultAction applies when no rule matches; zero means allow.
	DefaultAction Action `yaml:"default-action"`
	// UDPIdleTimeout and TCPIdleTimeout age idle sessions out; zero means
	// DefaultUDPIdleTimeout and DefaultTCPIdleTimeout.
	UDPIdleTimeout time.Duration `yaml:"udp-idle-timeout"`
	TCPIdleTimeout time.Duration `yaml:"tcp-idle-timeout"`
	// File is the name the policy was parsed from, if any.
	File string `yaml:"-"`
	// Comment is the file's leading comment's first paragraph, without
	// the "#": what the policy says it is ("" when it has none).
	Comment string `yaml:"-"`
}

// Objects holds the named address objects.
type Objects struct {
	// FQDN objects by name.
	FQDN map[string]FQDNObject `yaml:"fqdn"`
}

// FQDNObject is an address object holding the addresses a name resolves to,
// as the firewall resolved it.
type FQDNObject struct {
	// FQDN is the name to resolve.
	FQDN string `yaml:"fqdn,required"`
	// MaxIPs caps the addresses held, taking the first of each answer; zero
	// means DefaultMaxIPs.
	MaxIPs int `yaml:"max-ips"`
	// MinRefresh is the floor between lookups; zero means DefaultMinRefresh.
	MinRefresh time.Duration `yaml:"min-refresh"`
	// Line is the object's line in the policy file; zero if built in code.
	Line int `yaml:"-" strictyaml:"line"`
}

// WithDefaults returns o with zero fields set to their defaults.
func (o FQDNObject) WithDefaults() FQDNObject {
	if o.MaxIPs == 0 {
		o.MaxIPs = DefaultMaxIPs
	}
	if o.MinRefresh == 0 {
		o.MinRefresh = DefaultMinRefresh
	}
	return o
}

// Rule is one entry of the rule base.
type Rule struct {
	// Name identifies the rule in decisions and logs; unique, not "default".
	Name string `yaml:"name,required"`
	// Match selects sessions; the empty Match selects every session.
	Match Match `yaml:"match"`
	// Action is what happens to matching sessions.
	Action Action `yaml:"action,required"`
	// Options refine decrypt and no-decrypt rules.
	Options Options `yaml:"options"`
	// ID is the rule's number in the firewall's own configuration (the
	// FortiOS policyid logs carry); zero means none, and logs then number
	// the rule by its position, from 1.
	ID int `yaml:"id"`
	// Line is the rule's line in the policy file; zero for a rule built in
	// code and for the implicit default rule.
	Line int `yaml:"-" strictyaml:"line"`
	// Comment is written above the rule by Marshal (translators record
	// where a rule came from); it is not read back.
	Comment string `yaml:"-"`
}

// Implicit reports whether r is the implicit default rule (or nil).
func (r *Rule) Implicit() bool { return r == nil || r.Name == DefaultRuleName && r.Line == 0 }

// String returns "name: match -> action"; nil-safe.
func (r *Rule) String() string {
	if r == nil {
		return "<nil rule>"
	}
	return fmt.Sprintf("%s: %s -> %s", r.Name, r.Match.String(), r.Action)
}

// Match selects sessions. Every field that is set must hold (AND); within a
// list field any element may match (OR).
type Match struct {
	// Src and Dst are source and destination prefixes; a bare address in
	// YAML is a host prefix.
	Src []netip.Prefix `yaml:"src"`
	Dst []netip.Prefix `yaml:"dst"`
	// DstFQDN names FQDN objects; the destination must be among the
	// addresses one of them currently holds.
	DstFQDN []string `yaml:"dst-fqdn"`
	// Proto is tcp, udp or any; zero means any.
	Proto Proto `yaml:"proto"`
	// Port holds destination ports and ranges.
	Port []PortRange `yaml:"port"`
	// SNI holds ClientHello server names: exact, or with "*" labels that
	// match exactly one label each. A session without SNI never matches.
	SNI []SNIPattern `yaml:"sni"`
	// NoSNI selects sessions whose ClientHello carried no SNI, and non-TLS
	// sessions.
	NoSNI bool `yaml:"no-sni"`
	// SNIRegex holds regular expressions (RE2 syntax) searched for in the
	// ClientHello's SNI, lower-cased and without a trailing dot; unanchored
	// unless the expression anchors itself (FortiOS ssl-exempt regex). A
	// session without SNI never matches. SNI and SNIRegex together: either
	// may match.
	SNIRegex []string `yaml:"sni-regex"`
	// App holds applications as identified from the session's first bytes
	// (PAN-OS security rules match on App-ID): a DTLS tunnel is dtls, a
	// QUIC connection quic, TLS over TCP ssl.
	App []App `yaml:"app"`
}

// IsZero reports whether m matches every session.
func (m Match) IsZero() bool {
	return len(m.Src) == 0 && len(m.Dst) == 0 && len(m.DstFQDN) == 0 && (m.Proto == "" || m.Proto == ProtoAny) &&
		len(m.Port) == 0 && len(m.SNI) == 0 && len(m.SNIRegex) == 0 && !m.NoSNI && len(m.App) == 0
}

// Options refine a rule; zero fields mean defaults.
type Options struct {
	// SNICertCheck (decrypt and no-decrypt rules): with strict, the
	// upstream certificate must cover the SNI or the session is blocked.
	// Zero means none.
	SNICertCheck SNICertCheck `yaml:"sni-cert-check"`
	// ClientCert (decrypt rules): what to do when the upstream demands a
	// client certificate. Zero means block.
	ClientCert ClientCertAction `yaml:"client-cert"`
	// LearnOnClientReject (decrypt rules): learn a decryption exclusion for
	// the server when the client rejects the forged certificate.
	LearnOnClientReject bool `yaml:"learn-on-client-reject"`
	// ExclusionTTL (decrypt rules that learn): how long a learned exclusion
	// lasts. Zero means DefaultExclusionTTL.
	ExclusionTTL time.Duration `yaml:"exclusion-ttl"`
	// UntrustedCert (decrypt rules): what to do when the server's
	// certificate does not verify against the firewall's trust store. Zero
	// means untrusted-ca.
	UntrustedCert UntrustedCertAction `yaml:"untrusted-cert"`
	// Log records the session; nil means true.
	Log *bool `yaml:"log"`
}

// WithDefaults returns o with every default filled in: the form a Decision
// carries. Log is never nil in the result.
func (o Options) WithDefaults() Options {
	if o.SNICertCheck == "" {
		o.SNICertCheck = SNICertCheckNone
	}
	if o.ClientCert == "" {
		o.ClientCert = ClientCertBlock
	}
	if o.ExclusionTTL == 0 {
		o.ExclusionTTL = DefaultExclusionTTL
	}
	if o.UntrustedCert == "" {
		o.UntrustedCert = UntrustedCertUntrustedCA
	}
	log := o.Log == nil || *o.Log
	o.Log = &log
	return o
}

// Logs reports whether sessions are to be logged.
func (o Options) Logs() bool { return o.Log == nil || *o.Log }

// Learns reports whether the rule learns decryption exclusions.
func (o Options) Learns() bool { return o.ClientCert == ClientCertLearn || o.LearnOnClientReject }

// Default returns the implicit rule that applies when none matches.
func (p *Policy) Default() *Rule {
	a := p.DefaultAction
	if a == "" {
		a = ActionAllow
	}
	return &Rule{Name: DefaultRuleName, Action: a}
}

// IdleTimeout returns how long an idle session of proto lives.
func (p *Policy) IdleTimeout(proto Proto) time.Duration {
	if proto == ProtoUDP {
		if p.UDPIdleTimeout > 0 {
			return p.UDPIdleTimeout
		}
		return DefaultUDPIdleTimeout
	}
	if p.TCPIdleTimeout > 0 {
		return p.TCPIdleTimeout
	}
	return DefaultTCPIdleTimeout
}

// Load reads and parses the policy file at path.
func Load(path string) (*Policy, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	return Parse(path, data)
}

// Parse parses a policy. file names it in errors, which are
// *strictyaml.Error formatted "file:line:col: field: message".
func Parse(file string, data []byte) (*Policy, error) {
	p := &Policy{}
	if err := strictyaml.Decode(file, data, p); err != nil {
		return nil, err
	}
	p.File, p.Comment = file, leadingComment(data)
	return p, nil
}

// leadingComment returns the first paragraph of the comment lines that
// open data, joined into one line.
func leadingComment(data []byte) string {
	var words []string
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, "#") {
			break
		}
		text := strings.TrimSpace(strings.TrimPrefix(line, "#"))
		if text == "" {
			if len(words) > 0 {
				break
			}
			continue
		}
		words = append(words, text)
	}
	return strings.Join(words, " ")
}

// Validate checks what the YAML schema cannot: names, references between
// rules and objects, options that do not fit the action. Its errors are
// *strictyaml.Error whose Field locates the problem ("rules[2].name"); Parse
// adds the file and line. NewEngine and Swap call it for policies built in
// code.
func (p *Policy) Validate() error {
	if p.DefaultAction != "" {
		if err := checkEnum("default-action", p.DefaultAction); err != nil {
			return err
		}
	}
	if p.UDPIdleTimeout < 0 {
		return strictyaml.Errorf("udp-idle-timeout", "udp-idle-timeout must be positive")
	}
	if p.TCPIdleTimeout < 0 {
		return strictyaml.Errorf("tcp-idle-timeout", "tcp-idle-timeout must be positive")
	}
	names := make([]string, 0, len(p.Objects.FQDN))
	for name := range p.Objects.FQDN {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if err := validateObject(name, p.Objects.FQDN[name]); err != nil {
			return err
		}
	}
	seen := make(map[string]int, len(p.Rules))
	for i := range p.Rules {
		r := &p.Rules[i]
		field := strictyaml.Index("rules", i)
		if j, dup := seen[r.Name]; dup {
			return strictyaml.Errorf(field+".name", "duplicate rule name %q (first used by rules[%d])", r.Name, j)
		}
		seen[r.Name] = i
		if err := validateRule(r, p.Objects.FQDN, names); err != nil {
			err.Field = strictyaml.Join(field, err.Field)
			return err
		}
	}
	return nil
}

func checkEnum[E interface {
	~string
	Choices() []string
}](field string, v E) *strictyaml.Error {
	for _, c := range v.Choices() {
		if string(v) == c {
			return nil
		}
	}
	return strictyaml.EnumError(field, string(v), v.Choices())
}

func validName(what, name string) string {
	switch {
	case name == "":
		return what + " name is empty"
	case strings.TrimSpace(name) != name:
		return fmt.Sprintf("%s name %q has leading or trailing spaces", what, name)
	case len(name) > 63:
		return fmt.Sprintf("%s name %q is longer than 63 characters", what, name)
	}
	for _, c := range name {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_', c == '.', c == ' ':
		default:
			return fmt.Sprintf("%s name %q has the character %q (use letters, digits, space, '-', '_' and '.')", what, name, c)
		}
	}
	return ""
}

func validateObject(name string, o FQDNObject) *strictyaml.Error {
	field := strictyaml.Key(strictyaml.Key("objects", "fqdn"), name)
	if msg := validName("object", name); msg != "" {
		return strictyaml.Errorf(field, "%s", msg)
	}
	if msg := checkHostname(o.FQDN, false); msg != "" {
		return strictyaml.Errorf(strictyaml.Key(field, "fqdn"), "%s", msg)
	}
	if o.MaxIPs < 0 {
		return strictyaml.Errorf(strictyaml.Key(field, "max-ips"), "max-ips must not be negative (0 means %d)", DefaultMaxIPs)
	}
	if o.MinRefresh < 0 {
		return strictyaml.Errorf(strictyaml.Key(field, "min-refresh"), "min-refresh must not be negative (0 means %s)", DefaultMinRefresh)
	}
	return nil
}

// validateRule returns errors with fields relative to the rule.
func validateRule(r *Rule, objects map[string]FQDNObject, objectNames []string) *strictyaml.Error {
	if msg := validName("rule", r.Name); msg != "" {
		return strictyaml.Errorf("name", "%s", msg)
	}
	if r.Name == DefaultRuleName {
		return strictyaml.Errorf("name", "the name %q is reserved for the implicit rule; set default-action instead", DefaultRuleName)
	}
	if err := checkEnum("action", r.Action); err != nil {
		return err
	}
	if r.ID < 0 {
		return strictyaml.Errorf("id", "id must not be negative")
	}
	if err := validateMatch(&r.Match, objects, objectNames); err != nil {
		err.Field = strictyaml.Join("match", err.Field)
		return err
	}
	if err := validateOptions(&r.Options, r.Action); err != nil {
		err.Field = strictyaml.Join("options", err.Field)
		return err
	}
	return nil
}

func validateMatch(m *Match, objects map[string]FQDNObject, objectNames []string) *strictyaml.Error {
	for _, list := range []struct {
		field    string
		prefixes []netip.Prefix
	}{{"src", m.Src}, {"dst", m.Dst}} {
		for i, p := range list.prefixes {
			f := strictyaml.Index(list.field, i)
			if !p.IsValid() {
				return strictyaml.Errorf(f, "invalid prefix")
			}
			if p.Masked() != p {
				return strictyaml.Errorf(f, "%s has host bits set (did you mean %s?)", p, p.Masked())
			}
		}
	}
	for i, name := range m.DstFQDN {
		if _, ok := objects[name]; !ok {
			e := strictyaml.Errorf(strictyaml.Index("dst-fqdn", i), "undefined FQDN object %q", name)
			if len(objectNames) > 0 {
				e.Msg += fmt.Sprintf(" (defined: %s)", strings.Join(objectNames, ", "))
				e.Choices = append([]string(nil), objectNames...)
			} else {
				e.Msg += " (define it under objects.fqdn)"
			}
			return e
		}
	}
	if m.Proto != "" {
		if err := checkEnum("proto", m.Proto); err != nil {
			return err
		}
	}
	for i, pr := range m.Port {
		if msg := pr.check(); msg != "" {
			return strictyaml.Errorf(strictyaml.Index("port", i), "%s", msg)
		}
	}
	for i, s := range m.SNI {
		if msg := checkHostname(string(s), true); msg != "" {
			return strictyaml.Errorf(strictyaml.Index("sni", i), "%s", msg)
		}
	}
	for i, re := range m.SNIRegex {
		if _, err := regexp.Compile(re); err != nil {
			return strictyaml.Errorf(strictyaml.Index("sni-regex", i), "%q is not a regular expression: %v", re, err)
		}
	}
	for i, a := range m.App {
		if err := checkEnum(strictyaml.Index("app", i), a); err != nil {
			return err
		}
	}
	if m.NoSNI && (len(m.SNI) > 0 || len(m.SNIRegex) > 0) {
		return strictyaml.Errorf("no-sni", "no-sni: true and sni cannot both hold; use two rules")
	}
	return nil
}

func validateOptions(o *Options, a Action) *strictyaml.Error {
	only := func(field string, actions ...Action) *strictyaml.Error {
		for _, ok := range actions {
			if a == ok {
				return nil
			}
		}
		list := make([]string, len(actions))
		for i, x := range actions {
			list[i] = string(x)
		}
		return strictyaml.Errorf(field, "%s applies only to %s rules, not to %s", field, strings.Join(list, " and "), a)
	}
	if o.SNICertCheck != "" {
		if err := checkEnum("sni-cert-check", o.SNICertCheck); err != nil {
			return err
		}
		if err := only("sni-cert-check", ActionDecrypt, ActionNoDecrypt); err != nil {
			return err
		}
	}
	if o.ClientCert != "" {
		if err := checkEnum("client-cert", o.ClientCert); err != nil {
			return err
		}
		if err := only("client-cert", ActionDecrypt); err != nil {
			return err
		}
	}
	if o.LearnOnClientReject {
		if err := only("learn-on-client-reject", ActionDecrypt); err != nil {
			return err
		}
	}
	if o.UntrustedCert != "" {
		if err := checkEnum("untrusted-cert", o.UntrustedCert); err != nil {
			return err
		}
		if err := only("untrusted-cert", ActionDecrypt); err != nil {
			return err
		}
	}
	if o.ExclusionTTL != 0 {
		if o.ExclusionTTL < 0 {
			return strictyaml.Errorf("exclusion-ttl", "exclusion-ttl must be positive")
		}
		if err := only("exclusion-ttl", ActionDecrypt); err != nil {
			return err
		}
		if !o.Learns() {
			return strictyaml.Errorf("exclusion-ttl", "exclusion-ttl has no effect without client-cert: learn or learn-on-client-reject: true")
		}
	}
	return nil
}
