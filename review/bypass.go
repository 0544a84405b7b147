package review

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/pinwall/pinwall/harness"
	"github.com/pinwall/pinwall/mitm/fwlog"
	"github.com/pinwall/pinwall/mitm/policy"
)

// bypassProbe is one connection from a LAN host without the client that
// tries to ride the tunnel's bypass.
type bypassProbe struct {
	what string
	harness.Probe
}

// siblingOf makes a name next to name under the same parent domain.
func siblingOf(name string) string {
	if i := strings.IndexByte(name, '.'); i > 0 {
		return "gateway-othertenant" + name[i:]
	}
	return "other." + name
}

// askOverBypass sends, from a LAN host without the client, TLS hellos
// naming the gateway (and a look-alike and a sibling name) to a SaaS
// origin, a hello to a gateway address on another port, and one QUIC
// datagram to the origin, and reads what the firewall did with each. It is
// decided when every probe's session is in the firewall's log.
func askOverBypass(ctx context.Context, e *env) Answer {
	l, err := e.start(ctx, e.base, true)
	if err != nil {
		return Answer{Err: err}
	}
	defer l.close()
	origin := netip.AddrPortFrom(l.topo.Spec.Origins[0].Addr, 443)
	gw := netip.AddrPortFrom(e.primary.Addrs()[0], 8443)
	probes := []bypassProbe{
		{"spoofed SNI " + e.primary.Name + " to the origin " + origin.String(), harness.Probe{From: rogueName, To: origin, SNI: e.primary.Name}},
		{"look-alike SNI " + e.primary.Name + ".lookalike.test to " + origin.String(), harness.Probe{From: rogueName, To: origin, SNI: e.primary.Name + ".lookalike.test"}},
		{"sibling SNI " + siblingOf(e.primary.Name) + " to " + origin.String(), harness.Probe{From: rogueName, To: origin, SNI: siblingOf(e.primary.Name)}},
		{"SNI www.social.test to a gateway address on another port, " + gw.String(), harness.Probe{From: rogueName, To: gw, SNI: "www.social.test"}},
		{"QUIC (UDP/443) to the origin " + origin.String(), harness.Probe{From: rogueName, To: origin, UDP: true}},
	}
	// The origin answers UDP/443, as a QUIC server would: a datagram the
	// firewall passes is known by its answer.
	echo, err := l.topo.Hosts["origins"].ListenPacket(ctx, "udp", origin.String())
	if err != nil {
		return Answer{Err: fmt.Errorf("review: QUIC stand-in: %w", err)}
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer echo.Close()
	wg.Add(1)
	go func() {
		defer wg.Done()
		serveEcho(echo)
	}()
	answered := make(chan struct{})
	pctx, stop := context.WithCancel(ctx)
	defer stop()
	for _, p := range probes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if p.UDP {
				if sendQUIC(pctx, l.topo.Hosts[rogueName], p.To) {
					close(answered)
					// No firewall record follows an answer that comes
					// after the TCP probes' records: wake the wait.
					l.sig.wake()
				}
				return
			}
			harness.RunProbe(pctx, l.topo.Hosts[rogueName], p.Probe)
		}()
	}
	err = l.until(ctx, func() bool {
		recs := l.topo.Firewall.Records()
		for _, p := range probes {
			if probeRecord(recs, p.Probe) == nil && !(p.UDP && isClosed(answered)) {
				return false
			}
		}
		return true
	})
	stop()
	if err != nil {
		return Answer{Err: fmt.Errorf("probes unanswered within %v: %w", e.limit, err)}
	}
	recs := l.finish()
	a := e.judgeProbes(ctx, l, probes, recs)
	wide, err := e.breadth(ctx, &a)
	if err != nil {
		return Answer{Err: err}
	}
	if len(wide) > 0 && a.Summary == "nothing else rides the bypass" {
		a.Summary = "nothing else rides the bypass by name or port, but it is wider than the tunnel: " + strings.Join(wide, "; ")
	}
	return a
}

func isClosed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// serveEcho answers every datagram with itself until pc closes.
func serveEcho(pc net.PacketConn) {
	buf := make([]byte, 2048)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			return
		}
		_, _ = pc.WriteTo(buf[:n], from)
	}
}

// sendQUIC sends one QUIC-looking Initial to to and reports whether an
// answer came back before ctx ended.
func sendQUIC(ctx context.Context, from interface {
	DialContext(ctx context.Context, network, address string) (net.Conn, error)
}, to netip.AddrPort) bool {
	conn, err := from.DialContext(ctx, "udp", to.String())
	if err != nil {
		return false
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { _ = conn.SetReadDeadline(time.Now()) })
	defer stop()
	// A QUIC v1 long-header Initial, as far as a classifier looks.
	if _, err := conn.Write(append([]byte{0xc3, 0, 0, 0, 1, 8}, make([]byte, 1200)...)); err != nil {
		return false
	}
	_, err = conn.Read(make([]byte, 2048))
	return err == nil
}

