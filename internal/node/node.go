// Package node is the entrypoint of one container of the container runner
// (harness/containers): `pinwall serve ROLE` reads the Config the runner
// wrote, sets up the container's network with netsetup (VXLAN overlays,
// addresses, routes, the firewall's nftables interception), and runs one
// role (client, firewall, gateway, origin or probe) with the same component
// code as in process. Servers run until their context ends; the client and
// the probe write their report into Config.Out and finish. The runner
// waits for the markers a node prints on stdout.
package node

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/pinwall/pinwall/client"
	"github.com/pinwall/pinwall/failure"
	"github.com/pinwall/pinwall/fault"
	"github.com/pinwall/pinwall/harness"
	"github.com/pinwall/pinwall/hostnet"
	"github.com/pinwall/pinwall/interceptors"
	"github.com/pinwall/pinwall/netsetup"
	"github.com/pinwall/pinwall/outfile"
	"github.com/pinwall/pinwall/pki"
	"github.com/pinwall/pinwall/resolve"
)

// Node roles.
const (
	RoleClient   = "client"
	RoleFirewall = "firewall"
	RoleGateway  = "gateway"
	RoleOrigin   = "origin"
	RoleProbe    = "probe"
)

// Markers a node prints on stdout; the runner waits for them.
const (
	MarkerReady         = "pinwall node ready"
	MarkerTunnelSettled = "pinwall client: tunnel settled"
	MarkerDone          = "pinwall node done"
)

// PEMPair is a certificate chain and its key.
type PEMPair struct {
	Cert string `json:"cert"`
	Key  string `json:"key,omitempty"`
}

// Net is how a node's network is set up.
type Net struct {
	// Overlays are the VXLAN segments carrying the topology's addresses
	// over the Docker networks (see netsetup.Overlay for why).
	Overlays []Overlay `json:"overlays,omitempty"`
	// Addrs are service addresses added to AddrsOn.
	Addrs   []netip.Prefix `json:"addrs,omitempty"`
	AddrsOn string         `json:"addrs_on,omitempty"`
	// Routes to other nodes' service addresses.
	Routes []Route `json:"routes,omitempty"`
	// DefaultVia replaces the default route (the laptop's: the firewall).
	DefaultVia netip.Addr `json:"default_via,omitzero"`
	// Intercept turns the node into a transparent firewall for LAN.
	Intercept *Intercept `json:"intercept,omitempty"`
	// Netem are impairments installed as netem qdiscs once the network is
	// set up (the runner's Netem mode).
	Netem []fault.Netem `json:"netem,omitempty"`
}

// Overlay is one VXLAN segment membership.
type Overlay struct {
	Name     string       `json:"name"`
	VNI      uint32       `json:"vni"`
	Addr     netip.Prefix `json:"addr"`
	Underlay netip.Addr   `json:"underlay"`
	Peers    []netip.Addr `json:"peers"`
}

// Route routes Dst via a neighbour.
type Route struct {
	Dst netip.Prefix `json:"dst"`
	Via netip.Addr   `json:"via"`
}

// Intercept describes the firewall's interception.
type Intercept struct {
	LAN      netip.Prefix `json:"lan"`
	TCPPorts []uint16     `json:"tcp_ports"`
	UDPPorts []uint16     `json:"udp_ports"`
	TCPTo    uint16       `json:"tcp_to"`
	UDPTo    uint16       `json:"udp_to"`
	// TCPRules and UDPRules, instead of the ports, decide the LAN's
	// connections in order (a third-party interceptor's firewall).
	TCPRules []netsetup.Filter `json:"tcp_rules,omitempty"`
	UDPRules []netsetup.Filter `json:"udp_rules,omitempty"`
}

