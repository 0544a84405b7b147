package review

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"time"

	"github.com/pinwall/pinwall/client"
	"github.com/pinwall/pinwall/harness"
	"github.com/pinwall/pinwall/mitm/fwlog"
	"github.com/pinwall/pinwall/mitm/policy"
	"github.com/pinwall/pinwall/pki"
	"github.com/pinwall/pinwall/tunnel"
)

// env is what every question shares: the policy, the client, the topology
// they are tried on and the CAs.
type env struct {
	pol   *policy.Policy
	base  harness.Spec // defaulted
	pki   *pki.Set
	log   *slog.Logger
	limit time.Duration
	// primary and backup are the client's first and last gateways.
	primary, backup harness.GatewaySpec
	// ranges are the gateway ranges advice names: the policy's own
	// prefixes that hold gateway addresses, completed with the pools of
	// the gateways they miss.
	ranges []netip.Prefix
}

func newEnv(in Input, opts Options) (*env, error) {
	e := &env{pol: in.Policy, pki: opts.PKI, log: opts.Logger, limit: opts.Limit}
	if e.log == nil {
		e.log = slog.New(slog.DiscardHandler)
	}
	if e.limit <= 0 {
		e.limit = 30 * time.Second
	}
	base := harness.Spec{
		Firewall:   &harness.FirewallSpec{Policy: in.Policy},
		Client:     in.Client,
		ExtraHosts: []harness.HostSpec{{Name: rogueName, Addr: rogueAddr}},
	}
	if base.Client.FallbackTimeout == 0 {
		base.Client.FallbackTimeout = 500 * time.Millisecond
	}
	if base.Client.Keepalive == 0 {
		base.Client.Keepalive = 500 * time.Millisecond
	}
	e.base = base.WithDefaults()
	if err := e.base.Validate(); err != nil {
		return nil, fmt.Errorf("review: client: %w", err)
	}
	if e.pki == nil {
		set, err := pki.NewSet(pki.Config{}, e.base.Tenant)
		if err != nil {
			return nil, err
		}
		e.pki = set
	}
	names := e.base.Client.Gateways
	e.primary, e.backup = e.gateway(names[0]), e.gateway(names[len(names)-1])
	e.ranges = gatewayRanges(in.Policy, e.base.Gateways)
	return e, nil
}

func (e *env) gateway(name string) harness.GatewaySpec {
	for _, g := range e.base.Gateways {
		if g.Name == name {
			return g
		}
	}
	return harness.GatewaySpec{Name: name}
}

// questions lists what to ask of this policy and client.
func (e *env) questions() []question {
	qs := []question{
		{"dtls", "Tunnel over DTLS (UDP/443)", askDTLS},
		{"tls", "Tunnel over TLS (TCP/443)", askTLS},
		{"failover", "Failover to the backup gateway", askFailover},
		{"over-bypass", "Over-bypass: spoofed, look-alike and sibling names, other ports, QUIC elsewhere", askOverBypass},
		{"regional", "A regional gateway name (" + e.regional().Name + ")", askRegional},
	}
	if len(e.fqdnRules()) > 0 {
		qs = append(qs, question{"fqdn-drift", "FQDN address objects against the gateway's DNS", askFQDN})
	}
	return append(qs, question{"lint", "Policy lint: shadowed rules, UDP decryption, bypass rules that match nothing the tunnel sends", askLint})
}

// signal is a fwlog.Logger that wakes a waiter at each record.
type signal chan struct{}

func (s signal) Log(fwlog.Record) error {
	s.wake()
	return nil
}

// wake wakes the waiter without a record: for a condition that no record
// or client change signals (a probe's answer).
func (s signal) wake() {
	select {
	case s <- struct{}{}:
	default:
	}
}

// lab is one question's running topology.
type lab struct {
	e    *env
	topo *harness.Topology
	sig  signal
	// round is the client's current round of attempts (see givenUp).
	round round
}

// round is a round of the client's attempts at its gateways: from the
// history index start on, with excl decryption exclusions learned before
// it.
type round struct{ start, excl, n int }

// maxRounds bounds the rounds givenUp waits for while the firewall keeps
// learning exclusions.
const maxRounds = 4

// start starts spec in process, with the client unless noClient.
func (e *env) start(ctx context.Context, spec harness.Spec, noClient bool) (*lab, error) {
	l := &lab{e: e, sig: make(signal, 1)}
	topo, err := harness.StartInProcess(ctx, spec, harness.Options{Logger: e.log, PKI: e.pki, NoClient: noClient, Records: l.sig})
	if err != nil {
		return nil, err
	}
	l.topo = topo
	return l, nil
}

