package main

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/pinwall/pinwall/client"
	"github.com/pinwall/pinwall/harness"
	"github.com/pinwall/pinwall/mitm/fwlog"
	"github.com/pinwall/pinwall/mitm/policy"
	"github.com/pinwall/pinwall/strictyaml"
)

// question is one review question and how to answer it from a run.
type question struct {
	topic  string
	plan   harness.Plan
	answer func(obs *harness.Observation) (ok bool, words string)
}

const rogueName = "probe-host"

var rogueAddr = netip.MustParseAddr("10.10.10.66")

func cmdCheck(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("check", "pinwall check --policy FILE [--client FILE]", args, stdout, stderr)
	policyFile := fs.String("policy", "", "your firewall policy (mitm/policy YAML) (required)")
	clientFile := fs.String("client", "", "client settings (YAML: transport, pin, device-cert, trust, fail-mode, except-domains, …)")
	if err := fs.Parse(args); err != nil {
		return flagError(err)
	}
	if *policyFile == "" || fs.NArg() > 0 {
		return usageError("check: --policy FILE is required and takes no other arguments")
	}
	pol, err := policy.Load(*policyFile)
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	var cs harness.ClientSpec
	if *clientFile != "" {
		if err := strictyaml.DecodeFile(*clientFile, &cs); err != nil {
			return &exitError{code: 2, err: err}
		}
	}
	base := harness.Spec{
		Firewall:   &harness.FirewallSpec{Policy: pol},
		Client:     cs,
		ExtraHosts: []harness.HostSpec{{Name: rogueName, Addr: rogueAddr}},
	}
	base.Client.FallbackTimeout = orDuration(base.Client.FallbackTimeout, 500*time.Millisecond)
	base.Client.TunnelWait = orDuration(base.Client.TunnelWait, 3*time.Second)
	base.Client.Keepalive = orDuration(base.Client.Keepalive, 500*time.Millisecond)
	d := base.WithDefaults()
	primary, backup := d.Gateways[0], d.Gateways[len(d.Gateways)-1]
	origin := d.Origins[0].Addr
	gwAddr := primary.Addrs()[0]
	work := harness.Workload{Flows: 6, Concurrency: 3}

	with := func(mut func(*harness.Spec)) harness.Spec {
		s := base
		c := *base.Firewall
		s.Firewall = &c
		mut(&s)
		return s
	}
	tunnelQ := func(topic string, tr client.TransportMode) question {
		return question{
			topic: topic,
			plan:  harness.Plan{Spec: with(func(s *harness.Spec) { s.Client.Transport = tr }), Workload: work, WaitUp: 3 * time.Second},
			answer: func(obs *harness.Observation) (bool, string) {
				return tunnelAnswer(obs, string(tr))
			},
		}
	}
	probe := func(sni string, to netip.AddrPort) harness.Probe {
		return harness.Probe{From: rogueName, To: to, SNI: sni}
	}
	bypassProbes := []harness.Probe{
		probe(primary.Name, netip.AddrPortFrom(origin, 443)),
		probe(primary.Name+".lookalike.test", netip.AddrPortFrom(origin, 443)),
		probe(siblingOf(primary.Name), netip.AddrPortFrom(origin, 443)),
		probe("www.social.test", netip.AddrPortFrom(gwAddr, 8443)),
		{From: rogueName, To: netip.AddrPortFrom(origin, 443), UDP: true},
	}
	questions := []question{
		tunnelQ("Tunnel over DTLS (UDP/443)", client.TransportDTLS),
		tunnelQ("Tunnel over TLS (TCP/443)", client.TransportTLS),
		{
			topic: "Failover to the backup gateway",
			plan: harness.Plan{
				Spec:     base,
				Workload: harness.Workload{Flows: 20, Concurrency: 2, Spacing: 40 * time.Millisecond},
				Events:   []harness.Event{{At: 300 * time.Millisecond, Do: harness.EventGatewayDown, Target: primary.Name}},
				WaitUp:   3 * time.Second,
			},
			answer: func(obs *harness.Observation) (bool, string) {
				ok, words := tunnelAnswer(obs, "")
				if ok && obs.Tunnel.Gateway != backup.Name {
					return false, "the client did not end on the backup " + backup.Name
				}
				return ok, words
			},
		},
		{
			topic:  "Over-bypass: spoofed, look-alike and sibling names, other ports, UDP elsewhere",
			plan:   harness.Plan{Spec: base, Workload: harness.Workload{Flows: 1}, Probes: bypassProbes, WaitUp: 3 * time.Second},
			answer: func(obs *harness.Observation) (bool, string) { return overBypassAnswer(obs, bypassProbes) },
		},
	}
	fmt.Fprintf(stdout, "Reviewing %s (%d rules) against the tunnel of an endpoint client (%s)…\n\n", *policyFile, len(pol.Rules), describeClient(d.Client))
	results := make([]struct {
		ok    bool
		words string
		err   error
	}, len(questions))
	var wg sync.WaitGroup
	sem := make(chan struct{}, 2)
	for i, q := range questions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			obs, err := harness.InProcess{}.Run(ctx, q.plan)
			if err != nil {
				results[i].err = err
				return
			}
			results[i].ok, results[i].words = q.answer(obs)
		}()
	}
	wg.Wait()
	if ctx.Err() != nil {
		return &exitError{code: 1, err: fmt.Errorf("interrupted")}
	}
	problems := 0
	for i, q := range questions {
		r := results[i]
		verdict := "OK     "
		switch {
		case r.err != nil:
			verdict, r.words = "ERROR  ", r.err.Error()
			problems++
		case !r.ok:
			verdict = "PROBLEM"
			problems++
		}
		fmt.Fprintf(stdout, "%s  %s\n         %s\n\n", verdict, q.topic, strings.ReplaceAll(r.words, "\n", "\n         "))
	}
	if problems > 0 {
		return &exitError{code: 1, err: fmt.Errorf("%d of %d review questions show a problem", problems, len(questions))}
	}
	fmt.Fprintln(stdout, "No problem found: the tunnel survives on both transports and through failover, and nothing else rides the bypass.")
	return nil
}

