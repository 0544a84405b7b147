package mitm

import (
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"time"

	"github.com/pinwall/pinwall/hostnet"
	"github.com/pinwall/pinwall/mitm/forge"
	"github.com/pinwall/pinwall/mitm/fwlog"
	"github.com/pinwall/pinwall/mitm/policy"
	"github.com/pinwall/pinwall/pki"
	"github.com/pinwall/pinwall/resolve"
)

// Config configures a Firewall. Zero values take the documented defaults.
type Config struct {
	// Name labels the firewall in logs; empty means "pinwall-fw".
	Name string
	// Outside is the network the firewall dials destinations through
	// (its outside leg, whose address is the sessions' NAT source). Required.
	Outside hostnet.Stack
	// Policy is the rule base (required).
	Policy *policy.Policy
	// CA is the enterprise CA that signs forged leaves (required); with
	// ECDSACA set, the one that signs the leaves whose key is not ECDSA.
	CA *pki.CA
	// ECDSACA, if set, signs the forged leaves with an ECDSA key (PAN-OS
	// keeps separate forward trust certificates for RSA and ECDSA).
	ECDSACA *pki.CA
	// UntrustedCA signs the leaves presented for a server whose certificate
	// the firewall does not trust (rule option untrusted-cert untrusted-ca,
	// the default); nil means one generated at New, trusted by no one.
	UntrustedCA *pki.CA
	// ForgeKeyMode chooses the forged leaves' keys; zero means their type
	// and size follow the server's certificate (forge.KeyFollowUpstream).
	ForgeKeyMode forge.KeyMode
	// Roots verifies upstream certificates when decrypting (required): the
	// firewall's own trust store.
	Roots *x509.CertPool
	// Resolver resolves FQDN objects and CONNECT targets (required): the
	// firewall's own view of DNS.
	Resolver resolve.Resolver
	// Writers receive every session record (e.g. fwlog.NewWriter on a file).
	Writers []fwlog.Logger
	// KeepRecords bounds the records kept in memory; zero means 100000.
	KeepRecords int
	// Logger receives operational messages; nil discards.
	Logger *slog.Logger
	// KeyLogWriter, if set, receives the secrets of the sessions the
	// firewall terminates when it decrypts (both its client-facing and its
	// server-facing session, and sni-cert-check's probes) in the NSS key log
	// format, for packet captures that decrypt themselves (package capture).
	// Nil logs none.
	KeyLogWriter io.Writer
	// Now is the firewall's clock (logs, exclusion expiry, FQDN refresh); nil means time.Now.
	Now func() time.Time

	// PeekTimeout bounds the wait for a full ClientHello; zero means 10s.
	PeekTimeout time.Duration
	// PeekMaxBytes bounds a ClientHello; zero means 32 KiB.
	PeekMaxBytes int
	// HandshakeTimeout bounds each TLS handshake of a decrypted session; zero means 10s.
	HandshakeTimeout time.Duration
	// DialTimeout bounds connecting to a destination; zero means 10s.
	DialTimeout time.Duration
	// EarlyDials bounds the connections to destinations the firewall opens
	// ahead of their sessions' ClientHellos, as an inline firewall passes
	// the TCP handshake before any data (see earlydial.go); zero means
	// DefaultEarlyDials, negative means none: every session connects after
	// its hello.
	EarlyDials int
	// MaxSessions bounds concurrent TCP sessions; zero means 20000.
	MaxSessions int
	// MaxUDPFlows bounds tracked UDP flows; zero means 20000.
	MaxUDPFlows int
	// Serial is the device serial number written in vendor logs.
	Serial string
	// UpstreamSessions, when positive, keeps that many TLS sessions (an LRU
	// keyed by server name) so that the firewall's server-facing handshakes
	// resume (TLS 1.3 PSK or a TLS 1.2 ticket) instead of asking the server
	// for a signature each time, as Broadcom ProxySG's SSL origination
	// session cache does (docs/sources.md). It changes only what the
	// firewall sends the server: the client-facing leg, the forged leaf
	// and the logged upstream certificate (kept in the resumed session)
	// stay the same. Zero means none: every upstream handshake is a full
	// one, the behaviour of the vendors whose documentation does not say.
	UpstreamSessions int
}

// DefaultEarlyDials is Config.EarlyDials's zero value.
const DefaultEarlyDials = 256

func (c *Config) validate() error {
	var errs []error
	if c.Outside == nil {
		errs = append(errs, errors.New("field Outside is required"))
	}
	if c.Policy == nil {
		errs = append(errs, errors.New("field Policy is required"))
	}
	if c.CA == nil {
		errs = append(errs, errors.New("field CA is required"))
	}
	if c.Roots == nil {
		errs = append(errs, errors.New("field Roots is required"))
	}
	if c.Resolver == nil {
		errs = append(errs, errors.New("field Resolver is required"))
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	if c.Name == "" {
		c.Name = "pinwall-fw"
	}
	if c.KeepRecords <= 0 {
		c.KeepRecords = 100000
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.EarlyDials == 0 {
		c.EarlyDials = DefaultEarlyDials
	}
	if c.PeekTimeout <= 0 {
		c.PeekTimeout = 10 * time.Second
	}
	if c.PeekMaxBytes <= 0 {
		c.PeekMaxBytes = 32 << 10
	}
	if c.HandshakeTimeout <= 0 {
		c.HandshakeTimeout = 10 * time.Second
	}
	if c.DialTimeout <= 0 {
		c.DialTimeout = 10 * time.Second
	}
	if c.MaxSessions <= 0 {
		c.MaxSessions = 20000
	}
	if c.MaxUDPFlows <= 0 {
		c.MaxUDPFlows = 20000
	}
	return nil
}
