package reports

import (
	"fmt"
	"html/template"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/pinwall/pinwall/client"
	"github.com/pinwall/pinwall/failure"
	"github.com/pinwall/pinwall/gateway"
	"github.com/pinwall/pinwall/mitm/fwlog"
	"github.com/pinwall/pinwall/scenarios"
	"github.com/pinwall/pinwall/tunnel"
)

// mark says what a step of a sequence diagram shows.
type mark int

const (
	markOK mark = iota
	// markWarn: something failed or was abused here, but it is not what
	// the run's failure is attributed to (a denied DTLS attempt before the
	// TLS fallback, a spoofed SNI waved through).
	markWarn
	// markFail: the step the run's observed failure (leg and cause) is
	// attributed to.
	markFail
)

// step is one arrow (from ≠ to) or note (from = to) of a sequence diagram.
type step struct {
	from, to int
	label    string
	mark     mark
	reply    bool
	// leg is the leg a failing step belongs to; session the firewall
	// session it was drawn from (0 for none).
	leg     failure.Leg
	session uint64
}

// sequence is the handshake of one run: laptop ↔ firewall ↔ gateway ↔
// origins, derived from the firewall log, the gateway log and the client's
// history.
type sequence struct {
	lanes []string
	steps []step
	// failNote says what the failing step means; "" when the run has no
	// failure.
	failNote string
}

type segment struct {
	at    time.Time
	steps []step
}

// lanes of every diagram; extra LAN hosts are inserted after the laptop.
const (
	laneLaptop = 0
)

// maxDirect bounds the direct destinations and probes a diagram draws.
const maxDirect = 3

func buildSequence(f *facts) sequence {
	b := newSeqBuilder(f)
	var segs []segment
	segs = append(segs, b.dtlsAttempt()...)
	segs = append(segs, b.tlsAttempts()...)
	segs = append(segs, b.tunnelLost()...)
	segs = append(segs, b.tunnelInUse()...)
	segs = append(segs, b.refused()...)
	segs = append(segs, b.direct()...)
	segs = append(segs, b.otherHosts()...)

	sort.SliceStable(segs, func(i, j int) bool { return segs[i].at.Before(segs[j].at) })
	seq := sequence{lanes: b.lanes}
	for _, s := range segs {
		seq.steps = append(seq.steps, s.steps...)
	}
	seq.markFailure(f)
	return seq
}

// seqBuilder draws the segments of one run's sequence diagram.
type seqBuilder struct {
	f     *facts
	r     *scenarios.Result
	lanes []string
	// fw, gw and org are the lanes of the firewall, the gateways and the
	// origins.
	fw, gw, org int
}

// newSeqBuilder lays out the lanes: the laptop, the other LAN hosts the
// firewall saw (sorted by name), the firewall, the gateways, the origins.
func newSeqBuilder(f *facts) *seqBuilder {
	lanes := []string{"laptop"}
	var extras []string
	for _, rec := range f.others {
		if n := name(f.r.Roles, rec.Src.Addr()); n != "" && !slices.Contains(extras, n) {
			extras = append(extras, n)
		}
	}
	sort.Strings(extras)
	lanes = append(lanes, extras...)
	fw, gw, org := len(lanes), len(lanes)+1, len(lanes)+2
	lanes = append(lanes, "firewall", "gateway", "origins")
	return &seqBuilder{f: f, r: f.r, lanes: lanes, fw: fw, gw: gw, org: org}
}

// laneOf is the lane a firewall session went to: a gateway, else the
// origins.
func (b *seqBuilder) laneOf(rec fwlog.Record) int {
	if b.r.Roles.IsGateway(rec.Dst.Addr()) {
		return b.gw
	}
	return b.org
}

// dtlsUp reports whether a DTLS tunnel came up, by the client's history
// or the gateway's log.
func (b *seqBuilder) dtlsUp() bool {
	for _, h := range b.r.ClientHistory {
		if h.Event == client.EventUp && h.Transport == tunnel.TransportDTLS {
			return true
		}
	}
	for _, e := range b.r.GatewayLog {
		if e.Event == gateway.EventTunnelOpen && e.Transport == string(tunnel.TransportDTLS) {
			return true
		}
	}
	return false
}

