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
type FirewallRun struct {
	*mitm.Firewall
	// ProxyAddr is the explicit proxy's logical address on the inside leg.
	ProxyAddr netip.AddrPort
	wg        sync.WaitGroup
}

// Close stops the firewall and waits for its listeners' loops.
func (r *FirewallRun) Close() error {
	err := r.Firewall.Close()
	r.wg.Wait()
	return err
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
	fw, err := mitm.New(mitm.Config{
		Outside:  t.Hosts["fw-outside"],
		Policy:   pol,
		CA:       t.PKI.Enterprise,
		Roots:    t.PKI.Internet.Pool(),
		Resolver: t.Zone,
		Writers:  writers,
		Logger:   t.log.With("component", "firewall"),
	})
	if err != nil {
		return fmt.Errorf("harness: firewall: %w", err)
	}
	run := &FirewallRun{Firewall: fw}
	t.Firewall = run
	t.onClose(run.Close)
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
	run.ProxyAddr = proxyL.Addr().(*net.TCPAddr).AddrPort()
	run.serve(func() error { return fw.ServeIntercept(ctx, tcpL) })
	run.serve(func() error { return fw.ServeUDPIntercept(ctx, udpL) })
	run.serve(func() error { return fw.ServeProxy(ctx, proxyL) })
	t.Sim.Route(t.Spec.LAN, hostnet.Router{
		TCP: tcpL.Addr().(*net.TCPAddr).AddrPort(),
		UDP: udpL.LocalAddr().(*net.UDPAddr).AddrPort(),
	})
	return nil
}

// ServeProxyOn also serves the firewall's explicit proxy on l (for
// example a real 127.0.0.1 listener that curl or a browser can use) until
// ctx is done or the firewall closes.
func (r *FirewallRun) ServeProxyOn(ctx context.Context, l net.Listener) {
	r.serve(func() error { return r.Firewall.ServeProxy(ctx, l) })
}

func (r *FirewallRun) serve(f func() error) {
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		_ = f()
	}()
}
