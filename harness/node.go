package harness

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
	"github.com/pinwall/pinwall/hostnet"
	"github.com/pinwall/pinwall/pki"
	"github.com/pinwall/pinwall/resolve"
)

// A node is one container of the container runner, running one role with
// the configuration the runner wrote for it. The same component code runs
// as in process; only the network (the kernel's, programmed with netsetup)
// differs.

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

// NodeNet is how a node's network is set up.
type NodeNet struct {
	// Overlays are the VXLAN segments carrying the topology's addresses
	// over the Docker networks (see netsetup.Overlay for why).
	Overlays []NodeOverlay `json:"overlays,omitempty"`
	// Addrs are service addresses added to AddrsOn.
	Addrs   []netip.Prefix `json:"addrs,omitempty"`
	AddrsOn string         `json:"addrs_on,omitempty"`
	// Routes to other nodes' service addresses.
	Routes []NodeRoute `json:"routes,omitempty"`
	// DefaultVia replaces the default route (the laptop's: the firewall).
	DefaultVia netip.Addr `json:"default_via,omitzero"`
	// Intercept turns the node into a transparent firewall for LAN.
	Intercept *NodeIntercept `json:"intercept,omitempty"`
}

// NodeOverlay is one VXLAN segment membership.
type NodeOverlay struct {
	Name     string       `json:"name"`
	VNI      uint32       `json:"vni"`
	Addr     netip.Prefix `json:"addr"`
	Underlay netip.Addr   `json:"underlay"`
	Peers    []netip.Addr `json:"peers"`
}

// NodeRoute routes Dst via a neighbour.
type NodeRoute struct {
	Dst netip.Prefix `json:"dst"`
	Via netip.Addr   `json:"via"`
}

// NodeIntercept describes the firewall's interception.
type NodeIntercept struct {
	LAN      netip.Prefix `json:"lan"`
	TCPPorts []uint16     `json:"tcp_ports"`
	UDPPorts []uint16     `json:"udp_ports"`
	TCPTo    uint16       `json:"tcp_to"`
	UDPTo    uint16       `json:"udp_to"`
}

// NodeConfig is everything one container needs.
type NodeConfig struct {
	Role   string           `json:"role"`
	Name   string           `json:"name"`
	Tenant string           `json:"tenant"`
	Out    string           `json:"out"`
	Net    NodeNet          `json:"net"`
	Zone   []resolve.Record `json:"zone"`

	Gateway  *GatewayNode  `json:"gateway,omitempty"`
	Origin   *OriginNode   `json:"origin,omitempty"`
	Firewall *FirewallNode `json:"firewall,omitempty"`
	Client   *ClientNode   `json:"client,omitempty"`
	Probes   []Probe       `json:"probes,omitempty"`
}

// GatewayNode configures a gateway container.
type GatewayNode struct {
	Cert           PEMPair `json:"cert"`
	ClientCA       string  `json:"client_ca"`
	AllowAnonymous bool    `json:"allow_anonymous"`
	MaxStreams     int     `json:"max_streams"`
}

// OriginNode configures the origins container.
type OriginNode struct {
	Sites []OriginSpec       `json:"sites"`
	Certs map[string]PEMPair `json:"certs"`
}

// FirewallNode configures the firewall container.
type FirewallNode struct {
	Policy    string       `json:"policy"`
	CA        PEMPair      `json:"ca"`
	Roots     string       `json:"roots"`
	Inside    netip.Addr   `json:"inside"`
	Outside   netip.Addr   `json:"outside"`
	ProxyPort uint16       `json:"proxy_port"`
	LAN       netip.Prefix `json:"lan"`
}

// ClientNode configures the laptop container.
type ClientNode struct {
	Spec          ClientSpec    `json:"spec"`
	Pins          []string      `json:"pins,omitempty"`
	RootCAs       string        `json:"root_cas"`
	AppTrust      string        `json:"app_trust"`
	DeviceCert    *PEMPair      `json:"device_cert,omitempty"`
	UpstreamProxy string        `json:"upstream_proxy,omitempty"`
	Workload      Workload      `json:"workload"`
	Reconnects    int           `json:"reconnects,omitempty"`
	WaitUp        time.Duration `json:"wait_up"`
	Hold          time.Duration `json:"hold,omitempty"`
	// SOCKS, if set, serves the client's SOCKS5 listener there after the
	// workload, until the container stops (for poking at it by hand).
	SOCKS string `json:"socks,omitempty"`
}

