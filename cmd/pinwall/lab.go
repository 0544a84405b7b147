package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/pinwall/pinwall/capture"
	"github.com/pinwall/pinwall/client"
	"github.com/pinwall/pinwall/gateway"
	"github.com/pinwall/pinwall/harness"
	"github.com/pinwall/pinwall/mitm/policy"
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
	cfg, err := topo.ClientConfig()
	if err != nil {
		return err
	}
	if o.upstreamURL != nil {
		cfg.UpstreamProxy = o.upstreamURL
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
	c, err := client.New(cfg)
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	if err := c.Start(ctx); err != nil {
		return err
	}
	defer c.Close()
	socksDone := make(chan error, 1)
	go func() { socksDone <- c.ServeSOCKS(ctx, socksL) }()

	wctx, wcancel := context.WithTimeout(ctx, 20*time.Second)
	st, werr := c.WaitUp(wctx)
	wcancel()
	printLabReady(stdout, o.dir, topo, cfg, socksL, proxyL)
	if werr != nil {
		fmt.Fprintf(stdout, "pinwall lab ready: socks5 %s; tunnel NOT up (%v); fail-%s applies\n", socksL.Addr(), werr, cfg.FailMode)
	} else {
		fmt.Fprintf(stdout, "pinwall lab ready: socks5 %s; tunnel up over %s to %s (%s), tunnel %s\n", socksL.Addr(), st.Transport, st.Gateway, st.Addr, st.TunnelID)
	}
	select {
	case <-ctx.Done():
	case err := <-socksDone:
		if err != nil {
			return err
		}
	}
	c.Close()
	<-socksDone
	sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
	_ = topo.Settle(sctx) // every flow's event written
	scancel()
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
	socks        string
	fwProxy, dir string
	verbose      bool
	socksAny     bool
	// capture records every leg into DIR/capture.pcapng; snapLen bounds a
	// flow's payload in each direction.
	capture bool
	snapLen int
}

func parseLabFlags(args []string, stdout, stderr io.Writer) (labOptions, error) {
	fs := newFlagSet("lab", "pinwall lab [flags]", args, stdout, stderr)
	transport := fs.String("transport", "auto", "tunnel transport: auto (DTLS first, then TLS), tls or dtls")
	socks := fs.String("socks", "127.0.0.1:1080", "the client's SOCKS5 listener (a real loopback address, for curl)")
	dir := fs.String("dir", "lab", "directory for the CA certificates and the logs")
	policyFile := fs.String("policy", "", "put a firewall with this policy (mitm/policy YAML) between the laptop and the internet")
	fwProxy := fs.String("firewall-proxy", "", "open the firewall's explicit HTTP CONNECT proxy on this real address (implies a firewall)")
	upstream := fs.String("upstream-proxy", "", `send the client's TLS tunnel through an explicit proxy: "firewall" (the lab firewall's proxy) or http://127.0.0.1:PORT`)
	pin := fs.String("pin", "gateway", "what the client pins: gateway, none or wrong")
	deviceCert := fs.String("device-cert", "valid", "the client's device certificate: valid, none or foreign")
	trust := fs.String("trust", "internet", "CAs the laptop trusts, comma-separated: internet, enterprise")
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
	o := labOptions{socks: *socks, fwProxy: *fwProxy, dir: *dir, verbose: *verbose, socksAny: *socksAny, capture: *capturing, snapLen: *snap}
	o.spec = harness.Spec{
		Client: harness.ClientSpec{
			Transport: client.TransportMode(*transport), Pin: harness.PinMode(*pin), DeviceCert: harness.DeviceCertMode(*deviceCert),
			FailMode: client.FailMode(*failMode),
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
		return usageError("lab: an upstream proxy carries the TLS transport only; use --transport auto or tls")
	}
	return nil
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

// printLabReady prints where the lab's files are and how to use it.
func printLabReady(stdout io.Writer, dir string, topo *harness.Topology, cfg client.Config, socksL, proxyL net.Listener) {
	absDir, _ := filepath.Abs(dir)
	fmt.Fprintf(stdout, "pinwall lab (in-process): laptop %s, gateways %s\n", topo.Spec.Laptop, strings.Join(cfg.Gateways, ", "))
	fmt.Fprintf(stdout, "  internet CA:   %s\n", filepath.Join(absDir, "internet-ca.pem"))
	fmt.Fprintf(stdout, "  gateway log:   %s\n", filepath.Join(absDir, "gateway.jsonl"))
	if topo.Firewall != nil {
		fmt.Fprintf(stdout, "  enterprise CA: %s\n", filepath.Join(absDir, "enterprise-ca.pem"))
		fmt.Fprintf(stdout, "  firewall log:  %s\n", filepath.Join(absDir, "firewall.jsonl"))
		if proxyL != nil {
			fmt.Fprintf(stdout, "  firewall proxy: http://%s  (try: curl -x http://%s --cacert %s https://www.social.test/)\n",
				proxyL.Addr(), proxyL.Addr(), filepath.Join(absDir, "enterprise-ca.pem"))
		}
	}
	fmt.Fprintf(stdout, "  try: curl --socks5-hostname %s --cacert %s https://www.social.test/\n", socksL.Addr(), filepath.Join(absDir, "internet-ca.pem"))
}

func printGatewaySummary(w io.Writer, evs []gateway.Event) {
	flows := map[string]int{}
	for _, e := range evs {
		switch e.Event {
		case gateway.EventFlow:
			flows[fmt.Sprintf("%s:%d", e.Host, e.Port)]++
		case gateway.EventTunnelOpen, gateway.EventTunnelRefused:
			fmt.Fprintf(w, "  %s %s from %s %s\n", e.Event, e.Transport, e.Client, e.Reason)
		}
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