// dtlsAttempt draws the first DTLS attempt.
func (b *seqBuilder) dtlsAttempt() []segment {
	r, fw, gw := b.r, b.fw, b.gw
	rec, n := firstLike(b.f.tunnel, func(x fwlog.Record) bool { return x.Proto == fwlog.ProtoUDP })
	if rec == nil {
		return nil
	}
	var ss []step
	hello := fmt.Sprintf("DTLS ClientHello, udp/%d to %s%s", rec.Dst.Port(), gatewayOf(r.Roles, rec.Dst.Addr()), sniNote(rec))
	if rec.Action == fwlog.ActionAllow {
		ss = append(ss,
			step{from: laneLaptop, to: fw, label: hello + likeIt(n), session: rec.SessionID},
			step{from: fw, to: gw, label: fmt.Sprintf("allowed by %s; DTLS cannot be decrypted (app %s)", ruleName(*rec), rec.App), session: rec.SessionID})
		if b.dtlsUp() {
			ss = append(ss, step{from: gw, to: laneLaptop, reply: true, label: "DTLS handshake done: tunnel up (DTLS 1.2 + SCTP)"})
		}
	} else {
		ss = append(ss, step{from: laneLaptop, to: fw, mark: markWarn, leg: failure.LegClientFirewall, session: rec.SessionID,
			label: fmt.Sprintf("%s: %s by %s (%s)%s", hello, rec.Action, ruleName(*rec), rec.EndReason, likeIt(n))})
		if fb := r.Observed.Tunnel.Fallback; fb != "" {
			ss = append(ss, step{from: laneLaptop, to: laneLaptop, label: "no answer (" + fb + "): the client falls back to TLS over tcp/443"})
		}
	}
	return []segment{{at: rec.Start, steps: ss}}
}

// tlsAttempts draws the TLS attempt that failed (the one the run's failure
// is attributed to, else the first), then the first that passed.
func (b *seqBuilder) tlsAttempts() []segment {
	f := b.f
	var segs []segment
	isTCP := func(x fwlog.Record) bool { return x.Proto == fwlog.ProtoTCP }
	failedTCP := func(x fwlog.Record) bool { return isTCP(x) && x.Action != fwlog.ActionAllow }
	var bad *fwlog.Record
	if f.r.Observed.Failure != nil && f.failing != nil && failedTCP(*f.failing) {
		bad = f.failing
	} else {
		bad, _ = firstLike(f.tunnel, failedTCP)
	}
	if bad != nil {
		n := count(f.tunnel, func(x fwlog.Record) bool { return failedTCP(x) && x.Rule == bad.Rule && x.Outcome() == bad.Outcome() })
		segs = append(segs, segment{at: bad.Start, steps: tcpSteps(f, *bad, n, laneLaptop, b.fw, b.gw)})
	}
	good, _ := firstLike(f.tunnel, func(x fwlog.Record) bool { return isTCP(x) && x.Action == fwlog.ActionAllow && tunnelOpened(f, x) })
	if good == nil {
		good, _ = firstLike(f.tunnel, func(x fwlog.Record) bool { return isTCP(x) && x.Action == fwlog.ActionAllow })
	}
	if good != nil {
		n := count(f.tunnel, func(x fwlog.Record) bool {
			return isTCP(x) && x.Action == fwlog.ActionAllow && x.Rule == good.Rule && x.Outcome() == good.Outcome()
		})
		segs = append(segs, segment{at: good.Start, steps: tcpSteps(f, *good, n, laneLaptop, b.fw, b.gw)})
	}
	return segs
}

