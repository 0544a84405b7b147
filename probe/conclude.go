package probe

import (
	"fmt"
	"strings"

	"github.com/pinwall/pinwall/client"
	"github.com/pinwall/pinwall/failure"
	"github.com/pinwall/pinwall/gateway"
	"github.com/pinwall/pinwall/tunnel"
)

// Level grades an answer, as package review does.
type Level int

// The levels, in increasing gravity (review.OK, review.Warn, review.Problem).
const (
	OK Level = iota
	Warn
	Problem
)

// String returns "OK", "WARN" or "PROBLEM".
func (l Level) String() string {
	switch l {
	case OK:
		return "OK"
	case Warn:
		return "WARN"
	}
	return "PROBLEM"
}

// MarshalText writes the level as String does.
func (l Level) MarshalText() ([]byte, error) { return []byte(l.String()), nil }

// Answer ids; dtls, tls, failover and over-bypass are review's questions of
// the same name (pinwall check).
const (
	AnswerDTLS     = "dtls"
	AnswerTLS      = "tls"
	AnswerDevice   = "device"
	AnswerBypass   = "over-bypass"
	AnswerFailover = "failover"
	AnswerLearning = "learning"
	AnswerTunnel   = "tunnel"
)

// Answer is one conclusion and the measurements it comes from.
type Answer struct {
	ID      string `json:"id"`
	Topic   string `json:"topic"`
	Level   Level  `json:"level"`
	Summary string `json:"summary"`
	// KeyedOn, for over-bypass, is what the bypass is keyed on: address,
	// sni, sni+address, client-certificate, no-interception, none or
	// unknown.
	KeyedOn string `json:"keyed_on,omitempty"`
	// Leg and Cause classify a failure (the catalogue's vocabulary).
	Leg   failure.Leg   `json:"leg,omitempty"`
	Cause failure.Cause `json:"cause,omitempty"`
	// From names the measurements (attempt keys, steps) it rests on.
	From []string `json:"from"`
}

// FindingID names a finding; every id is one of the catalogue's
// (scenarios.FindingID).
type FindingID string

// The findings the probe can raise.
const (
	FindingTunnelIntercepted     FindingID = "tunnel-intercepted"
	FindingSNIRuleTooBroad       FindingID = "sni-rule-too-broad"
	FindingGatewayNameNotCovered FindingID = "gateway-name-not-covered"
	FindingDTLSBlocked           FindingID = "dtls-blocked"
	FindingTunnelDown            FindingID = "tunnel-down"
	FindingExclusionLearned      FindingID = "exclusion-learned"
)

// FindingIDs lists every finding the probe can raise.
var FindingIDs = []FindingID{FindingTunnelIntercepted, FindingSNIRuleTooBroad, FindingGatewayNameNotCovered,
	FindingDTLSBlocked, FindingTunnelDown, FindingExclusionLearned}

// Finding is a conclusion in the catalogue's terms.
type Finding struct {
	ID     FindingID `json:"id"`
	Detail string    `json:"detail"`
	From   []string  `json:"from"`
}

// Question is one of the three questions, answered from the measurements.
type Question struct {
	N      int      `json:"n"`
	Title  string   `json:"title"`
	Answer string   `json:"answer"`
	From   []string `json:"from"`
}

// Level is the gravest level among the answers.
func (r *Result) Level() Level {
	l := OK
	for _, a := range r.Answers {
		l = max(l, a.Level)
	}
	return l
}

// Answer returns the answer with id, or a zero one.
func (r *Result) Answer(id string) Answer {
	for _, a := range r.Answers {
		if a.ID == id {
			return a
		}
	}
	return Answer{}
}

func (o *Observations) attempt(key string) (Attempt, bool) {
	for _, a := range o.TLS {
		if a.Key == key {
			return a, true
		}
	}
	return Attempt{}, false
}

