package reports

import (
	"bytes"
	"fmt"
	htmltemplate "html/template"
	"net/netip"
	"strings"
	texttemplate "text/template"

	"github.com/pinwall/pinwall/scenarios"
)

// The one-page summary (summary.md, summary.html) is for a customer's
// network team: the three answers in plain words, the fix in their
// firewall's syntax, a picture, why the exemption is safe, what to check
// after the change, and a glossary. It uses none of the report's
// internals' words (TestSummaryPlain) and fits one printed page.

// The summary's files.
const (
	SummaryMarkdownFile = "summary.md"
	SummaryHTMLFile     = "summary.html"
)

// summaryView is everything the summary templates render.
type summaryView struct {
	Based      string
	Answers    [3]summaryAnswer
	Gateways   []string
	GatewaysBy string
	Endpoints  string
	PANOS      []string
	FortiOS    []string
	Diagram    string
	Safe       string
	Checks     []string
	Glossary   [][2]string
}

type summaryAnswer struct{ Q, A string }

// endpointsText is the endpoints' range(s) in words, or the placeholder.
func endpointsText(ps []netip.Prefix) string {
	if len(ps) == 0 {
		return endpointsPlaceholder + " (your managed laptops' address range)"
	}
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, ", ")
}

func buildSummary(meta Meta, results []scenarios.Result) summaryView {
	g, by := meta.Gateways, ""
	if g == nil {
		g = SimulatedGateways()
		by = "the simulation's own gateways (documentation addresses): run with `--gateways FILE` to have this page name yours"
	} else {
		vendor := g.Vendor
		if vendor == "" {
			vendor = "your SSE vendor"
		}
		by = fmt.Sprintf("your gateways as %s publishes them (`%s`); the simulation itself ran on documentation addresses", vendor, g.File)
	}
	v := summaryView{GatewaysBy: by, Endpoints: endpointsText(g.Endpoints), PANOS: PANOSSetCommands(g), FortiOS: FortiOSCLI(g)}
	for _, gw := range g.Gateways {
		role := "primary"
		if gw.Backup {
			role = "backup"
		}
		as := make([]string, len(gw.Addresses))
		for i, a := range gw.Addresses {
			as[i] = a.String()
		}
		v.Gateways = append(v.Gateways, fmt.Sprintf("%s (%s): %s, ports %s", gw.Name, role, strings.Join(as, ", "), strings.Join(gw.PortList(), ", ")))
	}
	passed, total := Summary(results)
	v.Based = fmt.Sprintf("Based on %d simulated runs, %d as expected (pinwall %s, %s). A simulation built of real software, not a test of your firewall: report.md, \"What this is\", says what it does and does not prove.",
		total, passed, orDash(meta.Version), when(meta.Started, meta.Ended))
	v.Answers = plainAnswers(pinwallRuns(results))
	v.Diagram = diagram(v.Endpoints)
	v.Safe = "The exemption moves inspection, it does not remove it: the laptops' traffic travels inside the security client's encrypted connection to the cloud gateway, which decrypts and inspects it under your organisation's policy there. Decrypting that connection at the firewall cannot add to that inspection (the firewall would see only the tunnel, never the websites) and breaks it. Everything else is still decrypted at the firewall: other destinations, other devices, and other hosts in the gateways' ranges."
	v.Checks = []string{
		"Decryption log: sessions from the laptops to the gateway addresses no longer show as decrypted, or as failed with a certificate error (PAN-OS decryption log, error such as decrypt-cert-validation; FortiOS SSL log); they show as not decrypted, under rule sse-no-decrypt (PAN-OS) or policy sse-tunnel-no-decrypt (FortiOS).",
		"Traffic log: UDP port 443 from the laptops to the gateways is allowed by sse-allow-tunnel-udp (PAN-OS) or sse-tunnel-no-decrypt (FortiOS), before any rule that blocks QUIC.",
		"Everything else is unchanged: other sites from the laptops, and any traffic from other devices, are still decrypted as before.",
		"`pinwall probe`, run from a managed laptop through the firewall, should report the connection to each gateway up over UDP and TCP with the gateway's own certificate (not the firewall's), and a test site still decrypted.",
	}
	v.Glossary = [][2]string{
		{"SSE", "Security Service Edge: the cloud security service the laptops' security client connects to."},
		{"gateway", "the SSE vendor's cloud server the security client connects to; it inspects the traffic and sends it on."},
		{"tunnel", "the security client's encrypted connection to the gateway, which carries the laptop's traffic."},
		{"decryption (TLS inspection)", "the firewall opening an encrypted connection by presenting its own certificate in the server's place."},
		{"no-decrypt rule (exemption)", "a rule that lets matching encrypted traffic through without decrypting it."},
		{"DTLS", "the encrypted connection over UDP port 443 the security client prefers; over TCP it uses TLS."},
		{"QUIC", "browsers' UDP port 443 protocol, which firewalls often block; the block must not catch the tunnel."},
		{"pinning", "the security client accepting only the gateway's own key, so no firewall certificate can stand in for it."},
		{"SNI", "the server name a connection announces in the clear; anyone can write any name there."},
		{"fail-open / fail-close", "what the client does when its tunnel cannot come up: send traffic directly, uninspected, or send nothing."},
	}
	return v
}