// Config is everything one container needs.
type Config struct {
	Role   string           `json:"role"`
	Name   string           `json:"name"`
	Tenant string           `json:"tenant"`
	Out    string           `json:"out"`
	Net    Net              `json:"net"`
	Zone   []resolve.Record `json:"zone"`

	Gateway  *Gateway        `json:"gateway,omitempty"`
	Origin   *Origin         `json:"origin,omitempty"`
	Firewall *Firewall       `json:"firewall,omitempty"`
	Client   *Client         `json:"client,omitempty"`
	Probes   []harness.Probe `json:"probes,omitempty"`
	// FieldProbe, on the laptop (role client), runs the field probe
	// (package probe) instead of the endpoint client.
	FieldProbe *FieldProbe `json:"field_probe,omitempty"`
	// Capture, if set, records the node's frames and session secrets.
	Capture *Capture `json:"capture,omitempty"`

	// keyLog receives the components' session secrets (set by Run from
	// Capture; nil: none).
	keyLog io.Writer
}

// Gateway configures a gateway container.
type Gateway struct {
	Cert           PEMPair       `json:"cert"`
	ClientCA       string        `json:"client_ca"`
	AllowAnonymous bool          `json:"allow_anonymous"`
	MaxStreams     int           `json:"max_streams"`
	Keepalive      time.Duration `json:"keepalive,omitempty"`
	// FieldControlName, if set, runs the field probe's gateway (package
	// fieldgw) instead: this control name is answered without a
	// certificate request, inner flows reach only its built-in origins.
	FieldControlName string `json:"field_control_name,omitempty"`
	// Hosts, if set, runs several gateways on this node, each on its own
	// addresses (which Net.Addrs must hold) and with its own log
	// (GatewayLog). Empty: one gateway named as the node, on every
	// address of Net.Addrs, logging to gateway.jsonl.
	Hosts []GatewayHost `json:"hosts,omitempty"`
}

// GatewayHost is one of the gateways a node with Gateway.Hosts runs.
type GatewayHost struct {
	Name  string       `json:"name"`
	Addrs []netip.Addr `json:"addrs"`
}

// GatewayLog names the log of gateway name on a node with Gateway.Hosts,
// in the node's output directory.
func GatewayLog(name string) string { return "gateway." + name + ".jsonl" }

// FieldProbe configures the field probe on the laptop.
type FieldProbe struct {
	// Bundle is the probe bundle (probe.Bundle's JSON).
	Bundle json.RawMessage `json:"bundle"`
	// Label names the network in the result.
	Label string `json:"label"`
}

// FieldProbeFile is where the laptop writes the probe's result (in Out).
const FieldProbeFile = "probe.json"

// Origin configures the origins container.
type Origin struct {
	Sites []harness.OriginSpec `json:"sites"`
	Certs map[string]PEMPair   `json:"certs"`
}

// Firewall configures the firewall container.
type Firewall struct {
	Policy    string       `json:"policy"`
	CA        PEMPair      `json:"ca"`
	Roots     string       `json:"roots"`
	Inside    netip.Addr   `json:"inside"`
	Outside   netip.Addr   `json:"outside"`
	ProxyPort uint16       `json:"proxy_port"`
	LAN       netip.Prefix `json:"lan"`
	// Interceptor, if set, runs a third-party tool in pinwall's place
	// (the image holds it), configured as translated.
	Interceptor *interceptors.Config `json:"interceptor,omitempty"`
}