// Conclude draws the answers, findings and questions from res.Observed.
func Conclude(res *Result) {
	o := &res.Observed
	c := &conclusion{res: res, o: o}
	tls := c.tls()
	dtls := c.dtls(tls)
	res.Answers = []Answer{dtls, tls, c.device(), c.bypass(), c.failover(dtls), c.learning(), c.tunnel()}
	res.Findings = c.findings
	res.Questions = c.questions()
}

type conclusion struct {
	res      *Result
	o        *Observations
	findings []Finding
}

func (c *conclusion) find(id FindingID, from []string, format string, args ...any) {
	for _, f := range c.findings {
		if f.ID == id {
			return
		}
	}
	c.findings = append(c.findings, Finding{ID: id, Detail: fmt.Sprintf(format, args...), From: from})
}

func describeAttempt(a Attempt) string {
	sni := a.SNI
	if sni == "" {
		sni = "no SNI"
	}
	switch a.Outcome {
	case Pinned:
		s := fmt.Sprintf("%s (%s, %s): the pinned chain", a.Key, a.Addr, sni)
		if a.Tunnel {
			s += ", tunnel granted"
		}
		return s
	case Forged:
		return fmt.Sprintf("%s (%s, %s): forged, issuer %q", a.Key, a.Addr, sni, a.Chain.Issuer)
	}
	return fmt.Sprintf("%s (%s, %s): %s / %s", a.Key, a.Addr, sni, a.Leg, a.Cause)
}

func (c *conclusion) primaryDTLS() (DTLSResult, bool) {
	for _, d := range c.o.DTLS {
		if d.Gateway == c.res.Primary.Name {
			return d, true
		}
	}
	return DTLSResult{}, false
}

func (c *conclusion) dtls(tls Answer) Answer {
	a := Answer{ID: AnswerDTLS, Topic: "Does the tunnel come up over DTLS (UDP/443)?", From: []string{"step 1: DTLS handshake to " + c.res.Primary.Name}}
	d, ok := c.primaryDTLS()
	if !ok {
		a.Level, a.Summary = Problem, "not measured"
		return a
	}
	a.Leg, a.Cause = d.Leg, d.Cause
	switch d.Outcome {
	case "passes":
		a.Level, a.Summary = OK, fmt.Sprintf("UDP/443 to %s passes: the DTLS handshake completed with the pinned key and the device certificate", d.Addr)
		return a
	case "intercepted":
		a.Level, a.Summary = Problem, fmt.Sprintf("UDP/443 to %s: the DTLS handshake met a chain that is not the pinned one (%s)", d.Addr, d.Cause)
	default:
		a.Level, a.Summary = Problem, fmt.Sprintf("UDP/443 to %s %s: %s / %s", d.Addr, d.Outcome, d.Leg, d.Cause)
	}
	c.find(FindingDTLSBlocked, a.From, "UDP/443 to %s %s (%s)", d.Addr, d.Outcome, d.Cause)
	if tls.Level != Problem {
		a.Level = Warn
		a.Summary = "works over TLS only: " + a.Summary + "; the client falls back to TLS, slower and TCP-over-TCP"
	}
	return a
}

