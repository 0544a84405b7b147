package reports

import (
	"fmt"
	"html/template"
	"net/netip"
	"slices"
	"strings"

	"github.com/pinwall/pinwall/harness"
	"github.com/pinwall/pinwall/mitm/fwlog"
)

// markKind colours a line of the topology: what the firewall did.
type markKind string

const (
	kindOK   markKind = "ok"   // allowed, not decrypted, excluded
	kindBad  markKind = "bad"  // denied, decryption failed
	kindWarn markKind = "warn" // a tunnel decrypted: interception accepted
	kindInfo markKind = "info" // a direct session, as the firewall saw it
)

// markLine is one thing the firewall did to a destination's sessions.
type markLine struct {
	Kind markKind
	Text string
}

// Glyph is the line's symbol: ✓, ✗, ! or •.
func (m markLine) Glyph() string {
	switch m.Kind {
	case kindOK:
		return "✓"
	case kindBad:
		return "✗"
	case kindWarn:
		return "!"
	}
	return "•"
}

// topoGateway is one gateway name, its addresses and what the firewall did
// with the laptop's sessions to them.
type topoGateway struct {
	Name  string
	Addrs string
	Marks []markLine
}

// topology is the picture of one run: laptop (and other LAN hosts) →
// firewall → gateways → origins, with the logical addresses from the roles.
type topology struct {
	Laptop   string
	Extras   []string // "rogue 10.10.10.66"
	Firewall string   // "inside 10.10.10.254, outside 198.51.100.1"; "" for none
	Gateways []topoGateway
	Origins  []string // "www.social.test 192.0.2.10"
	// Direct is what the firewall did with sessions that did not go to a
	// gateway (steering exceptions, fail-open, probes).
	Direct []markLine
	// Carried is what the gateway carried to the origins.
	Carried string
}

func buildTopology(f *facts) topology {
	ro := f.r.Roles
	t := topology{}
	if ro.Laptop.IsValid() {
		t.Laptop = ro.Laptop.String()
	}
	for _, x := range sortedKeys(ro.Extra) {
		t.Extras = append(t.Extras, x+" "+ro.Extra[x].String())
	}
	switch {
	case ro.FirewallIn.IsValid() && ro.FirewallOut.IsValid():
		t.Firewall = "inside " + ro.FirewallIn.String() + ", outside " + ro.FirewallOut.String()
	case ro.FirewallIn.IsValid():
		t.Firewall = "inside " + ro.FirewallIn.String()
	case len(f.r.FirewallLog) > 0:
		t.Firewall = "addresses not recorded"
	}
	for _, g := range sortedKeys(ro.Gateways) {
		tg := topoGateway{Name: g, Addrs: pool(ro.Gateways[g])}
		var recs []fwlog.Record
		for _, rec := range f.tunnel {
			if slices.Contains(ro.Gateways[g], rec.Dst.Addr()) {
				recs = append(recs, rec)
			}
		}
		tg.Marks = marks(ro, recs, false)
		if len(tg.Marks) == 0 {
			tg.Marks = []markLine{{Kind: kindInfo, Text: "no session"}}
		}
		t.Gateways = append(t.Gateways, tg)
	}
	for _, o := range sortedKeys(ro.Origins) {
		t.Origins = append(t.Origins, o+" "+ro.Origins[o].String())
	}
	direct := append(append([]fwlog.Record(nil), f.direct...), f.others...)
	t.Direct = marks(ro, direct, true)
	if len(f.flows) > 0 {
		t.Carried = fmt.Sprintf("%s to %s", plural(len(f.flows), "flow"), plural(len(f.sites), "site"))
	}
	return t
}

// pool lists a gateway's addresses: all of them up to four, else the first
// and last and how many.
func pool(as []netip.Addr) string {
	s := slices.Clone(as)
	slices.SortFunc(s, func(a, b netip.Addr) int { return a.Compare(b) })
	if len(s) <= 4 {
		parts := make([]string, len(s))
		for i, a := range s {
			parts[i] = a.String()
		}
		return strings.Join(parts, ", ")
	}
	return fmt.Sprintf("%s … %s (%d addresses)", s[0], s[len(s)-1], len(s))
}

