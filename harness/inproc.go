package harness

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/pinwall/pinwall/internal/syncbuf"

	"github.com/pinwall/pinwall/capture"
	"github.com/pinwall/pinwall/client"
	"github.com/pinwall/pinwall/fault"
	"github.com/pinwall/pinwall/gateway"
	"github.com/pinwall/pinwall/hostnet"
	"github.com/pinwall/pinwall/mitm/fwlog"
	"github.com/pinwall/pinwall/origin"
	"github.com/pinwall/pinwall/outfile"
	"github.com/pinwall/pinwall/pki"
	"github.com/pinwall/pinwall/resolve"
	"github.com/pinwall/pinwall/tunnel"
)

// Options tune how a topology is started.
type Options struct {
	// Logger receives the components' operational logs; nil discards.
	Logger *slog.Logger
	// Dir, if set, receives the CA certificates and the logs as files.
	Dir string
	// NoClient skips creating the endpoint client.
	NoClient bool
	// NoGateways adds the gateways' hosts (their addresses, routed like
	// any) but starts no gateway on them, for a caller that serves its own
	// there (the field probe's gateway, package fieldgw).
	NoGateways bool
	// PKI, if set, is used instead of a new set of CAs (so a series of runs
	// shares one set, whose fingerprints a report can print).
	PKI *pki.Set
	// Records, if set, receives every firewall session record as the
	// firewall logs it (besides the log files), so a caller can decide
	// from the firewall's log as it grows.
	Records fwlog.Logger
	// Impairable routes the laptop's UDP through a fault.ImpairedStack
	// from the start, so ImpairLaptop can degrade it later (a spec's
	// udp-loss does that by itself).
	Impairable bool
	// Capture, if set, records every connection between the topology's
	// hosts on its leg and collects every component's session secrets.
	Capture *capture.Recorder
	// KeyLogWriter, if set, also receives every component's session
	// secrets in the NSS key log format (the lab's SSLKEYLOGFILE).
	KeyLogWriter io.Writer
}

// Topology is a running set of components.
type Topology struct {
	Spec Spec
	PKI  *pki.Set
	Zone *resolve.Zone

	// Sim is the in-process network (nil in containers).
	Sim *hostnet.Sim
	// Hosts by role: "laptop", "fw-inside", "fw-outside", "origins", the
	// gateway names, and the extra hosts' names.
	Hosts map[string]*hostnet.Host

	Gateways []*gateway.Gateway
	Origins  *origin.Server
	Firewall *FirewallRun
	Client   *client.Client

	// laptopNet is the laptop's network with its datagrams impaired, when
	// the spec has udp-loss or Options.Impairable (nil otherwise).
	laptopNet *fault.ImpairedStack

	gatewayCert *x509.Certificate
	// keyLog receives every component's session secrets; nil: none.
	keyLog io.Writer

	// ctx lives as long as the topology: components that serve until
	// their context ends get this one, not the caller's start context.
	ctx    context.Context
	cancel context.CancelFunc

	log     *slog.Logger
	out     *outfile.Dir // Options.Dir, nil without one
	files   []*os.File
	closers []func() error
	once    sync.Once
}

// GatewayByName returns the gateway serving name, or nil.
func (t *Topology) GatewayByName(name string) *gateway.Gateway {
	for i, g := range t.Spec.Gateways {
		if g.Name == name && i < len(t.Gateways) {
			return t.Gateways[i]
		}
	}
	return nil
}

// GatewayEvents returns every gateway's events.
func (t *Topology) GatewayEvents() []gateway.Event {
	var out []gateway.Event
	for _, g := range t.Gateways {
		out = append(out, g.Events()...)
	}
	return out
}

