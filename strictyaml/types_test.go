package strictyaml

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// The types below are a small policy-like schema exercising every supported
// target kind; the decode tests, the golden test and FuzzDecode share them.

type testAction string

func (testAction) Choices() []string { return []string{"decrypt", "no-decrypt", "block", "allow"} }

type testProto string

func (testProto) Choices() []string { return []string{"tcp", "udp", "any"} }

// testPorts is "443" or "8000-8080"; its errors are *Error.
type testPorts struct{ Lo, Hi uint16 }

func (p *testPorts) UnmarshalText(b []byte) error {
	lo, hi, isRange := strings.Cut(string(b), "-")
	l, err := strconv.ParseUint(lo, 10, 16)
	if err != nil || l == 0 {
		return Errorf("", "bad port %q", lo)
	}
	h := l
	if isRange {
		if h, err = strconv.ParseUint(hi, 10, 16); err != nil || h < l {
			return Errorf("", "bad port range %q", string(b))
		}
	}
	p.Lo, p.Hi = uint16(l), uint16(h)
	return nil
}

func (p testPorts) MarshalText() ([]byte, error) {
	if p.Lo == p.Hi {
		return []byte(strconv.Itoa(int(p.Lo))), nil
	}
	return []byte(fmt.Sprintf("%d-%d", p.Lo, p.Hi)), nil
}

// testHost is a TextUnmarshaler with plain errors.
type testHost string

func (h *testHost) UnmarshalText(b []byte) error {
	if strings.ContainsAny(string(b), " *") {
		return fmt.Errorf("host %q has a space or a star", b)
	}
	*h = testHost(strings.ToLower(string(b)))
	return nil
}

// testLevel implements yaml.Unmarshaler.
type testLevel int

func (l *testLevel) UnmarshalYAML(n *yaml.Node) error {
	switch n.Value {
	case "low":
		*l = 1
	case "high":
		*l = 2
	default:
		return fmt.Errorf("level %q is neither low nor high", n.Value)
	}
	return nil
}

type testMatch struct {
	SNI   []testHost     `yaml:"sni"`
	Port  []testPorts    `yaml:"port"`
	Dst   []netip.Prefix `yaml:"dst"`
	Proto testProto      `yaml:"proto"`
}

func (m testMatch) Validate() error {
	if m.Proto == "udp" && len(m.SNI) > 0 {
		return fmt.Errorf("sni needs proto tcp")
	}
	return nil
}

type testOptions struct {
	TTL     time.Duration `yaml:"ttl"`
	Log     *bool         `yaml:"log"`
	Weight  float64       `yaml:"weight"`
	Retries int8          `yaml:"retries"`
	Max     uint32        `yaml:"max"`
	Level   testLevel     `yaml:"level"`
}

type testRule struct {
	Name    string       `yaml:"name,required"`
	Match   testMatch    `yaml:"match"`
	Action  testAction   `yaml:"action,required"`
	Options *testOptions `yaml:"options"`
	Line    int          `yaml:"-" strictyaml:"line"`
	Column  int          `yaml:"-" strictyaml:"column"`
}

func (r *testRule) Validate() error {
	if r.Action == "block" && r.Options != nil && r.Options.TTL != 0 {
		return Errorf("options.ttl", "ttl is meaningless on a block rule")
	}
	return nil
}

type testObject struct {
	FQDN   string `yaml:"fqdn,required"`
	MaxIPs int    `yaml:"max-ips"`
}

type testCommon struct {
	Version int    `yaml:"version"`
	Owner   string `yaml:"owner"`
}

type testDoc struct {
	testCommon `yaml:",inline"`
	Rules      []testRule            `yaml:"rules,required"`
	Objects    map[string]testObject `yaml:"objects"`
	Gateway    netip.Addr            `yaml:"gateway"`
	Labels     map[string]string     `yaml:"labels"`
	Extra      any                   `yaml:"extra"`
	Raw        yaml.Node             `yaml:"raw" json:"-"`
	Timeout    time.Duration         `yaml:"timeout"`
	Enabled    bool
	Skipped    string `yaml:"-"`
}

func (d *testDoc) Validate() error {
	seen := map[string]int{}
	for i, r := range d.Rules {
		if j, dup := seen[r.Name]; dup {
			return Errorf(Index("rules", i)+".name", "duplicate rule name %q (first at rules[%d])", r.Name, j)
		}
		seen[r.Name] = i
	}
	for name, o := range d.Objects {
		if o.MaxIPs < 0 {
			return Errorf(Key(Key("objects", name), "max-ips"), "max-ips must not be negative")
		}
	}
	return nil
}