func (c *conclusion) tls() Answer {
	a := Answer{ID: AnswerTLS, Topic: "Does the tunnel come up over TLS (TCP/443), with the pinned key?", From: []string{"step 2: attempt A"}}
	first, ok := c.o.attempt("A")
	if !ok {
		a.Level, a.Summary = Problem, "not measured"
		return a
	}
	b, _ := c.o.attempt("B")
	cc, _ := c.o.attempt("C")
	switch {
	case first.Passed() && b.Intercepted() && cc.Passed():
		a.From = append(a.From, "step 4: attempts B and C")
		a.Level = Warn
		a.Summary = fmt.Sprintf("works by exclusion: %s; but the control name, whose server asks no client certificate, was decrypted at the same address (%s): the firewall passes the gateway only because it asks for a client certificate",
			describeAttempt(first), describeAttempt(b))
		return a
	case first.Passed():
		a.Level, a.Summary = OK, "survives: "+describeAttempt(first)
		if !first.Tunnel {
			a.Level, a.Summary = Problem, describeAttempt(first)+", but the gateway granted no tunnel (the device certificate was not accepted)"
		}
		return a
	}
	a.Leg, a.Cause = first.Leg, first.Cause
	if first.Intercepted() {
		c.find(FindingTunnelIntercepted, a.From, "%s; the probe refused it (pin)", describeAttempt(first))
	}
	for i, l := range c.o.Learning {
		if l.Passed() {
			if i == 0 {
				a.From = append(a.From, "step 5: attempt A2")
			} else {
				a.From = append(a.From, fmt.Sprintf("step 5: attempts A2..A%d", i+2))
			}
			a.Level = Warn
			a.Summary = fmt.Sprintf("works only after %d failed attempt(s): %s; then %s", i+1, describeAttempt(first), describeAttempt(l))
			return a
		}
	}
	if len(c.o.Learning) > 0 {
		a.From = append(a.From, fmt.Sprintf("step 5: %d more attempts", len(c.o.Learning)))
	}
	a.Level = Problem
	a.Summary = "fails: " + describeAttempt(first)
	if first.Intercepted() {
		a.Summary += fmt.Sprintf(" (%s; the leaf %s the gateway's subject, %s its SANs)", first.Chain.Leaf, mimic(first.Chain.MimicsSubject), mimic(first.Chain.MimicsSANs))
	}
	return a
}

func mimic(b bool) string {
	if b {
		return "mimics"
	}
	return "does not mimic"
}

// deviceRefusals are the gateway's refusals in the record for want of a
// device certificate: the firewall's upstream leg.
func deviceRefusals(rec *Record) []gateway.Event {
	if rec == nil {
		return nil
	}
	var out []gateway.Event
	for _, e := range rec.Events {
		if e.Event == gateway.EventTunnelRefused && e.Cause == failure.CauseClientCertRequired {
			out = append(out, e)
		}
	}
	return out
}

