package harness

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/pinwall/pinwall/client"
	"github.com/pinwall/pinwall/hostnet"
	"github.com/pinwall/pinwall/interceptors"
	"github.com/pinwall/pinwall/mitm/policy"
)

// Default addresses and names (docs/topology.md).
var (
	DefaultLAN         = netip.MustParsePrefix("10.10.10.0/24")
	DefaultLaptop      = netip.MustParseAddr("10.10.10.100")
	DefaultFWInside    = netip.MustParseAddr("10.10.10.254")
	DefaultFWOutside   = netip.MustParseAddr("198.51.100.1")
	DefaultTenant      = "acme"
	PrimaryGateway     = "gateway-acme.sse.test"
	BackupGateway      = "gateway-backup-acme.sse.test"
	DefaultPrimaryPool = netip.MustParsePrefix("203.0.113.8/30")
	DefaultBackupPool  = netip.MustParsePrefix("203.0.113.136/30")
)

// DefaultOrigins are the simulated SaaS sites.
var DefaultOrigins = []OriginSpec{
	{Name: "www.social.test", Addr: netip.MustParseAddr("192.0.2.10")},
	{Name: "app.files.test", Addr: netip.MustParseAddr("192.0.2.20")},
	{Name: "login.mail.test", Addr: netip.MustParseAddr("192.0.2.30")},
	{Name: "www.bank.test", Addr: netip.MustParseAddr("192.0.2.40")},
}

// Spec describes a topology. Zero fields take the defaults of
// docs/topology.md.
type Spec struct {
	// Tenant names the customer; empty means "acme".
	Tenant string `yaml:"tenant"`
	// LAN is the laptop's network; zero means 10.10.10.0/24.
	LAN netip.Prefix `yaml:"lan"`
	// Laptop is the address of the laptop running the client; zero means 10.10.10.100.
	Laptop netip.Addr `yaml:"laptop"`
	// ExtraHosts are other LAN hosts without the client (for sni-spoof).
	ExtraHosts []HostSpec `yaml:"extra-hosts"`
	// Firewall, if set, sits between the LAN and the internet.
	Firewall *FirewallSpec `yaml:"-"`
	// Gateways are the gateway names and their address pools; nil (absent)
	// means the default primary and backup of docs/topology.md.
	Gateways []GatewaySpec `yaml:"gateways"`
	// Origins are the SaaS sites; nil (absent) means the four default sites
	// of docs/topology.md.
	Origins []OriginSpec `yaml:"origins"`
	// Client configures the endpoint client.
	Client ClientSpec `yaml:"-"`
	// Gateway configures every gateway.
	Gateway GatewayConfigSpec `yaml:"-"`
}

// HostSpec names a LAN host.
type HostSpec struct {
	// Name names the host in probes, selectors and reports.
	Name string `yaml:"name,required"`
	// Addr is its address, inside the LAN.
	Addr netip.Addr `yaml:"addr,required"`
}

// GatewaySpec is one gateway name and the pool of addresses it answers with.
type GatewaySpec struct {
	// Name is the gateway's DNS name; its certificate covers every gateway name.
	Name string `yaml:"name,required"`
	// Pool is the data-plane addresses behind the name (prefixes are expanded).
	Pool []netip.Prefix `yaml:"pool,required"`
	// Answer is how many addresses one DNS answer holds; zero means all.
	Answer int `yaml:"answer"`
	// Rotate makes successive answers walk the pool, like a GSLB.
	Rotate bool `yaml:"rotate"`
	// TTL of the answers; zero means 60s.
	TTL time.Duration `yaml:"ttl"`
}

// Addrs expands the pool.
func (g GatewaySpec) Addrs() []netip.Addr {
	var out []netip.Addr
	for _, p := range g.Pool {
		p = p.Masked()
		if p.Bits() == 32 {
			out = append(out, p.Addr())
			continue
		}
		a := p.Addr()
		size := 1 << (32 - p.Bits())
		for i := 0; i < size; i++ {
			// Skip the network and broadcast addresses of subnets larger than /31.
			if size > 2 && (i == 0 || i == size-1) {
				a = a.Next()
				continue
			}
			out = append(out, a)
			a = a.Next()
		}
	}
	return out
}

// OriginSpec is one SaaS site.
type OriginSpec struct {
	// Name is the site's DNS name (its certificate's name).
	Name string `yaml:"name,required"`
	// Addr is the site's address.
	Addr netip.Addr `yaml:"addr,required"`
}

// PinMode says what the client pins.
type PinMode string

