package scenarios

import (
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/pinwall/pinwall/harness"
	"github.com/pinwall/pinwall/interceptors"
	"github.com/pinwall/pinwall/mitm/policy"
	"github.com/pinwall/pinwall/strictyaml"
)

//go:embed *.yaml policies/*.yaml
var catalogueFS embed.FS

// Role is what a variant stands for when the report compares a scenario's
// runs: the problem, its fix, or a baseline with nothing to fix.
type Role string

// Roles.
const (
	WithoutFix Role = "without-fix"
	WithFix    Role = "with-fix"
	Baseline   Role = "baseline"
)

// Choices lists the roles.
func (Role) Choices() []string {
	return []string{string(WithoutFix), string(WithFix), string(Baseline)}
}

// RoleOf is the role a variant label implies: its first part (before a
// "/") when that names a role, else none ("").
func RoleOf(label string) Role {
	first, _, _ := strings.Cut(label, "/")
	for _, r := range Baseline.Choices() {
		if first == r {
			return Role(r)
		}
	}
	return ""
}

// FirewallSection is a scenario's firewall: absent means no firewall.
type FirewallSection struct {
	// Kind is what stands in the firewall's place: pinwall (the default),
	// mitmproxy, squid or sslsplit (containers only).
	Kind interceptors.Kind `yaml:"kind"`
	// Inside is the firewall's address on the LAN; empty means 10.10.10.254.
	Inside string `yaml:"inside"`
	// Outside is its address towards the internet (the sessions' NAT
	// source); empty means 198.51.100.1.
	Outside string `yaml:"outside"`
	// ProxyPort is the explicit (CONNECT) proxy's port on the inside
	// address; zero means 8080.
	ProxyPort uint16 `yaml:"proxy-port"`
	// Policy is the rule base, written inline (docs/policy-format.md).
	Policy *policy.Policy `yaml:"policy"`
	// PolicyFile names a policy file instead: relative to the scenario
	// file's directory, else to the working directory, or absolute. Neither
	// policy nor policy-file means the default policy (allow everything,
	// decrypt nothing).
	PolicyFile string `yaml:"policy-file"`
}

// Scenario is one row of the catalogue, or a user's scenario file.
type Scenario struct {
	// ID names the scenario: one word (letters, digits, dashes), not one of
	// the catalogue's IDs for a file of your own.
	ID string `yaml:"id,required"`
	// Title is a short heading; Summary the one line `pinwall list` prints.
	Title   string `yaml:"title,required"`
	Summary string `yaml:"summary,required"`
	// Explain tells a non-developer, in two or three sentences, what the
	// scenario shows.
	Explain string `yaml:"explain"`
	// Setting is the catalogue's "setting" column.
	Setting string `yaml:"setting"`
	// Fix describes the bypass rule that fixes the row, if any.
	Fix string `yaml:"fix"`
	// Sources cite where the simulated behaviour comes from.
	Sources []string `yaml:"sources"`

	// Topology is the network: LAN, laptop, extra hosts, gateways and
	// origins; absent fields take the defaults of docs/topology.md.
	Topology harness.Spec `yaml:"topology"`
	// Client configures the endpoint client.
	Client harness.ClientSpec `yaml:"client"`
	// Gateway configures every gateway.
	Gateway harness.GatewayConfigSpec `yaml:"gateway"`
	// Firewall puts a firewall between the LAN and the internet; absent
	// means none.
	Firewall *FirewallSection `yaml:"firewall"`
	// Workload is the flows an application on the laptop opens.
	Workload harness.Workload `yaml:"workload"`
	// Reconnects, when positive, replaces the workload by that many tunnel
	// attempts from fresh clients, counting the failures.
	Reconnects int `yaml:"reconnects"`
	// Fleet, when positive, replaces the workload by that many laptops
	// behind the same firewall, each with an address and a device
	// certificate of its own, starting together (in containers, a
	// container each; docs/fleet.md).
	Fleet int `yaml:"fleet"`
	// Events happen during the run, at offsets from the first tunnel.
	Events []EventSpec `yaml:"events"`
	// Probes are connections from extra hosts (a spoofed SNI, a QUIC
	// datagram).
	Probes []harness.Probe `yaml:"probes"`
	// WaitUp bounds the wait for the first tunnel; zero means 5s.
	WaitUp time.Duration `yaml:"wait-up"`
	// Hold keeps the run going this long after the tunnel first settled;
	// in process, a run with events ends it sooner once, after the events,
	// the tunnel is up again or every gateway has been tried and failed.
	Hold time.Duration `yaml:"hold"`
	// Expect is what every variant must show, unless it overrides it.
	Expect Expect `yaml:"expect"`
	// Tools are the row's expectations on third-party firewalls where
	// they differ from pinwall's, for every variant (a variant's own
	// entry for a tool replaces this one).
	Tools ToolsSection `yaml:"tools"`

	// Variants are the runs: each overrides parts of the base above.
	Variants []VariantSpec `yaml:"variants,required"`

	// File is where the scenario was loaded from.
	File string `yaml:"-"`
	// Line of the id, for messages.
	Line int `yaml:"-"`
	// fsys holds the built-in files; nil for a scenario on disk.
	fsys fs.FS
	// data is the file's text, to place errors found after decoding.
	data []byte
}