// Client configures the laptop container.
type Client struct {
	Spec          harness.ClientSpec `json:"spec"`
	Pins          []string           `json:"pins,omitempty"`
	RootCAs       string             `json:"root_cas"`
	AppTrust      string             `json:"app_trust"`
	DeviceCert    *PEMPair           `json:"device_cert,omitempty"`
	UpstreamProxy string             `json:"upstream_proxy,omitempty"`
	Workload      harness.Workload   `json:"workload"`
	Reconnects    int                `json:"reconnects,omitempty"`
	WaitUp        time.Duration      `json:"wait_up"`
	Hold          time.Duration      `json:"hold,omitempty"`
	// SOCKS, if set, serves the client's SOCKS5 listener there after the
	// workload, until the container stops (for poking at it by hand).
	SOCKS string `json:"socks,omitempty"`
	// Impairable routes the laptop's UDP through a fault.ImpairedStack,
	// starting with Impair (the spec's udp-loss), so that impairment
	// controls can change it.
	Impairable bool              `json:"impairable,omitempty"`
	Impair     *fault.Impairment `json:"impair,omitempty"`
	// Fleet makes the laptop one of a fleet's (harness.Plan.Fleet): it
	// runs no workload, waits up to WaitUp for its tunnel itself (failed
	// attempts on the way are the fleet's business, as in process) and
	// reports its tunnel, history and error, with SettledAt the moment
	// the tunnel came up or the wait ended.
	Fleet bool `json:"fleet,omitempty"`
	// WaitStart makes the laptop print MarkerReady and wait for
	// Signals.Start before it starts its client, so that its container
	// can start while the servers' do.
	WaitStart bool `json:"wait_start,omitempty"`
	// EventsSignalled says the runner sends Signals.EventsDone once it has
	// applied the plan's events: the hold then ends as soon as a
	// reconnection after them is observed (harness.HoldForReconnection),
	// as in process. Without it the hold is served in full.
	EventsSignalled bool `json:"events_signalled,omitempty"`
}

// ClientReport is what the laptop container reports.
type ClientReport struct {
	Tunnel    client.State          `json:"tunnel"`
	History   []client.Transition   `json:"history"`
	Flows     []harness.FlowOutcome `json:"flows"`
	Summary   harness.Summary       `json:"summary"`
	Attempts  *harness.AttemptStats `json:"attempts,omitempty"`
	ErrorText string                `json:"error,omitempty"`
	Leg       failure.Leg           `json:"leg,omitempty"`
	Cause     failure.Cause         `json:"cause,omitempty"`
	UpAfter   time.Duration         `json:"up_after_ns"`
	// Datagrams counts what the impairment did to the laptop's datagrams.
	Datagrams *fault.Stats          `json:"datagrams,omitempty"`
	Probes    []harness.ProbeResult `json:"probes,omitempty"`
	SettledAt time.Time             `json:"settled_at"`
}

// ConfigEnv is the environment variable through which the container
// runner hands a node its configuration (JSON): set at the container's
// creation, it costs the engine nothing more, where a file copied into a
// container not yet started makes the engine mount the container's root
// filesystem once more. A configuration too large for the environment
// (MaxConfigEnv) is copied to ConfigPath instead.
const ConfigEnv = "PINWALL_NODE_CONFIG"

// MaxConfigEnv bounds the configuration the runner passes in ConfigEnv:
// Linux refuses an environment string longer than 128 KiB
// (MAX_ARG_STRLEN, execve(2)).
const MaxConfigEnv = 96 << 10

// ReadConfig reads a node configuration file.
func ReadConfig(file string) (Config, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return Config{}, err
	}
	return ParseConfig(file, b)
}

// ParseConfig parses a node configuration read from source (a file name,
// or ConfigEnv).
func ParseConfig(source string, b []byte) (Config, error) {
	var c Config
	if err := json.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("%s: %w", source, err)
	}
	return c, nil
}

func parseKeyPair(p PEMPair) (*tls.Certificate, error) {
	c, err := tls.X509KeyPair([]byte(p.Cert), []byte(p.Key))
	if err != nil {
		return nil, err
	}
	return &c, nil
}

func poolOf(pemText string) (*x509.CertPool, error) {
	pool := x509.NewCertPool()
	if pemText != "" && !pool.AppendCertsFromPEM([]byte(pemText)) {
		return nil, errors.New("no certificate in PEM bundle")
	}
	return pool, nil
}

