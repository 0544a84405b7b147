package reports

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/net/html"

	"github.com/pinwall/pinwall/scenarios"
)

// TestHTMLSelfContained renders the fixture's HTML and requires it to load
// nothing from outside itself, to run no script, and to be well formed:
// every element closed in order.
func TestHTMLSelfContained(t *testing.T) {
	dir := writeFixture(t)
	data, err := os.ReadFile(filepath.Join(dir, HTMLFile))
	require.NoError(t, err)
	checkSelfContained(t, data)
}

func checkSelfContained(t *testing.T, data []byte) {
	t.Helper()
	// voidElements have no end tag in HTML.
	voidElements := map[string]bool{
		"area": true, "base": true, "br": true, "col": true, "embed": true, "hr": true, "img": true,
		"input": true, "link": true, "meta": true, "source": true, "track": true, "wbr": true,
	}
	// urlAttributes may load or link to a resource.
	urlAttributes := map[string]bool{
		"src": true, "href": true, "xlink:href": true, "action": true, "formaction": true, "poster": true,
		"data": true, "srcset": true, "background": true, "cite": true, "longdesc": true, "manifest": true,
	}
	z := html.NewTokenizer(bytes.NewReader(data))
	var stack []string
	var inStyle bool
	var sawDoctype, sawSVG bool
	for {
		tt := z.Next()
		if tt == html.ErrorToken {
			require.ErrorIs(t, z.Err(), io.EOF, "tokenizer error")
			break
		}
		tok := z.Token()
		switch tt {
		case html.DoctypeToken:
			sawDoctype = true
		case html.StartTagToken, html.SelfClosingTagToken:
			name := tok.Data
			require.NotContains(t, []string{"script", "iframe", "object", "embed", "link", "base", "img", "video", "audio", "source", "frame", "form"}, name,
				"the report must not contain <%s>", name)
			sawSVG = sawSVG || name == "svg"
			for _, a := range tok.Attr {
				key := strings.ToLower(a.Key)
				if a.Namespace != "" {
					key = a.Namespace + ":" + key
				}
				require.False(t, strings.HasPrefix(key, "on"), "event handler attribute %s on <%s>", key, name)
				v := strings.TrimSpace(strings.ToLower(a.Val))
				if urlAttributes[key] || urlAttributes[strings.TrimPrefix(key, "xlink:")] {
					require.True(t, strings.HasPrefix(v, "#") || strings.HasPrefix(v, "data:"),
						"<%s %s=%q> points outside the document", name, key, a.Val)
				}
				if key == "style" {
					checkCSS(t, a.Val)
				}
			}
			if tt == html.StartTagToken && !voidElements[name] {
				stack = append(stack, name)
			}
			inStyle = tt == html.StartTagToken && name == "style"
		case html.EndTagToken:
			require.NotEmpty(t, stack, "</%s> closes nothing", tok.Data)
			require.Equal(t, stack[len(stack)-1], tok.Data, "</%s> closes <%s> (open: %v)", tok.Data, stack[len(stack)-1], stack)
			stack = stack[:len(stack)-1]
			inStyle = false
		case html.TextToken:
			if inStyle {
				checkCSS(t, tok.Data)
			}
		}
	}
	require.Empty(t, stack, "elements left open")
	require.True(t, sawDoctype, "<!DOCTYPE html> first")
	require.True(t, sawSVG, "the report draws inline SVG")

	// The same, on the raw text. Addresses in visible text are allowed
	// (escaped, they are not attributes); the tokenizer checked those.
	s := string(data)
	require.NotContains(t, s, "<script")
	require.NotContains(t, s, "@import")
}

func checkCSS(t *testing.T, css string) {
	t.Helper()
	cssURL := regexp.MustCompile(`url\(\s*['"]?([^'")\s]*)`)
	require.NotContains(t, strings.ToLower(css), "@import", "CSS imports")
	for _, m := range cssURL.FindAllStringSubmatch(css, -1) {
		require.True(t, strings.HasPrefix(strings.ToLower(m[1]), "data:"), "CSS url(%s) points outside the document", m[1])
	}
}

// TestHTMLPrintable checks the stylesheet's promises: a print stylesheet,
// no dark page background.
func TestHTMLPrintable(t *testing.T) {
	dir := writeFixture(t)
	data, err := os.ReadFile(filepath.Join(dir, HTMLFile))
	require.NoError(t, err)
	s := string(data)
	require.Contains(t, s, "@media print")
	require.Regexp(t, `body \{[^}]*background: #fff`, s)
	// Every run of the fixture has its anchor, linked from the verdict table.
	for _, r := range fixtureResults() {
		a := anchor("r", r.Key())
		require.Contains(t, s, `id="`+a+`"`)
		require.Contains(t, s, `href="#`+a+`"`)
	}
	// Text that looks like markup is escaped, not interpreted.
	require.Contains(t, s, "bind: address already in use")
}