// Builtin reports whether the scenario is one of the catalogue's.
func (s *Scenario) Builtin() bool { return s.fsys != nil }

// EventSpec is a harness.Event whose policy may come from a file.
type EventSpec struct {
	harness.Event `yaml:",inline"`
	// PolicyFile names the new policy of a "policy" event, resolved as the
	// firewall's policy-file is.
	PolicyFile string `yaml:"policy-file"`
}

// VariantSpec overrides parts of the base for one run. Each override
// section is decoded onto a copy of the base section, so only the fields it
// names change; expect items are merged the same way (lists replace).
type VariantSpec struct {
	// Variant labels the run, unique in the scenario: a word of your own
	// (letters, digits, '-', '_', '.'), parts joined by '/' as in
	// with-fix/sni-and-ip. Reports and `pinwall compose --variant` name
	// the run by it.
	Variant string `yaml:"variant,required"`
	// Role is how the report compares the run: without-fix, with-fix or
	// baseline. Empty means the label's first part when that is a role,
	// else none (the run is reported on its own).
	Role Role `yaml:"role"`
	// Describe says in a sentence what this variant changes.
	Describe string `yaml:"describe"`
	// Topology, Client, Gateway and Firewall override the base's: only the
	// fields they name change (a firewall's policy replaces the base's).
	Topology yaml.Node `yaml:"topology"`
	Client   yaml.Node `yaml:"client"`
	Gateway  yaml.Node `yaml:"gateway"`
	Firewall yaml.Node `yaml:"firewall"`
	// NoFirewall removes the base's firewall for this variant.
	NoFirewall bool `yaml:"no-firewall"`
	// Workload overrides the base's fields it names.
	Workload yaml.Node `yaml:"workload"`
	// Reconnects, Fleet, WaitUp and Hold replace the base's when set.
	Reconnects *int           `yaml:"reconnects"`
	Fleet      *int           `yaml:"fleet"`
	WaitUp     *time.Duration `yaml:"wait-up"`
	Hold       *time.Duration `yaml:"hold"`
	// Events and Probes replace the base's lists when set.
	Events yaml.Node `yaml:"events"`
	Probes yaml.Node `yaml:"probes"`
	// Expect overrides the base's expectations item by item (lists
	// replace).
	Expect yaml.Node `yaml:"expect"`
	// Tools are this variant's expectations on third-party firewalls.
	Tools  ToolsSection `yaml:"tools"`
	Line   int          `yaml:"-" strictyaml:"line"`
	Column int          `yaml:"-" strictyaml:"column"`
}

// Run is one resolved variant of a scenario, ready to execute.
type Run struct {
	Scenario *Scenario
	// Variant is the variant's label; Role its role in comparisons.
	Variant  string
	Role     Role
	Describe string
	Plan     harness.Plan
	Expect   Expect
	// Tools are the expectations on each third-party firewall, resolved:
	// the run's own where no difference is declared.
	Tools map[interceptors.Kind]ToolRun
	// Firewall is the kind this run is for (ForFirewall); ToolSource the
	// source of a declared difference, NotApplicable the checks left out
	// because they read pinwall's firewall log.
	Firewall      interceptors.Kind
	ToolSource    string
	NotApplicable []string
	// NotRun, when set, says why the run is not carried out on its
	// firewall (the tool cannot express the policy, or the row says so).
	NotRun string
}

