package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
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
	fs := flag.NewFlagSet("lab", flag.ContinueOnError)
	fs.SetOutput(stderr)
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
	verbose := fs.Bool("v", false, "log the components' operations to stderr")
	capturing := fs.Bool("capture", false, "record every leg's packets, with the session secrets inside, into DIR/capture.pcapng when the lab stops")
	snap := fs.Int("snaplen", capture.DefaultSnapLen, "payload bytes a captured flow keeps in each direction (0: all)")
	if err := fs.Parse(args); err != nil {
		return &exitError{code: 2, err: err}
	}
	if fs.NArg() > 0 {
		return usageError("lab: unexpected argument %q", fs.Arg(0))
	}
	spec := harness.Spec{
		Client: harness.ClientSpec{
			Transport: client.TransportMode(*transport), Pin: harness.PinMode(*pin), DeviceCert: harness.DeviceCertMode(*deviceCert),
			FailMode: client.FailMode(*failMode),
		},
		Gateway: harness.GatewayConfigSpec{AllowAnonymous: *anonymous},
	}
	if !contains(client.TransportMode("").Choices(), *transport) {
		return usageError("lab: --transport %q is not one of %s", *transport, strings.Join(client.TransportMode("").Choices(), ", "))
	}
	if !contains(harness.PinMode("").Choices(), *pin) {
		return usageError("lab: --pin %q is not one of %s", *pin, strings.Join(harness.PinMode("").Choices(), ", "))
	}
	if !contains(harness.DeviceCertMode("").Choices(), *deviceCert) {
		return usageError("lab: --device-cert %q is not one of %s", *deviceCert, strings.Join(harness.DeviceCertMode("").Choices(), ", "))
	}
	if !contains(client.FailMode("").Choices(), *failMode) {
		return usageError("lab: --fail-mode %q is not one of close, open", *failMode)
	}
	for _, tr := range strings.Split(*trust, ",") {
		tr = strings.TrimSpace(tr)
		if !contains(harness.TrustStore("").Choices(), tr) {
			return usageError("lab: --trust %q is not one of internet, enterprise", tr)
		}
		spec.Client.Trust = append(spec.Client.Trust, harness.TrustStore(tr))
	}
	if *policyFile != "" || *fwProxy != "" || *upstream == "firewall" {
		spec.Firewall = &harness.FirewallSpec{}
		if *policyFile != "" {
			p, err := policy.Load(*policyFile)
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			spec.Firewall.Policy = p
		}
	}
	var upstreamURL *url.URL
	switch *upstream {
	case "":
	case "firewall":
		spec.Client.UpstreamProxy = "firewall"
	default:
		u, err := url.Parse(*upstream)
		if err != nil || u.Scheme != "http" || u.Port() == "" {
			return usageError("lab: --upstream-proxy %q: want firewall or http://HOST:PORT", *upstream)
		}
		upstreamURL = u
	}
	if spec.Client.Transport == client.TransportDTLS && *upstream != "" {
		return usageError("lab: an upstream proxy carries the TLS transport only; use --transport auto or tls")
	}

	log := slog.New(slog.DiscardHandler)
	if *verbose {
		log = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	socksL, err := net.Listen("tcp", *socks)
	if err != nil {
		return usageError("lab: --socks %s: %v", *socks, err)
	}
	var proxyL net.Listener
	if *fwProxy != "" {
		if proxyL, err = net.Listen("tcp", *fwProxy); err != nil {
			socksL.Close()
			return usageError("lab: --firewall-proxy %s: %v", *fwProxy, err)
		}
	}
	snapLen := *snap
	if snapLen <= 0 {
		snapLen = -1
	}
	evid, err := newLabEvidence(*capturing, snapLen, os.Getenv("SSLKEYLOGFILE"))
	if err != nil {
		socksL.Close()
		if proxyL != nil {
			proxyL.Close()
		}
		return err
	}
	defer evid.close()
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	topo, err := harness.StartInProcess(sctx, spec, evid.options(harness.Options{Logger: log, Dir: *dir, NoClient: true}))
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
		topo.Firewall.ServeProxyOn(proxyL)
	}
	cfg, err := topo.ClientConfig()
	if err != nil {
		return err
	}
	if upstreamURL != nil {
		cfg.UpstreamProxy = upstreamURL
	}
	c, err := client.New(cfg)
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	if err := c.Start(); err != nil {
		return err
	}
	defer c.Close()
	socksDone := make(chan error, 1)
	go func() { socksDone <- c.ServeSOCKS(ctx, socksL) }()

	wctx, wcancel := context.WithTimeout(ctx, 20*time.Second)
	st, werr := c.WaitUp(wctx)
	wcancel()
	absDir, _ := filepath.Abs(*dir)
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
	return evid.write(*dir, stdout)
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

func contains(xs []string, s string) bool {
	for _, x := range xs {
		if x == s {
			return true
		}
	}
	return false
}

var _ = os.Stdout
