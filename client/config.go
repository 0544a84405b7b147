package client

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/pinwall/pinwall/hostnet"
	"github.com/pinwall/pinwall/pki"
	"github.com/pinwall/pinwall/resolve"
	"github.com/pinwall/pinwall/tunnel"
)

// TransportMode selects how the tunnel is carried.
type TransportMode string

// Transport modes.
const (
	// TransportAuto tries DTLS first, then falls back to TLS.
	TransportAuto TransportMode = "auto"
	TransportTLS  TransportMode = "tls"
	TransportDTLS TransportMode = "dtls"
)

// Choices lists the valid modes (for configuration files).
func (TransportMode) Choices() []string { return []string{"auto", "tls", "dtls"} }

// ProxyConnectMode says what an upstream proxy's CONNECT request names.
type ProxyConnectMode string

// Proxy CONNECT targets.
const (
	// ProxyConnectAddr names the gateway's address and port as the client
	// resolved them (after Config.ProxyReach): any proxy can reach it
	// without resolving a name.
	ProxyConnectAddr ProxyConnectMode = "addr"
	// ProxyConnectName names the gateway's name (with the port of
	// ProxyConnectAddr), for a proxy that resolves the gateway's names
	// itself and may match rules on them before it resolves.
	ProxyConnectName ProxyConnectMode = "name"
)

// Choices lists the valid CONNECT targets.
func (ProxyConnectMode) Choices() []string { return []string{"addr", "name"} }

// FailMode says what happens to steered flows while no tunnel is up.
type FailMode string

// Fail modes.
const (
	// FailClose refuses steered flows (exceptions still go direct).
	FailClose FailMode = "close"
	// FailOpen sends steered flows direct.
	FailOpen FailMode = "open"
)

// Choices lists the valid fail modes.
func (FailMode) Choices() []string { return []string{"close", "open"} }

// Steering decides which flows go into the tunnel.
type Steering struct {
	// Ports are the destination ports steered into the tunnel; nil means 80 and 443.
	Ports []uint16
	// ExceptDomains go direct: exact names or "*.example.test" (any depth
	// below example.test, as steering exceptions are written in products).
	ExceptDomains []string
	// ExceptCIDRs go direct; nil means the RFC 1918 ranges, an empty
	// non-nil slice means none.
	ExceptCIDRs []netip.Prefix
}

// RFC1918 are the private ranges that go direct by default.
var RFC1918 = []netip.Prefix{
	netip.MustParsePrefix("10.0.0.0/8"),
	netip.MustParsePrefix("172.16.0.0/12"),
	netip.MustParsePrefix("192.168.0.0/16"),
}

// Config configures a Client. Zero values take the documented defaults.
type Config struct {
	// Name labels the device in logs ("laptop").
	Name string
	// Tenant names the customer tenant.
	Tenant string
	// Gateways are tried in order: the primary first, then backups (required).
	Gateways []string
	// Port is the gateway port for both transports; zero means 443.
	Port uint16
	// Transport is the mode; empty means TransportAuto.
	Transport TransportMode
	// FallbackTimeout bounds the DTLS attempt in auto mode; zero means 2s.
	FallbackTimeout time.Duration
	// HandshakeTimeout bounds a TLS (or dtls-only mode) handshake including
	// the gateway's greeting; zero means 10s.
	HandshakeTimeout time.Duration

	// Pins are the gateway key pins. When set, a presented chain is
	// accepted only if one of its keys is pinned (chain validation is not
	// needed and not done). When empty, the chain must verify against RootCAs.
	Pins pki.PinSet
	// RootCAs verifies the gateway's chain when Pins is empty.
	RootCAs *x509.CertPool
	// InsecureSkipVerify accepts any gateway certificate when Pins and
	// RootCAs are both empty. Only for modelling broken clients.
	InsecureSkipVerify bool
	// DeviceCert is presented to the gateway; nil presents none.
	DeviceCert *tls.Certificate

	// FailMode is what steered flows do with no tunnel; empty means FailClose.
	FailMode FailMode
	// Steering selects tunnelled flows.
	Steering Steering

	// Sessions is how many tunnels to keep; zero means 1.
	Sessions int
	// AttemptsPerGateway before moving to the next gateway; zero means 2.
	AttemptsPerGateway int
	// BackoffMin and BackoffMax bound the wait between attempts; zero means 100ms and 5s.
	BackoffMin, BackoffMax time.Duration
	// TunnelWait is how long a steered Dial waits for a tunnel to come up
	// before fail-open or fail-close applies; zero means 10s.
	TunnelWait time.Duration
	// DialTimeout bounds opening a flow (stream, request, gateway reply) or
	// a direct connection; zero means 15s.
	DialTimeout time.Duration

	// UpstreamProxy, if set ("http://10.10.10.254:8080"), carries the TLS
	// transport through an explicit proxy with CONNECT. DTLS is not proxied:
	// in TransportAuto the DTLS attempt goes straight to the gateway, around
	// the proxy (TransportTLS sends the whole tunnel through it).
	UpstreamProxy *url.URL
	// ProxyConnect is what the CONNECT request names; empty means
	// ProxyConnectAddr.
	ProxyConnect ProxyConnectMode
	// ProxyReach, if set, maps the gateway address the client resolved to
	// the address the upstream proxy reaches it at, when the proxy lives on
	// another network than the client's logical one (in process: the real
	// loopback socket standing in for the gateway's logical address, for a
	// real proxy on this machine). It returns false when the address has no
	// such stand-in. nil means the address itself.
	ProxyReach func(netip.AddrPort) (netip.AddrPort, bool)

	// Stack is the laptop's network (required).
	Stack hostnet.Stack
	// Resolver is the client's own resolver (required).
	Resolver resolve.Resolver
	// Logger receives operational messages; nil discards.
	Logger *slog.Logger
	// KeyLogWriter, if set, receives the secrets of every (D)TLS session
	// the client terminates in the NSS key log format (SSLKEYLOGFILE), for packet
	// captures that decrypt themselves (package capture). Nil logs none.
	KeyLogWriter io.Writer
	// Now returns the time for history; nil means time.Now.
	Now func() time.Time
	// Session tunes the multiplexers.
	Session tunnel.Config
	// SOCKSDestinations, if set, vets each SOCKS5 request's destination
	// (host as requested: a name or an IP literal) before ServeSOCKS dials
	// it: an error refuses the request with "connection not allowed by
	// ruleset" and nothing is dialled. nil allows every destination.
	SOCKSDestinations func(host string, port uint16) error
}