// Key identifies a run: "id/label", such as "sni-spoof/with-fix/sni-and-ip",
// with "@tool" when a third-party tool stands in the firewall's place.
func (r Run) Key() string {
	k := r.Scenario.ID + "/" + r.Variant
	if r.Firewall.IsThirdParty() {
		k += "@" + string(r.Firewall)
	}
	return k
}

// Validate checks what the schema cannot.
func (s *Scenario) Validate() error {
	if s.ID == "" || strings.ContainsAny(s.ID, " /\t") {
		return strictyaml.Errorf("id", "id %q must be one word (letters, digits, dashes)", s.ID)
	}
	if strings.Contains(s.Summary, "\n") {
		return strictyaml.Errorf("summary", "summary must be one line")
	}
	if len(s.Variants) == 0 {
		return strictyaml.Errorf("variants", "at least one variant is required")
	}
	seen := map[string]int{}
	hasBaseline := false
	for i := range s.Variants {
		v := &s.Variants[i]
		field := strictyaml.Index("variants", i) + ".variant"
		if msg := checkLabel(v.Variant); msg != "" {
			return strictyaml.Errorf(field, "%s", msg)
		}
		if j, dup := seen[v.Variant]; dup {
			return strictyaml.Errorf(field, "variant %q appears twice (first as variants[%d])", v.Variant, j)
		}
		seen[v.Variant] = i
		if v.Role == "" {
			v.Role = RoleOf(v.Variant)
		}
		hasBaseline = hasBaseline || v.Role == Baseline
	}
	if hasBaseline {
		for i, v := range s.Variants {
			if v.Role != Baseline {
				return strictyaml.Errorf(strictyaml.Index("variants", i)+".role", "a scenario with a baseline has no fix to compare: variant %s has role %q", v.Variant, v.Role)
			}
		}
	}
	return nil
}

// checkLabel returns why a variant label is unusable, or "".
func checkLabel(l string) string {
	if l == "" {
		return "the variant label is empty"
	}
	for _, part := range strings.Split(l, "/") {
		if part == "" {
			return fmt.Sprintf("variant %q has an empty part (write parts joined by single slashes, as in with-fix/sni-and-ip)", l)
		}
		for _, c := range part {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
				return fmt.Sprintf("variant %q has the character %q (use letters, digits, '-', '_', '.', and '/' between parts)", l, c)
			}
		}
	}
	return ""
}

// Load reads a scenario from a file on disk. Files it names (policy-file)
// resolve from the scenario file's directory, else from the working
// directory, or are absolute.
func Load(file string) (*Scenario, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("scenarios: %w", err)
	}
	return parse(file, data, nil)
}

// Parse reads a scenario from data as Load does; file names it in errors
// and is where the files it names resolve from.
func Parse(file string, data []byte) (*Scenario, error) {
	return parse(file, data, nil)
}

// parse decodes a scenario; fsys holds the built-in files it names (nil
// for a scenario on disk).
func parse(file string, data []byte, fsys fs.FS) (*Scenario, error) {
	s := &Scenario{}
	if err := strictyaml.Decode(file, data, s); err != nil {
		return nil, err
	}
	s.File, s.fsys, s.data = file, fsys, data
	if s.Firewall != nil && s.Firewall.Policy != nil && s.Firewall.Policy.File == "" {
		s.Firewall.Policy.File = file // an inline policy: its lines are the scenario's
	}
	if s.Firewall != nil && s.Firewall.PolicyFile != "" {
		p, err := s.loadPolicy(s.Firewall.PolicyFile, "firewall.policy-file")
		if err != nil {
			return nil, err
		}
		s.Firewall.Policy = p
	}
	for i := range s.Events {
		if err := s.resolveEvent(&s.Events[i], strictyaml.Index("events", i)); err != nil {
			return nil, err
		}
	}
	// Resolve every variant now, so a bad override fails at load time.
	if _, err := s.Runs(); err != nil {
		return nil, err
	}
	return s, nil
}

