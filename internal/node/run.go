package node

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"

	"github.com/pinwall/pinwall/gateway"
	"github.com/pinwall/pinwall/harness"
	"github.com/pinwall/pinwall/hostnet"
	"github.com/pinwall/pinwall/mitm"
	"github.com/pinwall/pinwall/mitm/fwlog"
	"github.com/pinwall/pinwall/mitm/policy"
	"github.com/pinwall/pinwall/netsetup"
	"github.com/pinwall/pinwall/origin"
	"github.com/pinwall/pinwall/outfile"
	"github.com/pinwall/pinwall/pki"
	"github.com/pinwall/pinwall/resolve"
	"github.com/pinwall/pinwall/tunnel"
)

// Node file names inside a container.
const (
	ConfigPath = "/etc/pinwall/node.json"
	PolicyPath = "/etc/pinwall/policy.yaml"
	OutDir     = "/out"
)

// Signals are the control signals a node reacts to, delivered by the
// caller (the CLI maps SIGHUP and SIGUSR1 to them).
type Signals struct {
	// Reload asks the firewall to re-read PolicyPath.
	Reload <-chan struct{}
	// NetworkChange tells the client the network changed.
	NetworkChange <-chan struct{}
	// Impair asks the laptop or the firewall to apply ImpairPath.
	Impair <-chan struct{}
	// Start tells a laptop created with Client.WaitStart to start its
	// client (SIGCONT: the laptop's container starts beside the servers
	// and waits for them).
	Start <-chan struct{}
	// EventsDone tells a laptop with Client.EventsSignalled that the
	// runner has applied every event of the plan (SIGWINCH).
	EventsDone <-chan struct{}
}

// Run runs one container role until ctx ends (servers) or its work is
// done (client, probe). It prints MarkerReady once serving.
func Run(ctx context.Context, nc Config, sig Signals, stdout, stderr io.Writer) error {
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	if nc.Out == "" {
		nc.Out = OutDir
	}
	if err := os.MkdirAll(nc.Out, 0o755); err != nil {
		return err
	}
	undo, err := applyNodeNet(ctx, nc)
	if err != nil {
		return fmt.Errorf("%s %s: network: %w", nc.Role, nc.Name, err)
	}
	defer undo()
	if err := applyNetems(nc.Net.Netem); err != nil {
		return fmt.Errorf("%s %s: network: %w", nc.Role, nc.Name, err)
	}
	keys, stopCapture, err := startCapture(ctx, nc)
	if err != nil {
		return fmt.Errorf("%s %s: %w", nc.Role, nc.Name, err)
	}
	defer stopCapture()
	nc.keyLog = keys
	zone, err := resolve.NewZone(nc.Zone...)
	if err != nil {
		return err
	}
	switch nc.Role {
	case RoleGateway:
		return runGatewayNode(ctx, nc, zone, stdout, log)
	case RoleOrigin:
		return runOriginNode(ctx, nc, stdout, log)
	case RoleFirewall:
		return runFirewallNode(ctx, nc, zone, sig, stdout, log)
	case RoleClient:
		if nc.FieldProbe != nil {
			return runFieldProbeNode(ctx, nc, stdout, log)
		}
		fmt.Fprintln(stdout, MarkerReady)
		if nc.Client.WaitStart {
			select {
			case <-sig.Start:
			case <-ctx.Done():
				return fmt.Errorf("%s %s: stopped before it was told to start: %w", nc.Role, nc.Name, ctx.Err())
			}
		}
		err := runClientNode(ctx, nc, hostnet.OS{}, zone, stdout, log, sig)
		if !nc.Client.Fleet { // a fleet's laptop says it itself, then holds its tunnel
			fmt.Fprintln(stdout, MarkerDone)
		}
		return err
	case RoleProbe:
		fmt.Fprintln(stdout, MarkerReady)
		res := runProbesOS(ctx, nc.Probes)
		err := writeJSON(filepath.Join(nc.Out, "probes.json"), res)
		fmt.Fprintln(stdout, MarkerDone)
		return err
	}
	return fmt.Errorf("unknown role %q", nc.Role)
}

func applyNodeNet(ctx context.Context, nc Config) (func() error, error) {
	var cfg netsetup.Config
	for _, o := range nc.Net.Overlays {
		cfg.Overlays = append(cfg.Overlays, netsetup.Overlay{Name: o.Name, VNI: o.VNI, Addr: o.Addr, Underlay: o.Underlay, Peers: o.Peers})
	}
	for _, a := range nc.Net.Addrs {
		cfg.Addrs = append(cfg.Addrs, netsetup.Addr{Prefix: a, Iface: nc.Net.AddrsOn})
	}
	for _, r := range nc.Net.Routes {
		cfg.Routes = append(cfg.Routes, netsetup.Route{Dst: r.Dst, Via: r.Via})
	}
	cfg.DefaultVia = nc.Net.DefaultVia
	if ic := nc.Net.Intercept; ic != nil {
		cfg.Forward = true
		cfg.Intercept = &netsetup.Intercept{LAN: ic.LAN, TCPPorts: ic.TCPPorts, TCPTo: ic.TCPTo, UDPPorts: ic.UDPPorts, UDPTo: ic.UDPTo, Masquerade: ic.LAN,
			TCPRules: ic.TCPRules, UDPRules: ic.UDPRules}
	}
	if len(cfg.Overlays) == 0 && len(cfg.Addrs) == 0 && len(cfg.Routes) == 0 && !cfg.DefaultVia.IsValid() && cfg.Intercept == nil {
		return func() error { return nil }, nil
	}
	return netsetup.Apply(ctx, cfg)
}