// marks groups sessions by what the firewall did with them. With byDest,
// each line also names the source (when not the laptop), the destination
// and, when it names something else, the SNI; a session passed undecrypted
// to a non-gateway address under a gateway's name is a warning.
func marks(ro harness.Roles, recs []fwlog.Record, byDest bool) []markLine {
	type group struct {
		line markLine
		n    int
	}
	var gs []group
	for _, rec := range recs {
		m := markOf(rec)
		if byDest {
			m.Kind = kindInfo
			_, gwName := ro.Gateways[rec.SNI]
			if gwName && !ro.IsGateway(rec.Dst.Addr()) && rec.Outcome() == fwlog.OutcomeNotDecrypted && rec.Action == fwlog.ActionAllow {
				m.Kind = kindWarn
			}
			if rec.Action != fwlog.ActionAllow {
				m.Kind = kindBad
			}
			dst := orAddr(name(ro, rec.Dst.Addr()), rec.Dst.Addr())
			if rec.SNI != "" && rec.SNI != dst {
				dst += " (SNI " + rec.SNI + ")"
			}
			m.Text = "to " + dst + ": " + m.Text
			if src := rec.Src.Addr(); src != ro.Laptop {
				m.Text = "from " + orAddr(name(ro, src), src) + " " + m.Text
			}
		}
		m.Text = protoPort(rec) + " " + m.Text
		i := slices.IndexFunc(gs, func(g group) bool { return g.line == m })
		if i < 0 {
			gs = append(gs, group{line: m})
			i = len(gs) - 1
		}
		gs[i].n++
	}
	out := make([]markLine, len(gs))
	for i, g := range gs {
		out[i] = g.line
		out[i].Text += fmt.Sprintf(" ×%d", g.n)
	}
	return out
}

func markOf(rec fwlog.Record) markLine {
	if rec.Action != fwlog.ActionAllow && rec.Decryption == nil {
		return markLine{Kind: kindBad, Text: fmt.Sprintf("%s by %s", rec.Action, ruleName(rec))}
	}
	d := rec.Decryption
	switch {
	case d == nil && rec.Proto == fwlog.ProtoUDP:
		return markLine{Kind: kindOK, Text: string(rec.App) + " allowed"}
	case d == nil:
		return markLine{Kind: kindOK, Text: "passed, no decrypt rule"}
	case d.Outcome == fwlog.OutcomeFailed:
		return markLine{Kind: kindBad, Text: "decryption failed"}
	case d.Outcome == fwlog.OutcomeDecrypted:
		return markLine{Kind: kindWarn, Text: "decrypted: " + string(rec.App)}
	case rec.Action != fwlog.ActionAllow:
		return markLine{Kind: kindBad, Text: fmt.Sprintf("%s, %s", rec.Action, rec.EndReason)}
	}
	return markLine{Kind: kindOK, Text: string(d.Outcome)}
}

// Layout of the topology SVG.
const (
	topoW       = 1180
	topoLine    = 15
	topoLaptopX = 10
	topoFwX     = 240
	topoGwX     = 640
	topoOrX     = 970
	topoBoxW    = 170
	topoOrW     = 200
	topoGwW     = 230
)

type svgBox struct {
	x, y, w, h int
	title      string
	lines      []string
	marks      []markLine
}

func (b svgBox) draw(w *strings.Builder) {
	fmt.Fprintf(w, `<rect x="%d" y="%d" width="%d" height="%d" rx="4" class="box"/>`, b.x, b.y, b.w, b.h)
	fmt.Fprintf(w, `<text x="%d" y="%d" class="name">%s</text>`, b.x+8, b.y+17, esc(truncate(b.title, b.w*10/75)))
	y := b.y + 17
	for _, l := range b.lines {
		y += topoLine
		fmt.Fprintf(w, `<text x="%d" y="%d" class="addr">%s</text>`, b.x+8, y, esc(truncate(l, b.w*10/62)))
	}
}

func boxHeight(lines int) int { return 26 + lines*topoLine }

