package probe

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"html/template"
	"slices"
	"strings"

	"github.com/pinwall/pinwall/capture"
	"github.com/pinwall/pinwall/failure"
	"github.com/pinwall/pinwall/outfile"
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

// CaptureInfo is what evidence.json says about the capture: the fields of
// a run's (reports.CaptureInfo).
type CaptureInfo struct {
	// File and KeyLog are the capture and its key log, in the bundle.
	File   string `json:"file"`
	KeyLog string `json:"key_log"`
	// Packets counts the packets; Dropped those beyond the memory limit.
	Packets int   `json:"packets"`
	Dropped int64 `json:"dropped"`
	// KeyLines counts the session secrets, inside the capture (its
	// Decryption Secrets Block) and in KeyLog.
	KeyLines int `json:"key_lines"`
	// SnapLen is the payload kept per flow and direction; negative: all.
	SnapLen int `json:"snaplen"`
	// Legs names the capture's interfaces in order.
	Legs []string `json:"legs"`
	// Source says how the packets were made.
	Source string `json:"source"`
}

// CaptureSource says how the probe's packets are made.
const CaptureSource = "synthesized from the probe's own connections (what it wrote and read), the laptop's side of the network measured"

// EvidenceOptions add what the probe package does not know itself.
type EvidenceOptions struct {
	// Provenance goes into evidence.json as is (the command gives
	// reports.Provenance: the pinwall build, Go, the platform).
	Provenance any
	// Producer says the same in a line, for the reports' last paragraph.
	Producer string
	// Capture, if set, is the Recorder given to Run (Config.Capture):
	// written as capture.pcapng (its secrets inside) and keys.log, both in
	// the manifest.
	Capture *capture.Recorder
	// Signature describes the signature the caller makes over the manifest
	// once WriteEvidence returns (reports.Signer.Describe); the reports
	// and evidence.json name its key. Nil: unsigned.
	Signature any
	// SignedBy says the same in a line ("ed25519 key SHA256:…").
	SignedBy string
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
	notes := bundleNotes(o, ev.Capture)
	md := res.Markdown()
	if len(notes) > 0 {
		md += "\n---\n\n" + strings.Join(notes, "\n\n") + "\n"
	}
	files[MarkdownFile] = []byte(md)
	var h bytes.Buffer
	if err := htmlReport.Execute(&h, struct {
		*Result
		Notes []string
	}{res, notes}); err != nil {
		return err
	}
	files[HTMLFile] = h.Bytes()
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

// bundleNotes says what produced the bundle, what it holds beside the
// report and who signed it: the reports' last paragraphs.
func bundleNotes(o EvidenceOptions, c *CaptureInfo) []string {
	var notes []string
	if o.Producer != "" {
		notes = append(notes, "Produced by "+o.Producer+".")
	}
	if c != nil {
		notes = append(notes, fmt.Sprintf("Capture: %s, %d packets of the probe's own connections on the leg %s (%s), %d TLS and DTLS session secrets inside (also in %s): `tshark -r %s` decrypts them with no option.",
			c.File, c.Packets, strings.Join(c.Legs, ", "), c.Source, c.KeyLines, c.KeyLog, c.File))
	}
	if o.SignedBy != "" {
		notes = append(notes, fmt.Sprintf("Signed: %s, which holds the SHA-256 of every other file, by %s (%s; verify with `ssh-keygen -Y verify -f allowed_signers -I pinwall-evidence -n file -s %s.sig < %s`).",
			ManifestFile, o.SignedBy, ManifestFile+".sig", ManifestFile, ManifestFile))
	}
	return notes
}

// Markdown renders the report.
func (r *Result) Markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "# pinwall probe — Observed on %s\n\n", r.Label)
	fmt.Fprintf(&b, "Run `%s`, bundle `%s`, started %s, took %.1fs, %d connections opened. Gateway `%s` at `%s`",
		r.Run, r.BundleID, r.Started.UTC().Format("2006-01-02 15:04:05Z"), r.Took.Seconds(), r.Observed.Connections, r.Primary.Name, r.Primary.Addr)
	if r.Backup != nil {
		fmt.Fprintf(&b, ", backup `%s` at `%s`", r.Backup.Name, r.Backup.Addr)
	}
	if r.Decoy != nil {
		fmt.Fprintf(&b, ", decoy `%s`", *r.Decoy)
	}
	if r.Proxy != "" {
		fmt.Fprintf(&b, ", through the proxy `%s`", r.Proxy)
	}
	fmt.Fprintf(&b, ".\n\n**Verdict: %s**\n\n## The three questions\n\n", r.Level())
	for _, q := range r.Questions {
		fmt.Fprintf(&b, "%d. **%s** %s _(from %s)_\n", q.N, q.Title, q.Answer, strings.Join(q.From, "; "))
	}
	b.WriteString("\n## Answers\n\n| answer | level | what was measured | from |\n|---|---|---|---|\n")
	for _, a := range r.Answers {
		fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", a.ID, a.Level, mdCell(a.Summary), mdCell(strings.Join(a.From, "; ")))
	}
	if len(r.Findings) > 0 {
		b.WriteString("\n## Findings\n\n")
		for _, f := range r.Findings {
			fmt.Fprintf(&b, "- `%s`: %s _(from %s)_\n", f.ID, f.Detail, strings.Join(f.From, ", "))
		}
	}
	b.WriteString("\n## Observations\n\n### DTLS (UDP/443)\n\n| gateway | address | outcome | leg / cause |\n|---|---|---|---|\n")
	for _, d := range r.Observed.DTLS {
		fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", d.Gateway, d.Addr, d.Outcome, legCause(d.Leg, d.Cause))
	}
	b.WriteString("\n### TLS attempts (TCP/443)\n\n| key | what | address | SNI | outcome | presented / leg / cause |\n|---|---|---|---|---|---|\n")
	for _, a := range append(slices.Clone(r.Observed.TLS), r.Observed.Learning...) {
		detail := legCause(a.Leg, a.Cause)
		switch {
		case a.Outcome == Forged && a.Chain != nil:
			detail = fmt.Sprintf("%s; valid %s to %s; mimics subject: %v, SANs: %v", a.Chain.Leaf, a.Chain.NotBefore.Format("2006-01-02"), a.Chain.NotAfter.Format("2006-01-02"), a.Chain.MimicsSubject, a.Chain.MimicsSANs)
		case a.Outcome == Pinned && a.Tunnel:
			detail = "tunnel " + a.TunnelID
		case a.Outcome == Pinned:
			detail = "no tunnel (none asked)"
		}
		sni := a.SNI
		if sni == "" {
			sni = "(none)"
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s |\n", a.Key, a.What, a.Addr, sni, a.Outcome, mdCell(detail))
	}
	b.WriteString("\n### Tunnels\n\n")
	for _, t := range []*TunnelResult{&r.Observed.Tunnel, r.Observed.Backup} {
		if t == nil {
			continue
		}
		fmt.Fprintf(&b, "- gateways %s: up %v, %s to %s, %d/%d flows verified, fail-%s", strings.Join(t.Gateways, ", "), t.Up, orDash(string(t.Transport)), orDash(t.Gateway), t.Verified(), len(t.Flows), t.FailMode)
		if !t.Up {
			fmt.Fprintf(&b, "; %s: %s", legCause(t.Leg, t.Cause), mdCell(t.Error))
		}
		b.WriteString("\n")
	}
	b.WriteString("\n### The gateway's record\n\n")
	if rec := r.Observed.Record; rec != nil {
		fmt.Fprintf(&b, "%d events since %s, sources %v (see evidence.json).\n", len(rec.Events), rec.Since.UTC().Format("15:04:05Z"), rec.Sources)
	} else {
		fmt.Fprintf(&b, "Not fetched: %s.\n", orDash(r.Observed.RecordError))
	}
	return b.String()
}

