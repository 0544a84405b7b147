package reports

import (
	"bytes"
	"embed"
	"fmt"
	htmltemplate "html/template"
	"regexp"
	"strings"
	texttemplate "text/template"
	"unicode"
)

//go:embed templates/report.md.tmpl templates/report.html.tmpl templates/frame.md.tmpl templates/frame.html.tmpl templates/summary.md.tmpl templates/summary.html.tmpl
var templateFS embed.FS

// The templates are parsed once per render: they are small, and a package
// holds no mutable state.
func renderMarkdown(v view) ([]byte, error) {
	t, err := texttemplate.New("report.md.tmpl").Funcs(texttemplate.FuncMap{
		"md":   mdInline,
		"cell": mdCell,
		"add":  func(a, b int) int { return a + b },
	}).ParseFS(templateFS, "templates/report.md.tmpl", "templates/frame.md.tmpl")
	if err != nil {
		return nil, fmt.Errorf("reports: markdown template: %w", err)
	}
	var b bytes.Buffer
	if err := t.Execute(&b, v); err != nil {
		return nil, fmt.Errorf("reports: markdown: %w", err)
	}
	return b.Bytes(), nil
}

func renderHTML(v view) ([]byte, error) {
	t, err := htmltemplate.New("report.html.tmpl").Funcs(htmltemplate.FuncMap{
		"code": codeHTML,
		"nw":   nowrapHTML,
		"add":  func(a, b int) int { return a + b },
	}).ParseFS(templateFS, "templates/report.html.tmpl", "templates/frame.html.tmpl")
	if err != nil {
		return nil, fmt.Errorf("reports: html template: %w", err)
	}
	var b bytes.Buffer
	if err := t.Execute(&b, v); err != nil {
		return nil, fmt.Errorf("reports: html: %w", err)
	}
	return b.Bytes(), nil
}

// codeHTML escapes s, turns `spans` into <code> elements and keeps every
// address, port and time in one piece (nowrapValues).
func codeHTML(s string) htmltemplate.HTML {
	parts := strings.Split(s, "`")
	var b strings.Builder
	for i, p := range parts {
		// An unpaired trailing backtick is kept as text.
		if i%2 == 1 && i < len(parts)-1 {
			b.WriteString("<code>" + nowrapValues(htmltemplate.HTMLEscapeString(p)) + "</code>")
			continue
		}
		if i%2 == 1 {
			b.WriteString("`")
		}
		b.WriteString(nowrapValues(htmltemplate.HTMLEscapeString(p)))
	}
	return htmltemplate.HTML(b.String()) // every part is escaped
}

// nowrapHTML escapes s and keeps every address, port and time in it in
// one piece.
func nowrapHTML(s string) htmltemplate.HTML {
	return htmltemplate.HTML(nowrapValues(htmltemplate.HTMLEscapeString(s))) // escaped first
}

// valueRE finds the values a line must never break inside: IPv4 addresses
// with an optional port or prefix length, IPv6 addresses in brackets with a
// port, times offset from a run's start (+0.236s), clock times and
// RFC 3339 timestamps, and durations (1.2s, 350ms).
var valueRE = regexp.MustCompile(`\[[0-9a-fA-F:]+\]:\d+|\b\d{1,3}(?:\.\d{1,3}){3}(?:[:/]\d+)?\b|\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d)?|[+-]\d+\.\d+s\b|\b\d\d:\d\d:\d\d(?:\.\d+)?(?: [A-Z]{3})?|\b\d+(?:\.\d+)?(?:ms|µs|s)\b`)

// nowrapValues wraps each value of escaped (HTML already escaped) in a
// span that CSS keeps on one line.
func nowrapValues(escaped string) string {
	return valueRE.ReplaceAllString(escaped, `<span class="nw">$0</span>`)
}

// mdInline escapes Markdown emphasis, link and HTML characters outside
// `code spans`, so that names such as *.sse.test print as written.
func mdInline(s string) string {
	parts := strings.Split(s, "`")
	var b strings.Builder
	for i, p := range parts {
		if i%2 == 1 && i < len(parts)-1 {
			b.WriteString("`" + p + "`")
			continue
		}
		if i%2 == 1 {
			b.WriteString("\\`")
		}
		rs := []rune(p)
		for j, r := range rs {
			switch r {
			case '\\', '*', '[', ']', '<':
				b.WriteRune('\\')
			case '_':
				// Intraword underscores (bad_certificate) are not emphasis.
				if j == 0 || j == len(rs)-1 || !isWordRune(rs[j-1]) || !isWordRune(rs[j+1]) {
					b.WriteRune('\\')
				}
			}
			b.WriteRune(r)
		}
	}
	return b.String()
}

// mdCell is mdInline for a table cell: pipes escaped, newlines as spaces.
func mdCell(s string) string {
	s = strings.ReplaceAll(mdInline(s), "|", `\|`)
	s = strings.ReplaceAll(s, "\r", "")
	return strings.ReplaceAll(s, "\n", " ")
}

func isWordRune(r rune) bool { return unicode.IsLetter(r) || unicode.IsDigit(r) }