// svg renders the topology as inline SVG. Marks for what the firewall did
// sit on the firewall → gateway edges; direct sessions on an edge below.
func (t topology) svg(title string) template.HTML {
	var body strings.Builder
	// Marks sit above the edge into each gateway: room for the first one's.
	y := 20
	if len(t.Gateways) > 0 {
		y += 13 * max(0, len(t.Gateways[0].Marks)-2)
	}
	laptop := svgBox{x: topoLaptopX, y: y, w: topoBoxW, h: boxHeight(1), title: "laptop (client)", lines: []string{t.Laptop}}
	boxes := []svgBox{laptop}
	ly := laptop.y + laptop.h + 16
	for _, e := range t.Extras {
		n, a, _ := strings.Cut(e, " ")
		b := svgBox{x: topoLaptopX, y: ly, w: topoBoxW, h: boxHeight(1), title: n + " (no client)", lines: []string{a}}
		boxes = append(boxes, b)
		ly += b.h + 16
	}
	fwLines := []string{"no firewall on the path"}
	if t.Firewall != "" {
		fwLines = strings.Split(t.Firewall, ", ")
	}
	fw := svgBox{x: topoFwX, y: y, w: topoBoxW, h: boxHeight(len(fwLines)), title: "perimeter firewall", lines: fwLines}
	boxes = append(boxes, fw)
	fwMidY := fw.y + fw.h/2
	var gws []svgBox
	gy := y
	for _, g := range t.Gateways {
		h := max(boxHeight(2), 18+len(g.Marks)*13+8)
		b := svgBox{x: topoGwX, y: gy, w: topoGwW, h: h, title: g.Name, lines: []string{g.Addrs}, marks: g.Marks}
		gws = append(gws, b)
		gy += h + 22
	}
	origins := svgBox{x: topoOrX, y: y, w: topoOrW, h: boxHeight(len(t.Origins)), title: "SaaS origins", lines: t.Origins}
	boxes = append(boxes, gws...)
	boxes = append(boxes, origins)

	bottom := 0
	for _, b := range boxes {
		bottom = max(bottom, b.y+b.h)
	}
	directY := bottom + 28
	h := bottom + 20
	if len(t.Direct) > 0 {
		h = directY + 10 + len(t.Direct)*13 + 10
	}

	// Edges: LAN hosts → firewall, firewall → gateways (with marks),
	// gateways → origins, firewall → origins (direct).
	for _, b := range boxes[:1+len(t.Extras)] {
		fmt.Fprintf(&body, `<line x1="%d" y1="%d" x2="%d" y2="%d" class="edge"/>`, b.x+b.w, b.y+b.h/2, fw.x, fwMidY)
	}
	fmt.Fprintf(&body, `<text x="%d" y="%d" text-anchor="middle" class="small">LAN</text>`, (laptop.x+laptop.w+fw.x)/2, laptop.y+laptop.h/2-6)
	for _, g := range gws {
		gmid := g.y + 22
		fmt.Fprintf(&body, `<line x1="%d" y1="%d" x2="%d" y2="%d" class="edge"/>`, fw.x+fw.w, fwMidY, g.x, gmid)
		for i, m := range g.marks {
			fmt.Fprintf(&body, `<text x="%d" y="%d" text-anchor="end" class="mark %s">%s %s</text>`, g.x-8, gmid-5-(len(g.marks)-1-i)*13, m.Kind, m.Glyph(), esc(truncate(m.Text, 38)))
		}
		fmt.Fprintf(&body, `<line x1="%d" y1="%d" x2="%d" y2="%d" class="edge"/>`, g.x+g.w, gmid, origins.x, origins.y+origins.h/2)
	}
	if t.Carried != "" && len(gws) > 0 {
		fmt.Fprintf(&body, `<text x="%d" y="%d" text-anchor="middle" class="small">%s</text>`, (topoGwX+topoGwW+topoOrX)/2, origins.y+8, esc(t.Carried))
	}
	if len(t.Direct) > 0 {
		fx := fw.x + fw.w/2
		ox := origins.x + origins.w/2
		fmt.Fprintf(&body, `<polyline points="%d,%d %d,%d %d,%d %d,%d" class="edge direct"/>`, fx, fw.y+fw.h, fx, directY, ox, directY, ox, origins.y+origins.h)
		fmt.Fprintf(&body, `<text x="%d" y="%d" class="small">sessions that did not go to a gateway:</text>`, fx+10, directY-5)
		for i, m := range t.Direct {
			fmt.Fprintf(&body, `<text x="%d" y="%d" class="mark %s">%s %s</text>`, fx+10, directY+16+i*13, m.Kind, m.Glyph(), esc(truncate(m.Text, 90)))
		}
	}
	for _, b := range boxes {
		b.draw(&body)
	}

	var out strings.Builder
	fmt.Fprintf(&out, `<svg class="topo" viewBox="0 0 %d %d" width="100%%" role="img" aria-label="%s"><title>%s</title>`, topoW, h, esc(title), esc(title))
	out.WriteString(body.String())
	out.WriteString(`</svg>`)
	return template.HTML(out.String()) // every text node is escaped by esc
}
