package gateway

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"time"

	"github.com/pinwall/pinwall/hostnet"
	"github.com/pinwall/pinwall/resolve"
	"github.com/pinwall/pinwall/tunnel"
)

// Config configures a Gateway. Zero durations and limits take the defaults
// documented per field.
type Config struct {
	// Name labels the gateway in its log ("gateway-acme.sse.test").
	Name string
	// Addr is where to listen, TCP and UDP on the same port; an unspecified
	// IP listens on every address of the Stack's host.
	Addr netip.AddrPort
	// UDPAddrs, if set, are the addresses to serve DTLS on, one socket
	// each, on Addr's port; empty serves UDP on Addr. A host holding a
	// pool of addresses needs this so each answer leaves from the address
	// its client sent to.
	UDPAddrs []netip.Addr
	// Certificate is the gateway's server certificate (required). Its SANs
	// should name the primary and backup gateway names.
	Certificate *tls.Certificate
	// ClientCAs verifies device certificates; required unless AllowAnonymous.
	ClientCAs *x509.CertPool
	// AllowAnonymous turns device authentication off: no client
	// certificate is requested. The zero value requires one on both
	// transports.
	AllowAnonymous bool
	// Stack is the gateway host's network (required).
	Stack hostnet.Stack
	// Resolver resolves inner destinations (required): the gateway's own
	// view of DNS, independent of the client's and the firewall's.
	Resolver resolve.Resolver
	// Log receives one JSON line per Event; nil keeps events in memory only.
	Log io.Writer
	// KeepEvents bounds events kept in memory (the log writes them all);
	// zero means DefaultKeepEvents (10000).
	KeepEvents int
	// Logger receives operational messages; nil discards.
	Logger *slog.Logger
	// KeyLogWriter, if set, receives the secrets of every (D)TLS session
	// the gateway terminates in the NSS key log format (SSLKEYLOGFILE), for packet
	// captures that decrypt themselves (package capture). Nil logs none.
	KeyLogWriter io.Writer
	// ProbeNames are server names a field probe (package probe) sends to
	// see what a firewall does to a server that does not ask for a client
	// certificate: a TLS ClientHello naming one of them gets the gateway's
	// certificate without a CertificateRequest, and the connection is
	// closed once the handshake completes, with no tunnel (a
	// tunnel-refused event whose reason says so). Empty: no such name.
	ProbeNames []string
	// Now returns the time for events; nil means time.Now.
	Now func() time.Time

	// MaxTunnels bounds concurrent authenticated tunnels; zero means 4096.
	// A tunnel takes a slot once its device is authenticated, so peers that
	// never authenticate cannot hold them.
	MaxTunnels int
	// MaxStreams bounds concurrent flows per tunnel; zero means 1024.
	MaxStreams int

	// Pre-authentication limits: what a peer that has not (yet)
	// authenticated can hold. Refusals are counted per source and logged
	// in summary (refusal-summary events), not one event each.

	// HandshakeTimeout is the pre-authentication deadline: the (D)TLS
	// handshake must complete within it, from the accepted connection (TLS)
	// or the first datagram (DTLS); zero means 5s. The multiplexer's setup
	// after authentication gets twice as long.
	HandshakeTimeout time.Duration
	// MaxHandshakesPerSource bounds the handshakes in progress from one
	// source address, per transport; zero means 32. Beyond it a new TCP
	// connection is closed at once and a new DTLS peer's datagrams are
	// dropped.
	MaxHandshakesPerSource int
	// MaxHandshakes bounds the handshakes in progress from all sources,
	// per transport; zero means 1024. Beyond it new attempts are refused,
	// not queued.
	MaxHandshakes int
	// MaxUnverified bounds DTLS peers that have not returned their
	// HelloVerifyRequest cookie (so may be forged sources); zero means 256.
	MaxUnverified int
	// CookieTimeout forgets a DTLS peer that has not returned its cookie
	// this long after its first datagram; zero means 3s.
	CookieTimeout time.Duration
	// RefusalSummary is the interval of refusal summaries: per source and
	// transport the first 10 refusals of an interval are logged one by one
	// and the rest counted in one refusal-summary event; zero means 10s.
	RefusalSummary time.Duration
	// HeaderTimeout bounds the wait for a stream's Request; zero means 10s.
	HeaderTimeout time.Duration
	// DialTimeout bounds resolving and dialing an origin; zero means 10s.
	DialTimeout time.Duration
	// Session tunes the multiplexers.
	Session tunnel.Config
}

func (c *Config) validate() error {
	var errs []error
	if c.Certificate == nil {
		errs = append(errs, errors.New("field Certificate is required"))
	}
	if c.ClientCAs == nil && !c.AllowAnonymous {
		errs = append(errs, errors.New("field ClientCAs is required unless AllowAnonymous"))
	}
	if c.Stack == nil {
		errs = append(errs, errors.New("field Stack is required"))
	}
	if c.Resolver == nil {
		errs = append(errs, errors.New("field Resolver is required"))
	}
	if !c.Addr.IsValid() {
		errs = append(errs, errors.New("field Addr is required"))
	}
	if err := c.Session.Validate(); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	if c.Name == "" {
		c.Name = "gateway"
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.MaxTunnels <= 0 {
		c.MaxTunnels = 4096
	}
	if c.MaxStreams <= 0 {
		c.MaxStreams = 1024
	}
	if c.HandshakeTimeout <= 0 {
		c.HandshakeTimeout = 5 * time.Second
	}
	if c.MaxHandshakesPerSource <= 0 {
		c.MaxHandshakesPerSource = 32
	}
	if c.MaxHandshakes <= 0 {
		c.MaxHandshakes = 1024
	}
	if c.MaxUnverified <= 0 {
		c.MaxUnverified = 256
	}
	if c.CookieTimeout <= 0 {
		c.CookieTimeout = 3 * time.Second
	}
	if c.RefusalSummary <= 0 {
		c.RefusalSummary = 10 * time.Second
	}
	if c.HeaderTimeout <= 0 {
		c.HeaderTimeout = 10 * time.Second
	}
	if c.DialTimeout <= 0 {
		c.DialTimeout = 10 * time.Second
	}
	return nil
}
