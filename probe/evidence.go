package probe

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/pinwall/pinwall/capture"
	"github.com/pinwall/pinwall/failure"
	"github.com/pinwall/pinwall/outfile"
	"github.com/pinwall/pinwall/wireshark"
)

// The files of the probe's evidence bundle: the names package reports
// gives the same files of a run's.
const (
	EvidenceFile = "evidence.json"
	MarkdownFile = "report.md"
	HTMLFile     = "report.html"
	JUnitFile    = "junit.xml"
	ManifestFile = "manifest.sha256"
	// CaptureFile and KeyLogFile are the capture (--capture) and its
	// session secrets, the names reports gives a run's.
	CaptureFile = "capture.pcapng"
	KeyLogFile  = "keys.log"
	// EvidenceSchema names evidence.json's format.
	EvidenceSchema = "pinwall.probe-evidence/v1"
)

// Evidence is evidence.json: the result with its raw observations.
type Evidence struct {
	Schema string  `json:"schema"`
	Level  Level   `json:"level"`
	Result *Result `json:"result"`
	// Provenance is what produced the evidence (reports.Provenance from
	// the command), nil when not given.
	Provenance any `json:"provenance,omitempty"`
	// Capture describes capture.pcapng when the probe captured.
	Capture *CaptureInfo `json:"capture,omitempty"`
	// Signature says how the manifest is signed (reports.Signature from
	// the command), nil when it is not.
	Signature any `json:"signature,omitempty"`
}

// CaptureInfo is what evidence.json says about the probe's capture, in
// the form of a run's.
type CaptureInfo = capture.Info

// CaptureSource says how the probe's packets are made.
const CaptureSource = "synthesized from the probe's own connections (what it wrote and read), the laptop's side of the network measured"

// EvidenceOptions add what the probe package does not know itself.
type EvidenceOptions struct {
	// Provenance goes into evidence.json as is (the command gives
	// reports.Provenance: the pinwall build, Go, the platform).
	Provenance any
	// Producer says the same in a line, for the reports when Provenance
	// does not describe itself (reports.Provenance does: its rows).
	Producer string
	// Capture, if set, is the Recorder given to Run (Config.Capture):
	// written as capture.pcapng (its secrets inside) and keys.log, with
	// pinwall's Wireshark dissector (pinwall.lua) that decodes the tunnel
	// inside, all in the manifest.
	Capture *capture.Recorder
	// Signature describes the signature the caller makes over the manifest
	// once WriteEvidence returns (reports.Signer.Describe); the reports
	// and evidence.json name its key. Nil: unsigned.
	Signature any
}

// WriteEvidence writes the evidence bundle of res into dir (made if
// missing, written without following links): report.md and report.html
// ("Observed on <label>"), evidence.json with the raw observations,
// junit.xml (one test case per answer) and manifest.sha256 over them.
func WriteEvidence(dir string, res *Result, o EvidenceOptions) error {
	d, err := outfile.OpenDir(dir)
	if err != nil {
		return fmt.Errorf("probe: evidence: %w", err)
	}
	defer d.Close()
	files := map[string][]byte{}
	ev := Evidence{Schema: EvidenceSchema, Level: res.Level(), Result: res, Provenance: o.Provenance, Signature: o.Signature}
	var keys []byte
	if rec := o.Capture; rec != nil {
		var pc bytes.Buffer
		if _, err := rec.WriteTo(&pc); err != nil {
			return fmt.Errorf("probe: evidence: capture: %w", err)
		}
		files[CaptureFile], keys = pc.Bytes(), rec.KeyLog().Bytes()
		files[wireshark.DissectorFile] = wireshark.Dissector
		legs := rec.Interfaces()
		if legs == nil {
			legs = []string{}
		}
		ev.Capture = &CaptureInfo{File: CaptureFile, KeyLog: KeyLogFile, Packets: rec.Packets(), Dropped: rec.Dropped(),
			KeyLines: rec.KeyLog().Lines(), SnapLen: rec.SnapLen(), Legs: legs, Source: CaptureSource}
	}
	evJSON, err := json.MarshalIndent(ev, "", "  ")
	if err != nil {
		return err
	}
	files[EvidenceFile] = append(evJSON, '\n')
	v, err := newReportView(res, o, ev.Capture)
	if err != nil {
		return err
	}
	md, html, err := v.render()
	if err != nil {
		return err
	}
	files[MarkdownFile] = md
	files[HTMLFile] = html
	ju, err := res.junit()
	if err != nil {
		return err
	}
	files[JUnitFile] = ju
	var errs []error
	var names []string
	if o.Capture != nil {
		// The secrets decrypt every session of the run: private, as lab
		// and run write them.
		if err := d.WriteFile(KeyLogFile, keys, outfile.Private); err != nil {
			errs = append(errs, err)
		} else {
			files[KeyLogFile] = keys
			names = append(names, KeyLogFile)
		}
	}
	for n, data := range files {
		if n == KeyLogFile {
			continue
		}
		if err := d.WriteFile(n, data, outfile.Public); err != nil {
			errs = append(errs, err)
			continue
		}
		names = append(names, n)
	}
	slices.Sort(names)
	var man strings.Builder
	for _, n := range names {
		sum := sha256.Sum256(files[n])
		fmt.Fprintf(&man, "%s  %s\n", hex.EncodeToString(sum[:]), n)
	}
	if err := d.WriteFile(ManifestFile, []byte(man.String()), outfile.Public); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func legCause(l failure.Leg, c failure.Cause) string {
	if l == "" && c == "" {
		return "-"
	}
	return fmt.Sprintf("%s / %s", orDash(string(l)), orDash(string(c)))
}

func mdCell(s string) string { return strings.ReplaceAll(s, "|", `\|`) }

type junitSuite struct {
	XMLName  xml.Name    `xml:"testsuite"`
	Name     string      `xml:"name,attr"`
	Tests    int         `xml:"tests,attr"`
	Failures int         `xml:"failures,attr"`
	Cases    []junitCase `xml:"testcase"`
}

type junitCase struct {
	Name      string        `xml:"name,attr"`
	ClassName string        `xml:"classname,attr"`
	Failure   *junitFailure `xml:"failure,omitempty"`
	Output    string        `xml:"system-out,omitempty"`
}

type junitFailure struct {
	Message string `xml:"message,attr"`
	Type    string `xml:"type,attr"`
}

func (r *Result) junit() ([]byte, error) {
	s := junitSuite{Name: "pinwall probe: " + r.Label}
	for _, a := range r.Answers {
		c := junitCase{Name: a.ID, ClassName: "probe", Output: a.Summary}
		if a.Level == Problem {
			c.Failure = &junitFailure{Message: a.Summary, Type: legCause(a.Leg, a.Cause)}
			s.Failures++
		}
		s.Cases = append(s.Cases, c)
	}
	s.Tests = len(s.Cases)
	out, err := xml.MarshalIndent(s, "", "  ")
	if err != nil {
		return nil, err
	}
	return append([]byte(xml.Header), append(out, '\n')...), nil
}
