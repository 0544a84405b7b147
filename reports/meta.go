package reports

import (
	"runtime"
	"runtime/debug"
	"strings"
	"time"

	"github.com/pinwall/pinwall/scenarios"
)

// Meta describes the run a bundle records. Write fills the zero fields it
// can: GoVersion, OS and Arch from the runtime; Mode from the first result;
// Started and Ended from the results' start times and durations. Version
// and Commit are the CLI's to fill (see BuildInfo); empty means "devel" and
// UnknownCommit.
type Meta struct {
	// Version and Commit identify the pinwall binary.
	Version string `json:"version"`
	Commit  string `json:"commit"`
	// GoVersion, OS and Arch identify the toolchain and platform.
	GoVersion string `json:"go_version"`
	OS        string `json:"os"`
	Arch      string `json:"arch"`
	// Mode is the runner: "inproc" or "containers".
	Mode string `json:"mode"`
	// Started and Ended bound the whole run.
	Started time.Time `json:"started"`
	Ended   time.Time `json:"ended"`
	// CAs are the run's certificate authorities (internet, tenant device,
	// enterprise) by name, with the SHA-256 of each certificate's DER.
	CAs []CA `json:"cas"`
	// Interrupted is true when the run was stopped before every scenario
	// finished (those results are "incomplete").
	Interrupted bool `json:"interrupted"`
	// CommandLine is the command as typed (os.Args).
	CommandLine []string `json:"command_line"`
	// PANVersion is the PAN-OS version whose log layouts the bundle's
	// PAN-OS files follow ("" means fwlog.DefaultPANVersion).
	PANVersion string `json:"pan_version,omitempty"`
	// Provenance is everything that produced the evidence (GatherProvenance);
	// nil is filled from the running binary and the fields above.
	Provenance *Provenance `json:"provenance,omitempty"`
	// Signature, set by WriteSigned, says how the manifest is signed.
	Signature *Signature `json:"signature,omitempty"`
	// Operator is who ran the command (pinwall run --operator, else
	// $PINWALL_OPERATOR, else the OS user); "" means not recorded.
	Operator string `json:"operator,omitempty"`
	// Controls is the organisation's mapping of catalogue rows to its
	// control IDs (pinwall run --controls); nil means none given.
	Controls *Controls `json:"controls,omitempty"`
	// Checks are `pinwall check` reviews of the runs' policies, written
	// into the bundle's checks/ directory.
	Checks []CheckOutput `json:"checks,omitempty"`
	// Gateways are the customer's SSE gateways as the vendor publishes
	// them (pinwall run --gateways); the report's fixes name them, while
	// the runs keep documentation addresses. nil: the fixes name the
	// simulation's gateways.
	Gateways *Gateways `json:"gateways,omitempty"`
}

// CheckOutput is one `pinwall check` review: the policy file reviewed,
// the command, its exit status and what it printed.
type CheckOutput struct {
	Policy   string `json:"policy"`
	Command  string `json:"command"`
	ExitCode int    `json:"exit_code"`
	Output   string `json:"-"`
	// File is the bundle file holding Output, set by Write.
	File string `json:"file,omitempty"`
}

// CA is one certificate authority of the run.
type CA struct {
	Name string `json:"name"`
	// SHA256 is the certificate's fingerprint, lower-case hex
	// (pki.Fingerprint).
	SHA256 string `json:"sha256"`
}

// UnknownCommit stands for the commit of a binary built without VCS
// information (GOFLAGS=-buildvcs=false, go run, a tree outside git); the
// Makefile's build stamps it (-buildvcs=auto).
const UnknownCommit = "unknown (built without VCS info)"

// BuildInfo returns the running binary's module version and VCS commit:
// "devel" when the version is unknown or "(devel)", UnknownCommit when the
// binary was built without VCS stamping. A build from a modified tree has
// "-dirty" appended to the commit.
func BuildInfo() (version, commit string) {
	bi, ok := debug.ReadBuildInfo()
	return buildInfo(bi, ok)
}

func buildInfo(bi *debug.BuildInfo, ok bool) (version, commit string) {
	version, commit = "devel", UnknownCommit
	if !ok || bi == nil {
		return version, commit
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		version = v
	}
	var rev string
	var dirty bool
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev != "" {
		commit = rev
		if dirty {
			commit += "-dirty"
		}
	}
	return version, commit
}

// withDefaults returns m with its zero fields filled as documented on Meta.
func (m Meta) withDefaults(results []scenarios.Result) Meta {
	if m.Version == "" {
		m.Version = "devel"
	}
	if m.Commit == "" {
		m.Commit = UnknownCommit
	}
	if m.GoVersion == "" {
		m.GoVersion = runtime.Version()
	}
	if m.OS == "" {
		m.OS = runtime.GOOS
	}
	if m.Arch == "" {
		m.Arch = runtime.GOARCH
	}
	var first, last time.Time
	for _, r := range results {
		if m.Mode == "" && r.Mode != "" {
			m.Mode = r.Mode
		}
		if r.Started.IsZero() {
			continue
		}
		if first.IsZero() || r.Started.Before(first) {
			first = r.Started
		}
		if end := r.Started.Add(time.Duration(r.DurationMS) * time.Millisecond); end.After(last) {
			last = end
		}
	}
	if m.Started.IsZero() {
		m.Started = first
	}
	if m.Ended.IsZero() {
		m.Ended = last
	}
	if m.CAs == nil {
		m.CAs = []CA{}
	}
	if m.CommandLine == nil {
		m.CommandLine = []string{}
	}
	if m.Provenance == nil {
		bi, ok := debug.ReadBuildInfo()
		p := provenanceOf(bi, ok)
		p.Pinwall.Version, p.Pinwall.Commit = m.Version, strings.TrimSuffix(m.Commit, "-dirty")
		p.Go, p.OS, p.Arch = m.GoVersion, m.OS, m.Arch
		m.Provenance = &p
	}
	return m
}
