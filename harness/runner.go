package harness

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/pinwall/pinwall/capture"
	"github.com/pinwall/pinwall/client"
	"github.com/pinwall/pinwall/failure"
	"github.com/pinwall/pinwall/fault"
	"github.com/pinwall/pinwall/hostnet"
	"github.com/pinwall/pinwall/mitm/policy"
	"github.com/pinwall/pinwall/pki"
)

// InProcess runs plans on a hostnet.Sim: every host on its own loopback
// address, no privileges, no Docker.
type InProcess struct {
	// Logger receives the components' operational logs; nil discards.
	Logger *slog.Logger
	// Dir, if set, receives the CAs and logs of each run (overwritten).
	Dir string
	// PKI, if set, is shared by every run instead of a new set per run.
	PKI *pki.Set
	// Capture records each run's packets, every leg of the topology, with
	// the session secrets inside (Observation.Capture). Off by default:
	// it costs memory and time.
	Capture bool
	// SnapLen bounds the payload a captured flow keeps in each direction;
	// zero means capture.DefaultSnapLen, negative no limit.
	SnapLen int
}

// Name implements Runner.
func (InProcess) Name() string { return "inproc" }

// Run implements Runner.
func (r InProcess) Run(ctx context.Context, p Plan) (*Observation, error) {
	p.Spec = p.Spec.WithDefaults()
	if err := p.Validate(); err != nil {
		return nil, err
	}
	if fw := p.Spec.Firewall; fw != nil && fw.Kind.IsThirdParty() {
		return nil, fmt.Errorf("%w: the %s firewall runs only in containers (--mode containers), where the kernel redirects the laptop's traffic into it", ErrThirdPartyInProcess, fw.Kind)
	}
	obs := &Observation{Mode: r.Name(), Started: time.Now(), Roles: RolesOf(p.Spec)}
	var rec *capture.Recorder
	if r.Capture {
		rec = capture.New(capture.Config{SnapLen: r.SnapLen, Comment: "pinwall in-process run: packets synthesized from the data path"})
	}
	topo, err := StartInProcess(ctx, p.Spec, Options{Logger: r.Logger, Dir: r.Dir, NoClient: p.Reconnects > 0 || p.Fleet > 0, PKI: r.PKI, Impairable: p.Impairs(), Capture: rec})
	if err != nil {
		return nil, err
	}
	defer topo.Close()
	if p.Fleet > 0 {
		if err := topo.fleet(ctx, p, obs); err != nil {
			return nil, err
		}
	} else if p.Reconnects > 0 {
		if err := topo.reconnects(ctx, p, obs); err != nil {
			return nil, err
		}
	} else {
		topo.exercise(ctx, p, obs)
	}
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if err := topo.Drain(dctx); err != nil {
		return nil, err
	}
	topo.collect(obs)
	if rec != nil {
		// Every component stopped, every connection closed: the last FINs
		// are in.
		_ = topo.Close()
		if obs.Capture, err = CaptureOf(rec, CaptureSynthesized); err != nil {
			return nil, err
		}
	}
	obs.Duration = time.Since(obs.Started)
	return obs, ctx.Err()
}

// exercise waits for the tunnel, runs the workload with the events beside
// it, and records what the client saw.
func (t *Topology) exercise(ctx context.Context, p Plan, obs *Observation) {
	// Start the workload once the tunnel is up or an attempt has failed:
	// flows then wait for a tunnel themselves (TunnelWait), as
	// applications on a laptop do.
	start := time.Now()
	wctx, cancel := context.WithTimeout(ctx, p.UpWait())
	_, _ = t.Client.WaitOutcome(wctx)
	cancel()
	var wg sync.WaitGroup
	evCtx, stopEvents := context.WithCancel(ctx)
	defer stopEvents()
	wg.Add(1)
	eventsDone := make(chan time.Time, 1)
	go func() {
		defer wg.Done()
		obs.Events = RunEvents(evCtx, p.Events, t.Apply, t.log)
		eventsDone <- time.Now()
	}()
	obs.Flows = t.RunWorkload(ctx, p.Workload)
	if len(p.Events) > 0 {
		HoldForReconnection(ctx, t.Client, start, p.Hold, eventsDone)
	} else {
		HoldUntil(ctx, start, p.Hold)
	}
	wg.Wait()
	obs.Probes = t.runProbes(ctx, p.Probes)
	obs.Summary = Summarize(obs.Flows)
	obs.Tunnel = t.Client.State()
	obs.History = t.Client.History()
	ExplainLost(obs.Flows, obs.History)
	if cerr := t.Client.LastError(); cerr != nil {
		obs.ClientError = cerr
	}
	if obs.FirstUp = FirstUp(obs.Tunnel, obs.History); obs.FirstUp != nil {
		obs.UpAfter = obs.FirstUp.Since.Sub(start)
	}
	obs.Recovery = Recovery(obs.History)
}