// clientConfigFor builds the endpoint client's configuration inside the
// laptop container.
func clientConfigFor(nc Config, stack hostnet.Stack, zone resolve.Resolver, log *slog.Logger) (client.Config, error) {
	cn := nc.Client
	cs := cn.Spec
	cfg := client.Config{
		Name: nc.Name, Tenant: nc.Tenant, Gateways: cs.Gateways, Transport: cs.Transport,
		FallbackTimeout: cs.FallbackTimeout, HandshakeTimeout: cs.HandshakeTimeout, FailMode: cs.FailMode,
		TunnelWait: cs.TunnelWait, AttemptsPerGateway: cs.AttemptsPerGateway, Sessions: cs.Sessions,
		Steering: client.Steering{ExceptDomains: cs.ExceptDomains, ExceptCIDRs: cs.ExceptCIDRs},
		Stack:    stack, Resolver: zone, Logger: log, KeyLogWriter: nc.keyLog,
	}
	cfg.Session.KeepAliveInterval = cs.Keepalive
	pool, err := poolOf(cn.RootCAs)
	if err != nil {
		return cfg, fmt.Errorf("root CAs: %w", err)
	}
	cfg.RootCAs = pool
	for _, p := range cn.Pins {
		cfg.Pins = append(cfg.Pins, pki.Pin(p))
	}
	if cn.DeviceCert != nil {
		if cfg.DeviceCert, err = parseKeyPair(*cn.DeviceCert); err != nil {
			return cfg, fmt.Errorf("device certificate: %w", err)
		}
	}
	if cn.UpstreamProxy != "" {
		if cfg.UpstreamProxy, err = url.Parse(cn.UpstreamProxy); err != nil {
			return cfg, err
		}
		if cs.UpstreamProxy == "firewall" {
			cfg.ProxyConnect = client.ProxyConnectName // as harness.ClientSettings
		}
	}
	return cfg, nil
}