// tunnelLost draws the client losing its tunnel, and failing over.
func (b *seqBuilder) tunnelLost() []segment {
	r := b.r
	var segs []segment
	if h, ok := firstEvent(r.ClientHistory, client.EventDown); ok {
		label := fmt.Sprintf("the tunnel to %s is lost (%s)", orDash(h.Gateway), orDash(string(h.Cause)))
		for _, e := range r.GatewayLog {
			if e.Event == gateway.EventTunnelClose && e.Gateway == h.Gateway && !e.Time.After(h.Time) && e.Reason != "" {
				label = fmt.Sprintf("the tunnel to %s is lost (%s); the gateway logged: %s", orDash(h.Gateway), orDash(string(h.Cause)), e.Reason)
			}
		}
		segs = append(segs, segment{at: h.Time, steps: []step{{from: laneLaptop, to: laneLaptop, mark: markWarn, label: label}}})
	}
	if h, ok := firstEvent(r.ClientHistory, client.EventFailover); ok {
		segs = append(segs, segment{at: h.Time, steps: []step{{from: laneLaptop, to: laneLaptop, label: "the client fails over to " + orDash(h.Gateway)}}})
	}
	return segs
}

// tunnelInUse draws the flows the gateway carried.
func (b *seqBuilder) tunnelInUse() []segment {
	f := b.f
	if len(f.flows) == 0 {
		return nil
	}
	ok := 0
	for _, e := range f.flows {
		if e.Result == gateway.ResultOK {
			ok++
		}
	}
	tr := f.flows[0].Transport
	ss := []step{
		{from: laneLaptop, to: b.gw, label: fmt.Sprintf("%s inside the tunnel (%s), opaque to the firewall", plural(len(f.flows), "flow"), tr)},
	}
	st := step{from: b.gw, to: b.org, label: fmt.Sprintf("HTTPS to %s: %d ok", list(f.sites), ok)}
	if ok < len(f.flows) {
		st.label += fmt.Sprintf(", %d failed", len(f.flows)-ok)
		st.mark, st.leg = markWarn, failure.LegGatewayOrigin
	}
	return []segment{{at: f.flows[0].Time, steps: append(ss, st)}}
}

// refused draws the flows the client refused for want of a tunnel.
func (b *seqBuilder) refused() []segment {
	r := b.r
	refused := 0
	for _, fl := range r.Flows {
		if !fl.Verified && fl.Cause == failure.CauseTunnelDown {
			refused++
		}
	}
	if refused == 0 {
		return nil
	}
	var refusedAt time.Time
	if len(r.ClientHistory) > 0 {
		refusedAt = r.ClientHistory[len(r.ClientHistory)-1].Time
	}
	return []segment{{at: refusedAt, steps: []step{{from: laneLaptop, to: laneLaptop, mark: markWarn, leg: failure.LegClientGateway,
		label: fmt.Sprintf("%s refused: no tunnel, fail-close", plural(refused, "flow"))}}}}
}

// direct draws the flows that went direct, one destination at a time.
func (b *seqBuilder) direct() []segment {
	f, r, fw := b.f, b.r, b.fw
	var segs []segment
	dsts := distinct(f.direct, func(x fwlog.Record) string { return x.Dst.Addr().String() })
	for i, d := range dsts {
		if i == maxDirect {
			segs = append(segs, segment{at: f.direct[len(f.direct)-1].Start, steps: []step{{from: laneLaptop, to: fw,
				label: fmt.Sprintf("… and %d more direct destination(s)", len(dsts)-maxDirect)}}})
			break
		}
		rec, n := firstLike(f.direct, func(x fwlog.Record) bool { return x.Dst.Addr().String() == d })
		ss := []step{
			{from: laneLaptop, to: fw, session: rec.SessionID,
				label: fmt.Sprintf("direct %s to %s%s%s", protoPort(*rec), addrLabel(r.Roles, rec.Dst.Addr()), sniNote(rec), likeIt(n))},
			{from: fw, to: b.laneOf(*rec), session: rec.SessionID, label: verdictOn(*rec)},
		}
		segs = append(segs, segment{at: rec.Start, steps: ss})
	}
	return segs
}