// FirstUp is the client's state when its tunnel first came up, by its
// history: now (the state at the end) with the first "up" transition's
// gateway, address, transport, tunnel and time; nil if it never came up.
func FirstUp(now client.State, h []client.Transition) *client.State {
	for _, tr := range h {
		if tr.Event == client.EventUp {
			first := now
			first.Up, first.Gateway, first.Addr, first.Transport, first.TunnelID, first.Since = true, tr.Gateway, tr.Addr, tr.Transport, tr.TunnelID, tr.Time
			return &first
		}
	}
	return nil
}

// HoldUntil sleeps until start+hold (or ctx ends): a workload's hold time.
func HoldUntil(ctx context.Context, start time.Time, hold time.Duration) {
	if d := time.Until(start.Add(hold)); d > 0 {
		select {
		case <-time.After(d):
		case <-ctx.Done():
		}
	}
}

// HoldForReconnection is a hold that ends when what it waits for has been
// observed: it sleeps until start+hold, or until ctx ends, or until, after
// the plan's events (the time eventsDone delivers), c's history shows a
// reconnection (ReconnectionObserved). It wakes on the client's changes, not
// on a timer.
func HoldForReconnection(ctx context.Context, c *client.Client, start time.Time, hold time.Duration, eventsDone <-chan time.Time) {
	d := time.Until(start.Add(hold))
	if d <= 0 {
		return
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	var since time.Time
	select {
	case since = <-eventsDone:
	case <-timer.C:
		return
	case <-ctx.Done():
		return
	}
	gateways := c.Config().Gateways
	for {
		changed := c.Changed()
		if ReconnectionObserved(c.History(), since, gateways) {
			return
		}
		select {
		case <-changed:
		case <-timer.C:
			return
		case <-ctx.Done():
			return
		}
	}
}

// ReconnectionObserved reports whether history h shows, from since on, the
// client's tunnel coming up, or every one of gateways tried and failed:
// each with a failed attempt the client did not follow with a fallback to
// TLS at the same gateway (so the attempt had run its course).
func ReconnectionObserved(h []client.Transition, since time.Time, gateways []string) bool {
	tried := map[string]bool{}
	for i, tr := range h {
		if tr.Time.Before(since) {
			continue
		}
		switch tr.Event {
		case client.EventUp:
			return true
		case client.EventAttemptFailed:
			if fallsBack(h[i+1:], tr) {
				continue
			}
			tried[tr.Gateway] = true
		}
	}
	for _, g := range gateways {
		if !tried[g] {
			return false
		}
	}
	return len(gateways) > 0
}

// fallsBack reports whether the failed attempt tr is followed, in its
// session's next transition (among rest), by a fallback at its gateway.
func fallsBack(rest []client.Transition, tr client.Transition) bool {
	for _, n := range rest {
		if n.Session == tr.Session {
			return n.Event == client.EventFallback && n.Gateway == tr.Gateway
		}
	}
	return false
}

// Recovery is the time from the first failed attempt to the first tunnel up
// after it.
func Recovery(h []client.Transition) time.Duration {
	var failed time.Time
	for _, tr := range h {
		switch {
		case tr.Event == client.EventAttemptFailed && failed.IsZero():
			failed = tr.Time
		case tr.Event == client.EventUp && !failed.IsZero():
			return tr.Time.Sub(failed)
		}
	}
	return 0
}

// RunEvents applies a plan's events at their offsets from now, in order,
// recording each; a cancelled ctx stops before the next one. Both runners
// schedule events with it and differ only in apply.
func RunEvents(ctx context.Context, events []Event, apply func(context.Context, Event) error, log *slog.Logger) []AppliedEvent {
	start := time.Now()
	var out []AppliedEvent
	for _, e := range events {
		if wait := time.Until(start.Add(e.At)); wait > 0 {
			select {
			case <-time.After(wait):
			case <-ctx.Done():
				return out
			}
		}
		ae := AppliedEvent{Event: e, Time: time.Now()}
		if err := apply(ctx, e); err != nil {
			ae.Error = err.Error()
			log.Warn("harness: event failed", "event", e.Do, "err", err)
		}
		out = append(out, ae)
	}
	return out
}

// Apply carries out one event now.
func (t *Topology) Apply(ctx context.Context, e Event) error {
	switch e.Do {
	case EventGatewayDown:
		name := e.Target
		if name == "" {
			name = t.Spec.Client.Gateways[0]
		}
		g := t.GatewayByName(name)
		if g == nil {
			return fmt.Errorf("no gateway %q", name)
		}
		// The gateway process stops: its addresses refuse connections.
		return g.Close()
	case EventPolicy:
		if t.Firewall == nil {
			return errors.New("no firewall")
		}
		pol, err := policy.Parse("event-policy.yaml", []byte(e.Policy))
		if err != nil {
			return err
		}
		return t.Firewall.SwapPolicy(pol)
	case EventFirewallPause:
		// In process the firewall's legs stop answering: new connections
		// and every datagram are lost; streams already spliced by the
		// kernel keep flowing (a container pause freezes them too).
		for _, role := range []string{"fw-inside", "fw-outside"} {
			t.Hosts[role].SetDown(true)
			t.Hosts[role].Impair(hostnet.Impairment{Loss: 1})
		}
		select {
		case <-time.After(e.Duration):
		case <-ctx.Done():
		}
		for _, role := range []string{"fw-inside", "fw-outside"} {
			t.Hosts[role].SetDown(false)
			t.Hosts[role].Impair(hostnet.Impairment{})
		}
		return nil
	case EventNetworkChange:
		t.Client.ResetTransport()
		return nil
	case EventImpair:
		if e.Impair == nil {
			return errors.New("an impair event needs an impair section")
		}
		if err := t.ImpairLaptop(*e.Impair); err != nil {
			return err
		}
		if e.Duration > 0 {
			select {
			case <-time.After(e.Duration):
			case <-ctx.Done():
			}
			return t.ImpairLaptop(fault.Impairment{})
		}
		return nil
	case EventFirewallRestart:
		if t.Firewall == nil {
			return errors.New("no firewall")
		}
		return t.Firewall.Restart()
	}
	return fmt.Errorf("unknown event %q", e.Do)
}

func (t *Topology) runProbes(ctx context.Context, probes []Probe) []ProbeResult {
	var out []ProbeResult
	for _, pr := range probes {
		out = append(out, RunProbe(ctx, t.Hosts[pr.From], pr))
	}
	return out
}

// RunProbe makes one probe connection through stack (the laptop's network
// in process, the kernel's in a container).
func RunProbe(ctx context.Context, stack hostnet.Stack, pr Probe) ProbeResult {
	res := ProbeResult{Probe: pr, Handshake: "ok"}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if pr.UDP {
		conn, err := stack.DialContext(pctx, "udp", pr.To.String())
		if err != nil {
			res.Handshake = err.Error()
			return res
		}
		defer conn.Close()
		// A QUIC v1 long-header Initial, as far as a classifier looks.
		if _, err := conn.Write(append([]byte{0xc3, 0, 0, 0, 1, 8}, make([]byte, 1200)...)); err != nil {
			res.Handshake = err.Error()
			return res
		}
		// Wait briefly for an answer: nothing answers QUIC here, but the
		// wait lets the firewall see the datagram before the run ends.
		_ = conn.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		if _, err := conn.Read(make([]byte, 2048)); err != nil {
			res.Handshake = "sent, no answer"
		} else {
			res.Handshake = "sent, answered"
		}
		return res
	}
	conn, err := stack.DialContext(pctx, "tcp", pr.To.String())
	if err == nil {
		tc := tls.Client(conn, &tls.Config{ServerName: pr.SNI, InsecureSkipVerify: true})
		err = tc.HandshakeContext(pctx)
		if err == nil && len(tc.ConnectionState().PeerCertificates) > 0 {
			res.Issuer = tc.ConnectionState().PeerCertificates[0].Issuer.CommonName
		}
		tc.Close()
	}
	if err != nil {
		res.Handshake = err.Error()
	}
	return res
}

// reconnects makes p.Reconnects tunnel attempts from fresh clients.
func (t *Topology) reconnects(ctx context.Context, p Plan, obs *Observation) error {
	cfg, err := t.ClientConfig()
	if err != nil {
		return err
	}
	cfg.AttemptsPerGateway = 1
	stats := &AttemptStats{Causes: map[string]int{}}
	for i := 0; i < p.Reconnects; i++ {
		c, err := client.New(cfg)
		if err != nil {
			return err
		}
		if err := c.Start(ctx); err != nil {
			return err
		}
		wctx, cancel := context.WithTimeout(ctx, p.UpWait())
		st, err := c.WaitOutcome(wctx)
		cancel()
		stats.Total++
		if err != nil {
			stats.Failed++
			stats.Causes[string(failure.CauseOf(err))]++
			obs.ClientError = err
		} else if obs.FirstUp == nil {
			obs.FirstUp = &st
		}
		obs.History = append(obs.History, c.History()...)
		obs.Tunnel = c.State()
		c.Close()
	}
	obs.Attempts = stats
	return nil
}

// collect reads every component's log into obs.
func (t *Topology) collect(obs *Observation) {
	if obs.ClientError != nil {
		obs.ClientErrorText = obs.ClientError.Error()
		obs.ClientLeg, obs.ClientCause = failure.LegOf(obs.ClientError), failure.CauseOf(obs.ClientError)
	}
	obs.Gateway = t.GatewayEvents()
	obs.LaptopDatagrams = t.LaptopDatagrams()
	if t.Firewall != nil {
		obs.Firewall = t.Firewall.Records()
		obs.FQDN = t.Firewall.Engine().FQDNSnapshot()
		if ex := t.Firewall.Exclusions(); len(ex) > 0 {
			obs.Exclusions = ex
		}
	}
}

// fleetRoom is the number of LAN addresses free for a fleet: the LAN's
// usable addresses minus the laptop's, the firewall's and the extra hosts'.
func fleetRoom(spec Spec) int {
	bits := 32 - spec.LAN.Bits()
	if bits > 16 {
		bits = 16 // a /16's worth is more than any fleet run here
	}
	n := 1<<bits - 2 - 2 - len(spec.ExtraHosts)
	return max(n, 0)
}

// FleetAddrs hands out n LAN addresses not used by the topology, from the
// bottom of the LAN up: the fleet's laptops, in both runners.
func FleetAddrs(spec Spec, n int) []netip.Addr {
	used := map[netip.Addr]bool{spec.Laptop: true}
	if fw := spec.Firewall; fw != nil {
		used[fw.Inside] = true
	}
	for _, h := range spec.ExtraHosts {
		used[h.Addr] = true
	}
	out := make([]netip.Addr, 0, n)
	for a := spec.LAN.Masked().Addr().Next(); spec.LAN.Contains(a) && len(out) < n; a = a.Next() {
		if b := a.As4(); b[3] == 0 || b[3] == 255 || used[a] {
			continue
		}
		out = append(out, a)
	}
	return out
}

// fleet runs p.Fleet laptops at once: each a host of its own in the LAN
// with a client and a device certificate of its own, all started
// together, each waited for up to p.UpWait(). The firewall and the
// gateways see every laptop's sessions; obs gets the attempts, the first
// laptop's state and history, and the time until the last tunnel came up.
func (t *Topology) fleet(ctx context.Context, p Plan, obs *Observation) error {
	base, err := t.ClientConfig()
	if err != nil {
		return err
	}
	addrs := FleetAddrs(t.Spec, p.Fleet)
	if len(addrs) < p.Fleet {
		return fmt.Errorf("harness: fleet of %d: only %d free addresses in %s", p.Fleet, len(addrs), t.Spec.LAN)
	}
	clients := make([]*client.Client, len(addrs))
	defer func() {
		for _, c := range clients {
			if c != nil {
				c.Close()
			}
		}
	}()
	for i, a := range addrs {
		h, err := t.Sim.AddHost(fmt.Sprintf("laptop-%04d", i+1), a)
		if err != nil {
			return fmt.Errorf("harness: fleet: %w", err)
		}
		cfg := base
		cfg.Name = fmt.Sprintf("laptop-%04d", i+1)
		cfg.Stack = h
		cfg.Logger = base.Logger.With("laptop", i+1)
		if base.DeviceCert != nil {
			// Every laptop its own device: the laptop's certificate as
			// the spec gives it, issued again for this laptop's user and
			// serial number.
			dc, err := t.PKI.DeviceCert(t.Spec.Tenant, fmt.Sprintf("user%04d@%s.test", i+1, t.Spec.Tenant), fmt.Sprintf("LAPTOP-%04d", i+2))
			if err != nil {
				return fmt.Errorf("harness: fleet: %w", err)
			}
			cfg.DeviceCert = dc
		}
		if clients[i], err = client.New(cfg); err != nil {
			return fmt.Errorf("harness: fleet: %w", err)
		}
	}
	obs.Roles.Fleet = addrs
	start := time.Now()
	for _, c := range clients {
		if err := c.Start(ctx); err != nil {
			return fmt.Errorf("harness: fleet: %w", err)
		}
	}
	outs := make([]FleetMember, len(clients))
	var wg sync.WaitGroup
	for i, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			wctx, cancel := context.WithTimeout(ctx, p.UpWait())
			defer cancel()
			// Failed attempts on the way are the fleet's business (the
			// firewall's log keeps them): wait for the tunnel itself.
			st, err := c.WaitUp(wctx)
			outs[i] = FleetMember{State: st, Err: err, UpAt: time.Now()}
		}()
	}
	wg.Wait()
	for i, c := range clients {
		outs[i].History = c.History()
	}
	SummarizeFleet(obs, start, outs)
	return nil
}