// Settle waits until every gateway has logged every flow it started, so
// observations taken next are complete. It gives up when ctx ends.
func (t *Topology) Settle(ctx context.Context) error {
	for {
		busy := 0
		for _, g := range t.Gateways {
			busy += g.ActiveFlows()
		}
		if busy == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("harness: %d flows still active: %w", busy, ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// Close stops every component, newest first. It is idempotent.
func (t *Topology) Close() error {
	var errs []error
	t.once.Do(func() {
		for i := len(t.closers) - 1; i >= 0; i-- {
			if err := t.closers[i](); err != nil {
				errs = append(errs, err)
			}
		}
		for _, f := range t.files {
			if err := f.Close(); err != nil {
				errs = append(errs, err)
			}
		}
		if t.out != nil {
			errs = append(errs, t.out.Close())
		}
	})
	return errors.Join(errs...)
}

func (t *Topology) onClose(f func() error) { t.closers = append(t.closers, f) }

// Simulated reports whether host (a name or an IP literal) is part of the
// topology: a name of its zone, or a logical address of one of its hosts.
// Anything else is outside the simulation (a real service on this machine,
// say).
func (t *Topology) Simulated(host string) bool {
	if a, err := netip.ParseAddr(strings.Trim(host, "[]")); err == nil {
		_, ok := t.Sim.Loopback(a)
		return ok
	}
	return t.Zone != nil && len(t.Zone.Pool(host)) > 0
}

// logFile opens Dir/name for writing, or returns nil without a Dir. Like
// every file in Dir it is written without following links (package
// outfile).
func (t *Topology) logFile(name string) (io.Writer, error) {
	if t.out == nil {
		return nil, nil
	}
	f, err := t.out.Create(name, outfile.Public)
	if err != nil {
		return nil, err
	}
	t.files = append(t.files, f)
	return f, nil
}

// StartInProcess builds spec on an in-process network and starts every
// component. ctx bounds the start only: the components run until Close.
// On error (ctx's among them), whatever was started is stopped.
func StartInProcess(ctx context.Context, spec Spec, opts Options) (_ *Topology, err error) {
	spec = spec.WithDefaults()
	if err := spec.Validate(); err != nil {
		return nil, fmt.Errorf("harness: spec: %w", err)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	t := &Topology{Spec: spec, Sim: hostnet.NewSim(log), Hosts: map[string]*hostnet.Host{}, log: log, keyLog: keyLogWriter(opts)}
	if opts.Capture != nil {
		t.Sim.SetTap(t.tapInto(opts.Capture))
	}
	t.ctx, t.cancel = context.WithCancel(context.Background())
	t.onClose(func() error { t.cancel(); return nil })
	defer func() {
		if err != nil {
			t.Close()
		}
	}()
	if opts.Dir != "" {
		if t.out, err = outfile.OpenDir(opts.Dir); err != nil {
			return nil, fmt.Errorf("harness: %w", err)
		}
	}
	t.PKI = opts.PKI
	if t.PKI == nil {
		if t.PKI, err = pki.NewSet(pki.Config{}, spec.Tenant); err != nil {
			return nil, err
		}
	}
	if t.out != nil {
		for name, ca := range map[string]*pki.CA{"internet-ca.pem": t.PKI.Internet, "tenant-ca.pem": t.PKI.Tenant, "enterprise-ca.pem": t.PKI.Enterprise} {
			if err := t.out.WriteFile(name, ca.CertPEM(), outfile.Public); err != nil {
				return nil, fmt.Errorf("harness: %w", err)
			}
		}
	}
	if t.Zone, err = buildZone(spec); err != nil {
		return nil, err
	}
	for _, step := range []func() error{
		t.addHosts,
		func() error {
			if spec.Client.UDPLoss > 0 || opts.Impairable {
				t.laptopNet = fault.NewImpairedStack(t.Hosts["laptop"], fault.Impairment{Loss: spec.Client.UDPLoss, Seed: 1})
			}
			return nil
		},
		func() error { return t.startOrigins(opts) },
		func() error {
			if opts.NoGateways {
				return nil
			}
			return t.startGateways(opts)
		},
		func() error {
			if spec.Firewall == nil {
				return nil
			}
			return t.startFirewall(opts)
		},
		func() error {
			if opts.NoClient {
				return nil
			}
			return t.startClient()
		},
	} {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("harness: start: %w", err)
		}
		if err := step(); err != nil {
			return nil, err
		}
	}
	return t, nil
}

func buildZone(spec Spec) (*resolve.Zone, error) {
	z := &resolve.Zone{}
	for _, g := range spec.Gateways {
		if err := z.Add(resolve.Record{Name: g.Name, Addrs: g.Addrs(), Answer: g.Answer, Rotate: g.Rotate, TTL: g.TTL}); err != nil {
			return nil, err
		}
	}
	for _, o := range spec.Origins {
		if err := z.Add(resolve.Record{Name: o.Name, Addrs: []netip.Addr{o.Addr}}); err != nil {
			return nil, err
		}
	}
	return z, nil
}

func (t *Topology) addHost(role string, addrs ...netip.Addr) error {
	h, err := t.Sim.AddHost(role, addrs...)
	if err != nil {
		return fmt.Errorf("harness: %w", err)
	}
	t.Hosts[role] = h
	return nil
}

func (t *Topology) addHosts() error {
	s := t.Spec
	if err := t.addHost("laptop", s.Laptop); err != nil {
		return err
	}
	for _, h := range s.ExtraHosts {
		if err := t.addHost(h.Name, h.Addr); err != nil {
			return err
		}
	}
	if s.Firewall != nil {
		if err := t.addHost("fw-inside", s.Firewall.Inside); err != nil {
			return err
		}
		if err := t.addHost("fw-outside", s.Firewall.Outside); err != nil {
			return err
		}
	}
	for _, g := range s.Gateways {
		if err := t.addHost(g.Name, g.Addrs()...); err != nil {
			return err
		}
	}
	var oa []netip.Addr
	for _, o := range s.Origins {
		if !containsAddr(oa, o.Addr) {
			oa = append(oa, o.Addr)
		}
	}
	return t.addHost("origins", oa...)
}

func containsAddr(s []netip.Addr, a netip.Addr) bool {
	for _, x := range s {
		if x == a {
			return true
		}
	}
	return false
}

func (t *Topology) startOrigins(opts Options) error {
	var sites []origin.Site
	for _, o := range t.Spec.Origins {
		sites = append(sites, origin.Site{Name: o.Name, Addrs: []netip.Addr{o.Addr}})
	}
	w, err := t.logFile("origins.jsonl")
	if err != nil {
		return err
	}
	srv, err := origin.New(origin.Config{
		Stack:        t.Hosts["origins"],
		Sites:        sites,
		Certificates: func(name string) (*tls.Certificate, error) { return t.PKI.ServerCert(name) },
		Logger:       t.log.With("component", "origins"),
		AccessLog:    w,
		KeyLogWriter: t.keyLog,
	})
	if err != nil {
		return fmt.Errorf("harness: origins: %w", err)
	}
	if err := srv.Start(t.ctx); err != nil {
		return fmt.Errorf("harness: origins: %w", err)
	}
	t.Origins = srv
	t.onClose(srv.Close)
	return nil
}

// gatewayNames lists every gateway name, for the shared server certificate.
func (t *Topology) gatewayNames() []string {
	var names []string
	for _, g := range t.Spec.Gateways {
		names = append(names, g.Name)
	}
	return names
}

func (t *Topology) startGateways(opts Options) error {
	cert, err := t.PKI.ServerCert(t.gatewayNames()...)
	if err != nil {
		return err
	}
	t.gatewayCert = cert.Leaf
	w, err := t.logFile("gateway.jsonl")
	if err != nil {
		return err
	}
	var sw io.Writer
	if w != nil {
		sw = syncbuf.NewWriter(w)
	}
	for _, g := range t.Spec.Gateways {
		gw, err := gateway.New(gateway.Config{
			Name:           g.Name,
			Addr:           netip.AddrPortFrom(netip.IPv4Unspecified(), 443),
			Certificate:    cert,
			ClientCAs:      t.PKI.Tenant.Pool(),
			AllowAnonymous: t.Spec.Gateway.AllowAnonymous,
			MaxStreams:     t.Spec.Gateway.MaxStreams,
			Session:        tunnel.Config{KeepAliveInterval: t.Spec.Gateway.Keepalive},
			Stack:          t.Hosts[g.Name],
			Resolver:       t.Zone,
			Log:            sw,
			Logger:         t.log.With("component", "gateway", "gateway", g.Name),
			KeyLogWriter:   t.keyLog,
		})
		if err != nil {
			return fmt.Errorf("harness: gateway %s: %w", g.Name, err)
		}
		if err := gw.Start(t.ctx); err != nil {
			return fmt.Errorf("harness: gateway %s: %w", g.Name, err)
		}
		t.Gateways = append(t.Gateways, gw)
		t.onClose(gw.Close)
	}
	return nil
}

// ClientConfig builds the endpoint client's configuration for the laptop.
func (t *Topology) ClientConfig() (client.Config, error) {
	cfg, err := t.clientSettings()
	if err != nil {
		return cfg, err
	}
	cfg.Stack = t.LaptopStack()
	cfg.Resolver = t.Zone
	cfg.Logger = t.log.With("component", "client")
	cfg.KeyLogWriter = t.keyLog
	return cfg, nil
}

// LaptopStack is the laptop's network as its client uses it: the
// simulated host, through the impairment when the topology has one.
func (t *Topology) LaptopStack() hostnet.Stack {
	if t.laptopNet != nil {
		return t.laptopNet
	}
	return t.Hosts["laptop"]
}

// ErrNotImpairable is returned by ImpairLaptop on a topology started
// without Options.Impairable and without udp-loss.
var ErrNotImpairable = errors.New("harness: the laptop's datagrams cannot be impaired: start the topology with Options.Impairable (a runner does so for a plan with impair events)")

// ImpairLaptop replaces the impairment of the laptop's datagrams (the
// spec's udp-loss included); a zero one clears it. Sockets already open
// are affected at once.
func (t *Topology) ImpairLaptop(im fault.Impairment) error {
	if t.laptopNet == nil {
		return ErrNotImpairable
	}
	if err := im.Validate(); err != nil {
		return fmt.Errorf("harness: impair: %w", err)
	}
	t.laptopNet.Impair(im)
	return nil
}

// LaptopDatagrams counts what the impairment did to the laptop's
// datagrams (nil when the topology has none).
func (t *Topology) LaptopDatagrams() *fault.Stats {
	if t.laptopNet == nil {
		return nil
	}
	st := t.laptopNet.Stats()
	return &st
}

// clientSettings is the client's configuration minus its network: pins,
// trust, device certificate, steering, timeouts.
func (t *Topology) clientSettings() (client.Config, error) {
	return ClientSettings(t.Spec, t.PKI, t.gatewayCert)
}

// ClientSettings is the laptop client's configuration for spec minus its
// network (stack, resolver, logger): pins, trust, device certificate,
// steering, timeouts. gatewayLeaf is the certificate every gateway serves
// (one key, all names); it may be nil unless the client pins the gateway.
// The container runner writes the same settings into the laptop's node.
func ClientSettings(spec Spec, set *pki.Set, gatewayLeaf *x509.Certificate) (client.Config, error) {
	t := struct {
		Spec Spec
		PKI  *pki.Set
	}{spec, set}
	cs := t.Spec.Client
	cfg := client.Config{
		Name:               "laptop",
		Tenant:             t.Spec.Tenant,
		Gateways:           cs.Gateways,
		Transport:          cs.Transport,
		FallbackTimeout:    cs.FallbackTimeout,
		HandshakeTimeout:   cs.HandshakeTimeout,
		FailMode:           cs.FailMode,
		TunnelWait:         cs.TunnelWait,
		AttemptsPerGateway: cs.AttemptsPerGateway,
		Sessions:           cs.Sessions,
		Steering:           client.Steering{ExceptDomains: cs.ExceptDomains, ExceptCIDRs: cs.ExceptCIDRs},
		Session:            tunnel.Config{KeepAliveInterval: cs.Keepalive},
	}
	pool := x509.NewCertPool()
	for _, tr := range cs.Trust {
		switch tr {
		case TrustInternet:
			pool.AddCert(t.PKI.Internet.Cert)
		case TrustEnterprise:
			pool.AddCert(t.PKI.Enterprise.Cert)
		}
	}
	cfg.RootCAs = pool
	switch cs.Pin {
	case PinGateway:
		if gatewayLeaf == nil {
			return cfg, errors.New("harness: no gateway to pin")
		}
		cfg.Pins = pki.PinSet{pki.SPKIPin(gatewayLeaf)}
	case PinWrong:
		other, err := t.PKI.ServerCert("not-the-gateway.test")
		if err != nil {
			return cfg, err
		}
		cfg.Pins = pki.PinSet{pki.SPKIPin(other.Leaf)}
	}
	switch cs.DeviceCert {
	case DeviceCertValid:
		dc, err := t.PKI.DeviceCert(t.Spec.Tenant, "alice@"+t.Spec.Tenant+".test", "LAPTOP-0001")
		if err != nil {
			return cfg, err
		}
		cfg.DeviceCert = dc
	case DeviceCertForeign:
		rogue, err := pki.NewCA(pki.Config{}, "Some Other Device CA", "other")
		if err != nil {
			return cfg, err
		}
		dc, err := rogue.Issue(pki.Leaf{Subject: pkix.Name{CommonName: "mallory@other.test", SerialNumber: "ROGUE-1"}, Usage: pki.ClientAuth})
		if err != nil {
			return cfg, err
		}
		cfg.DeviceCert = dc
	}
	if cs.UpstreamProxy == "firewall" && t.Spec.Firewall != nil {
		cfg.UpstreamProxy = &url.URL{Scheme: "http", Host: netip.AddrPortFrom(t.Spec.Firewall.Inside, t.Spec.Firewall.ProxyPort).String()}
		// pinwall's firewall resolves pinwall's names: the CONNECT names
		// the gateway, as a laptop's client does, and the firewall logs it.
		cfg.ProxyConnect = client.ProxyConnectName
	}
	return cfg, nil
}

func (t *Topology) startClient() error {
	cfg, err := t.ClientConfig()
	if err != nil {
		return err
	}
	c, err := client.New(cfg)
	if err != nil {
		return fmt.Errorf("harness: %w", err)
	}
	if err := c.Start(t.ctx); err != nil {
		return err
	}
	t.Client = c
	t.onClose(c.Close)
	return nil
}

// DrainGrace bounds how long Drain (and a container client's shutdown)
// waits for a tunnel attempt in flight; SettleGrace how long it (and a
// container client, with client.Settle) lets the gateway finish flows
// before the tunnel closes.
const (
	DrainGrace  = 10 * time.Second
	SettleGrace = 2 * time.Second
)

// Drain ends the run so that every log is complete: the client stops (an
// attempt in flight may finish first) and closes its tunnels, the gateways
// finish logging their flows, the firewall's TCP sessions end and its UDP
// flows are flushed. Components stay readable.
func (t *Topology) Drain(ctx context.Context) error {
	if t.Client != nil {
		// Flows the applications have finished still carry their last
		// bytes at the gateway (the origin's close_notify): let them end
		// there before the tunnel closes under them. A flow that would only
		// end with the tunnel holds this for SettleGrace at most.
		pctx, cancel := context.WithTimeout(ctx, SettleGrace)
		_ = t.Settle(pctx)
		cancel()
		// Let a tunnel attempt in flight end on its own terms, so that the
		// logs show what the firewall and the gateway did with it rather
		// than the harness cutting it short.
		sctx, cancel := context.WithTimeout(ctx, DrainGrace)
		_ = t.Client.Shutdown(sctx)
		cancel()
	}
	if err := t.Settle(ctx); err != nil {
		return err
	}
	if t.Firewall != nil {
		for t.Firewall.ActiveSessions() > 0 {
			select {
			case <-ctx.Done():
				return fmt.Errorf("harness: %d firewall sessions still active: %w", t.Firewall.ActiveSessions(), ctx.Err())
			case <-time.After(5 * time.Millisecond):
			}
		}
		t.Firewall.Close()
	}
	return nil
}
