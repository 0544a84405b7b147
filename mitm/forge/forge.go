package forge

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/sync/singleflight"

	"github.com/pinwall/pinwall/pki"
)

// Defaults for zero Config fields.
const (
	// DefaultCacheSize is the number of forged leaves kept when Config.CacheSize is 0.
	DefaultCacheSize = 1024
	// DefaultFallbackName is the name forged for a client that sent no SNI
	// when no upstream certificate is known and Config.FallbackName is empty.
	// The .invalid TLD (RFC 6761) can never be a real name.
	DefaultFallbackName = "pinwall-forged.invalid"
	// DefaultValidity is how long a leaf is valid when no upstream
	// certificate bounds it.
	DefaultValidity = 365 * 24 * time.Hour
	// backdate is how far before now a leaf starts, to tolerate clock skew.
	backdate = time.Hour
)

// ErrInvalidConfig is wrapped by every error Config.Validate returns.
var ErrInvalidConfig = errors.New("forge: invalid config")

// KeyMode chooses the key of a forged leaf.
type KeyMode string

// The key modes. The zero value means KeyFollowUpstream.
const (
	// KeyFollowUpstream gives the leaf a key of the upstream certificate's
	// type, and for RSA of its size (2048, 3072 or 4096 bits; other sizes
	// take the next of these, at most 4096), and for ECDSA of its curve
	// (P-256 or P-384; others P-256), as PAN-OS and FortiOS forge. Without
	// an upstream certificate, or for another key type (Ed25519), the leaf
	// gets a key of the signing CA's algorithm. One key per algorithm is
	// generated on first use and reused.
	KeyFollowUpstream KeyMode = "upstream"
	// KeyFixed gives every leaf the same key (Config.LeafKey, or one of the
	// CA's algorithm generated at New), as mitmproxy and sslsplit do.
	KeyFixed KeyMode = "fixed"
)

// Config configures a Forger. Only CA is required; the zero value of every
// other field is documented and safe. A Config is copied by New and not
// referenced afterwards.
type Config struct {
	// CA signs the leaves: the enterprise (forward trust) CA. Required; its
	// certificate must be a CA certificate and its key must be set. With
	// ECDSACA set it signs the leaves whose key is not ECDSA.
	CA *pki.CA
	// ECDSACA, if set, signs the leaves with an ECDSA key, CA the others:
	// PAN-OS keeps separate forward trust certificates for RSA and ECDSA.
	// Its key must be ECDSA. nil means CA signs every leaf.
	ECDSACA *pki.CA
	// UntrustedCA signs the leaves forged for a server whose certificate
	// the firewall does not trust (ForgeUntrusted), so the client sees an
	// untrusted certificate as it would without the firewall (PAN-OS
	// Forward Untrust, FortiOS Fortinet_CA_Untrusted). nil generates one at
	// New (ECDSA P-256, "pinwall Forward Untrust CA"), trusted by no one.
	UntrustedCA *pki.CA
	// KeyMode chooses each leaf's key; zero means KeyFollowUpstream.
	KeyMode KeyMode
	// CacheSize bounds how many forged leaves are kept (LRU). 0 means
	// DefaultCacheSize; negative is an error.
	CacheSize int
	// Now returns the current time, used for validity periods. nil means
	// time.Now.
	Now func() time.Time
	// Logger receives a record per signing and per eviction. nil discards.
	Logger *slog.Logger
	// LeafKey is the key of every forged leaf with KeyFixed. nil generates
	// one key at New, of the CA's algorithm (ECDSA P-256 for an ECDSA CA,
	// RSA-2048 for an RSA CA). RSA, ECDSA and Ed25519 keys are accepted.
	// Setting it with the zero KeyMode means KeyFixed.
	LeafKey crypto.Signer
	// Rand is the entropy source for generating leaf keys. nil means
	// crypto/rand. Serial numbers and signatures use the CA's own pki.Config.
	Rand io.Reader
	// FallbackName is the DNS name (or IP literal) forged for a client that
	// sent no SNI when no upstream certificate is known. "" means
	// DefaultFallbackName.
	FallbackName string
}

