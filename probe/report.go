package probe

import (
	"bytes"
	"embed"
	"encoding/json"
	"fmt"
	htmltemplate "html/template"
	"slices"
	"strings"
	texttemplate "text/template"
)

// The reports follow package reports' conventions: templates embedded from
// templates/, the same style sheet's palette and classes, a table of what
// the run was, the provenance table, the signature and capture sections
// worded as a run's bundle words them.
//
//go:embed templates/report.md.tmpl templates/report.html.tmpl
var templateFS embed.FS

var (
	mdTemplate = texttemplate.Must(texttemplate.New("report.md.tmpl").Funcs(texttemplate.FuncMap{
		"cell": mdCell, "join": strings.Join, "legCause": legCause,
	}).ParseFS(templateFS, "templates/report.md.tmpl"))
	htmlTemplate = htmltemplate.Must(htmltemplate.New("report.html.tmpl").Funcs(htmltemplate.FuncMap{
		"join": strings.Join, "lower": func(l Level) string { return strings.ToLower(l.String()) },
	}).ParseFS(templateFS, "templates/report.html.tmpl"))
)

// reportView is what both reports show.
type reportView struct {
	*Result
	Overall Level
	// Meta describes the run, a row each.
	Meta     [][2]string
	Attempts []attemptRow
	Tunnels  []string
	Record   string
	// Provenance is the table of what produced the evidence (empty when
	// the caller gave none that describes itself).
	Provenance [][2]string
	Producer   string
	Signature  *signatureView
	Capture    *CaptureInfo
}

type attemptRow struct {
	Key, What, Addr, SNI string
	Outcome              Outcome
	Detail               string
}

// signatureView is what the reports say of a signature (the fields of
// reports.Signature they use).
type signatureView struct {
	Signed      string `json:"signed"`
	Algorithm   string `json:"algorithm"`
	Fingerprint string `json:"fingerprint"`
	Namespace   string `json:"namespace"`
}

// describer is what reports.Provenance offers: its rows.
type describer interface{ Describe() [][2]string }

func newReportView(r *Result, o EvidenceOptions, c *CaptureInfo) (*reportView, error) {
	v := &reportView{Result: r, Overall: r.Level(), Producer: o.Producer, Capture: c}
	v.Meta = [][2]string{
		{"Network", r.Label},
		{"Run", r.Run},
		{"Bundle", r.BundleID},
		{"Started", r.Started.UTC().Format("2006-01-02 15:04:05Z")},
		{"Took", fmt.Sprintf("%.1f s, %d connections opened, to the addresses below only", r.Took.Seconds(), r.Observed.Connections)},
		{"Gateway", fmt.Sprintf("%s at %s", r.Primary.Name, r.Primary.Addr)},
	}
	if r.Backup != nil {
		v.Meta = append(v.Meta, [2]string{"Backup", fmt.Sprintf("%s at %s", r.Backup.Name, r.Backup.Addr)})
	}
	if r.Decoy != nil {
		v.Meta = append(v.Meta, [2]string{"Decoy", fmt.Sprintf("%s (no gateway's address; its own certificate)", *r.Decoy)})
	}
	if r.Proxy != "" {
		v.Meta = append(v.Meta, [2]string{"Proxy", r.Proxy + " (TCP attempts and the TLS tunnel; DTLS direct)"})
	}
	for _, a := range append(slices.Clone(r.Observed.TLS), r.Observed.Learning...) {
		detail := legCause(a.Leg, a.Cause)
		switch {
		case a.Outcome == Forged && a.Chain != nil:
			detail = fmt.Sprintf("%s; valid %s to %s; mimics the gateway's subject: %s, SANs: %s", a.Chain.Leaf,
				a.Chain.NotBefore.Format("2006-01-02"), a.Chain.NotAfter.Format("2006-01-02"), yesNo(a.Chain.MimicsSubject), yesNo(a.Chain.MimicsSANs))
		case a.Outcome == Pinned && a.Tunnel:
			detail = "tunnel " + orDash(a.TunnelID)
		case a.Outcome == Pinned:
			detail = "no tunnel (none asked)"
		}
		sni := a.SNI
		if sni == "" {
			sni = "(none)"
		}
		v.Attempts = append(v.Attempts, attemptRow{Key: a.Key, What: a.What, Addr: a.Addr.String(), SNI: sni, Outcome: a.Outcome, Detail: detail})
	}
	for _, t := range []*TunnelResult{&r.Observed.Tunnel, r.Observed.Backup} {
		if t == nil {
			continue
		}
		s := fmt.Sprintf("gateways %s: up %s, %s to %s, %d/%d flows verified, fail-%s", strings.Join(t.Gateways, ", "), yesNo(t.Up),
			orDash(string(t.Transport)), orDash(t.Gateway), t.Verified(), len(t.Flows), t.FailMode)
		if !t.Up {
			s += fmt.Sprintf("; %s: %s", legCause(t.Leg, t.Cause), t.Error)
		}
		v.Tunnels = append(v.Tunnels, s)
	}
	if rec := r.Observed.Record; rec != nil {
		v.Record = fmt.Sprintf("%d events of run %s, sources %v (see evidence.json).", len(rec.Events), orDash(rec.Run), rec.Sources)
		if rec.Earlier > 0 {
			v.Record += fmt.Sprintf(" The gateway left out %d events of the same window as an earlier run's.", rec.Earlier)
		}
	} else {
		v.Record = fmt.Sprintf("Not fetched: %s.", orDash(r.Observed.RecordError))
	}
	if d, ok := o.Provenance.(describer); ok {
		v.Provenance = d.Describe()
	}
	if o.Signature != nil {
		data, err := json.Marshal(o.Signature)
		if err != nil {
			return nil, fmt.Errorf("probe: evidence: signature: %w", err)
		}
		v.Signature = &signatureView{}
		if err := json.Unmarshal(data, v.Signature); err != nil {
			return nil, fmt.Errorf("probe: evidence: signature: %w", err)
		}
	}
	return v, nil
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// render writes the two reports.
func (v *reportView) render() (md, html []byte, err error) {
	var m, h bytes.Buffer
	if err := mdTemplate.Execute(&m, v); err != nil {
		return nil, nil, fmt.Errorf("probe: report.md: %w", err)
	}
	if err := htmlTemplate.Execute(&h, v); err != nil {
		return nil, nil, fmt.Errorf("probe: report.html: %w", err)
	}
	return m.Bytes(), h.Bytes(), nil
}

// Markdown renders the report alone, as report.md has it without the
// bundle's provenance, signature and capture.
func (r *Result) Markdown() string {
	v, err := newReportView(r, EvidenceOptions{}, nil)
	if err != nil {
		return err.Error()
	}
	md, _, err := v.render()
	if err != nil {
		return err.Error()
	}
	return string(md)
}