func (c *conclusion) device() Answer {
	a := Answer{ID: AnswerDevice, Topic: "Does the device certificate reach the gateway?"}
	rec := c.o.Record
	opens := 0
	if rec != nil {
		for _, e := range rec.Events {
			if e.Event == gateway.EventTunnelOpen && e.Device != nil && e.Device.Device == rec.Device {
				opens++
			}
		}
	}
	refused := deviceRefusals(rec)
	switch {
	case rec != nil && opens > 0 && len(refused) > 0:
		a.From = []string{"step 3: the gateway's record"}
		a.Level = OK
		a.Summary = fmt.Sprintf("yes: the gateway logged %d tunnel(s) of this device (%s) from %v; it also logged %d handshake(s) without a device certificate from %s during the run: the firewall's own upstream leg for the attempts it decrypted (firewall-gateway / client-certificate-required)",
			opens, rec.Device, rec.Sources, len(refused), refused[0].Client)
	case rec != nil && opens > 0:
		a.From = []string{"step 3: the gateway's record"}
		a.Level = OK
		a.Summary = fmt.Sprintf("yes: the gateway logged %d tunnel(s) of this device (%s) from %v, and no handshake without a device certificate", opens, rec.Device, rec.Sources)
	default:
		a.From = []string{"step 2: attempt A", "no record: " + orDash(c.o.RecordError)}
		first, _ := c.o.attempt("A")
		greeted := first
		for _, l := range c.o.Learning {
			if !greeted.Tunnel && l.Tunnel {
				greeted = l
				a.From = append(a.From, "step 5: attempt "+l.Key)
			}
		}
		a.Level = Problem
		switch {
		case greeted.Tunnel:
			a.Level, a.Summary = OK, "yes, from the probe's side: the gateway greeted attempt "+greeted.Key+" with a tunnel id (it accepted the device certificate); the gateway's record was not fetched"
		case first.Outcome == Failed && (first.Cause == failure.CauseConnectionReset || first.Cause == failure.CauseHandshakeFailed || first.Cause == failure.CauseClosed):
			a.Leg, a.Cause = failure.LegFirewallGateway, failure.CauseClientCertRequired
			a.Summary = fmt.Sprintf("inferred, not seen: attempt A ended with %s before any certificate came; a firewall that decrypts fails its upstream leg at the gateway's certificate request (firewall-gateway / client-certificate-required). The gateway's record, which would show it, needs a tunnel and none came up", first.Cause)
		case first.Intercepted():
			a.Summary = "no: the firewall presented its own chain, so the device certificate was never sent to the gateway"
		default:
			a.Summary = "not measured: attempt A " + describeAttempt(first)
		}
	}
	return a
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func (c *conclusion) bypass() Answer {
	a := Answer{ID: AnswerBypass, Topic: "What is the bypass keyed on, and is it narrow?"}
	o := c.o
	A, _ := o.attempt("A")
	B, _ := o.attempt("B")
	C, _ := o.attempt("C")
	F, hasF := o.attempt("F")
	H, hasH := o.attempt("H")
	a.From = []string{"step 4: attempts A, B, C"}
	if hasF {
		a.From = append(a.From, "attempts F, H (decoy)")
	}
	switch {
	case !A.Passed():
		a.KeyedOn, a.Level = "none", OK
		a.Summary = "no bypass covers the gateway at first: " + describeAttempt(A) + " (see tls)"
		if len(o.Learning) > 0 {
			a.From = append(a.From, "step 5")
		}
	case A.Passed() && B.Passed() && C.Passed() && hasH && H.Passed():
		a.KeyedOn, a.Level = "no-interception", OK
		a.Summary = "nothing was decrypted, not even the control name at the decoy address: the firewall does not intercept TLS here (" + describeAttempt(H) + ")"
	case A.Passed() && B.Passed() && C.Passed():
		a.KeyedOn, a.Level = "address", OK
		a.Summary = "by address: at the primary's address the gateway's name, the control name and no name all pass undecrypted (an address rule, or an FQDN object holding this address: the probe cannot tell them apart at one address)"
		if hasH {
			a.Summary += "; elsewhere the firewall decrypts: " + describeAttempt(H)
		}
	case A.Passed() && C.Passed() && B.Intercepted():
		a.KeyedOn, a.Level = "client-certificate", OK
		a.Summary = "by the server's certificate request: the gateway's name and no name pass, the control name (no certificate request) is decrypted at the same address: a client-certificate exclusion, not a rule for the gateway"
	case A.Passed() && !C.Passed():
		a.KeyedOn = "sni"
		a.Summary = "by server name: the gateway's name passes, no name is decrypted at the same address (" + describeAttempt(C) + ")"
		if B.Passed() {
			a.Summary += "; the control name passes too (the rule's pattern covers it)"
		}
		switch {
		case hasF && F.Passed():
			a.Level = Problem
			a.Summary += "; spoofable: the gateway's name sent to the decoy address, which is no gateway, passed undecrypted (" + describeAttempt(F) + ")"
			c.find(FindingSNIRuleTooBroad, []string{"attempt F"}, "the gateway's name at the decoy address %s passed undecrypted: %s", F.Addr, describeAttempt(F))
		case hasF && F.Intercepted():
			a.KeyedOn, a.Level = "sni+address", OK
			a.Summary += "; bound to the address: the gateway's name at the decoy address was decrypted (" + describeAttempt(F) + ")"
		case hasF:
			a.KeyedOn, a.Level = "sni+server-check", OK
			a.Summary += "; not spoofable here: the gateway's name at the decoy address, whose certificate does not name the gateway, was refused (" + describeAttempt(F) + ")"
		default:
			a.Level = Warn
			a.Summary += "; whether it can be spoofed was not measured (the bundle has no decoy address)"
		}
	default:
		a.KeyedOn, a.Level = "unknown", Warn
		a.Summary = fmt.Sprintf("no pattern: %s; %s; %s", describeAttempt(A), describeAttempt(B), describeAttempt(C))
	}
	return a
}

func (c *conclusion) failover(dtls Answer) Answer {
	a := Answer{ID: AnswerFailover, Topic: "Does the backup gateway take the tunnel?"}
	if c.res.Backup == nil || c.o.Backup == nil {
		a.Level, a.Summary = OK, "not asked: the bundle has no backup gateway"
		return a
	}
	bk := c.res.Backup
	D, _ := c.o.attempt("D")
	bt := c.o.Backup
	a.From = []string{"step 4: attempt D", "step 6: tunnel to the backup alone"}
	if D.Intercepted() || (D.Outcome == Failed && !bt.Up) {
		c.find(FindingGatewayNameNotCovered, []string{"attempt D"}, "the backup %s at %s was not passed: %s", bk.Name, bk.Addr, describeAttempt(D))
	}
	switch {
	case !bt.Up:
		a.Level, a.Leg, a.Cause = Problem, bt.Leg, bt.Cause
		a.Summary = fmt.Sprintf("no: with the backup %s alone no tunnel came up (%s / %s); %s", bk.Name, bt.Leg, bt.Cause, describeAttempt(D))
	case bt.Verified() < len(bt.Flows):
		a.Level = Problem
		a.Summary = fmt.Sprintf("the tunnel came up on the backup %s but only %d/%d flows were verified", bk.Name, bt.Verified(), len(bt.Flows))
	case bt.Transport == tunnel.TransportTLS && dtls.Level == OK:
		a.Level = Warn
		a.Summary = fmt.Sprintf("works over TLS only on the backup: DTLS passes to the primary, but the client reached the backup %s over TLS", bk.Name)
	case failedBefore(bt) > 0:
		a.Level = Warn
		a.Summary = fmt.Sprintf("works only after %d failed attempt(s) of the client at the backup %s, then up over %s; %s", failedBefore(bt), bk.Name, bt.Transport, describeAttempt(D))
	default:
		a.Level = OK
		a.Summary = fmt.Sprintf("survives: the backup %s alone takes the tunnel over %s, %d/%d flows verified; %s", bk.Name, bt.Transport, bt.Verified(), len(bt.Flows), describeAttempt(D))
	}
	return a
}

func (c *conclusion) learning() Answer {
	a := Answer{ID: AnswerLearning, Topic: "Does the firewall learn to stop intercepting?", From: []string{"step 5"}, Level: OK}
	A, _ := c.o.attempt("A")
	if A.Passed() {
		a.Summary = "not asked: the first attempt passed"
		return a
	}
	for i, l := range c.o.Learning {
		if l.Passed() {
			a.Level = Warn
			a.Summary = fmt.Sprintf("yes: after %d failed attempt(s) the firewall passed the gateway undecrypted (%s later): an exclusion cache keyed on the server; how long it lasts is beyond a 60 s run", i+1, fmtMS(l.Start.Sub(A.Start).Milliseconds()))
			c.find(FindingExclusionLearned, []string{"attempt A", l.Key}, "the firewall stopped intercepting %s after %d failure(s)", A.Addr, i+1)
			return a
		}
	}
	a.Summary = fmt.Sprintf("no: %d more attempts met the same (%s)", len(c.o.Learning), lastOutcome(c.o.Learning))
	return a
}

func fmtMS(ms int64) string { return fmt.Sprintf("%.1fs", float64(ms)/1000) }

func lastOutcome(as []Attempt) string {
	if len(as) == 0 {
		return "-"
	}
	l := as[len(as)-1]
	if l.Outcome == Failed {
		return fmt.Sprintf("%s / %s", l.Leg, l.Cause)
	}
	return string(l.Outcome)
}

func (c *conclusion) tunnel() Answer {
	t := c.o.Tunnel
	a := Answer{ID: AnswerTunnel, Topic: "Does the real tunnel carry flows intact?", From: []string{"step 6: the pinwall client, auto transport, " + strings.Join(t.Gateways, " then ")}}
	switch {
	case !t.Up:
		a.Level, a.Leg, a.Cause = Problem, t.Leg, t.Cause
		a.Summary = fmt.Sprintf("no tunnel: %s / %s; fail-close: the probe's flows were refused, none went direct", t.Leg, t.Cause)
		c.find(FindingTunnelDown, a.From, "no tunnel came up: %s", orDash(t.Error))
	case t.Verified() < len(t.Flows):
		a.Level = Problem
		a.Summary = fmt.Sprintf("up over %s to %s, but only %d/%d flows verified by SHA-256", t.Transport, t.Gateway, t.Verified(), len(t.Flows))
	default:
		a.Level = OK
		a.Summary = fmt.Sprintf("up over %s to %s, %d/%d flows verified by SHA-256 both ways", t.Transport, t.Gateway, t.Verified(), len(t.Flows))
		if t.Via != "" {
			a.Summary += " (through the proxy " + t.Via + ")"
		}
		if t.Gateway != c.res.Primary.Name {
			a.Summary += "; the client failed over from the primary"
		}
	}
	return a
}

func (c *conclusion) questions() []Question {
	r := c.res
	get := r.Answer
	q1 := Question{N: 1, Title: "What does the firewall do with the tunnel's traffic?", From: []string{"steps 1, 2, 6"}}
	q1.Answer = fmt.Sprintf("UDP/443: %s. TCP/443: %s. The tunnel: %s.", get(AnswerDTLS).Summary, get(AnswerTLS).Summary, get(AnswerTunnel).Summary)
	q2 := Question{N: 2, Title: "Can the firewall decrypt the tunnel? Why not?", From: []string{"steps 2, 3, 5"}}
	A, _ := c.o.attempt("A")
	switch {
	case A.Intercepted():
		q2.Answer = fmt.Sprintf("It tries: it presented %s; the probe pins the gateway's key and refused it. ", A.Chain.Leaf)
	case A.Passed():
		q2.Answer = "It does not try on the gateway's own connection: the pinned chain came through. "
	default:
		q2.Answer = fmt.Sprintf("The connection ended before any certificate (%s / %s). ", A.Leg, A.Cause)
	}
	q2.Answer += "The device certificate: " + get(AnswerDevice).Summary + ". Learning: " + get(AnswerLearning).Summary + "."
	q3 := Question{N: 3, Title: "What is the bypass keyed on, and is it correct and narrow?", From: []string{"step 4", "step 6 (backup)"}}
	q3.Answer = sentence(get(AnswerBypass).Summary) + ". Backup: " + get(AnswerFailover).Summary + "."
	return []Question{q1, q2, q3}
}

// failedBefore counts the client's failed attempts over the transport its
// tunnel came up on, before it came up (a DTLS attempt before a fallback
// to TLS is the transport's answer, not a failure of the tunnel).
func failedBefore(t *TunnelResult) int {
	n := 0
	for _, h := range t.History {
		if h.Event == client.EventUp {
			break
		}
		if h.Event == client.EventAttemptFailed && h.Transport == t.Transport {
			n++
		}
	}
	return n
}

// UnmarshalText reads what MarshalText writes.
func (l *Level) UnmarshalText(b []byte) error {
	switch string(b) {
	case "OK":
		*l = OK
	case "WARN":
		*l = Warn
	case "PROBLEM":
		*l = Problem
	default:
		return fmt.Errorf("probe: level %q is not OK, WARN or PROBLEM", b)
	}
	return nil
}

// sentence capitalizes s's first letter.
func sentence(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}