// Validate reports the first problem with c, wrapping ErrInvalidConfig.
func (c Config) Validate() error {
	switch {
	case c.CA == nil:
		return fmt.Errorf("%w: CA is required (the enterprise CA that signs forged leaves)", ErrInvalidConfig)
	case c.CA.Cert == nil || c.CA.Key == nil:
		return fmt.Errorf("%w: CA needs both a certificate and a key", ErrInvalidConfig)
	case !c.CA.Cert.IsCA:
		return fmt.Errorf("%w: CA certificate %q is not a CA certificate (basicConstraints CA:FALSE)", ErrInvalidConfig, c.CA.Cert.Subject)
	case c.CA.Cert.KeyUsage != 0 && c.CA.Cert.KeyUsage&x509.KeyUsageCertSign == 0:
		return fmt.Errorf("%w: CA certificate %q lacks the keyCertSign key usage", ErrInvalidConfig, c.CA.Cert.Subject)
	case c.CacheSize < 0:
		return fmt.Errorf("%w: CacheSize %d is negative (0 means %d)", ErrInvalidConfig, c.CacheSize, DefaultCacheSize)
	}
	if _, err := leafAlgorithm(c.CA.Key); err != nil && c.LeafKey == nil {
		return fmt.Errorf("%w: %v; set LeafKey", ErrInvalidConfig, err)
	}
	switch c.KeyMode {
	case "", KeyFollowUpstream, KeyFixed:
	default:
		return fmt.Errorf("%w: KeyMode %q is not %s or %s", ErrInvalidConfig, c.KeyMode, KeyFollowUpstream, KeyFixed)
	}
	for _, x := range []struct {
		name string
		ca   *pki.CA
	}{{"ECDSACA", c.ECDSACA}, {"UntrustedCA", c.UntrustedCA}} {
		if x.ca == nil {
			continue
		}
		switch {
		case x.ca.Cert == nil || x.ca.Key == nil:
			return fmt.Errorf("%w: %s needs both a certificate and a key", ErrInvalidConfig, x.name)
		case !x.ca.Cert.IsCA:
			return fmt.Errorf("%w: %s certificate %q is not a CA certificate", ErrInvalidConfig, x.name, x.ca.Cert.Subject)
		}
	}
	if c.ECDSACA != nil {
		if _, ok := c.ECDSACA.Key.(*ecdsa.PrivateKey); !ok {
			return fmt.Errorf("%w: ECDSACA has a %T key, not an ECDSA one", ErrInvalidConfig, c.ECDSACA.Key)
		}
	}
	if c.LeafKey != nil {
		switch c.LeafKey.Public().(type) {
		case *rsa.PublicKey, *ecdsa.PublicKey, ed25519.PublicKey:
		default:
			return fmt.Errorf("%w: LeafKey type %T is not RSA, ECDSA or Ed25519", ErrInvalidConfig, c.LeafKey)
		}
	}
	if c.FallbackName != "" {
		if _, err := netip.ParseAddr(c.FallbackName); err != nil && !validDNSName(c.FallbackName) {
			return fmt.Errorf("%w: FallbackName %q is neither a DNS name nor an IP literal", ErrInvalidConfig, c.FallbackName)
		}
	}
	return nil
}

// Note records a way a forged leaf departs from a plain copy of the upstream
// certificate. Notes are stable strings meant for logs.
type Note string

