package review

import (
	"context"
	"fmt"

	"github.com/pinwall/pinwall/client"
	"github.com/pinwall/pinwall/harness"
	"github.com/pinwall/pinwall/mitm/policy"
)

// fqdnAttempts is how many fresh clients the FQDN question connects: the
// measured fraction is out of this many tunnel attempts.
const fqdnAttempts = 20

// fqdnRules are the policy's bypass rules whose FQDN objects name a
// gateway.
func (e *env) fqdnRules() []policy.Rule {
	var out []policy.Rule
	for _, r := range e.pol.Rules {
		if len(r.Match.DstFQDN) > 0 && e.aimed(r) {
			out = append(out, r)
		}
	}
	return out
}

// askFQDN measures FQDN drift: fqdnAttempts laptops connect one after the
// other, each resolving the gateway name itself (the name is answered
// from its pool, one address at a time, rotating, as a GSLB answers),
// while the firewall resolves the object on its own schedule. An attempt
// whose session the FQDN rule did not take went to an address the object
// did not hold.
func askFQDN(ctx context.Context, e *env) Answer {
	rule := e.fqdnRules()[0]
	mode := client.TransportTLS
	if rule.Match.Proto == policy.ProtoUDP {
		mode = client.TransportDTLS
	}
	spec := e.with(func(s *harness.Spec) {
		s.Client.Transport = mode
		s.Client.Gateways = []string{e.primary.Name}
	})
	l, err := e.start(ctx, spec, true)
	if err != nil {
		return Answer{Err: err}
	}
	defer l.close()
	cfg, err := l.topo.ClientConfig()
	if err != nil {
		return Answer{Err: err}
	}
	cfg.AttemptsPerGateway = 1
	failed := 0
	for i := 0; i < fqdnAttempts; i++ {
		c, err := client.New(cfg)
		if err != nil {
			return Answer{Err: err}
		}
		if err := c.Start(ctx); err != nil {
			return Answer{Err: err}
		}
		_, err = c.WaitOutcome(ctx)
		c.Close()
		if ctx.Err() != nil {
			return Answer{Err: fmt.Errorf("attempt %d of %d undecided within %v: %w", i+1, fqdnAttempts, e.limit, ctx.Err())}
		}
		if err != nil {
			failed++
		}
	}
	recs := l.finish()
	total, drifted := 0, 0
	fell := map[string]int{}
	for _, r := range l.tunnelRecords(recs, e.primary.Name) {
		if r.Proto != protoOf(mode) {
			continue
		}
		total++
		if r.Rule != rule.Name {
			drifted++
			fell[e.describeRecord(r)]++
		}
	}
	obj := e.pol.Objects.FQDN[rule.Match.DstFQDN[0]].WithDefaults()
	measured := fmt.Sprintf("%d of %d tunnel attempts (%.0f%%) went to gateway addresses the object %s (%s, at most %d addresses, refreshed at most every %v) did not hold",
		drifted, total, pct(drifted, total), rule.Match.DstFQDN[0], obj.FQDN, obj.MaxIPs, obj.MinRefresh)
	a := Answer{Level: OK, Details: []string{fmt.Sprintf("%s is answered one address at a time from %d, rotating, as a GSLB answers; the client and the firewall resolve it independently",
		e.primary.Name, len(e.primary.Addrs()))}}
	for d, n := range fell {
		a.Details = append(a.Details, fmt.Sprintf("%d× the firewall logged %s", n, d))
	}
	switch {
	case failed > 0:
		a.Level = Problem
		a.Summary = fmt.Sprintf("FQDN drift: %s; %d of %d attempts failed", measured, failed, fqdnAttempts)
	case drifted > 0:
		a.Level = Warn
		a.Summary = fmt.Sprintf("FQDN drift: %s (another rule let them through)", measured)
	default:
		a.Summary = fmt.Sprintf("no drift measured: %s; an object holds what the firewall resolved, and drifts when the vendor's DNS hands out more addresses", measured)
	}
	if a.Level != OK {
		a.Advice = append(a.Advice, e.changeRule("Replace the FQDN object by the gateway ranges: addresses do not drift", e.withRanges(rule)))
	}
	return a
}

func pct(n, total int) float64 {
	if total == 0 {
		return 0
	}
	return 100 * float64(n) / float64(total)
}