// FleetMember is one fleet laptop's outcome: its tunnel's state when it
// came up (or the wait ended), the error if it never came up, when it came
// up, and its history.
type FleetMember struct {
	State   client.State
	Err     error
	UpAt    time.Time
	History []client.Transition
}

// SummarizeFleet fills obs from a fleet's laptops, all started at start:
// the attempts (a laptop whose tunnel never came up counts as failed, by
// its cause), the first laptop's tunnel, the first tunnel up, every
// history, and the time until the last tunnel came up when all did.
func SummarizeFleet(obs *Observation, start time.Time, members []FleetMember) {
	stats := &AttemptStats{Total: len(members), Causes: map[string]int{}}
	var last time.Duration
	for i, m := range members {
		if m.Err != nil {
			stats.Failed++
			stats.Causes[string(failure.CauseOf(m.Err))]++
			obs.ClientError = m.Err
			continue
		}
		last = max(last, m.UpAt.Sub(start))
		if obs.FirstUp == nil || m.State.Since.Before(obs.FirstUp.Since) {
			st := m.State
			obs.FirstUp = &st
		}
		if i == 0 {
			obs.Tunnel = m.State
		}
	}
	if stats.Failed == 0 {
		stats.AllUpMS = last.Milliseconds()
	}
	for _, m := range members {
		obs.History = append(obs.History, m.History...)
	}
	obs.Attempts = stats
}