func orDuration(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

// siblingOf makes a name next to name under the same parent domain.
func siblingOf(name string) string {
	if i := strings.IndexByte(name, '.'); i > 0 {
		return "gateway-othertenant" + name[i:]
	}
	return "other." + name
}

func describeClient(c harness.ClientSpec) string {
	return fmt.Sprintf("transport %s, pin %s, device certificate %s, fail-%s", c.Transport, c.Pin, c.DeviceCert, c.FailMode)
}

// tunnelAnswer explains whether the tunnel survived, in words.
func tunnelAnswer(obs *harness.Observation, want string) (bool, string) {
	var via []string
	for _, r := range obs.Firewall {
		if r.Src.Addr() == obs.Roles.Laptop && obs.Roles.IsGateway(r.Dst.Addr()) {
			via = append(via, describeRecord(r))
		}
	}
	seen := uniq(via)
	s := obs.Summary
	if obs.Tunnel.Up && s.Verified == s.Attempted && (want == "" || string(obs.Tunnel.Transport) == want) {
		return true, fmt.Sprintf("survives: tunnel up over %s to %s, %d/%d flows verified; the firewall logged %s",
			obs.Tunnel.Transport, obs.Tunnel.Gateway, s.Verified, s.Attempted, strings.Join(seen, "; "))
	}
	why := obs.ClientErrorText
	if why == "" && !obs.Tunnel.Up {
		why = "no tunnel"
	}
	if why == "" {
		for _, f := range obs.Flows {
			if !f.Verified {
				why = fmt.Sprintf("flow to %s failed: %s", f.Site, f.Error)
				break
			}
		}
	}
	if obs.Tunnel.Up && want != "" && string(obs.Tunnel.Transport) != want {
		why = fmt.Sprintf("the tunnel only came up over %s", obs.Tunnel.Transport)
	}
	return false, fmt.Sprintf("FAILS: %d/%d flows verified; %s; the firewall logged %s", s.Verified, s.Attempted, why, strings.Join(seen, "; "))
}

func describeRecord(r fwlog.Record) string {
	s := fmt.Sprintf("%s/%d %s rule %q", r.Proto, r.Dst.Port(), r.App, r.Rule)
	if r.Decryption != nil {
		s += " " + string(r.Decryption.Outcome)
		if r.Decryption.Cause != "" {
			s += fmt.Sprintf(" (%s on %s)", r.Decryption.Cause, r.Decryption.Leg)
		}
	} else {
		s += " " + string(r.Action)
	}
	return s
}

func uniq(xs []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, x := range xs {
		if !seen[x] {
			seen[x] = true
			out = append(out, x)
		}
	}
	if len(out) == 0 {
		return []string{"nothing"}
	}
	return out
}

// overBypassAnswer reads what the firewall did with each probe.
func overBypassAnswer(obs *harness.Observation, probes []harness.Probe) (bool, string) {
	ok := true
	var lines []string
	for _, p := range probes {
		var rec *fwlog.Record
		for i := range obs.Firewall {
			r := &obs.Firewall[i]
			if r.Src.Addr() == rogueAddr && r.Dst == p.To && (p.UDP == (r.Proto == fwlog.ProtoUDP)) && (p.UDP || r.SNI == p.SNI) {
				rec = r
			}
		}
		what := fmt.Sprintf("SNI %s to %s", p.SNI, p.To)
		if p.UDP {
			what = fmt.Sprintf("UDP/443 (QUIC) to a non-gateway address %s", p.To)
		}
		if rec == nil {
			lines = append(lines, "- "+what+": no firewall record (not seen)")
			continue
		}
		// Over-bypassed means a bypass (no-decrypt) rule or an exclusion
		// let it through; a plain allow or the default is not a bypass.
		passedUndecrypted := rec.Action == fwlog.ActionAllow && rec.Decryption != nil &&
			(rec.Decryption.Outcome == fwlog.OutcomeNotDecrypted || rec.Decryption.Outcome == fwlog.OutcomeExcluded)
		if p.UDP {
			if rec.Action == fwlog.ActionAllow {
				lines = append(lines, fmt.Sprintf("- %s: allowed by rule %q (QUIC can dodge decryption; fine only if intended)", what, rec.Rule))
			} else {
				lines = append(lines, fmt.Sprintf("- %s: blocked by rule %q", what, rec.Rule))
			}
			continue
		}
		if passedUndecrypted && rec.EndReason != fwlog.EndDecryptCertValidation {
			ok = false
			advice := "pair the names with the gateway ranges, or add sni-cert-check: strict"
			if p.To.Port() != 443 {
				advice = "restrict the bypass to port 443"
			}
			lines = append(lines, fmt.Sprintf("- %s: OVER-BYPASSED, rule %q passed it undecrypted — %s", what, rec.Rule, advice))
		} else {
			lines = append(lines, fmt.Sprintf("- %s: %s", what, describeRecord(*rec)))
		}
	}
	head := "nothing else rides the bypass"
	if !ok {
		head = "the bypass is broader than the gateways"
	}
	return ok, head + "\n" + strings.Join(lines, "\n")
}