// errAt is an error about the value at field, placed at its line and
// column in the scenario file.
func (s *Scenario) errAt(field string, err error, format string, args ...any) error {
	return (&strictyaml.Error{File: s.File, Field: field, Msg: fmt.Sprintf(format, args...), Err: err}).Place(s.data)
}

func (s *Scenario) resolveEvent(e *EventSpec, field string) error {
	if e.PolicyFile == "" {
		return nil
	}
	file, data, err := s.readFile(e.PolicyFile)
	if err != nil {
		return s.errAt(strictyaml.Key(field, "policy-file"), err, "%v", err)
	}
	if _, err := policy.Parse(file, data); err != nil {
		return err
	}
	e.Policy = string(data)
	return nil
}

// readFile reads a file the scenario names and returns the name to report
// it by. A built-in scenario's files are among the built-in ones; on disk
// a relative name resolves from the scenario file's directory, else from
// the working directory, else — for policies/NAME, as the catalogue's
// scenarios write it — from the catalogue's policies.
func (s *Scenario) readFile(name string) (string, []byte, error) {
	if s.fsys != nil && !filepath.IsAbs(name) {
		p := path.Join(path.Dir(strings.TrimPrefix(s.File, "scenarios/")), name)
		data, err := fs.ReadFile(s.fsys, p)
		if err != nil {
			return "", nil, fmt.Errorf("no built-in file %s", name)
		}
		return "scenarios/" + p, data, nil
	}
	if filepath.IsAbs(name) {
		data, err := os.ReadFile(name)
		if err != nil {
			return "", nil, fmt.Errorf("cannot read %s: %w", name, err)
		}
		return name, data, nil
	}
	besides := filepath.Join(filepath.Dir(s.File), name)
	data, err := os.ReadFile(besides)
	if err == nil {
		return besides, data, nil
	}
	if data, err2 := os.ReadFile(name); err2 == nil {
		return name, data, nil
	}
	// A copy of a catalogue scenario still finds the catalogue's policies.
	if p := path.Clean(filepath.ToSlash(name)); strings.HasPrefix(p, "policies/") {
		if data, err2 := fs.ReadFile(catalogueFS, p); err2 == nil {
			return "scenarios/" + p, data, nil
		}
	}
	wd, _ := os.Getwd()
	return "", nil, fmt.Errorf("cannot read %s: tried %s (beside the scenario) and %s (the working directory): %w",
		name, besides, filepath.Join(wd, name), err)
}

func (s *Scenario) loadPolicy(name, field string) (*policy.Policy, error) {
	file, data, err := s.readFile(name)
	if err != nil {
		return nil, s.errAt(field, err, "%v", err)
	}
	return policy.Parse(file, data)
}