// Notes a Forged may carry.
const (
	// NoteSNINotCovered: the upstream certificate does not cover the SNI, so
	// the SNI was added to the forged SANs (a client checking the name would
	// have failed against the real server).
	NoteSNINotCovered Note = "sni-not-covered-by-upstream"
	// NoteNoUpstream: no upstream certificate was available; the leaf names
	// only the SNI (or the fallback name).
	NoteNoUpstream Note = "no-upstream-certificate"
	// NoteNoSNI: the client sent no SNI.
	NoteNoSNI Note = "no-sni"
	// NoteFallbackName: neither SNI nor upstream certificate; the leaf names
	// Config.FallbackName.
	NoteFallbackName Note = "fallback-name"
	// NoteUpstreamExpired: the upstream certificate has expired, and so has
	// the forged leaf.
	NoteUpstreamExpired Note = "upstream-expired"
	// NoteValidityClampedToCA: the leaf's validity was cut to the CA's.
	NoteValidityClampedToCA Note = "validity-clamped-to-ca"
)

// Forged is a forged leaf and what is known about how it was made. A Forged
// is shared by every caller asking for the same (SNI, upstream) pair: treat it
// as read-only.
type Forged struct {
	// Certificate is the chain [leaf, enterprise CA] with the shared leaf key
	// and Leaf parsed.
	Certificate *tls.Certificate
	// ServerName is the normalised SNI (lower case, no trailing dot); "" when
	// the client sent none.
	ServerName string
	// Fingerprint is the forged leaf's SHA-256 fingerprint (pki.Fingerprint).
	Fingerprint string
	// UpstreamFingerprint is the upstream leaf's SHA-256 fingerprint; "" when
	// no upstream certificate was available.
	UpstreamFingerprint string
	// Key names the leaf's key algorithm ("ecdsa-p256", "rsa-2048").
	Key pki.KeyAlgorithm
	// Untrusted reports that the leaf was signed by the untrusted CA.
	Untrusted bool
	// Notes lists the departures from a plain copy of the upstream certificate.
	Notes []Note
}

// Has reports whether n is among the notes.
func (f *Forged) Has(n Note) bool { return slices.Contains(f.Notes, n) }

// Leaf returns the parsed forged leaf.
func (f *Forged) Leaf() *x509.Certificate { return f.Certificate.Leaf }

// Stats counts cache and signing activity since New.
type Stats struct {
	// Hits is the number of requests served from the cache.
	Hits uint64
	// Misses is the number of requests that did not find a usable leaf in the
	// cache (each either signed one or waited for a concurrent signing).
	Misses uint64
	// Signings is the number of leaves signed.
	Signings uint64
	// Evictions is the number of leaves the LRU dropped at capacity.
	Evictions uint64
	// Cached is the number of leaves currently in the cache.
	Cached int
}

type cacheKey struct {
	sni       string
	upstream  string // upstream SHA-256 fingerprint, "" for none
	untrusted bool
}

// Forger forges leaves signed by the enterprise CA. It is safe for
// concurrent use and needs no Close: it starts no goroutine of its own
// beyond the signings callers are waiting for.
type Forger struct {
	ca, ecdsaCA, untrustedCA *pki.CA
	mode                     KeyMode
	rand                     io.Reader
	now                      func() time.Time
	log                      *slog.Logger
	leafKey                  crypto.Signer // KeyFixed's key, and the CA algorithm's
	fallbackName             string
	cache                    *lru.Cache[cacheKey, *Forged]
	flight                   singleflight.Group

	keyMu   sync.Mutex
	keys    map[pki.KeyAlgorithm]crypto.Signer
	keyWait singleflight.Group

	hits, misses, signings, evictions atomic.Uint64
}