// Pin modes.
const (
	// PinGateway pins the gateway's key (the default).
	PinGateway PinMode = "gateway"
	// PinNone pins nothing: the chain is verified against the trusted CAs.
	PinNone PinMode = "none"
	// PinWrong pins a key the gateway does not have.
	PinWrong PinMode = "wrong"
)

// Choices lists the pin modes.
func (PinMode) Choices() []string { return []string{"gateway", "none", "wrong"} }

// DeviceCertMode says which device certificate the client presents.
type DeviceCertMode string

// Device certificate modes.
const (
	// DeviceCertValid presents a certificate from the tenant CA (the default).
	DeviceCertValid DeviceCertMode = "valid"
	// DeviceCertNone presents none.
	DeviceCertNone DeviceCertMode = "none"
	// DeviceCertForeign presents one from a CA the gateway does not trust.
	DeviceCertForeign DeviceCertMode = "foreign"
)

// Choices lists the device certificate modes.
func (DeviceCertMode) Choices() []string { return []string{"valid", "none", "foreign"} }

// TrustStore names a CA the laptop trusts.
type TrustStore string

// Trust stores.
const (
	TrustInternet   TrustStore = "internet"
	TrustEnterprise TrustStore = "enterprise"
)

// Choices lists the trust stores.
func (TrustStore) Choices() []string { return []string{"internet", "enterprise"} }

// ClientSpec configures the endpoint client.
type ClientSpec struct {
	// Gateways the client uses, in order; nil (absent) means every gateway
	// of the topology, in its order.
	Gateways []string `yaml:"gateways"`
	// Transport: auto (default), tls, dtls.
	Transport client.TransportMode `yaml:"transport"`
	// Pin: gateway (default), none, wrong.
	Pin PinMode `yaml:"pin"`
	// DeviceCert: valid (default), none, foreign.
	DeviceCert DeviceCertMode `yaml:"device-cert"`
	// Trust lists the CAs the laptop trusts; nil means [internet]. A managed
	// laptop also trusts the enterprise CA.
	Trust []TrustStore `yaml:"trust"`
	// FailMode: close (default) or open.
	FailMode client.FailMode `yaml:"fail-mode"`
	// ExceptDomains and ExceptCIDRs go direct (CIDRs default to RFC 1918).
	ExceptDomains []string       `yaml:"except-domains"`
	ExceptCIDRs   []netip.Prefix `yaml:"except-cidrs"`
	// FallbackTimeout bounds the DTLS attempt; zero means 1s.
	FallbackTimeout time.Duration `yaml:"fallback-timeout"`
	// HandshakeTimeout bounds a TLS attempt; zero means 5s.
	HandshakeTimeout time.Duration `yaml:"handshake-timeout"`
	// TunnelWait bounds how long a flow waits for a tunnel; zero means 5s.
	TunnelWait time.Duration `yaml:"tunnel-wait"`
	// AttemptsPerGateway before failing over; zero means 2.
	AttemptsPerGateway int `yaml:"attempts-per-gateway"`
	// Sessions is the number of tunnels; zero means 1.
	Sessions int `yaml:"sessions"`
	// UpstreamProxy "firewall" sends the TLS tunnel through the firewall's
	// explicit proxy; empty means none.
	UpstreamProxy string `yaml:"upstream-proxy"`
	// UDPLoss drops this fraction of the laptop's datagrams (0..1).
	UDPLoss float64 `yaml:"udp-loss"`
	// Keepalive is the tunnel's keepalive interval (a dead gateway is
	// noticed after three silent intervals); zero means 5s.
	Keepalive time.Duration `yaml:"keepalive"`
}

// GatewayConfigSpec configures every gateway.
type GatewayConfigSpec struct {
	// AllowAnonymous accepts tunnels without a device certificate.
	AllowAnonymous bool `yaml:"allow-anonymous"`
	// MaxStreams bounds flows per tunnel; zero means 1024.
	MaxStreams int `yaml:"max-streams"`
	// Keepalive is the keepalive interval the gateway expects of clients:
	// a DTLS tunnel silent for three intervals is ended (a client whose
	// path died tells nothing over UDP); zero means 5s. It must not be
	// shorter than the client's keepalive.
	Keepalive time.Duration `yaml:"keepalive"`
}

