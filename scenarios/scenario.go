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
	"github.com/pinwall/pinwall/mitm/policy"
	"github.com/pinwall/pinwall/strictyaml"
)

//go:embed *.yaml policies/*.yaml
var catalogueFS embed.FS

// Variant names a run of a scenario.
type Variant string

// Variants.
const (
	WithoutFix Variant = "without-fix"
	WithFix    Variant = "with-fix"
	Baseline   Variant = "baseline"
)

// Choices lists the variant names.
func (Variant) Choices() []string {
	return []string{string(WithoutFix), string(WithFix), string(Baseline)}
}

// FirewallSection is a scenario's firewall: absent means no firewall.
type FirewallSection struct {
	Inside    string         `yaml:"inside"`
	Outside   string         `yaml:"outside"`
	ProxyPort uint16         `yaml:"proxy-port"`
	Policy    *policy.Policy `yaml:"policy"`
	// PolicyFile is relative to the scenario file.
	PolicyFile string `yaml:"policy-file"`
}

// Scenario is one row of the catalogue.
type Scenario struct {
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
	Fix     string   `yaml:"fix"`
	Sources []string `yaml:"sources"`

	Topology   harness.Spec              `yaml:"topology"`
	Client     harness.ClientSpec        `yaml:"client"`
	Gateway    harness.GatewayConfigSpec `yaml:"gateway"`
	Firewall   *FirewallSection          `yaml:"firewall"`
	Workload   harness.Workload          `yaml:"workload"`
	Reconnects int                       `yaml:"reconnects"`
	Events     []EventSpec               `yaml:"events"`
	Probes     []harness.Probe           `yaml:"probes"`
	WaitUp     time.Duration             `yaml:"wait-up"`
	Hold       time.Duration             `yaml:"hold"`
	Expect     Expect                    `yaml:"expect"`

	Variants []VariantSpec `yaml:"variants,required"`

	// File is where the scenario was loaded from.
	File string `yaml:"-"`
	// Line of the id, for messages.
	Line int `yaml:"-"`
	fsys fs.FS
}

// EventSpec is a harness.Event whose policy may come from a file.
type EventSpec struct {
	harness.Event `yaml:",inline"`
	PolicyFile    string `yaml:"policy-file"`
}

// VariantSpec overrides parts of the base for one run. Each override
// section is decoded onto a copy of the base section, so only the fields it
// names change; expect items are merged the same way (lists replace).
type VariantSpec struct {
	Variant  Variant   `yaml:"variant,required"`
	Case     string    `yaml:"case"`
	Describe string    `yaml:"describe"`
	Topology yaml.Node `yaml:"topology"`
	Client   yaml.Node `yaml:"client"`
	Gateway  yaml.Node `yaml:"gateway"`
	Firewall yaml.Node `yaml:"firewall"`
	// NoFirewall removes the base's firewall for this variant.
	NoFirewall bool           `yaml:"no-firewall"`
	Workload   yaml.Node      `yaml:"workload"`
	Reconnects *int           `yaml:"reconnects"`
	WaitUp     *time.Duration `yaml:"wait-up"`
	Hold       *time.Duration `yaml:"hold"`
	Events     yaml.Node      `yaml:"events"`
	Probes     yaml.Node      `yaml:"probes"`
	Expect     yaml.Node      `yaml:"expect"`
	Line       int            `yaml:"-" strictyaml:"line"`
}

// Run is one resolved variant of a scenario, ready to execute.
type Run struct {
	Scenario *Scenario
	Variant  Variant
	Case     string
	Describe string
	Plan     harness.Plan
	Expect   Expect
}

// Key identifies a run: "id/variant" or "id/variant/case".
func (r Run) Key() string {
	k := r.Scenario.ID + "/" + string(r.Variant)
	if r.Case != "" {
		k += "/" + r.Case
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
	seen := map[string]bool{}
	hasBaseline := false
	for i, v := range s.Variants {
		key := string(v.Variant) + "/" + v.Case
		if seen[key] {
			return strictyaml.Errorf(strictyaml.Index("variants", i), "variant %s case %q appears twice", v.Variant, v.Case)
		}
		seen[key] = true
		hasBaseline = hasBaseline || v.Variant == Baseline
	}
	if hasBaseline {
		for i, v := range s.Variants {
			if v.Variant != Baseline {
				return strictyaml.Errorf(strictyaml.Index("variants", i), "a scenario with a baseline has no fix to compare: variant %s", v.Variant)
			}
		}
	}
	return nil
}

// Load reads a scenario from a file on disk; policy files resolve next to it.
func Load(file string) (*Scenario, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("scenarios: %w", err)
	}
	return parse(file, data, os.DirFS(filepath.Dir(file)), "")
}

