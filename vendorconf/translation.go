package vendorconf

import (
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/pinwall/pinwall/mitm/policy"
)

// MaxFileBytes bounds a configuration file; a bigger one is refused before
// parsing.
const MaxFileBytes = 64 << 20

// DefaultLaptop is the laptop address a configuration is read for when
// Options.Laptop is zero: the laptop of pinwall's topologies.
var DefaultLaptop = netip.MustParseAddr("10.10.10.100")

// Vendor names the product a configuration is for.
type Vendor string

// The vendors read.
const (
	PANOS   Vendor = "PAN-OS"
	FortiOS Vendor = "FortiOS"
)

// Options say whose traffic a configuration is read for. The zero value
// reads it for pinwall's laptop on any path.
type Options struct {
	// Laptop is the address of the laptop running the client. Rules whose
	// sources exclude it do not apply. Zero means DefaultLaptop.
	Laptop netip.Addr
	// From and To name the laptop's path through the firewall: PAN-OS
	// zones or FortiOS interfaces. A rule applies when its own from/to (or
	// srcintf/dstintf) include one of these, or "any". Empty means every
	// path, which the translation notes once.
	From, To []string
	// Scope picks the part of the configuration to read: a PAN-OS vsys or
	// Panorama device group, a FortiOS VDOM. Empty means the only one there
	// is, or vsys1 / root when there are several (noted).
	Scope string
}

// WithDefaults returns o with Laptop set.
func (o Options) WithDefaults() Options {
	if !o.Laptop.IsValid() {
		o.Laptop = DefaultLaptop
	}
	return o
}

// OnPath reports whether a rule's from and to (zones or interfaces, "any"
// for any) include the laptop's path.
func (o Options) OnPath(from, to []string) bool {
	return onSide(o.From, from) && onSide(o.To, to)
}

func onSide(want, rule []string) bool {
	if len(want) == 0 || len(rule) == 0 {
		return true
	}
	for _, r := range rule {
		if strings.EqualFold(r, "any") {
			return true
		}
		for _, w := range want {
			if r == w {
				return true
			}
		}
	}
	return false
}

// Note records something the translation did not carry over exactly.
type Note struct {
	// Line is the line of the vendor element concerned; 0 for the file as
	// a whole.
	Line int
	// What names the element ("decryption rule \"x\" category
	// financial-services").
	What string
	// Why says why it was not translated exactly.
	Why string
	// Assumption is what the translation did instead.
	Assumption string
}

// Translation is a vendor configuration read as a pinwall policy.
type Translation struct {
	Vendor Vendor
	// File is the configuration's file name as given.
	File string
	// Scope is the vsys, device group or VDOM read ("" for a configuration
	// with none).
	Scope string
	// Read summarises what was read ("7 security rules, 3 decryption
	// rules").
	Read string
	// Policy is the translated rule base. Its File is the configuration
	// file; each rule's Line is the line of the vendor rule it came from
	// and its Comment says which ("acme.xml:212 security rule \"x\"").
	Policy *policy.Policy
	// DefaultWhy says where the default action comes from.
	DefaultWhy string
	// Notes list everything not translated exactly, in file order.
	Notes []Note
}

// Report writes the translation for a reviewer: the rules with where each
// came from, then every note.
func (t *Translation) Report(w io.Writer) error {
	bw := &errWriter{w: w}
	scope := ""
	if t.Scope != "" {
		scope = ", " + t.Scope
	}
	fmt.Fprintf(bw, "%s: %s configuration%s: %s; translated to %d pinwall rules.\n\n", t.File, t.Vendor, scope, t.Read, len(t.Policy.Rules))
	tw := tabwriter.NewWriter(bw, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  #\tpinwall rule\taction\tmatch\tfrom")
	for i, r := range t.Policy.Rules {
		match := r.Match.String()
		if o := r.Options.String(); o != "" {
			match += " [" + o + "]"
		}
		fmt.Fprintf(tw, "  %d\t%s\t%s\t%s\t%s\n", i+1, r.Name, r.Action, match, r.Comment)
	}
	def := t.Policy.Default()
	fmt.Fprintf(tw, "  -\t%s\t%s\t%s\t%s\n", def.Name, def.Action, def.Match, t.DefaultWhy)
	_ = tw.Flush()
	if len(t.Policy.Objects.FQDN) > 0 {
		fmt.Fprintln(bw)
		names := make([]string, 0, len(t.Policy.Objects.FQDN))
		for n := range t.Policy.Objects.FQDN {
			names = append(names, n)
		}
		slices.Sort(names)
		for _, n := range names {
			o := t.Policy.Objects.FQDN[n]
			fmt.Fprintf(bw, "  FQDN object %s = %s (%s), resolved by the firewall\n", n, o.FQDN, t.at(o.Line))
		}
	}
	fmt.Fprintln(bw)
	if len(t.Notes) == 0 {
		fmt.Fprintln(bw, "Everything that matters to the tunnel was translated exactly.")
		return bw.err
	}
	fmt.Fprintf(bw, "Not translated exactly (%d): where, what, why -> what pinwall assumed\n", len(t.Notes))
	for _, n := range t.Notes {
		fmt.Fprintf(bw, "  %s  %s\n      %s\n      -> %s\n", t.at(n.Line), n.What, n.Why, n.Assumption)
	}
	return bw.err
}

// at names a line of the file.
func (t *Translation) at(line int) string {
	if line <= 0 {
		return t.File
	}
	return t.File + ":" + strconv.Itoa(line)
}

// At returns "file:line" for a line of the translated file.
func (t *Translation) At(line int) string { return t.at(line) }

type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(p []byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	n, err := e.w.Write(p)
	e.err = err
	return n, err
}

// SyntaxError is malformed input: the file and line where reading stopped,
// and what was wrong there.
type SyntaxError struct {
	File string
	Line int
	Msg  string
}

func (e *SyntaxError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	}
	return fmt.Sprintf("%s: %s", e.File, e.Msg)
}

// Errorf returns a *SyntaxError at file:line.
func Errorf(file string, line int, format string, args ...any) *SyntaxError {
	return &SyntaxError{File: file, Line: line, Msg: fmt.Sprintf(format, args...)}
}