// createOut opens an output file in nc.Out for appending, without
// following a link planted there (package outfile): a node restarted in
// the same container (the firewall, by a firewall-restart event) adds to
// what it wrote before rather than losing it.
func createOut(nc Config, name string) (*os.File, error) {
	return outfile.Append(filepath.Join(nc.Out, name), outfile.Public)
}

func runGatewayNode(ctx context.Context, nc Config, zone resolve.Resolver, stdout io.Writer, log *slog.Logger) error {
	gn := nc.Gateway
	if gn.FieldControlName != "" {
		return runFieldGatewayNode(ctx, nc, stdout, log)
	}
	cert, err := parseKeyPair(gn.Cert)
	if err != nil {
		return fmt.Errorf("gateway certificate: %w", err)
	}
	cas, err := poolOf(gn.ClientCA)
	if err != nil {
		return fmt.Errorf("tenant CA: %w", err)
	}
	cfg := gateway.Config{
		Addr: netip.AddrPortFrom(netip.IPv4Unspecified(), 443), Certificate: cert, ClientCAs: cas,
		AllowAnonymous: gn.AllowAnonymous, MaxStreams: gn.MaxStreams, Stack: hostnet.OS{}, Resolver: zone,
		Session: tunnel.Config{KeepAliveInterval: gn.Keepalive},
		Logger:  log, KeyLogWriter: nc.keyLog,
	}
	if len(gn.Hosts) > 0 {
		return runGatewayHosts(ctx, nc, cfg, stdout, log)
	}
	f, err := createOut(nc, "gateway.jsonl")
	if err != nil {
		return err
	}
	defer f.Close()
	cfg.Name, cfg.Log = nc.Name, f
	for _, p := range nc.Net.Addrs {
		cfg.UDPAddrs = append(cfg.UDPAddrs, p.Addr())
	}
	gw, err := gateway.New(cfg)
	if err != nil {
		return err
	}
	if err := gw.Start(ctx); err != nil {
		return err
	}
	fmt.Fprintln(stdout, MarkerReady)
	<-ctx.Done()
	return gw.Close()
}

// runGatewayHosts runs every gateway of Gateway.Hosts from cfg (their
// common settings): one TCP listener on the wildcard port 443 hands each
// gateway the connections to its own addresses, and each gateway has a UDP
// socket on each of them, as a gateway alone on a node does.
func runGatewayHosts(ctx context.Context, nc Config, cfg gateway.Config, stdout io.Writer, log *slog.Logger) (err error) {
	l, err := hostnet.OS{}.Listen(ctx, "tcp", cfg.Addr.String())
	if err != nil {
		return fmt.Errorf("gateways: %w", err)
	}
	d := newAddrDemux(l, log)
	var gws []*gateway.Gateway
	defer func() {
		for _, gw := range gws {
			err = errors.Join(err, gw.Close())
		}
		d.Close()
	}()
	for _, h := range nc.Gateway.Hosts {
		f, err := createOut(nc, GatewayLog(h.Name))
		if err != nil {
			return err
		}
		defer f.Close()
		c := cfg
		c.Name, c.Log, c.UDPAddrs = h.Name, f, h.Addrs
		c.Stack = listenerStack{Stack: hostnet.OS{}, l: d.Listener(h.Addrs)}
		gw, err := gateway.New(c)
		if err != nil {
			return fmt.Errorf("gateway %s: %w", h.Name, err)
		}
		if err := gw.Start(ctx); err != nil {
			return fmt.Errorf("gateway %s: %w", h.Name, err)
		}
		gws = append(gws, gw)
	}
	go d.Serve()
	fmt.Fprintln(stdout, MarkerReady)
	<-ctx.Done()
	return nil
}