// New validates cfg and returns a Forger. It generates the key of the CA's
// algorithm here (tens of milliseconds for RSA-2048) unless LeafKey is set,
// and the untrusted CA unless UntrustedCA is set.
func New(cfg Config) (*Forger, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	f := &Forger{
		ca:           cfg.CA,
		ecdsaCA:      cfg.ECDSACA,
		untrustedCA:  cfg.UntrustedCA,
		mode:         cfg.KeyMode,
		rand:         cfg.Rand,
		now:          cfg.Now,
		log:          cfg.Logger,
		leafKey:      cfg.LeafKey,
		fallbackName: cfg.FallbackName,
		keys:         map[pki.KeyAlgorithm]crypto.Signer{},
	}
	if f.mode == "" {
		f.mode = KeyFollowUpstream
		if cfg.LeafKey != nil {
			f.mode = KeyFixed
		}
	}
	if f.now == nil {
		f.now = time.Now
	}
	if f.log == nil {
		f.log = slog.New(slog.DiscardHandler)
	}
	if f.fallbackName == "" {
		f.fallbackName = DefaultFallbackName
	}
	alg, _ := leafAlgorithm(cfg.CA.Key) // checked by Validate
	if f.leafKey == nil {
		key, err := pki.Config{Algorithm: alg, Rand: cfg.Rand}.GenerateKey()
		if err != nil {
			return nil, fmt.Errorf("forge: generate leaf key: %w", err)
		}
		f.leafKey = key
	}
	if a, ok := pki.AlgorithmOf(f.leafKey.Public()); ok {
		f.keys[a] = f.leafKey
	}
	if f.untrustedCA == nil {
		ca, err := pki.NewCA(pki.Config{Rand: cfg.Rand, Now: cfg.Now}, "pinwall Forward Untrust CA", "pinwall firewall (untrusted)")
		if err != nil {
			return nil, fmt.Errorf("forge: untrusted CA: %w", err)
		}
		f.untrustedCA = ca
	}
	size := cfg.CacheSize
	if size == 0 {
		size = DefaultCacheSize
	}
	cache, err := lru.NewWithEvict(size, func(k cacheKey, _ *Forged) {
		f.evictions.Add(1)
		f.log.Debug("forge: evicted", "sni", k.sni, "upstream_fingerprint", k.upstream)
	})
	if err != nil {
		return nil, fmt.Errorf("forge: cache: %w", err)
	}
	f.cache = cache
	return f, nil
}

// UntrustedCA returns the CA that signs leaves for untrusted servers.
func (f *Forger) UntrustedCA() *pki.CA { return f.untrustedCA }

// LeafKey returns the key of the CA's algorithm (or Config.LeafKey): every
// leaf's key with KeyFixed, the key of leaves without an upstream
// certificate otherwise.
func (f *Forger) LeafKey() crypto.Signer { return f.leafKey }

// CA returns the signing CA.
func (f *Forger) CA() *pki.CA { return f.ca }

// Stats returns the counters.
func (f *Forger) Stats() Stats {
	return Stats{
		Hits:      f.hits.Load(),
		Misses:    f.misses.Load(),
		Signings:  f.signings.Load(),
		Evictions: f.evictions.Load(),
		Cached:    f.cache.Len(),
	}
}

// Certificate returns the chain [leaf, enterprise CA] to present for sni,
// imitating upstream (nil when no upstream certificate is available). See
// Forge.
func (f *Forger) Certificate(ctx context.Context, sni string, upstream *x509.Certificate) (*tls.Certificate, error) {
	fg, err := f.Forge(ctx, sni, upstream)
	if err != nil {
		return nil, err
	}
	return fg.Certificate, nil
}

// Forge returns the forged leaf for (sni, upstream), from the cache or
// freshly signed. Concurrent requests for the same pair share one signing;
// each waiter returns early with ctx's error if ctx ends first (the signing
// still completes and is cached). sni may be empty or an IP literal; upstream
// may be nil.
func (f *Forger) Forge(ctx context.Context, sni string, upstream *x509.Certificate) (*Forged, error) {
	return f.forge(ctx, sni, upstream, false)
}

// ForgeUntrusted is Forge with the leaf signed by the untrusted CA: what a
// forward proxy presents for a server whose certificate it does not trust,
// so that the client sees an untrusted certificate.
func (f *Forger) ForgeUntrusted(ctx context.Context, sni string, upstream *x509.Certificate) (*Forged, error) {
	return f.forge(ctx, sni, upstream, true)
}

