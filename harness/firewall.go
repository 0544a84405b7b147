package harness

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sync"

	"github.com/pinwall/pinwall/hostnet"
	"github.com/pinwall/pinwall/mitm"
	"github.com/pinwall/pinwall/mitm/fwlog"
	"github.com/pinwall/pinwall/mitm/policy"
)

// DefaultPolicyYAML is the firewall policy when a Spec gives none: allow
// everything without decryption, the "no decryption" setting of the
// visibility row.
const DefaultPolicyYAML = `rules:
  - name: allow-all
    action: allow
`

// firewallLogFiles are the firewall's logs in Options.Dir, one per format,
// named as in pinwall run's evidence bundle (reports.FirewallJSONL, ...).
var firewallLogFiles = []struct {
	name   string
	format fwlog.Format
}{
	{"firewall.jsonl", fwlog.FormatJSON},
	{"firewall.pan-traffic.csv", fwlog.FormatPANTraffic},
	{"firewall.pan-decryption.csv", fwlog.FormatPANDecryption},
	{"firewall.fortios.log", fwlog.FormatFortiOS},
	{"firewall.cef.log", fwlog.FormatCEF},
}

// LoadPolicy returns the firewall spec's rule base.
func (fs *FirewallSpec) LoadPolicy() (*policy.Policy, error) {
	switch {
	case fs.Policy != nil:
		return fs.Policy, nil
	case fs.PolicyYAML != "":
		name := fs.PolicyFile
		if name == "" {
			name = "policy.yaml"
		}
		return policy.Parse(name, []byte(fs.PolicyYAML))
	case fs.PolicyFile != "":
		return policy.Load(fs.PolicyFile)
	}
	return policy.Parse("default-policy.yaml", []byte(DefaultPolicyYAML))
}

// FirewallRun is the firewall of a running topology with its listeners.
// Restart replaces the firewall component by a new one; the methods
// defined here always speak to the current one (and Records also returns
// what the ones before it logged). The embedded *mitm.Firewall is the
// current one too, but is read without a lock: use Current while a
// Restart may be under way.
type FirewallRun struct {
	*mitm.Firewall
	// ProxyAddr is the explicit proxy's logical address on the inside leg.
	ProxyAddr netip.AddrPort

	t   *Topology
	cfg mitm.Config

	mu       sync.Mutex
	past     []fwlog.Record
	restarts int
	wg       sync.WaitGroup
}

func (r *FirewallRun) current() *mitm.Firewall {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.Firewall
}

// Current is the running firewall component.
func (r *FirewallRun) Current() *mitm.Firewall { return r.current() }

// Records returns every session record so far, across restarts, oldest
// first.
func (r *FirewallRun) Records() []fwlog.Record {
	r.mu.Lock()
	past, fw := r.past, r.Firewall
	r.mu.Unlock()
	return append(append([]fwlog.Record(nil), past...), fw.Records()...)
}

// Exclusions lists the current firewall's learned decryption exclusions
// (a restart forgets them).
func (r *FirewallRun) Exclusions() []mitm.Exclusion { return r.current().Exclusions() }

// Engine is the current firewall's policy engine.
func (r *FirewallRun) Engine() *policy.Engine { return r.current().Engine() }

// ActiveSessions counts the current firewall's TCP sessions in progress.
func (r *FirewallRun) ActiveSessions() int { return r.current().ActiveSessions() }

// SwapPolicy replaces the rule base for new sessions (and for the
// firewall after a restart).
func (r *FirewallRun) SwapPolicy(p *policy.Policy) error { return r.current().SwapPolicy(p) }

// Restarts counts the restarts so far.
func (r *FirewallRun) Restarts() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.restarts
}

// Close stops the firewall and waits for its listeners' loops.
func (r *FirewallRun) Close() error {
	err := r.current().Close()
	r.wg.Wait()
	return err
}