// Runs resolves every variant into a Run.
func (s *Scenario) Runs() ([]Run, error) {
	var out []Run
	for i := range s.Variants {
		r, err := s.resolve(i)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

func (s *Scenario) resolve(i int) (Run, error) {
	v := s.Variants[i]
	field := strictyaml.Index("variants", i)
	spec := s.Topology
	cs, gw := s.Client, s.Gateway
	var fw *FirewallSection
	if s.Firewall != nil {
		c := *s.Firewall
		fw = &c
	}
	wl, reconnects := s.Workload, s.Reconnects
	events := append([]EventSpec(nil), s.Events...)
	probes := append([]harness.Probe(nil), s.Probes...)
	exp := s.Expect.clone()

	decode := func(n *yaml.Node, name string, out any) error {
		if n.Kind == 0 {
			return nil
		}
		return strictyaml.DecodeNode(s.File, n, strictyaml.Key(field, name), out)
	}
	if err := decode(&v.Topology, "topology", &spec); err != nil {
		return Run{}, err
	}
	if err := decode(&v.Client, "client", &cs); err != nil {
		return Run{}, err
	}
	if err := decode(&v.Gateway, "gateway", &gw); err != nil {
		return Run{}, err
	}
	if v.Firewall.Kind != 0 {
		var err error
		if fw, err = s.overrideFirewall(fw, &v.Firewall, field); err != nil {
			return Run{}, err
		}
	}
	if v.NoFirewall {
		fw = nil
	}
	if err := decode(&v.Workload, "workload", &wl); err != nil {
		return Run{}, err
	}
	if v.Reconnects != nil {
		reconnects = *v.Reconnects
	}
	fleet := s.Fleet
	if v.Fleet != nil {
		fleet = *v.Fleet
	}
	if v.Events.Kind != 0 {
		events = nil
		if err := decode(&v.Events, "events", &events); err != nil {
			return Run{}, err
		}
		for j := range events {
			if err := s.resolveEvent(&events[j], strictyaml.Key(field, strictyaml.Index("events", j))); err != nil {
				return Run{}, err
			}
		}
	}
	if v.Probes.Kind != 0 {
		probes = nil
		if err := decode(&v.Probes, "probes", &probes); err != nil {
			return Run{}, err
		}
	}
	if err := decode(&v.Expect, "expect", &exp); err != nil {
		return Run{}, err
	}
	tools, err := s.resolveTools(v, field, exp, cs)
	if err != nil {
		return Run{}, err
	}

	spec.Client, spec.Gateway = cs, gw
	if fw != nil {
		fs, err := s.firewallSpec(fw)
		if err != nil {
			return Run{}, err
		}
		spec.Firewall = fs
	}
	plan := harness.Plan{Spec: spec, Workload: wl, Reconnects: reconnects, Fleet: fleet, Probes: probes, WaitUp: s.WaitUp}
	if v.WaitUp != nil {
		plan.WaitUp = *v.WaitUp
	}
	plan.Hold = s.Hold
	if v.Hold != nil {
		plan.Hold = *v.Hold
	}
	for _, e := range events {
		plan.Events = append(plan.Events, e.Event)
	}
	plan.Spec = plan.Spec.WithDefaults()
	if err := plan.Spec.Validate(); err != nil {
		return Run{}, &strictyaml.Error{File: s.File, Line: v.Line, Column: v.Column, Field: field, Msg: oneLine(err), Err: err}
	}
	if err := plan.Validate(); err != nil {
		return Run{}, &strictyaml.Error{File: s.File, Line: v.Line, Column: v.Column, Field: field, Msg: oneLine(err), Err: err}
	}
	plan.Workload = plan.Workload.WithDefaults(plan.Spec)
	role := v.Role
	if role == "" {
		role = RoleOf(v.Variant)
	}
	r := Run{Scenario: s, Variant: v.Variant, Role: role, Describe: v.Describe, Plan: plan, Expect: exp, Tools: tools}
	if fw := plan.Spec.Firewall; fw != nil && fw.Kind.IsThirdParty() {
		// The file itself puts a tool in the firewall's place.
		return r.ForFirewall(fw.Kind), nil
	}
	return r, nil
}

// overrideFirewall applies a variant's firewall section (node n, at
// field) to the base's, fw (nil when the base has none). A variant's
// policy replaces the base's rather than merging rules.
func (s *Scenario) overrideFirewall(fw *FirewallSection, n *yaml.Node, field string) (*FirewallSection, error) {
	if fw == nil {
		fw = &FirewallSection{}
	}
	override := FirewallSection{Kind: fw.Kind, Inside: fw.Inside, Outside: fw.Outside, ProxyPort: fw.ProxyPort}
	if err := strictyaml.DecodeNode(s.File, n, strictyaml.Key(field, "firewall"), &override); err != nil {
		return nil, err
	}
	if override.Policy == nil && override.PolicyFile == "" {
		override.Policy, override.PolicyFile = fw.Policy, fw.PolicyFile
	} else if override.Policy != nil && override.Policy.File == "" {
		override.Policy.File = s.File // an inline policy: its lines are the scenario's
	}
	if override.PolicyFile != "" && override.Policy == nil {
		p, err := s.loadPolicy(override.PolicyFile, strictyaml.Key(field, "firewall.policy-file"))
		if err != nil {
			return nil, err
		}
		override.Policy = p
	}
	return &override, nil
}

// firewallSpec turns a resolved firewall section into the harness's spec.
func (s *Scenario) firewallSpec(fw *FirewallSection) (*harness.FirewallSpec, error) {
	fs := &harness.FirewallSpec{Kind: fw.Kind, ProxyPort: fw.ProxyPort, Policy: fw.Policy}
	var err error
	if fs.Inside, err = parseAddrField(fw.Inside); err != nil {
		return nil, s.errAt("firewall.inside", err, "%v", err)
	}
	if fs.Outside, err = parseAddrField(fw.Outside); err != nil {
		return nil, s.errAt("firewall.outside", err, "%v", err)
	}
	return fs, nil
}

// Catalogue loads the built-in scenarios, sorted in catalogue order.
func Catalogue() ([]*Scenario, error) {
	entries, err := fs.Glob(catalogueFS, "*.yaml")
	if err != nil {
		return nil, err
	}
	var out []*Scenario
	for _, name := range entries {
		data, err := catalogueFS.ReadFile(name)
		if err != nil {
			return nil, err
		}
		s, err := parse("scenarios/"+name, data, catalogueFS)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	sort.SliceStable(out, func(i, j int) bool { return order(out[i].ID) < order(out[j].ID) })
	return out, nil
}

// catalogueOrder is the catalogue's order: from what the firewall sees,
// through why decryption fails, to which bypass rule fixes it (the order of
// docs/scenarios.md and of every report).
var catalogueOrder = []string{
	"visibility", "udp-blocked", "decrypt-pinned", "decrypt-mtls", "double-decrypt", "bypass-sni",
	"bypass-ip", "bypass-fqdn", "backup-gateway", "sni-spoof", "bypass-narrow", "steering-exceptions", "learned-exclusion",
}

func order(id string) int {
	for i, x := range catalogueOrder {
		if x == id {
			return i
		}
	}
	return len(catalogueOrder)
}

// Collides reports a user's scenario that takes a catalogue scenario's ID,
// or nil: two scenarios under one ID would make reports, evidence and the
// reproduce commands ambiguous.
func Collides(s *Scenario, catalogue []*Scenario) error {
	for _, c := range catalogue {
		if c.ID == s.ID && !s.Builtin() {
			return s.errAt("id", nil, "%q is the id of the catalogue's scenario %s; give your scenario an id of its own", s.ID, c.File)
		}
	}
	return nil
}

// Find returns the scenarios with the given ids, in catalogue order, or an
// error naming the unknown ones and the valid ids.
func Find(all []*Scenario, ids ...string) ([]*Scenario, error) {
	byID := map[string]*Scenario{}
	var valid []string
	for _, s := range all {
		byID[s.ID] = s
		valid = append(valid, s.ID)
	}
	var out []*Scenario
	var unknown []string
	for _, id := range ids {
		if s, ok := byID[id]; ok {
			out = append(out, s)
		} else {
			unknown = append(unknown, id)
		}
	}
	if len(unknown) > 0 {
		return nil, fmt.Errorf("unknown scenario %s (valid: %s)", strings.Join(unknown, ", "), strings.Join(valid, ", "))
	}
	return out, nil
}

// CataloguePolicy returns a built-in policy file's text ("policies/decrypt-all.yaml").
func CataloguePolicy(name string) ([]byte, error) {
	data, err := catalogueFS.ReadFile(name)
	if err != nil {
		return nil, errors.New("scenarios: no built-in policy " + name)
	}
	return data, nil
}

// CatalogueFiles lists the built-in scenario and policy files, for `pinwall
// scenarios export`-style copying.
func CatalogueFiles() (fs.FS, []string) {
	var names []string
	_ = fs.WalkDir(catalogueFS, ".", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			names = append(names, p)
		}
		return nil
	})
	return catalogueFS, names
}

// oneLine joins a multi-line error (errors.Join) into one line.
func oneLine(err error) string {
	return strings.ReplaceAll(err.Error(), "\n", "; ")
}

func parseAddrField(s string) (netip.Addr, error) {
	if s == "" {
		return netip.Addr{}, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("%q is not an IP address", s)
	}
	return a, nil
}