func runOriginNode(ctx context.Context, nc Config, stdout io.Writer, log *slog.Logger) error {
	on := nc.Origin
	certs := map[string]*tls.Certificate{}
	for name, p := range on.Certs {
		c, err := parseKeyPair(p)
		if err != nil {
			return fmt.Errorf("origin %s certificate: %w", name, err)
		}
		certs[name] = c
	}
	var sites []origin.Site
	for _, o := range on.Sites {
		sites = append(sites, origin.Site{Name: o.Name, Addrs: []netip.Addr{o.Addr}})
	}
	f, err := createOut(nc, "origins.jsonl")
	if err != nil {
		return err
	}
	defer f.Close()
	srv, err := origin.New(origin.Config{Stack: hostnet.OS{}, Sites: sites, Certificates: origin.CertMap(certs), Logger: log, AccessLog: f, KeyLogWriter: nc.keyLog})
	if err != nil {
		return err
	}
	if err := srv.Start(ctx); err != nil {
		return err
	}
	fmt.Fprintln(stdout, MarkerReady)
	<-ctx.Done()
	return srv.Close()
}

func runFirewallNode(ctx context.Context, nc Config, zone resolve.Resolver, sig Signals, stdout io.Writer, log *slog.Logger) error {
	fn := nc.Firewall
	if fn.Interceptor != nil {
		return runInterceptorNode(ctx, nc, sig, stdout, log)
	}
	ca, err := pki.LoadCA(pki.Config{}, []byte(fn.CA.Cert), []byte(fn.CA.Key))
	if err != nil {
		return fmt.Errorf("enterprise CA: %w", err)
	}
	roots, err := poolOf(fn.Roots)
	if err != nil {
		return fmt.Errorf("firewall trust store: %w", err)
	}
	// The policy in force: PolicyPath when the runner wrote one (a policy
	// event replaces it), so that a restarted firewall keeps the policy it
	// had, as a real one keeps its committed configuration.
	polName, polText := "policy.yaml", []byte(fn.Policy)
	if b, err := os.ReadFile(PolicyPath); err == nil {
		polName, polText = PolicyPath, b
	}
	pol, err := policy.Parse(polName, polText)
	if err != nil {
		return err
	}
	var writers []fwlog.Logger
	for _, out := range []struct {
		name   string
		format fwlog.Format
	}{
		{"firewall.jsonl", fwlog.FormatJSON}, {"firewall.pan-traffic.csv", fwlog.FormatPANTraffic},
		{"firewall.fortios.log", fwlog.FormatFortiOS}, {"firewall.cef.log", fwlog.FormatCEF},
	} {
		f, err := createOut(nc, out.name)
		if err != nil {
			return err
		}
		defer f.Close()
		writers = append(writers, fwlog.NewWriter(f, out.format))
	}
	fw, err := mitm.New(mitm.Config{Outside: hostnet.OS{}, Policy: pol, CA: ca, Roots: roots, Resolver: zone, Writers: writers, Logger: log, KeyLogWriter: nc.keyLog})
	if err != nil {
		return err
	}
	ic := nc.Net.Intercept
	tcpL, err := mitm.ListenTransparentTCP(ctx, fmt.Sprintf("0.0.0.0:%d", ic.TCPTo))
	if err != nil {
		return err
	}
	udpL, err := mitm.ListenTransparentUDP(ctx, fmt.Sprintf("0.0.0.0:%d", ic.UDPTo))
	if err != nil {
		tcpL.Close()
		return err
	}
	proxyL, err := net.Listen("tcp4", netip.AddrPortFrom(fn.Inside, fn.ProxyPort).String())
	if err != nil {
		tcpL.Close()
		udpL.Close()
		return err
	}
	var wg sync.WaitGroup
	for _, serve := range []func() error{
		func() error { return fw.ServeTransparent(ctx, tcpL) },
		func() error { return fw.ServeUDPTransparent(ctx, udpL) },
		func() error { return fw.ServeProxy(ctx, proxyL) },
	} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := serve(); err != nil {
				log.Warn("firewall listener", "err", err)
			}
		}()
	}
	fmt.Fprintln(stdout, MarkerReady)
	for done := false; !done; {
		select {
		case <-ctx.Done():
			done = true
		case <-sig.Impair:
			applyImpair(ImpairPath, nil, stdout, log)
		case <-sig.Reload:
			data, err := os.ReadFile(PolicyPath)
			if err == nil {
				var p *policy.Policy
				if p, err = policy.Parse(PolicyPath, data); err == nil {
					err = fw.SwapPolicy(p)
				}
			}
			if err != nil {
				log.Warn("firewall: policy reload failed", "err", err)
			} else {
				fmt.Fprintln(stdout, "pinwall firewall: policy reloaded")
			}
		}
	}
	// Closing flushes the UDP flows' records (aged out at shutdown).
	fw.Close()
	wg.Wait()
	extra := map[string]any{"fqdn_objects": fw.Engine().FQDNSnapshot()}
	if ex := fw.Exclusions(); len(ex) > 0 {
		extra["exclusions"] = ex
	}
	return writeJSON(filepath.Join(nc.Out, "firewall-state.json"), extra)
}

// runProbesOS runs probes from this machine's network.
func runProbesOS(ctx context.Context, probes []harness.Probe) []harness.ProbeResult {
	var out []harness.ProbeResult
	for _, pr := range probes {
		out = append(out, harness.RunProbe(ctx, hostnet.OS{}, pr))
	}
	return out
}