// otherHosts draws the sessions from other LAN hosts (probes such as a
// spoofed SNI).
func (b *seqBuilder) otherHosts() []segment {
	f, r, fw := b.f, b.r, b.fw
	var segs []segment
	for i, rec := range f.others {
		if i == maxDirect {
			break
		}
		src := slices.Index(b.lanes, name(r.Roles, rec.Src.Addr()))
		if src < 0 {
			src = laneLaptop
		}
		st := step{from: fw, to: b.laneOf(rec), session: rec.SessionID, label: verdictOn(rec)}
		if !r.Roles.IsGateway(rec.Dst.Addr()) && isGatewayName(f, rec.SNI) && rec.Outcome() == fwlog.OutcomeNotDecrypted && rec.Action == fwlog.ActionAllow {
			st.mark = markWarn
			st.label += ", to an address that is not a gateway"
		}
		if rec.Action != fwlog.ActionAllow {
			st.mark = markWarn
		}
		segs = append(segs, segment{at: rec.Start, steps: []step{
			{from: src, to: fw, session: rec.SessionID,
				label: fmt.Sprintf("%s ClientHello, SNI %s, to %s", strings.ToUpper(string(rec.Proto)), orDash(rec.SNI), addrLabel(r.Roles, rec.Dst.Addr()))},
			st,
		}})
	}
	return segs
}

// markFailure marks the step the run's failure is attributed to: the one
// drawn from the firewall record that explains it, else the first step on
// the failing leg; when no step shows it, a note is added.
func (s *sequence) markFailure(f *facts) {
	fo := f.r.Observed.Failure
	if fo == nil {
		return
	}
	s.failNote = fmt.Sprintf("✗ marks the failing step: leg %s, cause %s (attributed by %s)", orDash(string(fo.Leg)), orDash(string(fo.Cause)), orDash(fo.Source))
	idx := -1
	if f.failing != nil {
		idx = slices.IndexFunc(s.steps, func(st step) bool { return st.session == f.failing.SessionID && st.leg != "" })
	}
	if idx < 0 {
		idx = slices.IndexFunc(s.steps, func(st step) bool { return st.leg != "" && st.leg == fo.Leg })
	}
	if idx < 0 {
		s.steps = append(s.steps, step{from: laneLaptop, to: laneLaptop, label: legCause(fo.Leg, fo.Cause)})
		idx = len(s.steps) - 1
	}
	s.steps[idx].mark = markFail
	if fo.Cause != "" && !strings.Contains(s.steps[idx].label, string(fo.Cause)) {
		s.steps[idx].label += fmt.Sprintf(" (the run's failure: %s)", legCause(fo.Leg, fo.Cause))
	}
}