// validate rejects contradictions, then fills in the defaults.
func (c *Config) validate() error {
	if err := c.check(); err != nil {
		return err
	}
	c.setDefaults()
	return nil
}

// check reports every contradiction in c at once; it also spells an empty
// Transport and FailMode as their defaults.
func (c *Config) check() error {
	var errs []error
	if len(c.Gateways) == 0 {
		errs = append(errs, errors.New("at least one gateway is required"))
	}
	for _, g := range c.Gateways {
		if g == "" || strings.ContainsAny(g, ":/ ") {
			errs = append(errs, fmt.Errorf("gateway %q is not a host name", g))
		}
	}
	switch c.Transport {
	case "":
		c.Transport = TransportAuto
	case TransportAuto, TransportTLS, TransportDTLS:
	default:
		errs = append(errs, fmt.Errorf("transport %q is not one of auto, tls, dtls", c.Transport))
	}
	switch c.FailMode {
	case "":
		c.FailMode = FailClose
	case FailClose, FailOpen:
	default:
		errs = append(errs, fmt.Errorf("fail mode %q is not one of close, open", c.FailMode))
	}
	if len(c.Pins) == 0 && c.RootCAs == nil && !c.InsecureSkipVerify {
		errs = append(errs, errors.New("no way to verify the gateway: set Pins, RootCAs or InsecureSkipVerify"))
	}
	for _, p := range c.Pins {
		if _, err := pki.ParsePin(string(p)); err != nil {
			errs = append(errs, err)
		}
	}
	if c.Stack == nil {
		errs = append(errs, errors.New("field Stack is required"))
	}
	if c.Resolver == nil {
		errs = append(errs, errors.New("field Resolver is required"))
	}
	if c.UpstreamProxy != nil && c.UpstreamProxy.Scheme != "http" {
		errs = append(errs, fmt.Errorf("upstream proxy %q: only http:// (CONNECT) proxies are supported", c.UpstreamProxy))
	}
	switch c.ProxyConnect {
	case "":
		c.ProxyConnect = ProxyConnectAddr
	case ProxyConnectAddr, ProxyConnectName:
	default:
		errs = append(errs, fmt.Errorf("proxy CONNECT target %q is not one of addr, name", c.ProxyConnect))
	}
	if c.UpstreamProxy != nil && c.Transport == TransportDTLS {
		errs = append(errs, errors.New("an upstream proxy carries TCP only; transport dtls cannot use it"))
	}
	if c.BackoffMin > 0 && c.BackoffMax > 0 && c.BackoffMax < c.BackoffMin {
		errs = append(errs, fmt.Errorf("backoff max %v below min %v", c.BackoffMax, c.BackoffMin))
	}
	if err := c.Session.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// setDefaults fills in the zero fields of a checked config.
func (c *Config) setDefaults() {
	if c.Name == "" {
		c.Name = "client"
	}
	if c.Port == 0 {
		c.Port = 443
	}
	if c.FallbackTimeout <= 0 {
		c.FallbackTimeout = 2 * time.Second
	}
	if c.HandshakeTimeout <= 0 {
		c.HandshakeTimeout = 10 * time.Second
	}
	if c.Steering.Ports == nil {
		c.Steering.Ports = []uint16{80, 443}
	}
	if c.Steering.ExceptCIDRs == nil {
		c.Steering.ExceptCIDRs = RFC1918
	}
	if c.Sessions <= 0 {
		c.Sessions = 1
	}
	if c.AttemptsPerGateway <= 0 {
		c.AttemptsPerGateway = 2
	}
	if c.BackoffMin <= 0 {
		c.BackoffMin = 100 * time.Millisecond
	}
	if c.BackoffMax <= 0 {
		c.BackoffMax = 5 * time.Second
	}
	if c.TunnelWait <= 0 {
		c.TunnelWait = 10 * time.Second
	}
	if c.DialTimeout <= 0 {
		c.DialTimeout = 15 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}