// plainAnswers gives the three answers in plain words, each from this
// run's results where it ran, or says what was not measured.
func plainAnswers(results []scenarios.Result) [3]summaryAnswer {
	e := evidence{results: results}
	var a [3]summaryAnswer
	a[0].Q = "What does the firewall see of a laptop running the security client?"
	switch vis := e.usable("visibility", "", new([]string)); {
	case len(vis) > 0 && vis[0].Verdict == scenarios.Pass:
		a[0].A = "Only one encrypted connection per laptop to the security service's gateway, on port 443. The websites the laptop visits are not visible to the firewall; they appear in the security service's own log."
	default:
		a[0].A = "Not measured in this run (`pinwall run visibility` measures it)."
	}
	a[1].Q = "Can the firewall decrypt that connection?"
	broken := 0
	for _, id := range []string{"decrypt-pinned", "decrypt-mtls", "bypass-ip"} {
		for _, r := range e.usable(id, scenarios.WithoutFix, new([]string)) {
			if r.Observed.Tunnel.State == "down" {
				broken++
			}
		}
	}
	if broken > 0 {
		a[1].A = fmt.Sprintf("No, and trying breaks it: in %d run(s) decryption cut the laptops off (or, with fail-open, sent their traffic out uninspected). The security client refuses the firewall's certificate, and the gateway refuses a firewall that cannot prove the laptop's identity. Even where a careless client lets decryption through, the firewall sees no website inside.", broken)
	} else {
		a[1].A = "Not measured in this run (`pinwall run decrypt-pinned decrypt-mtls` measures it)."
	}
	a[2].Q = "Which rule fixes it, and is it narrow?"
	up, fixed := 0, 0
	for _, r := range e.results {
		if r.Role == scenarios.WithFix && (r.Verdict == scenarios.Pass || r.Verdict == scenarios.Fail) {
			fixed++
			if r.Observed.Tunnel.State == "up" {
				up++
			}
		}
	}
	ans := "Exempt the gateways' published addresses exactly (primary and backup), on TCP and UDP port 443, from the managed laptops' address range only; decrypt everything else. A server name alone is not enough: anyone can write it."
	if fixed > 0 {
		ans += fmt.Sprintf(" With the fix, the connection stayed up in %d of %d runs.", up, fixed)
	}
	if n := e.usable("bypass-narrow", scenarios.WithFix, new([]string)); len(n) > 0 && n[0].Verdict == scenarios.Pass {
		ans += " A neighbouring host in the gateways' range and a device outside the laptops' range were still decrypted."
	}
	a[2].A = ans
	return a
}

// diagram is the vendor-neutral picture of the fix.
func diagram(endpoints string) string {
	return strings.Join([]string{
		"managed laptops                your firewall               SSE gateways           websites",
		"(" + endpoints + ")",
		"  security client ==tunnel==> [ not decrypted:    ] ====> [ decrypts and ] ----> internet",
		"  (TCP/UDP 443)               [ gateways only,    ]       [ inspects     ]",
		"                              [ from laptops only ]",
		"",
		"other devices, other sites -> [ decrypted as today ] -------------------------> internet",
	}, "\n")
}

func renderSummaryMarkdown(v summaryView) ([]byte, error) {
	t, err := texttemplate.New("summary.md.tmpl").Funcs(texttemplate.FuncMap{"md": mdInline, "add": func(a, b int) int { return a + b }}).ParseFS(templateFS, "templates/summary.md.tmpl")
	if err != nil {
		return nil, fmt.Errorf("reports: summary template: %w", err)
	}
	var b bytes.Buffer
	if err := t.Execute(&b, v); err != nil {
		return nil, fmt.Errorf("reports: summary: %w", err)
	}
	return b.Bytes(), nil
}

func renderSummaryHTML(v summaryView) ([]byte, error) {
	t, err := htmltemplate.New("summary.html.tmpl").Funcs(htmltemplate.FuncMap{"code": codeHTML}).ParseFS(templateFS, "templates/summary.html.tmpl")
	if err != nil {
		return nil, fmt.Errorf("reports: summary html template: %w", err)
	}
	var b bytes.Buffer
	if err := t.Execute(&b, v); err != nil {
		return nil, fmt.Errorf("reports: summary html: %w", err)
	}
	return b.Bytes(), nil
}