func (f *Forger) forge(ctx context.Context, sni string, upstream *x509.Certificate, untrusted bool) (*Forged, error) {
	name := normalizeName(sni)
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("forge: %s: %w", display(name), err)
	}
	k := cacheKey{sni: name, untrusted: untrusted}
	if upstream != nil {
		k.upstream = pki.Fingerprint(upstream)
	}
	if fg, ok := f.cache.Get(k); ok && f.usable(fg) {
		f.hits.Add(1)
		return fg, nil
	}
	f.misses.Add(1)
	ch := f.flight.DoChan(fmt.Sprintf("%s\x00%s\x00%t", k.sni, k.upstream, k.untrusted), func() (any, error) {
		// A signing for k may have finished between the cache miss above
		// and joining the flight.
		if fg, ok := f.cache.Peek(k); ok && f.usable(fg) {
			return fg, nil
		}
		fg, err := f.sign(context.WithoutCancel(ctx), k, upstream)
		if err != nil {
			return nil, err
		}
		f.cache.Add(k, fg)
		return fg, nil
	})
	select {
	case res := <-ch:
		if res.Err != nil {
			return nil, res.Err
		}
		return res.Val.(*Forged), nil
	case <-ctx.Done():
		return nil, fmt.Errorf("forge: %s: %w", display(name), ctx.Err())
	}
}

// ServerConfig returns a clone of base (nil means an empty tls.Config) that
// presents the forged chain for (sni, upstream). The clone's GetCertificate
// and GetConfigForClient are cleared so that Certificates is what the server
// sends. It takes no context: use Forge or Certificate where a signing must
// be abandoned on cancellation.
func (f *Forger) ServerConfig(base *tls.Config, sni string, upstream *x509.Certificate) (*tls.Config, error) {
	cert, err := f.Certificate(context.Background(), sni, upstream)
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{}
	if base != nil {
		cfg = base.Clone()
	}
	cfg.Certificates = []tls.Certificate{*cert}
	cfg.GetCertificate = nil
	cfg.GetConfigForClient = nil
	return cfg, nil
}

// UpstreamFunc returns the upstream certificate for a ClientHello, or nil
// when there is none.
type UpstreamFunc func(hello *tls.ClientHelloInfo) (*x509.Certificate, error)

// GetCertificate returns a tls.Config.GetCertificate callback forging for the
// ClientHello's SNI. upstream may be nil (no upstream certificate).
func (f *Forger) GetCertificate(upstream UpstreamFunc) func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
		var up *x509.Certificate
		if upstream != nil {
			var err error
			if up, err = upstream(hello); err != nil {
				return nil, fmt.Errorf("forge: upstream certificate for %s: %w", display(hello.ServerName), err)
			}
		}
		return f.Certificate(hello.Context(), hello.ServerName, up)
	}
}

// usable reports whether a cached leaf can still be served: it has not
// expired, unless it was forged expired on purpose.
func (f *Forger) usable(fg *Forged) bool {
	return fg.Has(NoteUpstreamExpired) || f.now().Before(fg.Certificate.Leaf.NotAfter)
}