func legCause(l failure.Leg, c failure.Cause) string {
	if l == "" && c == "" {
		return "-"
	}
	return fmt.Sprintf("%s / %s", orDash(string(l)), orDash(string(c)))
}

func mdCell(s string) string { return strings.ReplaceAll(s, "|", `\|`) }

var htmlReport = template.Must(template.New("report").Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>pinwall probe — Observed on {{.Label}}</title>
<style>body{font-family:sans-serif;max-width:70em;margin:2em auto}td,th{border:1px solid #ccc;padding:.3em;vertical-align:top}table{border-collapse:collapse}.PROBLEM{color:#b00}.WARN{color:#a60}.OK{color:#070}</style></head>
<body><h1>pinwall probe — Observed on {{.Label}}</h1>
<p>Run <code>{{.Run}}</code>, bundle <code>{{.BundleID}}</code>, gateway <code>{{.Primary.Name}}</code> at <code>{{.Primary.Addr}}</code>. Verdict: <b class="{{.Level}}">{{.Level}}</b></p>
<h2>The three questions</h2><ol>{{range .Questions}}<li><b>{{.Title}}</b> {{.Answer}}</li>{{end}}</ol>
<h2>Answers</h2><table><tr><th>answer</th><th>level</th><th>what was measured</th><th>from</th></tr>
{{range .Answers}}<tr><td>{{.ID}}</td><td class="{{.Level}}">{{.Level}}</td><td>{{.Summary}}</td><td>{{range .From}}{{.}}<br>{{end}}</td></tr>{{end}}</table>
{{if .Findings}}<h2>Findings</h2><ul>{{range .Findings}}<li><code>{{.ID}}</code>: {{.Detail}}</li>{{end}}</ul>{{end}}
<h2>TLS attempts</h2><table><tr><th>key</th><th>what</th><th>address</th><th>SNI</th><th>outcome</th><th>cause</th></tr>
{{range .Observed.TLS}}<tr><td>{{.Key}}</td><td>{{.What}}</td><td>{{.Addr}}</td><td>{{.SNI}}</td><td>{{.Outcome}}</td><td>{{.Leg}} {{.Cause}}</td></tr>{{end}}
{{range .Observed.Learning}}<tr><td>{{.Key}}</td><td>{{.What}}</td><td>{{.Addr}}</td><td>{{.SNI}}</td><td>{{.Outcome}}</td><td>{{.Leg}} {{.Cause}}</td></tr>{{end}}</table>
{{range .Notes}}<p>{{.}}</p>{{end}}
<p>The raw observations are in evidence.json; manifest.sha256 checks every file (<code>sha256sum -c manifest.sha256</code>).</p>
</body></html>
`))

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