// tcpSteps draws one TLS session from the laptop to a gateway.
func tcpSteps(f *facts, rec fwlog.Record, n, laptop, fw, gw int) []step {
	id := rec.SessionID
	hello := step{from: laptop, to: fw, session: id,
		label: fmt.Sprintf("TLS ClientHello, tcp/%d to %s%s%s", rec.Dst.Port(), gatewayOf(f.r.Roles, rec.Dst.Addr()), sniNote(&rec), likeIt(n))}
	d := rec.Decryption
	out := []step{hello}
	switch {
	case d == nil || d.Outcome == fwlog.OutcomeNotDecrypted || d.Outcome == fwlog.OutcomeExcluded:
		why := "no decryption rule (" + ruleName(rec) + ")"
		if d != nil && d.Outcome == fwlog.OutcomeNotDecrypted {
			why = "not decrypted: rule " + ruleName(rec)
		} else if d != nil {
			why = "excluded from decryption: " + orDash(d.Reason)
		}
		switch {
		case rec.Action == fwlog.ActionAllow:
			out = append(out, step{from: fw, to: gw, session: id, label: "forwarded unchanged, " + why + fmt.Sprintf(" (app %s)", rec.App)})
			switch {
			case tunnelOpened(f, rec):
				out = append(out, step{from: gw, to: laptop, reply: true, session: id, label: "the gateway's own certificate; TLS 1.3 and the tunnel up"})
			case rec.EndReason == fwlog.EndTCPRSTFromServer || rec.EndReason == fwlog.EndTCPRSTFromClient:
				out = append(out, step{from: gw, to: laptop, reply: true, session: id, mark: markWarn, leg: failure.LegClientGateway,
					label: fmt.Sprintf("session reset (%s): no tunnel", rec.EndReason)})
			default:
				out = append(out, step{from: gw, to: laptop, reply: true, session: id, label: fmt.Sprintf("the gateway's own certificate (session ended: %s)", rec.EndReason)})
			}
		case rec.EndReason.IsDecrypt():
			out = append(out,
				step{from: fw, to: gw, session: id, label: "forwarded, " + why + "; the server certificate is checked"},
				step{from: gw, to: fw, reply: true, session: id, mark: markWarn, leg: failure.LegFirewallGateway,
					label: fmt.Sprintf("certificate does not pass the check (%s)", legCause(dLeg(d), dCause(d)))},
				step{from: fw, to: laptop, reply: true, session: id, label: fmt.Sprintf("%s (%s)", rec.Action, rec.EndReason)})
		default:
			out[0].mark, out[0].leg = markWarn, failure.LegClientFirewall
			out[0].label += fmt.Sprintf(": %s by %s (%s)", rec.Action, ruleName(rec), rec.EndReason)
		}
	case d.Outcome == fwlog.OutcomeDecrypted:
		out = append(out,
			step{from: fw, to: gw, session: id, label: "the firewall's own TLS handshake (decrypt rule " + ruleName(rec) + ")"},
			step{from: gw, to: fw, reply: true, session: id, label: "the gateway's real certificate, chain " + orDash(string(d.ChainStatus))},
			step{from: fw, to: laptop, reply: true, session: id, label: "forged certificate for " + orDash(rec.SNI) + ", signed by the enterprise CA"},
			step{from: laptop, to: fw, session: id, label: "the client accepts it: both handshakes complete"},
			step{from: fw, to: fw, session: id, label: fmt.Sprintf("decrypted: app %s, ALPN %s — inner flows still opaque", rec.App, orDash(d.ALPN))})
	default: // failed
		out = append(out, step{from: fw, to: gw, session: id, label: "the firewall's own TLS handshake (decrypt rule " + ruleName(rec) + ")"})
		serverSide := d.Leg == failure.LegFirewallGateway || (d.Leg == "" && strings.Contains(d.ServerStage, "failed"))
		if serverSide {
			out = append(out,
				step{from: gw, to: fw, reply: true, session: id, mark: markWarn, leg: failure.LegFirewallGateway,
					label: fmt.Sprintf("refused: %s — %s", orDash(string(d.Cause)), orDash(d.Reason))},
				step{from: fw, to: laptop, reply: true, session: id, label: fmt.Sprintf("%s (%s)", rec.Action, rec.EndReason)})
		} else {
			out = append(out,
				step{from: gw, to: fw, reply: true, session: id, label: "the gateway's real certificate, chain " + orDash(string(d.ChainStatus))},
				step{from: fw, to: laptop, reply: true, session: id, label: "forged certificate for " + orDash(rec.SNI) + ", signed by the enterprise CA"},
				step{from: laptop, to: fw, session: id, mark: markWarn, leg: orLeg(d.Leg, failure.LegClientFirewall),
					label: fmt.Sprintf("the client rejects it: %s (%s)", orDash(string(d.Cause)), rec.EndReason)})
		}
	}
	return out
}

// tunnelOpened reports whether the gateway opened a tunnel for this
// firewall session (a tunnel-open whose client is the session's NAT
// source), or the client came up at its destination over TLS.
func tunnelOpened(f *facts, rec fwlog.Record) bool {
	for _, e := range f.r.GatewayLog {
		if e.Event == gateway.EventTunnelOpen && rec.NATSrc.IsValid() && e.Client == rec.NATSrc.String() {
			return true
		}
	}
	for _, h := range f.r.ClientHistory {
		if h.Event == client.EventUp && h.Addr == rec.Dst.String() && h.Transport == tunnel.TransportTLS {
			return true
		}
	}
	return false
}

func firstEvent(hs []client.Transition, event string) (client.Transition, bool) {
	for _, h := range hs {
		if h.Event == event {
			return h, true
		}
	}
	return client.Transition{}, false
}

func dLeg(d *fwlog.Decryption) failure.Leg {
	if d == nil {
		return ""
	}
	return d.Leg
}

func dCause(d *fwlog.Decryption) failure.Cause {
	if d == nil {
		return ""
	}
	return d.Cause
}

func orLeg(l, def failure.Leg) failure.Leg {
	if l == "" {
		return def
	}
	return l
}