// Parse reads a scenario from data; file names it in errors and policy
// files resolve relative to dir (a directory on disk; empty means none).
func Parse(file string, data []byte) (*Scenario, error) {
	return parse(file, data, os.DirFS(filepath.Dir(file)), "")
}

func parse(file string, data []byte, fsys fs.FS, dir string) (*Scenario, error) {
	s := &Scenario{}
	if err := strictyaml.Decode(file, data, s); err != nil {
		return nil, err
	}
	s.File, s.fsys = file, subFS(fsys, dir)
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

func subFS(fsys fs.FS, dir string) fs.FS {
	if dir == "" || dir == "." {
		return fsys
	}
	sub, err := fs.Sub(fsys, dir)
	if err != nil {
		return fsys
	}
	return sub
}

func (s *Scenario) resolveEvent(e *EventSpec, field string) error {
	if e.PolicyFile == "" {
		return nil
	}
	data, err := s.readFile(e.PolicyFile)
	if err != nil {
		return &strictyaml.Error{File: s.File, Field: strictyaml.Key(field, "policy-file"), Msg: err.Error(), Err: err}
	}
	if _, err := policy.Parse(e.PolicyFile, data); err != nil {
		return err
	}
	e.Policy = string(data)
	return nil
}

// readFile reads a file named in the scenario: relative to the scenario,
// or absolute.
func (s *Scenario) readFile(name string) ([]byte, error) {
	if filepath.IsAbs(name) {
		return os.ReadFile(name)
	}
	return fs.ReadFile(s.fsys, name)
}

func (s *Scenario) loadPolicy(name, field string) (*policy.Policy, error) {
	data, err := s.readFile(name)
	if err != nil {
		return nil, &strictyaml.Error{File: s.File, Field: field, Msg: fmt.Sprintf("cannot read %s: %v", name, err), Err: err}
	}
	file := name
	if !filepath.IsAbs(name) {
		file = path.Join(path.Dir(s.File), name)
	}
	p, err := policy.Parse(file, data)
	if err != nil {
		return nil, err
	}
	return p, nil
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

	spec.Client, spec.Gateway = cs, gw
	if fw != nil {
		fs, err := s.firewallSpec(fw)
		if err != nil {
			return Run{}, err
		}
		spec.Firewall = fs
	}
	plan := harness.Plan{Spec: spec, Workload: wl, Reconnects: reconnects, Probes: probes, WaitUp: s.WaitUp}
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
		return Run{}, &strictyaml.Error{File: s.File, Line: v.Line, Field: field, Msg: err.Error(), Err: err}
	}
	if err := plan.Validate(); err != nil {
		return Run{}, &strictyaml.Error{File: s.File, Line: v.Line, Field: field, Msg: err.Error(), Err: err}
	}
	plan.Workload = plan.Workload.WithDefaults(plan.Spec)
	return Run{Scenario: s, Variant: v.Variant, Case: v.Case, Describe: v.Describe, Plan: plan, Expect: exp}, nil
}

// overrideFirewall applies a variant's firewall section (node n, at
// field) to the base's, fw (nil when the base has none). A variant's
// policy replaces the base's rather than merging rules.
func (s *Scenario) overrideFirewall(fw *FirewallSection, n *yaml.Node, field string) (*FirewallSection, error) {
	if fw == nil {
		fw = &FirewallSection{}
	}
	override := FirewallSection{Inside: fw.Inside, Outside: fw.Outside, ProxyPort: fw.ProxyPort}
	if err := strictyaml.DecodeNode(s.File, n, strictyaml.Key(field, "firewall"), &override); err != nil {
		return nil, err
	}
	if override.Policy == nil && override.PolicyFile == "" {
		override.Policy, override.PolicyFile = fw.Policy, fw.PolicyFile
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
	fs := &harness.FirewallSpec{ProxyPort: fw.ProxyPort, Policy: fw.Policy}
	var err error
	if fs.Inside, err = parseAddrField(fw.Inside); err != nil {
		return nil, &strictyaml.Error{File: s.File, Field: "firewall.inside", Msg: err.Error()}
	}
	if fs.Outside, err = parseAddrField(fw.Outside); err != nil {
		return nil, &strictyaml.Error{File: s.File, Field: "firewall.outside", Msg: err.Error()}
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
		s, err := parse("scenarios/"+name, data, catalogueFS, ".")
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
	"bypass-ip", "bypass-fqdn", "backup-gateway", "sni-spoof", "steering-exceptions", "learned-exclusion",
}

func order(id string) int {
	for i, x := range catalogueOrder {
		if x == id {
			return i
		}
	}
	return len(catalogueOrder)
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