// ClientReport is what the laptop container reports.
type ClientReport struct {
	Tunnel    client.State        `json:"tunnel"`
	History   []client.Transition `json:"history"`
	Flows     []FlowOutcome       `json:"flows"`
	Summary   Summary             `json:"summary"`
	Attempts  *AttemptStats       `json:"attempts,omitempty"`
	ErrorText string              `json:"error,omitempty"`
	Leg       failure.Leg         `json:"leg,omitempty"`
	Cause     failure.Cause       `json:"cause,omitempty"`
	UpAfter   time.Duration       `json:"up_after_ns"`
	Probes    []ProbeResult       `json:"probes,omitempty"`
	SettledAt time.Time           `json:"settled_at"`
}

// ReadNodeConfig reads a node configuration file.
func ReadNodeConfig(file string) (NodeConfig, error) {
	var c NodeConfig
	b, err := os.ReadFile(file)
	if err != nil {
		return c, err
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("%s: %w", file, err)
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
func clientConfigFor(nc NodeConfig, stack hostnet.Stack, zone resolve.Resolver, log *slog.Logger) (client.Config, error) {
	cn := nc.Client
	cs := cn.Spec
	cfg := client.Config{
		Name: nc.Name, Tenant: nc.Tenant, Gateways: cs.Gateways, Transport: cs.Transport,
		FallbackTimeout: cs.FallbackTimeout, HandshakeTimeout: cs.HandshakeTimeout, FailMode: cs.FailMode,
		TunnelWait: cs.TunnelWait, AttemptsPerGateway: cs.AttemptsPerGateway, Sessions: cs.Sessions,
		Steering: client.Steering{ExceptDomains: cs.ExceptDomains, ExceptCIDRs: cs.ExceptCIDRs},
		Stack:    stack, Resolver: zone, Logger: log,
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
	}
	return cfg, nil
}

// runClientNode runs the laptop: the client, the workload (or reconnects),
// and writes the report.
func runClientNode(ctx context.Context, nc NodeConfig, stack hostnet.Stack, zone resolve.Resolver, stdout io.Writer, log *slog.Logger, netChange <-chan struct{}) error {
	cn := nc.Client
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
		stats := &AttemptStats{Causes: map[string]int{}}
		fmt.Fprintln(stdout, MarkerTunnelSettled)
		for i := 0; i < cn.Reconnects; i++ {
			c, err := client.New(cfg)
			if err != nil {
				return err
			}
			if err := c.Start(); err != nil {
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
	c, err := client.New(cfg)
	if err != nil {
		return err
	}
	defer func() {
		// As Drain does in-process: an attempt in flight ends on its own.
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), drainGrace)
		_ = c.Shutdown(sctx)
		cancel()
	}()
	start := time.Now()
	if err := c.Start(); err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, waitUp)
	_, _ = c.WaitOutcome(wctx)
	cancel()
	rep.SettledAt = time.Now()
	fmt.Fprintln(stdout, MarkerTunnelSettled)
	stopWatch := make(chan struct{})
	defer close(stopWatch)
	go func() {
		for {
			select {
			case <-netChange:
				c.ResetTransport()
			case <-stopWatch:
				return
			}
		}
	}()
	rep.Flows = RunWorkload(ctx, c, trust, cn.Workload)
	holdUntil(ctx, start, cn.Hold)
	rep.Summary = Summarize(rep.Flows)
	rep.Tunnel = c.State()
	rep.History = c.History()
	if err := c.LastError(); err != nil {
		rep.ErrorText, rep.Leg, rep.Cause = err.Error(), failure.LegOf(err), failure.CauseOf(err)
	}
	for _, tr := range rep.History {
		if tr.Event == "up" {
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

func marshalIndent(v any) ([]byte, error) { return json.MarshalIndent(v, "", "  ") }

func writeJSON(file string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(file, b, 0o644)
}