func (f *Forger) sign(ctx context.Context, k cacheKey, upstream *x509.Certificate) (*Forged, error) {
	key, alg, err := f.keyFor(ctx, upstream)
	if err != nil {
		return nil, fmt.Errorf("forge: sign %s: %w", display(k.sni), err)
	}
	ca := f.ca
	switch {
	case k.untrusted:
		ca = f.untrustedCA
	case f.ecdsaCA != nil:
		if _, isECDSA := key.(*ecdsa.PrivateKey); isECDSA {
			ca = f.ecdsaCA
		}
	}
	now := f.now()
	name := k.sni
	ip, ipErr := netip.ParseAddr(name)
	isIP := ipErr == nil
	var notes []Note
	if name == "" {
		notes = append(notes, NoteNoSNI)
	}
	leaf := pki.Leaf{Usage: pki.ServerAuth, Key: key}
	notAfter := now.Add(DefaultValidity)
	if upstream != nil {
		leaf.Subject = copySubject(upstream.Subject)
		leaf.DNSNames = slices.Clone(upstream.DNSNames)
		for _, a := range upstream.IPAddresses {
			leaf.IPs = append(leaf.IPs, slices.Clone(a))
		}
		if name != "" && upstream.VerifyHostname(name) != nil {
			if isIP {
				leaf.IPs = append(leaf.IPs, net.IP(ip.AsSlice()))
			} else {
				leaf.DNSNames = append(leaf.DNSNames, name)
			}
			notes = append(notes, NoteSNINotCovered)
		}
		notAfter = upstream.NotAfter
	} else {
		notes = append(notes, NoteNoUpstream)
		if name == "" {
			name = f.fallbackName
			ip, ipErr = netip.ParseAddr(name)
			isIP = ipErr == nil
			notes = append(notes, NoteFallbackName)
		}
		if isIP {
			leaf.IPs = []net.IP{ip.AsSlice()}
		} else {
			leaf.DNSNames = []string{name}
		}
		leaf.Subject = pkix.Name{CommonName: name}
	}

	notBefore := now.Add(-backdate)
	if caNB := ca.Cert.NotBefore; notBefore.Before(caNB) {
		notBefore = caNB
		notes = append(notes, NoteValidityClampedToCA)
	}
	if caNA := ca.Cert.NotAfter; notAfter.After(caNA) {
		notAfter = caNA
		if !slices.Contains(notes, NoteValidityClampedToCA) {
			notes = append(notes, NoteValidityClampedToCA)
		}
	}
	if upstream != nil && !notAfter.After(now) {
		notes = append(notes, NoteUpstreamExpired)
	}
	if !notAfter.After(notBefore) {
		// Expired upstream: keep its end, start an hour earlier.
		notBefore = notAfter.Add(-backdate)
	}
	leaf.NotBefore, leaf.NotAfter = notBefore, notAfter

	issued, err := ca.Issue(leaf)
	if err != nil {
		return nil, fmt.Errorf("forge: sign %s: %w", display(k.sni), err)
	}
	f.signings.Add(1)
	issued.Certificate = append(issued.Certificate, ca.Cert.Raw)
	fg := &Forged{
		Certificate:         issued,
		ServerName:          k.sni,
		Fingerprint:         pki.Fingerprint(issued.Leaf),
		UpstreamFingerprint: k.upstream,
		Key:                 alg,
		Untrusted:           k.untrusted,
		Notes:               notes,
	}
	level := slog.LevelDebug
	if fg.Has(NoteSNINotCovered) || fg.Has(NoteUpstreamExpired) {
		level = slog.LevelInfo
	}
	f.log.Log(context.Background(), level, "forge: signed leaf",
		"sni", k.sni,
		"fingerprint", fg.Fingerprint,
		"upstream_fingerprint", k.upstream,
		"dns_names", issued.Leaf.DNSNames,
		"not_after", notAfter,
		"key", alg,
		"untrusted", k.untrusted,
		"notes", notes)
	return fg, nil
}