// A hostile string in a result is escaped in HTML and in the SVG.
func TestHTMLEscapes(t *testing.T) {
	rs := fixtureResults()
	rs[0].FirewallLog[0].SNI = `"><script src="https://evil.test/x.js"></script>`
	rs[0].GatewayLog[1].Host = `<img src=https://evil.test/y.png>`
	rs[0].Describe = "`<b>` and <i>"
	v := buildView(fixtureMeta(), fixtureScenarios(), rs, logDirs(rs))
	data, err := renderHTML(v)
	require.NoError(t, err)
	checkSelfContained(t, data)
	require.NotContains(t, string(data), "<script")
	require.NotContains(t, string(data), "<img")
}

// TestHTMLValuesNeverBreak: every address (with port), offset time and
// timestamp in the report's visible text sits in a span the stylesheet
// keeps on one line, and nothing lets lines break anywhere.
func TestHTMLValuesNeverBreak(t *testing.T) {
	dir := writeFixture(t)
	data, err := os.ReadFile(filepath.Join(dir, HTMLFile))
	require.NoError(t, err)
	s := string(data)
	require.Contains(t, s, ".nw { white-space: nowrap; }")
	require.NotContains(t, s, "overflow-wrap: anywhere")
	require.NotContains(t, s, "word-break: break-all")
	body := s[strings.Index(s, "<body>"):]
	// Drop the SVGs (drawn, not flowed) and the nowrap spans and cells;
	// what remains must hold no address:port or time.
	for _, re := range []string{`(?s)<svg.*?</svg>`, `<span class="nw">[^<]*</span>`, `<td class="[a-z ]*nw[a-z ]*">[^<]*</td>`, `(?s)<pre>.*?</pre>`, `<a href="[^"]*"`, `id="[^"]*"`} {
		body = regexp.MustCompile(re).ReplaceAllString(body, "")
	}
	for _, value := range []*regexp.Regexp{
		regexp.MustCompile(`\b\d{1,3}(\.\d{1,3}){3}:\d+\b`),
		regexp.MustCompile(`[+-]\d+\.\d{3}s\b`),
		regexp.MustCompile(`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d`),
	} {
		m := value.FindString(body)
		assert.Empty(t, m, "a value outside a nowrap span: %q", m)
	}
}

// TestHTMLRawRowsCollapsed: the raw log rows and passing checks are in
// closed <details> that print only when opened; failed checks are open.
func TestHTMLRawRowsCollapsed(t *testing.T) {
	dir := writeFixture(t)
	data, err := os.ReadFile(filepath.Join(dir, HTMLFile))
	require.NoError(t, err)
	s := string(data)
	require.Contains(t, s, "details.raw:not([open]) { display: none; }", "closed raw rows do not print")
	raw := regexp.MustCompile(`(?s)<details class="raw">.*?</details>`).FindAllString(s, -1)
	require.NotEmpty(t, raw)
	outside := regexp.MustCompile(`(?s)<details class="raw">.*?</details>`).ReplaceAllString(s, "")
	assert.NotContains(t, outside, `<table class="logs">`, "every log table is inside a closed <details>")
	assert.Contains(t, s, `<details class="checks" open>`, "a run with failed checks shows them")
	assert.Contains(t, s, `<details class="checks">`, "passing checks are collapsed")
}

// TestGatewayEventsAttributed: behind a decrypting firewall the gateway's
// tunnel-open events are the firewall's own handshakes, and the report
// says so instead of showing them as the laptop's tunnel.
func TestGatewayEventsAttributed(t *testing.T) {
	rs := fixtureResults()
	var closeRes *scenarios.Result
	for i := range rs {
		if rs[i].Key() == "decrypt-pinned/without-fix/fail-close" {
			closeRes = &rs[i]
		}
	}
	require.NotNil(t, closeRes)
	f := newFacts(closeRes)
	var whos []string
	for _, e := range closeRes.GatewayLog {
		whos = append(whos, e.Event+": "+f.who(e))
	}
	assert.Contains(t, whos, "tunnel-open: the firewall's own handshake (decrypting laptop's session #2)")
	assert.Contains(t, gatewaySummary(f), "from the firewall's own handshakes on the upstream leg of sessions it decrypts, not from the laptop's tunnel")
	vis := newFacts(&rs[0])
	assert.Equal(t, "the laptop via the firewall (session #1)", vis.who(rs[0].GatewayLog[0]))
}