// Restart stops the firewall — every session ends and is logged, as at
// any shutdown — and starts a new one on the same addresses with the
// policy in force and nothing else: no session, no learned exclusion, no
// FQDN object state. Listeners added with ServeProxyOn are not restarted.
func (r *FirewallRun) Restart() error {
	old := r.current()
	pol := old.Engine().Policy()
	if err := old.Close(); err != nil {
		return fmt.Errorf("harness: firewall restart: stop: %w", err)
	}
	r.wg.Wait()
	cfg := r.cfg
	cfg.Policy = pol
	fw, err := mitm.New(cfg)
	if err != nil {
		return fmt.Errorf("harness: firewall restart: %w", err)
	}
	r.mu.Lock()
	r.past = append(r.past, old.Records()...)
	r.Firewall = fw
	r.restarts++
	r.mu.Unlock()
	if err := r.listen(); err != nil {
		return fmt.Errorf("harness: firewall restart: %w", err)
	}
	r.t.log.Info("harness: firewall restarted", "restarts", r.Restarts())
	return nil
}

func (t *Topology) startFirewall(opts Options) error {
	fs := t.Spec.Firewall
	pol, err := fs.LoadPolicy()
	if err != nil {
		return err
	}
	var writers []fwlog.Logger
	for _, f := range firewallLogFiles {
		w, err := t.logFile(f.name)
		if err != nil {
			return err
		}
		if w != nil {
			writers = append(writers, fwlog.NewWriter(w, f.format))
		}
	}
	if opts.Records != nil {
		writers = append(writers, opts.Records)
	}
	cfg := mitm.Config{
		Outside:  t.Hosts["fw-outside"],
		Policy:   pol,
		CA:       t.PKI.Enterprise,
		Roots:    t.PKI.Internet.Pool(),
		Resolver: t.Zone,
		Writers:  writers,
		Logger:   t.log.With("component", "firewall"),
		// Its sessions' secrets, for a capture (nil: none).
		KeyLogWriter: t.keyLog,
	}
	fw, err := mitm.New(cfg)
	if err != nil {
		return fmt.Errorf("harness: firewall: %w", err)
	}
	run := &FirewallRun{Firewall: fw, t: t, cfg: cfg}
	t.Firewall = run
	t.onClose(run.Close)
	return run.listen()
}

// listen opens the current firewall's listeners on the inside leg (the
// intercept sockets and the explicit proxy) and routes the LAN through
// them.
func (r *FirewallRun) listen() error {
	t, fw := r.t, r.current()
	fs := t.Spec.Firewall
	inside := t.Hosts["fw-inside"]
	ctx := t.ctx
	tcpL, err := inside.Listen(ctx, "tcp", netip.AddrPortFrom(fs.Inside, 0).String())
	if err != nil {
		return fmt.Errorf("harness: firewall intercept: %w", err)
	}
	udpL, err := inside.ListenPacket(ctx, "udp", netip.AddrPortFrom(fs.Inside, 0).String())
	if err != nil {
		tcpL.Close()
		return fmt.Errorf("harness: firewall intercept: %w", err)
	}
	proxyL, err := inside.Listen(ctx, "tcp", netip.AddrPortFrom(fs.Inside, fs.ProxyPort).String())
	if err != nil {
		tcpL.Close()
		udpL.Close()
		return fmt.Errorf("harness: firewall proxy: %w", err)
	}
	r.ProxyAddr = proxyL.Addr().(*net.TCPAddr).AddrPort()
	r.serve(func() error { return fw.ServeIntercept(ctx, tcpL) })
	r.serve(func() error { return fw.ServeUDPIntercept(ctx, udpL) })
	r.serve(func() error { return fw.ServeProxy(ctx, proxyL) })
	t.Sim.Route(t.Spec.LAN, hostnet.Router{
		TCP: tcpL.Addr().(*net.TCPAddr).AddrPort(),
		UDP: udpL.LocalAddr().(*net.UDPAddr).AddrPort(),
	})
	return nil
}

// ServeProxyOn also serves the firewall's explicit proxy on l (for
// example a real 127.0.0.1 listener that curl or a browser can use) until
// ctx is done or the firewall in force closes.
func (r *FirewallRun) ServeProxyOn(ctx context.Context, l net.Listener) {
	fw := r.current()
	r.serve(func() error { return fw.ServeProxy(ctx, l) })
}

func (r *FirewallRun) serve(f func() error) {
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		_ = f()
	}()
}