// keyFor returns the leaf key for an upstream certificate and its
// algorithm: the fixed key, or one following the upstream's key.
func (f *Forger) keyFor(ctx context.Context, upstream *x509.Certificate) (crypto.Signer, pki.KeyAlgorithm, error) {
	fixed := func() (crypto.Signer, pki.KeyAlgorithm, error) {
		alg, _ := pki.AlgorithmOf(f.leafKey.Public())
		if alg == "" {
			alg = pki.KeyAlgorithm(fmt.Sprintf("%T", f.leafKey.Public()))
		}
		return f.leafKey, alg, nil
	}
	if f.mode == KeyFixed || upstream == nil {
		return fixed()
	}
	alg, ok := FollowAlgorithm(upstream.PublicKey)
	if !ok {
		return fixed()
	}
	f.keyMu.Lock()
	key := f.keys[alg]
	f.keyMu.Unlock()
	if key != nil {
		return key, alg, nil
	}
	// One generation per algorithm (an RSA-4096 key takes about a second);
	// concurrent signings wait for it, each until its own context ends.
	ch := f.keyWait.DoChan(string(alg), func() (any, error) {
		f.keyMu.Lock()
		k := f.keys[alg]
		f.keyMu.Unlock()
		if k != nil {
			return k, nil
		}
		k, err := pki.Config{Algorithm: alg, Rand: f.rand}.GenerateKey()
		if err != nil {
			return nil, err
		}
		f.keyMu.Lock()
		f.keys[alg] = k
		f.keyMu.Unlock()
		f.log.Info("forge: generated a leaf key", "algorithm", alg)
		return k, nil
	})
	select {
	case res := <-ch:
		if res.Err != nil {
			return nil, "", fmt.Errorf("generate %s key: %w", alg, res.Err)
		}
		return res.Val.(crypto.Signer), alg, nil
	case <-ctx.Done():
		return nil, "", ctx.Err()
	}
}

// FollowAlgorithm returns the algorithm of a forged key that follows an
// upstream public key: RSA of the same size (2048, 3072 or 4096; other
// sizes the next of these, at most 4096), ECDSA on the same curve (P-256
// or P-384; others P-256). false for other key types.
func FollowAlgorithm(pub crypto.PublicKey) (pki.KeyAlgorithm, bool) {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		switch bits := k.N.BitLen(); {
		case bits <= 2048:
			return pki.RSA2048, true
		case bits <= 3072:
			return pki.RSA3072, true
		default:
			return pki.RSA4096, true
		}
	case *ecdsa.PublicKey:
		if k.Curve == elliptic.P384() {
			return pki.ECDSAP384, true
		}
		return pki.ECDSAP256, true
	}
	return "", false
}

// copySubject copies the standard attributes of an upstream subject. The
// parsed Names are left out so that the template's fields are what is
// encoded.
func copySubject(s pkix.Name) pkix.Name {
	return pkix.Name{
		Country:            slices.Clone(s.Country),
		Organization:       slices.Clone(s.Organization),
		OrganizationalUnit: slices.Clone(s.OrganizationalUnit),
		Locality:           slices.Clone(s.Locality),
		Province:           slices.Clone(s.Province),
		StreetAddress:      slices.Clone(s.StreetAddress),
		PostalCode:         slices.Clone(s.PostalCode),
		SerialNumber:       s.SerialNumber,
		CommonName:         s.CommonName,
	}
}

func leafAlgorithm(caKey crypto.Signer) (pki.KeyAlgorithm, error) {
	switch caKey.(type) {
	case *ecdsa.PrivateKey:
		return pki.ECDSAP256, nil
	case *rsa.PrivateKey:
		return pki.RSA2048, nil
	default:
		return "", fmt.Errorf("cannot generate a leaf key for a %T CA key", caKey)
	}
}

// normalizeName lower-cases a DNS name and drops a trailing dot; an IP
// literal (bracketed or not) becomes its canonical text.
func normalizeName(sni string) string {
	s := strings.TrimSuffix(strings.TrimSpace(sni), ".")
	if a, err := netip.ParseAddr(strings.Trim(s, "[]")); err == nil {
		return a.WithZone("").String()
	}
	return strings.ToLower(s)
}

func display(name string) string {
	if name == "" {
		return "(no sni)"
	}
	return name
}

func validDNSName(s string) bool {
	s = strings.TrimSuffix(s, ".")
	if s == "" || len(s) > 253 {
		return false
	}
	for label := range strings.SplitSeq(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				return false
			}
		}
	}
	return true
}
