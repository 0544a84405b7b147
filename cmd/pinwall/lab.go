package main

import (
	"context"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/pinwall/pinwall/capture"
	"github.com/pinwall/pinwall/client"
	"github.com/pinwall/pinwall/failure"
	"github.com/pinwall/pinwall/gateway"
	"github.com/pinwall/pinwall/harness"
	"github.com/pinwall/pinwall/hostnet"
	"github.com/pinwall/pinwall/mitm/policy"
	"github.com/pinwall/pinwall/resolve"
	"github.com/pinwall/pinwall/scenarios"
	"github.com/pinwall/pinwall/tunnel"
)

func cmdLab(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseLabFlags(args, stdout, stderr)
	if err != nil {
		return err
	}
	log := slog.New(slog.DiscardHandler)
	if o.verbose {
		log = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	socksL, proxyL, err := o.listen()
	if err != nil {
		return err
	}
	snapLen := o.snapLen
	if snapLen <= 0 {
		snapLen = -1
	}
	evid, err := newLabEvidence(o.capture, snapLen, os.Getenv("SSLKEYLOGFILE"))
	if err != nil {
		socksL.Close()
		if proxyL != nil {
			proxyL.Close()
		}
		return err
	}
	defer evid.close()
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	topo, err := harness.StartInProcess(sctx, o.spec, evid.options(harness.Options{Logger: log, Dir: o.dir, NoClient: true}))
	cancel()
	if err != nil {
		socksL.Close()
		if proxyL != nil {
			proxyL.Close()
		}
		return err
	}
	defer topo.Close()
	if proxyL != nil {
		topo.Firewall.ServeProxyOn(ctx, proxyL)
	}
	var dns *resolve.DNSServer
	if o.dns != "off" {
		if dns, err = topo.ServeDNS(ctx, o.dns); err != nil {
			return usageError("lab: --dns %s: %v", o.dns, err)
		}
	}
	cfg, err := o.clientConfig(topo, socksL)
	if err != nil {
		return err
	}
	c, err := client.New(cfg)
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	info := labInfo(topo, cfg, socksL, proxyL, dns)
	if err := topo.WriteLabFiles(cfg, &info); err != nil {
		return err
	}
	if cfg.UpstreamProxy != nil && cfg.Transport == client.TransportAuto {
		fmt.Fprintf(stderr, "pinwall lab: warning: --transport auto tries DTLS (UDP/443) first, and DTLS does not go through an HTTP proxy: "+
			"it goes straight to the gateway, around %s. --transport tls sends the whole tunnel through the proxy.\n", cfg.UpstreamProxy.Redacted())
	}
	if err := c.Start(ctx); err != nil {
		return err
	}
	defer c.Close()
	socksDone := make(chan error, 1)
	go func() { socksDone <- c.ServeSOCKS(ctx, socksL) }()

	st, werr := waitLab(ctx, c, cfg, o.wait)
	printLabReady(stdout, o.dir, topo, cfg, info)
	_ = topo.WriteClientHistory(c.History())
	fmt.Fprintln(stdout, readyLine(ctx, topo, c, cfg, socksL, st, werr))
	// ServeSOCKS returns once ctx is done too: when both are ready the
	// select may take either, and a value taken here is not waited for
	// again (a second receive would wait forever).
	select {
	case <-ctx.Done():
	case err := <-socksDone:
		if err != nil {
			return err
		}
		socksDone = nil
	}
	c.Close()
	if socksDone != nil {
		<-socksDone
	}
	sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
	_ = topo.Settle(sctx) // every flow's event written
	scancel()
	_ = topo.WriteClientHistory(c.History())
	fmt.Fprintln(stdout, "\npinwall lab: stopping; what the gateway saw:")
	printGatewaySummary(stdout, topo.GatewayEvents())
	_ = topo.Close() // every connection closed: the capture has its last FINs
	return evid.write(o.dir, stdout)
}

// labOptions is what pinwall lab's flags ask for.
type labOptions struct {
	spec harness.Spec
	// upstreamURL is --upstream-proxy when it names a proxy of its own
	// (not the lab firewall's).
	upstreamURL  *url.URL
	proxyConnect client.ProxyConnectMode
	socks        string
	fwProxy, dir string
	dns          string
	wait         time.Duration
	// extraTrust holds --trust-file's CAs, nil without.
	extraTrust *x509.CertPool
	verbose    bool
	socksAny   bool
	// capture records every leg into DIR/capture.pcapng; snapLen bounds a
	// flow's payload in each direction.
	capture bool
	snapLen int
}

func parseLabFlags(args []string, stdout, stderr io.Writer) (labOptions, error) {
	fs := newFlagSet("lab", "pinwall lab [flags]", args, stdout, stderr)
	transport := fs.String("transport", "auto", "tunnel transport: auto (DTLS first, then TLS), tls or dtls")
	socks := fs.String("socks", "127.0.0.1:1080", "the client's SOCKS5 listener (a real loopback address, for curl)")
	dir := fs.String("dir", "lab", "directory for the CA certificates, the device certificate and key, the pin, lab.json, hosts and the logs")
	policyFile := fs.String("policy", "", "put a firewall with this policy (mitm/policy YAML) between the laptop and the internet")
	fwProxy := fs.String("firewall-proxy", "", "open the firewall's explicit HTTP CONNECT proxy on this real address (implies a firewall)")
	upstream := fs.String("upstream-proxy", "", `send the client's TLS tunnel through an explicit proxy: "firewall" (the lab firewall's proxy) or http://127.0.0.1:PORT (a real proxy: mitmdump, squid)`)
	proxyConnect := fs.String("proxy-connect", "addr", "what the upstream proxy's CONNECT names: addr (the gateway's real address and port, reachable by any proxy) or name (the gateway's name and real port, for a proxy resolving with --dns)")
	dns := fs.String("dns", "127.0.0.1:0", `serve the lab's names over DNS (UDP) on this loopback address, answering the real addresses standing in for them; "off" for none`)
	wait := fs.Duration("wait", 20*time.Second, "how long to wait for the tunnel before printing the ready line")
	handshakeTimeout := fs.Duration("handshake-timeout", 5*time.Second, "how long one TLS tunnel attempt may take, greeting included (a proxy that holds a refused connection open costs this much per attempt)")
	pin := fs.String("pin", "gateway", "what the client pins: gateway, none or wrong")
	deviceCert := fs.String("device-cert", "valid", "the client's device certificate: valid, none or foreign")
	trust := fs.String("trust", "internet", "CAs the laptop trusts, comma-separated: internet, enterprise")
	trustFile := fs.String("trust-file", "", "the laptop also trusts the CA certificates in this PEM file (e.g. mitmproxy's mitmproxy-ca-cert.pem), with --pin none")
	failMode := fs.String("fail-mode", "close", "what steered flows do with no tunnel: close or open")
	anonymous := fs.Bool("allow-anonymous", false, "gateways accept tunnels without a device certificate")
	socksAny := fs.Bool("socks-any", false, "let the SOCKS5 listener reach any destination, real services on this machine included (by default only the lab's simulated names and addresses)")
	verbose := fs.Bool("v", false, "log the components' operations to stderr")
	capturing := fs.Bool("capture", false, "record every leg's packets, with the session secrets inside, into DIR/capture.pcapng when the lab stops")
	snap := fs.Int("snaplen", capture.DefaultSnapLen, "payload bytes a captured flow keeps in each direction (0: all)")
	if err := fs.Parse(args); err != nil {
		return labOptions{}, flagError(err)
	}
	if fs.NArg() > 0 {
		return labOptions{}, usageError("lab: unexpected argument %q", fs.Arg(0))
	}
	o := labOptions{socks: *socks, fwProxy: *fwProxy, dir: *dir, verbose: *verbose, socksAny: *socksAny, dns: *dns, wait: *wait,
		capture: *capturing, snapLen: *snap,
		proxyConnect: client.ProxyConnectMode(*proxyConnect)}
	if *trustFile != "" && *pin != string(harness.PinNone) {
		return labOptions{}, usageError("lab: --trust-file needs --pin none: a client that pins checks its pins, not CAs")
	}
	if *trustFile != "" {
		b, err := os.ReadFile(*trustFile)
		if err != nil {
			return labOptions{}, usageError("lab: --trust-file: %v", err)
		}
		o.extraTrust = x509.NewCertPool()
		if !o.extraTrust.AppendCertsFromPEM(b) {
			return labOptions{}, usageError("lab: --trust-file %s: no PEM certificate in it", *trustFile)
		}
	}
	o.spec = harness.Spec{
		Client: harness.ClientSpec{
			Transport: client.TransportMode(*transport), Pin: harness.PinMode(*pin), DeviceCert: harness.DeviceCertMode(*deviceCert),
			FailMode: client.FailMode(*failMode), HandshakeTimeout: *handshakeTimeout,
		},
		Gateway: harness.GatewayConfigSpec{AllowAnonymous: *anonymous},
	}
	if !slices.Contains(client.TransportMode("").Choices(), *transport) {
		return labOptions{}, usageError("lab: --transport %q is not one of %s", *transport, strings.Join(client.TransportMode("").Choices(), ", "))
	}
	if !slices.Contains(harness.PinMode("").Choices(), *pin) {
		return labOptions{}, usageError("lab: --pin %q is not one of %s", *pin, strings.Join(harness.PinMode("").Choices(), ", "))
	}
	if !slices.Contains(harness.DeviceCertMode("").Choices(), *deviceCert) {
		return labOptions{}, usageError("lab: --device-cert %q is not one of %s", *deviceCert, strings.Join(harness.DeviceCertMode("").Choices(), ", "))
	}
	if !slices.Contains(client.FailMode("").Choices(), *failMode) {
		return labOptions{}, usageError("lab: --fail-mode %q is not one of close, open", *failMode)
	}
	if !slices.Contains(client.ProxyConnectMode("").Choices(), *proxyConnect) {
		return labOptions{}, usageError("lab: --proxy-connect %q is not one of addr, name", *proxyConnect)
	}
	if *wait <= 0 || *handshakeTimeout <= 0 {
		return labOptions{}, usageError("lab: --wait %v, --handshake-timeout %v: want positive durations", *wait, *handshakeTimeout)
	}
	for _, tr := range strings.Split(*trust, ",") {
		tr = strings.TrimSpace(tr)
		if !slices.Contains(harness.TrustStore("").Choices(), tr) {
			return labOptions{}, usageError("lab: --trust %q is not one of internet, enterprise", tr)
		}
		o.spec.Client.Trust = append(o.spec.Client.Trust, harness.TrustStore(tr))
	}
	if err := o.firewall(*policyFile, *upstream); err != nil {
		return labOptions{}, err
	}
	if err := o.upstreamProxy(*upstream); err != nil {
		return labOptions{}, err
	}
	return o, nil
}

// firewall puts a firewall in the spec when a flag needs one: a policy,
// the firewall's proxy, or the client's tunnel through that proxy.
func (o *labOptions) firewall(policyFile, upstream string) error {
	if policyFile == "" && o.fwProxy == "" && upstream != "firewall" {
		return nil
	}
	o.spec.Firewall = &harness.FirewallSpec{}
	if policyFile != "" {
		p, err := policy.Load(policyFile)
		if err != nil {
			return &exitError{code: 2, err: err}
		}
		o.spec.Firewall.Policy = p
	}
	return nil
}

// upstreamProxy applies --upstream-proxy: the lab firewall's proxy or an
// http:// proxy of the user's, for the TLS transport only.
func (o *labOptions) upstreamProxy(upstream string) error {
	switch upstream {
	case "":
	case "firewall":
		o.spec.Client.UpstreamProxy = "firewall"
	default:
		u, err := url.Parse(upstream)
		if err != nil || u.Scheme != "http" || u.Port() == "" {
			return usageError("lab: --upstream-proxy %q: want firewall or http://HOST:PORT", upstream)
		}
		o.upstreamURL = u
	}
	if o.spec.Client.Transport == client.TransportDTLS && upstream != "" {
		return usageError("lab: an upstream proxy carries the TLS transport only; use --transport tls (or auto, where DTLS goes around the proxy)")
	}
	return nil
}

// clientConfig is the laptop client's configuration for the lab: a real
// upstream proxy reaches the gateways at the real sockets standing in for
// them, and the SOCKS5 listener reaches only the lab's simulated names.
func (o *labOptions) clientConfig(topo *harness.Topology, socksL net.Listener) (client.Config, error) {
	cfg, err := topo.ClientConfig()
	if err != nil {
		return cfg, err
	}
	if o.extraTrust != nil {
		pool := o.extraTrust.Clone()
		for _, tr := range o.spec.Client.Trust {
			switch tr {
			case harness.TrustInternet:
				pool.AddCert(topo.PKI.Internet.Cert)
			case harness.TrustEnterprise:
				pool.AddCert(topo.PKI.Enterprise.Cert)
			}
		}
		cfg.RootCAs = pool
	}
	if o.upstreamURL != nil {
		cfg.UpstreamProxy = o.upstreamURL
		cfg.ProxyConnect = o.proxyConnect
		cfg.ProxyReach = func(ap netip.AddrPort) (netip.AddrPort, bool) { return topo.RealAddr(hostnet.ProtoTCP, ap) }
	}
	if !o.socksAny {
		// The lab's SOCKS5 listener is for the simulated sites: a request
		// for anything else (a real service on 127.x, say) is refused
		// rather than dialled from this machine.
		cfg.SOCKSDestinations = func(host string, _ uint16) error {
			if topo.Simulated(host) {
				return nil
			}
			return fmt.Errorf("%s is not one of the lab's simulated names or addresses (--socks-any allows it)", host)
		}
	}
	return cfg, nil
}

// listen opens the client's SOCKS5 listener and, with --firewall-proxy,
// the firewall's proxy listener (else nil).
func (o *labOptions) listen() (socksL, proxyL net.Listener, err error) {
	socksL, err = net.Listen("tcp", o.socks)
	if err != nil {
		return nil, nil, usageError("lab: --socks %s: %v", o.socks, err)
	}
	if o.fwProxy != "" {
		if proxyL, err = net.Listen("tcp", o.fwProxy); err != nil {
			socksL.Close()
			return nil, nil, usageError("lab: --firewall-proxy %s: %v", o.fwProxy, err)
		}
	}
	return socksL, proxyL, nil
}

// labInfo describes the running lab for lab.json and the ready block.
func labInfo(topo *harness.Topology, cfg client.Config, socksL, proxyL net.Listener, dns *resolve.DNSServer) harness.LabInfo {
	info := harness.LabInfo{SOCKS: socksL.Addr().String(), Transport: string(cfg.Transport)}
	info.Gateways, info.Origins = topo.Servers()
	if dns != nil {
		info.DNS = dns.Addr().String()
	}
	if proxyL != nil {
		info.FirewallProxy = proxyL.Addr().String()
	}
	if cfg.UpstreamProxy != nil {
		info.UpstreamProxy, info.ProxyConnect = cfg.UpstreamProxy.Redacted(), string(cfg.ProxyConnect)
	}
	return info
}

// waitLab waits until the tunnel is up, or every gateway has failed an
// attempt on the transport that decides (TLS in auto mode: a DTLS failure
// only sends the client to TLS), or wait has passed.
func waitLab(ctx context.Context, c *client.Client, cfg client.Config, wait time.Duration) (client.State, error) {
	wctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	decisive := tunnel.TransportTLS
	if cfg.Transport == client.TransportDTLS {
		decisive = tunnel.TransportDTLS
	}
	for {
		st, err := c.WaitOutcome(wctx)
		if err == nil {
			return st, nil
		}
		failed := map[string]bool{}
		for _, h := range c.History() {
			if h.Event == client.EventAttemptFailed && (h.Transport == decisive || h.Cause == failure.CauseDNS) {
				failed[h.Gateway] = true
			}
		}
		all := true
		for _, g := range cfg.Gateways {
			all = all && failed[g]
		}
		if all || wctx.Err() != nil {
			if last := c.LastError(); last != nil {
				return c.State(), last
			}
			return c.State(), err
		}
	}
}

// readyLine is the lab's one-line status: the tunnel's path, or why it is
// not up, attributed to a leg and a cause with the evidence it rests on.
func readyLine(ctx context.Context, topo *harness.Topology, c *client.Client, cfg client.Config, socksL net.Listener, st client.State, werr error) string {
	head := fmt.Sprintf("pinwall lab ready: socks5 %s; ", socksL.Addr())
	if werr == nil {
		path := "straight to the gateway"
		switch {
		case st.Via != "":
			path = "through the upstream proxy " + st.Via
		case cfg.UpstreamProxy != nil:
			path = fmt.Sprintf("around the upstream proxy %s (DTLS is not proxied; --transport tls sends the tunnel through it)", cfg.UpstreamProxy.Redacted())
		}
		return head + fmt.Sprintf("tunnel up over %s to %s (%s), %s, tunnel %s", st.Transport, st.Gateway, st.Addr, path, st.TunnelID)
	}
	settleGatewayLog(ctx, topo, c)
	f := scenarios.Attribute(topo.Snapshot(c))
	if f == nil || f.Cause == "" {
		return head + fmt.Sprintf("tunnel NOT up (%v); fail-%s applies", werr, cfg.FailMode)
	}
	return head + fmt.Sprintf("tunnel NOT up: %s / %s; fail-%s applies\n  %s\n  client error: %v", f.Leg, f.Cause, cfg.FailMode, f.BasisLine(), werr)
}

// settleGatewayLog waits, for a second at most, until the gateway has
// logged something at or after the client's last failed attempt began: the
// gateway logs a refusal when its side of the handshake ends, which can be
// just after the client gave up.
func settleGatewayLog(ctx context.Context, topo *harness.Topology, c *client.Client) {
	var since time.Time
	for _, h := range c.History() {
		if h.Event == client.EventAttemptFailed {
			since = h.Time.Add(-time.Duration(h.TookMS) * time.Millisecond)
		}
	}
	if since.IsZero() {
		return
	}
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	deadline := time.NewTimer(time.Second)
	defer deadline.Stop()
	for {
		for _, e := range topo.GatewayEvents() {
			if !e.Time.Before(since) && (e.Event == gateway.EventTunnelRefused || e.Event == gateway.EventTunnelOpen) {
				return
			}
		}
		select {
		case <-tick.C:
		case <-deadline.C:
			return
		case <-ctx.Done():
			return
		}
	}
}

// printLabReady prints where the lab's servers and files are and how to
// use them with real tools.
func printLabReady(stdout io.Writer, dir string, topo *harness.Topology, cfg client.Config, info harness.LabInfo) {
	absDir, _ := filepath.Abs(dir)
	file := func(name string) string { return filepath.Join(absDir, name) }
	fmt.Fprintf(stdout, "pinwall lab (in-process): laptop %s, gateways %s\n", topo.Spec.Laptop, strings.Join(cfg.Gateways, ", "))
	for _, g := range info.Gateways {
		fmt.Fprintf(stdout, "  gateway %s: %s; real sockets tcp %s, udp %s\n", g.Name, joinAddrs(g.Addrs), joinAddrs(g.TCP), joinAddrs(g.UDP))
	}
	if info.DNS != "" {
		fmt.Fprintf(stdout, "  dns:           %s (the lab's names, answered with the real addresses above; try: dig @%s -p %s %s)\n",
			info.DNS, hostOf(info.DNS), portOf(info.DNS), cfg.Gateways[0])
	}
	fmt.Fprintf(stdout, "  hosts file:    %s\n", file(harness.LabHosts))
	fmt.Fprintf(stdout, "  lab.json:      %s\n", file(harness.LabJSON))
	if info.Files["device certificate"] != "" {
		fmt.Fprintf(stdout, "  device cert:   %s, key %s (0600)\n", file(harness.LabDeviceCert), file(harness.LabDeviceKey))
	}
	if len(info.Pins) > 0 {
		fmt.Fprintf(stdout, "  gateway pin:   %s (%s)\n", strings.Join(info.Pins, " "), file(harness.LabPin))
	}
	fmt.Fprintf(stdout, "  internet CA:   %s\n", file("internet-ca.pem"))
	fmt.Fprintf(stdout, "  gateway log:   %s\n", file("gateway.jsonl"))
	fmt.Fprintf(stdout, "  client history: %s\n", file(harness.LabClientHistory))
	if topo.Firewall != nil {
		fmt.Fprintf(stdout, "  enterprise CA: %s\n", file("enterprise-ca.pem"))
		fmt.Fprintf(stdout, "  firewall log:  %s (and .pan-traffic.csv, .pan-decryption.csv, .fortios.log, .cef.log)\n", file("firewall.jsonl"))
		if info.FirewallProxy != "" {
			fmt.Fprintf(stdout, "  firewall proxy: http://%s  (try: curl -x http://%s --cacert %s https://www.social.test/)\n",
				info.FirewallProxy, info.FirewallProxy, file("enterprise-ca.pem"))
		}
	}
	if cfg.UpstreamProxy != nil && cfg.ProxyReach != nil {
		targets := make([]string, 0, len(info.Gateways))
		for _, g := range info.Gateways {
			for _, tcp := range g.TCP {
				t := tcp.String()
				if cfg.ProxyConnect == client.ProxyConnectName {
					t = net.JoinHostPort(g.Name, fmt.Sprint(tcp.Port()))
				}
				targets = append(targets, t)
			}
		}
		fmt.Fprintf(stdout, "  upstream proxy: %s, CONNECT %s (--proxy-connect %s)\n", cfg.UpstreamProxy.Redacted(), strings.Join(targets, " or "), cfg.ProxyConnect)
	}
	fmt.Fprintf(stdout, "  try: curl --socks5-hostname %s --cacert %s https://www.social.test/\n", info.SOCKS, file("internet-ca.pem"))
}

func joinAddrs[T fmt.Stringer](as []T) string {
	if len(as) == 0 {
		return "-"
	}
	s := make([]string, len(as))
	for i, a := range as {
		s[i] = a.String()
	}
	return strings.Join(s, ", ")
}

func hostOf(hostport string) string {
	h, _, _ := net.SplitHostPort(hostport)
	return h
}

func portOf(hostport string) string {
	_, p, _ := net.SplitHostPort(hostport)
	return p
}

// printGatewaySummary prints the gateway's tunnels and refusals, counted
// by peer address and reason, and its flows by destination.
func printGatewaySummary(w io.Writer, evs []gateway.Event) {
	flows := map[string]int{}
	tunnels := map[string]int{}
	var order []string
	for _, e := range evs {
		switch e.Event {
		case gateway.EventFlow:
			flows[fmt.Sprintf("%s:%d", e.Host, e.Port)]++
		case gateway.EventTunnelOpen, gateway.EventTunnelRefused:
			peer := e.Client
			if ap, err := netip.ParseAddrPort(e.Client); err == nil {
				peer = ap.Addr().String()
			}
			k := fmt.Sprintf("%s %s from %s", e.Event, e.Transport, peer)
			if e.Event == gateway.EventTunnelRefused {
				k += fmt.Sprintf(": %s (%s)", e.Cause, e.Reason)
			}
			if tunnels[k] == 0 {
				order = append(order, k)
			}
			tunnels[k]++
		}
	}
	for _, k := range order {
		fmt.Fprintf(w, "  %s x%d\n", k, tunnels[k])
	}
	keys := make([]string, 0, len(flows))
	for k := range flows {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(w, "  flow to %s x%d\n", k, flows[k])
	}
}
