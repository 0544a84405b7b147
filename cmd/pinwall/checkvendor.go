package main

import (
	"flag"
	"fmt"
	"io"
	"net/netip"
	"strings"

	"github.com/pinwall/pinwall/mitm/policy"
	"github.com/pinwall/pinwall/outfile"
	"github.com/pinwall/pinwall/vendorconf"
	"github.com/pinwall/pinwall/vendorconf/fortios"
	"github.com/pinwall/pinwall/vendorconf/panos"
)

// policySource is where check reads the policy it reviews: pinwall policy
// YAML or a vendor configuration it translates.
type policySource struct {
	policyFile, panosFile, fortiosFile string
	path, laptop, scope, writePolicy   string
}

func (s *policySource) flags(fs *flag.FlagSet) {
	fs.StringVar(&s.policyFile, "policy", "", "your firewall policy (mitm/policy YAML)")
	fs.StringVar(&s.panosFile, "panos", "", "your PAN-OS running configuration (XML), translated to a policy")
	fs.StringVar(&s.fortiosFile, "fortios", "", "your FortiOS configuration (show full-configuration), translated to a policy")
	fs.StringVar(&s.path, "path", "", "with --panos or --fortios: the laptop's path FROM:TO, as zones (PAN-OS) or interfaces (FortiOS), comma-separated lists")
	fs.StringVar(&s.laptop, "laptop", "", "with --panos or --fortios: the laptop address the configuration is read for (default 10.10.10.100, pinwall's laptop)")
	fs.StringVar(&s.scope, "scope", "", "with --panos or --fortios: the vsys, device group or VDOM to read")
	fs.StringVar(&s.writePolicy, "write-policy", "", "with --panos or --fortios: also write the translated policy (YAML, each rule commented with its source line) to this file")
}

// load returns the policy to review and the name to call it by; for a
// vendor configuration it first writes the translation report to stdout.
func (s *policySource) load(stdout io.Writer) (*policy.Policy, string, error) {
	n := 0
	for _, f := range []string{s.policyFile, s.panosFile, s.fortiosFile} {
		if f != "" {
			n++
		}
	}
	if n != 1 {
		return nil, "", usageError("check: give exactly one of --policy FILE, --panos FILE or --fortios FILE")
	}
	if s.policyFile != "" {
		if s.path != "" || s.laptop != "" || s.scope != "" || s.writePolicy != "" {
			return nil, "", usageError("check: --path, --laptop, --scope and --write-policy go with --panos or --fortios")
		}
		pol, err := policy.Load(s.policyFile)
		if err != nil {
			return nil, "", &exitError{code: 2, err: err}
		}
		return pol, s.policyFile, nil
	}
	opts, err := s.options()
	if err != nil {
		return nil, "", err
	}
	var tr *vendorconf.Translation
	if s.panosFile != "" {
		tr, err = panos.Load(s.panosFile, opts)
	} else {
		tr, err = fortios.Load(s.fortiosFile, opts)
	}
	if err != nil {
		return nil, "", &exitError{code: 2, err: err}
	}
	if err := tr.Report(stdout); err != nil {
		return nil, "", err
	}
	fmt.Fprintln(stdout)
	if s.writePolicy != "" {
		out, err := tr.Policy.Marshal()
		if err != nil {
			return nil, "", err
		}
		head := fmt.Sprintf("# Translated by pinwall from %s (%s%s). Rules keep their source in a comment;\n# the notes of `pinwall check` list what was not translated exactly.\n", tr.File, tr.Vendor, scopeSuffix(tr.Scope))
		if err := outfile.WriteFile(s.writePolicy, append([]byte(head), out...), outfile.Public); err != nil {
			return nil, "", &exitError{code: 2, err: fmt.Errorf("check: %w", err)}
		}
		fmt.Fprintf(stdout, "Wrote the translated policy to %s.\n\n", s.writePolicy)
	}
	return tr.Policy, fmt.Sprintf("%s (%s, translated)", tr.File, tr.Vendor), nil
}

func scopeSuffix(s string) string {
	if s == "" {
		return ""
	}
	return ", " + s
}

func (s *policySource) options() (vendorconf.Options, error) {
	var o vendorconf.Options
	if s.path != "" {
		from, to, ok := strings.Cut(s.path, ":")
		if !ok || from == "" || to == "" {
			return o, usageError("check: --path %q: write FROM:TO, such as trust:untrust or port2:port1", s.path)
		}
		o.From, o.To = strings.Split(from, ","), strings.Split(to, ",")
	}
	if s.laptop != "" {
		a, err := netip.ParseAddr(s.laptop)
		if err != nil {
			return o, usageError("check: --laptop %q is not an IP address", s.laptop)
		}
		o.Laptop = a
	}
	o.Scope = s.scope
	return o, nil
}
