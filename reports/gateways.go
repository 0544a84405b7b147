package reports

import (
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"

	"github.com/pinwall/pinwall/strictyaml"
)

// Gateways describes a customer's SSE gateways as their vendor publishes
// them (docs/gateways-format.md). Given to `pinwall run --gateways FILE`,
// it makes the report's fix (Recommended) and the summary speak about
// these gateways; the runs themselves keep the simulation's documentation
// addresses.
type Gateways struct {
	// Vendor names the SSE vendor, for the report's words; "" means "your
	// SSE vendor".
	Vendor string `yaml:"vendor" json:"vendor,omitempty"`
	// Endpoints are the endpoints' source ranges: the exemption applies
	// to traffic from these only. Empty means the report writes a
	// placeholder the customer must fill in.
	Endpoints []netip.Prefix `yaml:"endpoints" json:"endpoints,omitempty"`
	// Gateways are the gateways, primary and backup.
	Gateways []Gateway `yaml:"gateways,required" json:"gateways"`
	// File is where the description was read from.
	File string `yaml:"-" json:"file,omitempty"`
	// data is the file's text, copied into the bundle's inputs/.
	data []byte
}

// Gateway is one gateway, or one pool of gateways under one name.
type Gateway struct {
	// Name is the gateway's DNS name as the client uses it.
	Name string `yaml:"name,required" json:"name"`
	// Addresses are the vendor's published addresses or ranges for it.
	Addresses []netip.Prefix `yaml:"addresses,required" json:"addresses"`
	// Backup is true for a gateway the client fails over to.
	Backup bool `yaml:"backup" json:"backup,omitempty"`
	// Ports are "tcp/N" and "udp/N"; empty means tcp/443 and udp/443,
	// the tunnel's TLS and DTLS.
	Ports []string `yaml:"ports" json:"ports,omitempty"`
	// SNIChecked is true when the customer's firewall checks a session's
	// SNI against the server's certificate before exempting it: only then
	// does the fix add the name as a condition.
	SNIChecked bool `yaml:"sni-checked" json:"sni_checked,omitempty"`
}

// DefaultPorts are the tunnel's ports: TLS over TCP and DTLS over UDP.
var DefaultPorts = []string{"tcp/443", "udp/443"}

// PortList returns the gateway's ports, the defaults when none are given.
func (g Gateway) PortList() []string {
	if len(g.Ports) == 0 {
		return DefaultPorts
	}
	return g.Ports
}

// maxGateways bounds a description (a vendor publishes tens, not more).
const maxGateways = 256

// Validate checks what the schema cannot.
func (gs *Gateways) Validate() error {
	if len(gs.Gateways) == 0 {
		return strictyaml.Errorf("gateways", "lists no gateway")
	}
	if len(gs.Gateways) > maxGateways {
		return strictyaml.Errorf("gateways", "lists %d gateways, more than %d", len(gs.Gateways), maxGateways)
	}
	for i, e := range gs.Endpoints {
		if !e.IsValid() {
			return strictyaml.Errorf(strictyaml.Index("endpoints", i), "is not an address range")
		}
	}
	names := map[string]bool{}
	primary := false
	for i, g := range gs.Gateways {
		f := strictyaml.Index("gateways", i)
		if err := checkDNSName(g.Name); err != nil {
			return strictyaml.Errorf(strictyaml.Key(f, "name"), "%v", err)
		}
		if names[strings.ToLower(g.Name)] {
			return strictyaml.Errorf(strictyaml.Key(f, "name"), "%q is listed twice", g.Name)
		}
		names[strings.ToLower(g.Name)] = true
		if len(g.Addresses) == 0 {
			return strictyaml.Errorf(strictyaml.Key(f, "addresses"), "lists no address")
		}
		for j, a := range g.Addresses {
			if !a.IsValid() {
				return strictyaml.Errorf(strictyaml.Index(strictyaml.Key(f, "addresses"), j), "is not an address or range")
			}
			if a.Masked() != a {
				return strictyaml.Errorf(strictyaml.Index(strictyaml.Key(f, "addresses"), j), "%s has host bits set (the range is %s)", a, a.Masked())
			}
		}
		for j, p := range g.Ports {
			if _, _, err := ParsePort(p); err != nil {
				return strictyaml.Errorf(strictyaml.Index(strictyaml.Key(f, "ports"), j), "%v", err)
			}
		}
		primary = primary || !g.Backup
	}
	if !primary {
		return strictyaml.Errorf("gateways", "every gateway is a backup: mark the primary ones backup: false")
	}
	return nil
}

// ParsePort parses "tcp/443" or "udp/443".
func ParsePort(s string) (proto string, port uint16, err error) {
	proto, num, ok := strings.Cut(s, "/")
	if !ok || (proto != "tcp" && proto != "udp") {
		return "", 0, fmt.Errorf("%q is not tcp/PORT or udp/PORT", s)
	}
	n, err := strconv.ParseUint(num, 10, 16)
	if err != nil || n == 0 {
		return "", 0, fmt.Errorf("%q: the port is not a number from 1 to 65535", s)
	}
	return proto, uint16(n), nil
}

// checkDNSName accepts a DNS name of letters, digits and hyphens, with at
// least one dot; a leading "*." (a vendor's wildcard) is refused: the fix
// names gateways exactly.
func checkDNSName(s string) error {
	if s == "" {
		return fmt.Errorf("is empty")
	}
	if len(s) > 253 {
		return fmt.Errorf("%q is longer than 253 characters", s)
	}
	if strings.HasPrefix(s, "*.") {
		return fmt.Errorf("%q is a wildcard: name each gateway exactly, as the client resolves it", s)
	}
	labels := strings.Split(strings.TrimSuffix(s, "."), ".")
	if len(labels) < 2 {
		return fmt.Errorf("%q is not a fully qualified name", s)
	}
	for _, l := range labels {
		if l == "" || len(l) > 63 || strings.HasPrefix(l, "-") || strings.HasSuffix(l, "-") {
			return fmt.Errorf("%q is not a DNS name", s)
		}
		for _, c := range l {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return fmt.Errorf("%q is not a DNS name (character %q)", s, c)
			}
		}
	}
	return nil
}

// ParseGateways parses a gateway description; errors name the file, line
// and field.
func ParseGateways(file string, data []byte) (*Gateways, error) {
	var gs Gateways
	if err := strictyaml.Decode(file, data, &gs); err != nil {
		return nil, err
	}
	gs.File, gs.data = file, data
	return &gs, nil
}

// LoadGateways reads and parses a gateway description file.
func LoadGateways(path string) (*Gateways, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("gateways: %w", err)
	}
	return ParseGateways(path, data)
}