// runClientNode runs the laptop: the client, the workload (or reconnects),
// and writes the report.
func runClientNode(ctx context.Context, nc Config, stack hostnet.Stack, zone resolve.Resolver, stdout io.Writer, log *slog.Logger, sig Signals) error {
	cn := nc.Client
	var impaired *fault.ImpairedStack
	if cn.Impairable {
		var im fault.Impairment
		if cn.Impair != nil {
			im = *cn.Impair
		}
		impaired = fault.NewImpairedStack(stack, im)
		stack = impaired
	}
	datagramStats := func() *fault.Stats {
		if impaired == nil {
			return nil
		}
		st := impaired.Stats()
		return &st
	}
	cfg, err := clientConfigFor(nc, stack, zone, log)
	if err != nil {
		return err
	}
	trust, err := poolOf(cn.AppTrust)
	if err != nil {
		return fmt.Errorf("app trust: %w", err)
	}
	rep := ClientReport{}
	waitUp := cn.WaitUp
	if waitUp == 0 {
		waitUp = 5 * time.Second
	}
	if cn.Reconnects > 0 {
		cfg.AttemptsPerGateway = 1
		stats := &harness.AttemptStats{Causes: map[string]int{}}
		fmt.Fprintln(stdout, MarkerTunnelSettled)
		for i := 0; i < cn.Reconnects; i++ {
			c, err := client.New(cfg)
			if err != nil {
				return err
			}
			if err := c.Start(ctx); err != nil {
				return err
			}
			wctx, cancel := context.WithTimeout(ctx, waitUp)
			_, err = c.WaitOutcome(wctx)
			cancel()
			stats.Total++
			if err != nil {
				stats.Failed++
				stats.Causes[string(failure.CauseOf(err))]++
				rep.ErrorText, rep.Leg, rep.Cause = err.Error(), failure.LegOf(err), failure.CauseOf(err)
			}
			rep.History = append(rep.History, c.History()...)
			rep.Tunnel = c.State()
			c.Close()
		}
		rep.Attempts = stats
		return writeJSON(filepath.Join(nc.Out, "client.json"), rep)
	}
	if cn.Fleet {
		return runFleetLaptop(ctx, nc, cfg, waitUp, stdout)
	}
	c, err := client.New(cfg)
	if err != nil {
		return err
	}
	defer func() {
		// As Drain does in-process: the gateway finishes the flows the
		// applications have finished (their last bytes, the origin's
		// close_notify, reach the laptop) before the tunnel closes, and an
		// attempt in flight ends on its own.
		pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), harness.SettleGrace)
		_ = c.Settle(pctx)
		cancel()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), harness.DrainGrace)
		_ = c.Shutdown(sctx)
		cancel()
	}()
	start := time.Now()
	// The client outlives ctx: the deferred Shutdown, not ctx, stops it.
	if err := c.Start(context.WithoutCancel(ctx)); err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, waitUp)
	_, _ = c.WaitOutcome(wctx)
	cancel()
	rep.SettledAt = time.Now()
	fmt.Fprintln(stdout, MarkerTunnelSettled)
	stopWatch := make(chan struct{})
	watched := make(chan struct{})
	eventsDone := make(chan time.Time, 1)
	go func() {
		defer close(watched)
		for {
			select {
			case <-sig.EventsDone:
				select {
				case eventsDone <- time.Now():
				default:
				}
			case <-sig.NetworkChange:
				c.ResetTransport()
			case <-sig.Impair:
				applyImpair(ImpairPath, impaired, stdout, log)
			case <-stopWatch:
				return
			}
		}
	}()
	defer func() { close(stopWatch); <-watched }()
	rep.Flows = harness.RunWorkload(ctx, c, trust, cn.Workload)
	if cn.EventsSignalled {
		harness.HoldForReconnection(ctx, c, start, cn.Hold, eventsDone)
	} else {
		harness.HoldUntil(ctx, start, cn.Hold)
	}
	rep.Summary = harness.Summarize(rep.Flows)
	rep.Datagrams = datagramStats()
	rep.Tunnel = c.State()
	rep.History = c.History()
	if err := c.LastError(); err != nil {
		rep.ErrorText, rep.Leg, rep.Cause = err.Error(), failure.LegOf(err), failure.CauseOf(err)
	}
	for _, tr := range rep.History {
		if tr.Event == client.EventUp {
			rep.UpAfter = tr.Time.Sub(start)
			break
		}
	}
	if err := writeJSON(filepath.Join(nc.Out, "client.json"), rep); err != nil {
		return err
	}
	if cn.SOCKS != "" {
		l, err := net.Listen("tcp", cn.SOCKS)
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, "pinwall client: SOCKS5 on", l.Addr())
		return c.ServeSOCKS(ctx, l)
	}
	return nil
}

// runFleetLaptop is one of a fleet's laptops: up to waitUp for its
// tunnel, then its report, then MarkerDone; it holds the tunnel until ctx
// ends (the container stops).
func runFleetLaptop(ctx context.Context, nc Config, cfg client.Config, waitUp time.Duration, stdout io.Writer) error {
	c, err := client.New(cfg)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Start(ctx); err != nil {
		return err
	}
	fmt.Fprintln(stdout, MarkerTunnelSettled)
	wctx, cancel := context.WithTimeout(ctx, waitUp)
	st, err := c.WaitUp(wctx)
	cancel()
	rep := ClientReport{Tunnel: st, SettledAt: time.Now(), History: c.History()}
	if err != nil {
		rep.ErrorText, rep.Leg, rep.Cause = err.Error(), failure.LegOf(err), failure.CauseOf(err)
	}
	if err := writeJSON(filepath.Join(nc.Out, "client.json"), rep); err != nil {
		return err
	}
	// The fleet's tunnels are up together: each laptop holds its own
	// until the runner stops the container.
	fmt.Fprintln(stdout, MarkerDone)
	<-ctx.Done()
	return nil
}

func writeJSON(file string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return outfile.WriteFile(file, b, outfile.Public)
}