// verdictOn says what the firewall did with a session it forwarded.
func verdictOn(rec fwlog.Record) string {
	s := fmt.Sprintf("%s by %s", rec.Action, ruleName(rec))
	if d := rec.Decryption; d != nil {
		s = fmt.Sprintf("%s, %s by %s", rec.Action, d.Outcome, ruleName(rec))
		if d.Outcome == fwlog.OutcomeDecrypted {
			s += fmt.Sprintf(": the firewall sees app %s", rec.App)
		}
		if d.Leg != "" || d.Cause != "" {
			s += " (" + legCause(d.Leg, d.Cause) + ")"
		}
	}
	if rec.EndReason != "" && rec.EndReason != fwlog.EndTCPFin && rec.EndReason != fwlog.EndAgedOut {
		s += ", " + string(rec.EndReason)
	}
	return s
}

func isGatewayName(f *facts, sni string) bool {
	_, ok := f.r.Roles.Gateways[sni]
	return ok
}

// firstLike returns the earliest-starting record satisfying keep and how
// many do.
func firstLike(recs []fwlog.Record, keep func(fwlog.Record) bool) (*fwlog.Record, int) {
	var first *fwlog.Record
	n := 0
	for i := range recs {
		if !keep(recs[i]) {
			continue
		}
		n++
		if first == nil || recs[i].Start.Before(first.Start) {
			first = &recs[i]
		}
	}
	return first, n
}

func likeIt(n int) string {
	if n > 1 {
		return fmt.Sprintf(" [1 of %d like it]", n)
	}
	return ""
}

func sniNote(rec *fwlog.Record) string {
	if rec.SNI == "" {
		return ""
	}
	return ", SNI " + rec.SNI
}