// probeRecord is the firewall's record of probe p, or nil.
func probeRecord(recs []fwlog.Record, p harness.Probe) *fwlog.Record {
	for i := range recs {
		r := &recs[i]
		if r.Src.Addr() == rogueAddr && r.Dst == p.To && p.UDP == (r.Proto == fwlog.ProtoUDP) && (p.UDP || r.SNI == p.SNI) {
			return r
		}
	}
	return nil
}

// judgeProbes grades what the firewall did with each probe: a TLS session
// passed undecrypted by a bypass is a problem; QUIC to a site whose TCP/443
// the policy decrypts is a warning (browsers use QUIC and skip
// inspection).
func (e *env) judgeProbes(ctx context.Context, l *lab, probes []bypassProbe, recs []fwlog.Record) Answer {
	a := Answer{Level: OK}
	var holes []string
	advised := map[string]bool{}
	for _, p := range probes {
		rec := probeRecord(recs, p.Probe)
		if rec == nil {
			a.Details = append(a.Details, p.what+": no firewall record")
			continue
		}
		if p.UDP {
			e.judgeQUIC(ctx, l, p, rec, &a)
			continue
		}
		passed := rec.Action == fwlog.ActionAllow && rec.Decryption != nil &&
			(rec.Decryption.Outcome == fwlog.OutcomeNotDecrypted || rec.Decryption.Outcome == fwlog.OutcomeExcluded) &&
			rec.EndReason != fwlog.EndDecryptCertValidation
		if !passed {
			a.Details = append(a.Details, p.what+": "+e.describeRecord(*rec))
			continue
		}
		a.Level = Problem
		holes = append(holes, p.what)
		a.Details = append(a.Details, fmt.Sprintf("%s: OVER-BYPASSED, %s passed it undecrypted", p.what, e.ruleRef(rec.Rule)))
		rule := e.ruleByName(rec.Rule)
		if rule == nil || advised[rec.Rule+p.To.String()] {
			continue
		}
		advised[rec.Rule+p.To.String()] = true
		if p.To.Port() != 443 {
			r := *rule
			r.Match.Port = []policy.PortRange{policy.Port(443)}
			a.Advice = append(a.Advice, e.changeRule("Restrict the bypass to port 443, the tunnel's", r))
			continue
		}
		if advised[rec.Rule] {
			continue
		}
		advised[rec.Rule] = true
		a.Advice = append(a.Advice, e.changeRule("Pair the names with the gateway ranges, so a hello naming the gateway towards any other address is inspected", e.withRanges(*rule)))
		strict := *rule
		strict.Options.SNICertCheck = policy.SNICertCheckStrict
		a.Advice = append(a.Advice, e.changeRule("Or check that the server's certificate covers the name (FortiOS sni-server-cert-check strict)", strict))
	}
	switch {
	case a.Level == Problem:
		a.Summary = "the bypass is broader than the gateways: " + strings.Join(holes, "; ")
	case a.Level == Warn:
		a.Summary = "nothing else rides the bypass, but QUIC to sites passes uninspected"
	default:
		a.Summary = "nothing else rides the bypass"
	}
	return a
}

// judgeQUIC grades the QUIC probe: allowed to a site whose TCP/443 the
// policy decrypts, browsers dodge inspection.
func (e *env) judgeQUIC(ctx context.Context, l *lab, p bypassProbe, rec *fwlog.Record, a *Answer) {
	if rec.Action != fwlog.ActionAllow {
		a.Details = append(a.Details, fmt.Sprintf("%s: blocked by %s", p.what, e.ruleRef(rec.Rule)))
		return
	}
	tcp := l.topo.Firewall.Engine().Decide(ctx, policy.Session{Src: rec.Src, Dst: p.To, Proto: policy.ProtoTCP, SNI: l.topo.Spec.Origins[0].Name, HasSNI: true, App: policy.AppSSL})
	if tcp.Action != policy.ActionDecrypt {
		a.Details = append(a.Details, fmt.Sprintf("%s: allowed by %s (TCP/443 to it is not decrypted either)", p.what, e.ruleRef(rec.Rule)))
		return
	}
	a.Level = max(a.Level, Warn)
	a.Details = append(a.Details, fmt.Sprintf("%s: allowed by %s, while TCP/443 to it is decrypted by %s: browsers use QUIC and skip inspection", p.what, e.ruleRef(rec.Rule), e.ruleRef(tcp.RuleName)))
	block := policy.Rule{Name: e.freeName("block-quic"), Action: policy.ActionBlock,
		Match: policy.Match{Proto: policy.ProtoUDP, Port: []policy.PortRange{policy.Port(443)}}}
	a.Advice = append(a.Advice, e.addRule("Block QUIC so browsers fall back to TCP, where the policy inspects (after the rule that allows UDP/443 to the gateways)", rec.Rule, block))
}