// FirewallSpec places a firewall between the LAN and the internet.
type FirewallSpec struct {
	// Kind is what stands in the firewall's place: pinwall's own (the
	// zero Kind) or a third-party interceptor (mitmproxy, squid,
	// sslsplit), which the container runner runs from Debian packages
	// with the policy translated by package interceptors.
	Kind interceptors.Kind `yaml:"kind"`
	// Inside and Outside are its two legs; zero means 10.10.10.254 and 198.51.100.1.
	Inside  netip.Addr `yaml:"inside"`
	Outside netip.Addr `yaml:"outside"`
	// Policy is the rule base; nil means PolicyYAML, then PolicyFile, then
	// DefaultPolicyYAML (allow everything, decrypt nothing).
	Policy *policy.Policy `yaml:"policy"`
	// PolicyFile is a policy file's path (resolved by whoever loads the spec).
	PolicyFile string `yaml:"policy-file"`
	// PolicyYAML is a policy's text, for topologies built in code.
	PolicyYAML string `yaml:"-"`
	// ProxyPort is the explicit (CONNECT) proxy port on the inside leg; zero means 8080.
	ProxyPort uint16 `yaml:"proxy-port"`
}

// WithDefaults returns a copy of s with every zero field defaulted.
func (s Spec) WithDefaults() Spec {
	if s.Tenant == "" {
		s.Tenant = DefaultTenant
	}
	if !s.LAN.IsValid() {
		s.LAN = DefaultLAN
	}
	if !s.Laptop.IsValid() {
		s.Laptop = DefaultLaptop
	}
	if s.Gateways == nil {
		s.Gateways = []GatewaySpec{
			{Name: PrimaryGateway, Pool: []netip.Prefix{DefaultPrimaryPool}, Answer: 1, Rotate: true},
			{Name: BackupGateway, Pool: []netip.Prefix{DefaultBackupPool}, Answer: 1, Rotate: true},
		}
	}
	if s.Origins == nil {
		s.Origins = slices.Clone(DefaultOrigins)
	}
	if s.Firewall != nil {
		fw := *s.Firewall
		if !fw.Inside.IsValid() {
			fw.Inside = DefaultFWInside
		}
		if !fw.Outside.IsValid() {
			fw.Outside = DefaultFWOutside
		}
		if fw.ProxyPort == 0 {
			fw.ProxyPort = 8080
		}
		s.Firewall = &fw
	}
	c := &s.Client
	if c.Gateways == nil {
		for _, g := range s.Gateways {
			c.Gateways = append(c.Gateways, g.Name)
		}
	}
	if c.Transport == "" {
		c.Transport = client.TransportAuto
	}
	if c.Pin == "" {
		c.Pin = PinGateway
	}
	if c.DeviceCert == "" {
		c.DeviceCert = DeviceCertValid
	}
	if c.Trust == nil {
		c.Trust = []TrustStore{TrustInternet}
	}
	if c.FailMode == "" {
		c.FailMode = client.FailClose
	}
	if c.FallbackTimeout == 0 {
		c.FallbackTimeout = time.Second
	}
	if c.HandshakeTimeout == 0 {
		c.HandshakeTimeout = 5 * time.Second
	}
	if c.TunnelWait == 0 {
		c.TunnelWait = 5 * time.Second
	}
	return s
}

// Validate checks a Spec (with its defaults applied) for contradictions.
func (s Spec) Validate() error {
	s = s.WithDefaults()
	var errs []error
	if !s.LAN.Contains(s.Laptop) {
		errs = append(errs, fmt.Errorf("laptop %s is outside the LAN %s", s.Laptop, s.LAN))
	}
	for _, h := range s.ExtraHosts {
		if !s.LAN.Contains(h.Addr) {
			errs = append(errs, fmt.Errorf("extra host %s (%s) is outside the LAN %s", h.Name, h.Addr, s.LAN))
		}
	}
	names := map[string]bool{}
	for _, g := range s.Gateways {
		if len(g.Addrs()) == 0 {
			errs = append(errs, fmt.Errorf("gateway %s has an empty pool", g.Name))
		}
		names[g.Name] = true
	}
	for _, n := range s.Client.Gateways {
		if !names[n] {
			errs = append(errs, fmt.Errorf("client gateway %q is not one of the topology's gateways", n))
		}
	}
	if s.Client.UpstreamProxy != "" && s.Client.UpstreamProxy != "firewall" {
		errs = append(errs, fmt.Errorf("client upstream-proxy %q: only \"firewall\" is supported", s.Client.UpstreamProxy))
	}
	if s.Client.UpstreamProxy == "firewall" && s.Firewall == nil {
		errs = append(errs, errors.New("client upstream-proxy is the firewall but there is no firewall"))
	}
	if s.Firewall != nil {
		if err := s.Firewall.Kind.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("firewall kind: %w", err))
		}
	}
	if s.Client.UDPLoss < 0 || s.Client.UDPLoss > 1 {
		errs = append(errs, fmt.Errorf("client udp-loss %v is not within 0..1", s.Client.UDPLoss))
	}
	return errors.Join(errs...)
}

// NoImpairment clears a host's impairment.
var NoImpairment = hostnet.Impairment{}