// with returns the base spec changed by mut (the firewall spec copied).
func (e *env) with(mut func(*harness.Spec)) harness.Spec {
	s := e.base
	fw := *e.base.Firewall
	s.Firewall = &fw
	s.Client.Gateways = slices.Clone(e.base.Client.Gateways)
	mut(&s)
	return s
}

// until waits until done reports true, re-checking at each change of the
// client, each firewall record and each l.sig.wake; it returns ctx's error
// if ctx ends first. A condition that changes with none of those must
// wake l.sig itself, or until waits out ctx.
func (l *lab) until(ctx context.Context, done func() bool) error {
	for {
		var changed <-chan struct{}
		if l.topo.Client != nil {
			changed = l.topo.Client.Changed()
		}
		if done() {
			return nil
		}
		select {
		case <-changed:
		case <-l.sig:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// finish ends the run so that the firewall's log is complete: the client
// closes (an attempt in flight is cut short: the answer is known), the
// firewall's TCP sessions end and are logged, its UDP flows are flushed.
// It returns the firewall's records.
func (l *lab) finish() []fwlog.Record {
	if l.topo.Client != nil {
		l.topo.Client.Close()
	}
	fw := l.topo.Firewall
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	// A session leaves the count after its record is logged, so no signal
	// follows the last one: the count is read again every few milliseconds.
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for fw.ActiveSessions() > 0 && ctx.Err() == nil {
		select {
		case <-tick.C:
		case <-ctx.Done():
		}
	}
	fw.Close()
	return fw.Records()
}

func (l *lab) close() { l.topo.Close() }

// flows runs n verified flows through the client's tunnel.
func (l *lab) flows(ctx context.Context, n int) (verified int, why string) {
	w := harness.Workload{Flows: n, Concurrency: n, Timeout: 10 * time.Second}.WithDefaults(l.topo.Spec)
	for _, o := range harness.RunWorkload(ctx, l.topo.Client, l.topo.AppTrust(), w) {
		if o.Verified {
			verified++
		} else if why == "" {
			why = fmt.Sprintf("flow to %s failed: %s", o.Site, o.Error)
		}
	}
	return verified, why
}

// attempts counts, per gateway, the client's failed attempts from history
// index from on: attempts that failed in their final step (TLS in auto and
// tls mode, DTLS in dtls mode).
func attempts(h []client.Transition, from int, mode client.TransportMode) map[string]int {
	final := tunnel.TransportTLS
	if mode == client.TransportDTLS {
		final = tunnel.TransportDTLS
	}
	n := map[string]int{}
	for _, t := range h[min(from, len(h)):] {
		if t.Event == client.EventAttemptFailed && t.Transport == final {
			n[t.Gateway]++
		}
	}
	return n
}

// exhausted reports whether every gateway of gws has failed the client's
// full quota of attempts since history index from.
func (l *lab) exhausted(gws []string, from int) bool {
	cfg := l.topo.Client.Config()
	n := attempts(l.topo.Client.History(), from, cfg.Transport)
	for _, g := range gws {
		if n[g] < cfg.AttemptsPerGateway {
			return false
		}
	}
	return true
}

// resetRounds starts counting the client's rounds of attempts at history
// index from.
func (l *lab) resetRounds(from int) {
	l.round = round{start: from, excl: len(l.topo.Firewall.Exclusions())}
}

// givenUp reports whether the tunnel will not come up: every attempt of a
// round at gws failed, and the firewall learned no decryption exclusion
// during it (an exclusion learned from a failure lets the next round
// through, as on a PAN-OS that learns). When it learned one, a new round
// starts.
func (l *lab) givenUp(gws []string) bool {
	if !l.exhausted(gws, l.round.start) {
		return false
	}
	if n := len(l.topo.Firewall.Exclusions()); n > l.round.excl && l.round.n < maxRounds {
		l.round = round{start: len(l.topo.Client.History()), excl: n, n: l.round.n + 1}
		return false
	}
	return true
}

// upSince returns the first "up" transition at or after history index from.
func upSince(h []client.Transition, from int) *client.Transition {
	for i := min(from, len(h)); i < len(h); i++ {
		if h[i].Event == client.EventUp {
			return &h[i]
		}
	}
	return nil
}

// tunnelRecords are the firewall's records of the laptop's sessions to the
// addresses of gateway g (every gateway when g is empty).
func (l *lab) tunnelRecords(recs []fwlog.Record, g string) []fwlog.Record {
	roles := harness.RolesOf(l.topo.Spec)
	var out []fwlog.Record
	for _, r := range recs {
		if r.Src.Addr() != roles.Laptop {
			continue
		}
		if g == "" && roles.IsGateway(r.Dst.Addr()) || slices.Contains(roles.Gateways[g], r.Dst.Addr()) {
			out = append(out, r)
		}
	}
	return out
}