func ruleName(rec fwlog.Record) string {
	if rec.Rule == "" {
		return "the default rule"
	}
	return rec.Rule
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// Layout of the text diagram.
const asciiLane = 14

// text renders the diagram as plain text for a Markdown code block: one
// column per lane, one numbered line per step, the label on the right.
func (s sequence) text() string {
	if len(s.steps) == 0 {
		return ""
	}
	width := len(s.lanes) * asciiLane
	center := func(i int) int { return i*asciiLane + asciiLane/2 }
	var b strings.Builder
	head := []byte(strings.Repeat(" ", width))
	for i, l := range s.lanes {
		start := max(center(i)-len(l)/2, 0)
		if i > 0 {
			start = max(start, center(i-1)+len(s.lanes[i-1])/2+2)
		}
		for j := 0; j < len(l) && start+j < width; j++ {
			head[start+j] = l[j]
		}
	}
	b.WriteString("    " + strings.TrimRight(string(head), " ") + "\n")
	for n, st := range s.steps {
		line := []byte(strings.Repeat(" ", width))
		for i := range s.lanes {
			line[center(i)] = '|'
		}
		a, z := center(st.from), center(st.to)
		head := byte('>')
		if st.mark == markFail {
			head = 'X'
		} else if st.mark == markWarn {
			head = 'x'
		}
		switch {
		case a < z:
			for c := a + 1; c < z; c++ {
				line[c] = '-'
			}
			line[z-1] = head
		case a > z:
			for c := z + 1; c < a; c++ {
				line[c] = '-'
			}
			if head == '>' {
				head = '<'
			}
			line[z+1] = head
		default:
			line[a] = '*'
			if st.mark != markOK {
				line[a] = head
			}
		}
		fmt.Fprintf(&b, "%2d  %s  %s%s\n", n+1, string(line), markPrefix(st.mark), st.label)
	}
	if s.failNote != "" {
		b.WriteString("\n" + s.failNote + "\n")
	}
	return b.String()
}

func markPrefix(m mark) string {
	switch m {
	case markFail:
		return "✗ FAILING STEP: "
	case markWarn:
		return "! "
	}
	return ""
}

// Layout of the SVG diagram.
const (
	svgLane    = 112
	svgLeft    = 80
	svgRow     = 26
	svgLineH   = 13
	svgTop     = 46
	svgLabelW  = 560
	svgWrap    = 84
	svgMaxWrap = 3
)

// svg renders the diagram as inline SVG: lifelines, arrows, labels on the
// right (wrapped); the failing step thick, red and marked ✗; warnings dark
// orange.
func (s sequence) svg(title string) template.HTML {
	if len(s.steps) == 0 {
		return ""
	}
	cx := func(i int) int { return svgLeft + i*svgLane }
	labelX := cx(len(s.lanes)-1) + 40
	w := labelX + svgLabelW
	labels := make([][]string, len(s.steps))
	h := svgTop + 16
	for i, st := range s.steps {
		labels[i] = wrap(markPrefix(st.mark)+st.label, svgWrap, svgMaxWrap)
		h += svgRow + (len(labels[i])-1)*svgLineH
	}
	if s.failNote != "" {
		h += svgRow
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="seq" viewBox="0 0 %d %d" width="100%%" role="img" aria-label="%s">`, w, h, esc(title))
	fmt.Fprintf(&b, `<title>%s</title>`, esc(title))
	for i, l := range s.lanes {
		fmt.Fprintf(&b, `<rect x="%d" y="8" width="%d" height="24" rx="3" class="box"/>`, cx(i)-50, 100)
		fmt.Fprintf(&b, `<text x="%d" y="24" text-anchor="middle" class="lane">%s</text>`, cx(i), esc(l))
		fmt.Fprintf(&b, `<line x1="%d" y1="32" x2="%d" y2="%d" class="life"/>`, cx(i), cx(i), h-8)
	}
	y := svgTop + 8
	for n, st := range s.steps {
		cls := "ok"
		switch st.mark {
		case markFail:
			cls = "fail"
		case markWarn:
			cls = "warn"
		}
		if st.reply && st.mark == markOK {
			cls += " reply"
		}
		fmt.Fprintf(&b, `<text x="8" y="%d" class="num">%d</text>`, y+4, n+1)
		a, z := cx(st.from), cx(st.to)
		switch {
		case a == z:
			fmt.Fprintf(&b, `<circle cx="%d" cy="%d" r="5" class="%s"/>`, a, y, cls)
		default:
			dir := 1
			if z < a {
				dir = -1
			}
			fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" class="%s"/>`, a, y, z-dir*2, y, cls)
			fmt.Fprintf(&b, `<polygon points="%d,%d %d,%d %d,%d" class="%s head"/>`, z, y, z-dir*9, y-4, z-dir*9, y+4, cls)
		}
		if st.mark == markFail {
			fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle" class="x">✗</text>`, (a+z)/2, y-4)
		}
		fmt.Fprintf(&b, `<text x="%d" y="%d" class="label %s">`, labelX, y+4, cls)
		for i, l := range labels[n] {
			if i == 0 {
				fmt.Fprintf(&b, `<tspan>%s</tspan>`, esc(l))
				continue
			}
			fmt.Fprintf(&b, `<tspan x="%d" dy="%d">%s</tspan>`, labelX, svgLineH, esc(l))
		}
		b.WriteString(`</text>`)
		y += svgRow + (len(labels[n])-1)*svgLineH
	}
	if s.failNote != "" {
		fmt.Fprintf(&b, `<text x="8" y="%d" class="label fail">%s</text>`, y+4, esc(s.failNote))
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String()) // every text node is escaped by esc
}

// wrap breaks s at spaces into lines of at most n runes, at most max lines;
// the last line is cut with "…" when more would follow.
func wrap(s string, n, maxLines int) []string {
	var lines []string
	var cur []rune
	for _, word := range strings.Fields(s) {
		wr := []rune(word)
		switch {
		case len(cur) == 0:
			cur = wr
		case len(cur)+1+len(wr) <= n:
			cur = append(append(cur, ' '), wr...)
		default:
			lines = append(lines, string(cur))
			cur = wr
		}
	}
	if len(cur) > 0 {
		lines = append(lines, string(cur))
	}
	for i, l := range lines {
		lines[i] = truncate(l, n)
	}
	if len(lines) > maxLines {
		lines = lines[:maxLines]
		lines[maxLines-1] = truncate(lines[maxLines-1]+" …", n)
	}
	return lines
}

func truncate(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

// esc escapes text for SVG/HTML content and attribute values.
func esc(s string) string { return template.HTMLEscapeString(s) }
