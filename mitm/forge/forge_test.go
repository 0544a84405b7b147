package forge

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/pinwall/pinwall/pki"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var algorithms = []pki.KeyAlgorithm{pki.ECDSAP256, pki.RSA2048}

// fixture is one run's authorities and the gateway's real certificate.
type fixture struct {
	set      *pki.Set
	upstream *x509.Certificate
	now      time.Time
}

var fixtureNow = time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)

func newFixture(t testing.TB, alg pki.KeyAlgorithm) *fixture {
	t.Helper()
	now := fixtureNow
	cfg := pki.Config{Now: func() time.Time { return now }}
	internet, err := pki.NewCA(cfg, "pinwall Internet Root CA", "pinwall simulated internet")
	require.NoError(t, err)
	enterprise, err := pki.NewCA(pki.Config{Algorithm: alg, Now: cfg.Now}, "pinwall Enterprise Forward Trust CA", "pinwall enterprise firewall")
	require.NoError(t, err)
	up, err := internet.Issue(pki.Leaf{
		Subject: pkix.Name{
			CommonName:         "gateway-acme.sse.test",
			Organization:       []string{"Acme SSE"},
			OrganizationalUnit: []string{"edge"},
			Country:            []string{"US"},
			Locality:           []string{"Santa Clara"},
		},
		DNSNames:  []string{"gateway-acme.sse.test", "gateway-backup-acme.sse.test"},
		IPs:       []net.IP{net.ParseIP("203.0.113.10").To4()},
		NotBefore: now.Add(-24 * time.Hour),
		NotAfter:  now.Add(90 * 24 * time.Hour),
	})
	require.NoError(t, err)
	return &fixture{
		set:      &pki.Set{Internet: internet, Enterprise: enterprise},
		upstream: up.Leaf,
		now:      now,
	}
}

func (fx *fixture) forger(t testing.TB, mutate ...func(*Config)) *Forger {
	t.Helper()
	cfg := Config{CA: fx.set.Enterprise, Now: func() time.Time { return fx.now }}
	for _, m := range mutate {
		m(&cfg)
	}
	f, err := New(cfg)
	require.NoError(t, err)
	return f
}

func (fx *fixture) verify(t *testing.T, fg *Forged, name string) {
	t.Helper()
	_, err := fg.Leaf().Verify(x509.VerifyOptions{
		DNSName:     name,
		Roots:       fx.set.Enterprise.Pool(),
		CurrentTime: fx.now,
		KeyUsages:   []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	require.NoError(t, err, "forged leaf must verify for %q against the enterprise CA", name)
}

func TestConfigValidate(t *testing.T) {
	fx := newFixture(t, pki.ECDSAP256)
	leafCA, err := fx.set.Internet.Issue(pki.Leaf{DNSNames: []string{"x.test"}})
	require.NoError(t, err)
	notCA := &pki.CA{Cert: leafCA.Leaf, Key: fx.set.Internet.Key}

	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"no CA", Config{}, "CA is required"},
		{"CA without key", Config{CA: &pki.CA{Cert: fx.set.Enterprise.Cert}}, "both a certificate and a key"},
		{"leaf as CA", Config{CA: notCA}, "not a CA certificate"},
		{"negative cache", Config{CA: fx.set.Enterprise, CacheSize: -1}, "CacheSize -1 is negative"},
		{"bad fallback", Config{CA: fx.set.Enterprise, FallbackName: "not a name"}, "FallbackName"},
		{"ok", Config{CA: fx.set.Enterprise}, ""},
		{"ok ip fallback", Config{CA: fx.set.Enterprise, FallbackName: "198.51.100.1"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if tt.want == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, ErrInvalidConfig)
			assert.ErrorContains(t, err, tt.want)
			_, err = New(tt.cfg)
			assert.ErrorIs(t, err, ErrInvalidConfig)
		})
	}
}

func TestForgedLeafMimicsUpstream(t *testing.T) {
	for _, alg := range algorithms {
		t.Run(string(alg), func(t *testing.T) {
			fx := newFixture(t, alg)
			f := fx.forger(t)
			fg, err := f.Forge(t.Context(), "Gateway-ACME.sse.test.", fx.upstream)
			require.NoError(t, err)
			leaf := fg.Leaf()

			fx.verify(t, fg, "gateway-acme.sse.test")
			fx.verify(t, fg, "gateway-backup-acme.sse.test")
			_, err = leaf.Verify(x509.VerifyOptions{DNSName: "gateway-acme.sse.test", Roots: fx.set.Internet.Pool(), CurrentTime: fx.now})
			assert.Error(t, err, "forged leaf must not chain to the internet CA")

			up := fx.upstream.Subject
			assert.Equal(t, up.CommonName, leaf.Subject.CommonName)
			assert.Equal(t, up.Organization, leaf.Subject.Organization)
			assert.Equal(t, up.OrganizationalUnit, leaf.Subject.OrganizationalUnit)
			assert.Equal(t, up.Country, leaf.Subject.Country)
			assert.Equal(t, up.Locality, leaf.Subject.Locality)
			assert.Equal(t, fx.upstream.DNSNames, leaf.DNSNames)
			require.Len(t, leaf.IPAddresses, 1)
			assert.True(t, leaf.IPAddresses[0].Equal(net.ParseIP("203.0.113.10")))
			assert.Equal(t, fx.set.Enterprise.Cert.Subject.String(), leaf.Issuer.String())
			assert.NotEqual(t, fx.upstream.SerialNumber, leaf.SerialNumber)
			assert.Equal(t, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, leaf.ExtKeyUsage)

			assert.Equal(t, fx.now.Add(-time.Hour), leaf.NotBefore)
			assert.Equal(t, fx.upstream.NotAfter, leaf.NotAfter)

			require.Len(t, fg.Certificate.Certificate, 2, "chain is [leaf, enterprise CA]")
			assert.Equal(t, fx.set.Enterprise.Cert.Raw, fg.Certificate.Certificate[1])
			assert.Equal(t, "gateway-acme.sse.test", fg.ServerName)
			assert.Equal(t, pki.Fingerprint(fx.upstream), fg.UpstreamFingerprint)
			assert.Equal(t, pki.Fingerprint(leaf), fg.Fingerprint)
			assert.Empty(t, fg.Notes)

			// The leaf's key follows the upstream's (ECDSA P-256 here),
			// whatever the CA's.
			assert.Equal(t, x509.ECDSA, leaf.PublicKeyAlgorithm)
			assert.Equal(t, pki.ECDSAP256, fg.Key)
			switch alg {
			case pki.RSA2048:
				assert.IsType(t, &rsa.PrivateKey{}, f.LeafKey(), "the CA's algorithm for leaves without upstream")
			default:
				assert.IsType(t, &ecdsa.PrivateKey{}, f.LeafKey())
			}
		})
	}
}

// TestKeyFollowsUpstream checks that the forged key takes the upstream
// certificate's type, RSA size and curve, and that KeyFixed does not.
func TestKeyFollowsUpstream(t *testing.T) {
	fx := newFixture(t, pki.ECDSAP256)
	issue := func(alg pki.KeyAlgorithm) *x509.Certificate {
		key, err := pki.Config{Algorithm: alg}.GenerateKey()
		require.NoError(t, err)
		c, err := fx.set.Internet.Issue(pki.Leaf{Subject: pkix.Name{CommonName: "www.social.test"}, DNSNames: []string{"www.social.test"}, Key: key})
		require.NoError(t, err)
		return c.Leaf
	}
	f := fx.forger(t)
	for _, alg := range []pki.KeyAlgorithm{pki.RSA2048, pki.RSA3072, pki.ECDSAP256, pki.ECDSAP384} {
		up := issue(alg)
		fg, err := f.Forge(t.Context(), "www.social.test", up)
		require.NoError(t, err)
		assert.Equal(t, alg, fg.Key, alg)
		got, ok := pki.AlgorithmOf(fg.Leaf().PublicKey)
		require.True(t, ok)
		assert.Equal(t, alg, got, "the leaf's key is %s like the server's", alg)
		fx.verify(t, fg, "www.social.test")
	}
	a, err := f.Forge(t.Context(), "a.test", issue(pki.RSA2048))
	require.NoError(t, err)
	b, err := f.Forge(t.Context(), "b.test", issue(pki.RSA2048))
	require.NoError(t, err)
	assert.Equal(t, pki.SPKIPin(a.Leaf()), pki.SPKIPin(b.Leaf()), "one key per algorithm, reused")

	fixed := fx.forger(t, func(c *Config) { c.KeyMode = KeyFixed })
	fg, err := fixed.Forge(t.Context(), "www.social.test", issue(pki.RSA2048))
	require.NoError(t, err)
	assert.Equal(t, x509.ECDSA, fg.Leaf().PublicKeyAlgorithm, "KeyFixed: the CA's algorithm")

	for bits, want := range map[int]pki.KeyAlgorithm{1024: pki.RSA2048, 2048: pki.RSA2048, 2049: pki.RSA3072, 3072: pki.RSA3072, 8192: pki.RSA4096} {
		got, ok := FollowAlgorithm(&rsa.PublicKey{N: new(big.Int).Lsh(big.NewInt(1), uint(bits-1)), E: 65537})
		assert.True(t, ok)
		assert.Equal(t, want, got, bits)
	}
	_, ok := FollowAlgorithm(ed25519.PublicKey(make([]byte, 32)))
	assert.False(t, ok)
}

// TestRSAAndECDSACAs checks that with both forward trust CAs the ECDSA one
// signs ECDSA leaves and the RSA one the others.
func TestRSAAndECDSACAs(t *testing.T) {
	fx := newFixture(t, pki.RSA2048)
	ecCA, err := pki.NewCA(pki.Config{Now: func() time.Time { return fx.now }}, "pinwall Enterprise Forward Trust ECDSA", "pinwall enterprise firewall")
	require.NoError(t, err)
	f := fx.forger(t, func(c *Config) { c.ECDSACA = ecCA })
	fg, err := f.Forge(t.Context(), "gateway-acme.sse.test", fx.upstream) // ECDSA upstream
	require.NoError(t, err)
	assert.Equal(t, ecCA.Cert.Raw, fg.Certificate.Certificate[1], "an ECDSA leaf under the ECDSA CA")
	rsaKey, err := pki.Config{Algorithm: pki.RSA2048}.GenerateKey()
	require.NoError(t, err)
	rsaUp, err := fx.set.Internet.Issue(pki.Leaf{DNSNames: []string{"www.bank.test"}, Key: rsaKey})
	require.NoError(t, err)
	fg, err = f.Forge(t.Context(), "www.bank.test", rsaUp.Leaf)
	require.NoError(t, err)
	assert.Equal(t, fx.set.Enterprise.Cert.Raw, fg.Certificate.Certificate[1], "an RSA leaf under the RSA CA")
	assert.Equal(t, x509.RSA, fg.Leaf().PublicKeyAlgorithm)

	_, err = New(Config{CA: fx.set.Enterprise, ECDSACA: fx.set.Enterprise})
	assert.ErrorContains(t, err, "ECDSACA has a *rsa.PrivateKey key")
}

// TestUntrustedCA checks that a leaf forged for an untrusted server is
// signed by the untrusted CA, which the clients do not trust.
func TestUntrustedCA(t *testing.T) {
	fx := newFixture(t, pki.ECDSAP256)
	f := fx.forger(t)
	fg, err := f.ForgeUntrusted(t.Context(), "gateway-acme.sse.test", fx.upstream)
	require.NoError(t, err)
	assert.True(t, fg.Untrusted)
	assert.Equal(t, f.UntrustedCA().Cert.Raw, fg.Certificate.Certificate[1])
	_, err = fg.Leaf().Verify(x509.VerifyOptions{DNSName: "gateway-acme.sse.test", Roots: fx.set.Enterprise.Pool(), CurrentTime: fx.now})
	assert.Error(t, err, "the enterprise trust store does not accept it")
	_, err = fg.Leaf().Verify(x509.VerifyOptions{DNSName: "gateway-acme.sse.test", Roots: f.UntrustedCA().Pool(), CurrentTime: fx.now})
	assert.NoError(t, err)
	trusted, err := f.Forge(t.Context(), "gateway-acme.sse.test", fx.upstream)
	require.NoError(t, err)
	assert.NotEqual(t, trusted.Fingerprint, fg.Fingerprint, "cached apart")

	own, err := pki.NewCA(pki.Config{Now: func() time.Time { return fx.now }}, "Acme Forward Untrust", "Acme")
	require.NoError(t, err)
	g := fx.forger(t, func(c *Config) { c.UntrustedCA = own })
	assert.Equal(t, own, g.UntrustedCA())
}

func TestSharedLeafKey(t *testing.T) {
	fx := newFixture(t, pki.ECDSAP256)
	f := fx.forger(t)
	a, err := f.Forge(t.Context(), "a.sse.test", nil)
	require.NoError(t, err)
	b, err := f.Forge(t.Context(), "b.sse.test", nil)
	require.NoError(t, err)
	assert.Equal(t, pki.SPKIPin(a.Leaf()), pki.SPKIPin(b.Leaf()), "every leaf shares one key")
	assert.NotEqual(t, a.Fingerprint, b.Fingerprint)

	key, err := pki.Config{}.GenerateKey()
	require.NoError(t, err)
	g := fx.forger(t, func(c *Config) { c.LeafKey = key })
	fg, err := g.Forge(t.Context(), "a.sse.test", nil)
	require.NoError(t, err)
	assert.True(t, key.Public().(*ecdsa.PublicKey).Equal(fg.Leaf().PublicKey))
}

func TestSNINotCoveredByUpstream(t *testing.T) {
	fx := newFixture(t, pki.ECDSAP256)
	wild, err := fx.set.Internet.Issue(pki.Leaf{
		Subject:  pkix.Name{CommonName: "*.sse.test"},
		DNSNames: []string{"*.sse.test"},
	})
	require.NoError(t, err)
	f := fx.forger(t)

	tests := []struct {
		name     string
		sni      string
		upstream *x509.Certificate
		covered  bool
	}{
		{"wildcard covers one label", "gateway-acme.sse.test", wild.Leaf, true},
		{"wildcard misses regional name", "gateway-acme.eu.sse.test", wild.Leaf, false},
		{"other name", "www.social.test", fx.upstream, false},
		{"ip covered", "203.0.113.10", fx.upstream, true},
		{"ip not covered", "203.0.113.11", fx.upstream, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fg, err := f.Forge(t.Context(), tt.sni, tt.upstream)
			require.NoError(t, err)
			assert.Equal(t, !tt.covered, fg.Has(NoteSNINotCovered), "notes %v", fg.Notes)
			require.NoError(t, fg.Leaf().VerifyHostname(tt.sni), "the forged leaf always covers the SNI")
			fx.verify(t, fg, tt.sni)
			assert.Equal(t, tt.upstream.Subject.CommonName, fg.Leaf().Subject.CommonName)
		})
	}
}

func TestNoUpstreamCertificate(t *testing.T) {
	fx := newFixture(t, pki.ECDSAP256)
	f := fx.forger(t)

	fg, err := f.Forge(t.Context(), "gateway-acme.sse.test", nil)
	require.NoError(t, err)
	assert.Equal(t, []string{"gateway-acme.sse.test"}, fg.Leaf().DNSNames)
	assert.Equal(t, "gateway-acme.sse.test", fg.Leaf().Subject.CommonName)
	assert.Equal(t, []Note{NoteNoUpstream}, fg.Notes)
	assert.Empty(t, fg.UpstreamFingerprint)
	assert.Equal(t, fx.now.Add(DefaultValidity), fg.Leaf().NotAfter)
	fx.verify(t, fg, "gateway-acme.sse.test")

	fg, err = f.Forge(t.Context(), "203.0.113.10", nil)
	require.NoError(t, err)
	assert.Empty(t, fg.Leaf().DNSNames)
	require.Len(t, fg.Leaf().IPAddresses, 1)
	assert.Equal(t, "203.0.113.10", fg.Leaf().IPAddresses[0].String())
	require.NoError(t, fg.Leaf().VerifyHostname("203.0.113.10"))

	fg, err = f.Forge(t.Context(), "", nil)
	require.NoError(t, err)
	assert.Equal(t, []string{DefaultFallbackName}, fg.Leaf().DNSNames)
	assert.Equal(t, []Note{NoteNoSNI, NoteNoUpstream, NoteFallbackName}, fg.Notes)

	g := fx.forger(t, func(c *Config) { c.FallbackName = "198.51.100.1" })
	fg, err = g.Forge(t.Context(), "", nil)
	require.NoError(t, err)
	require.NoError(t, fg.Leaf().VerifyHostname("198.51.100.1"))

	// No SNI but an upstream: a plain copy, noted.
	fg, err = f.Forge(t.Context(), "", fx.upstream)
	require.NoError(t, err)
	assert.Equal(t, fx.upstream.DNSNames, fg.Leaf().DNSNames)
	assert.Equal(t, []Note{NoteNoSNI}, fg.Notes)
}

func TestValidityClamping(t *testing.T) {
	fx := newFixture(t, pki.ECDSAP256)
	f := fx.forger(t)
	caNA := fx.set.Enterprise.Cert.NotAfter

	long, err := fx.set.Internet.Issue(pki.Leaf{DNSNames: []string{"long.test"}, NotAfter: caNA.Add(24 * time.Hour)})
	require.NoError(t, err)
	fg, err := f.Forge(t.Context(), "long.test", long.Leaf)
	require.NoError(t, err)
	assert.Equal(t, caNA, fg.Leaf().NotAfter)
	assert.True(t, fg.Has(NoteValidityClampedToCA))

	expiredAt := fx.now.Add(-48 * time.Hour)
	expired, err := fx.set.Internet.Issue(pki.Leaf{
		DNSNames:  []string{"expired.test"},
		NotBefore: fx.now.Add(-72 * time.Hour),
		NotAfter:  expiredAt,
	})
	require.NoError(t, err)
	fg, err = f.Forge(t.Context(), "expired.test", expired.Leaf)
	require.NoError(t, err)
	assert.True(t, fg.Has(NoteUpstreamExpired))
	assert.Equal(t, expiredAt, fg.Leaf().NotAfter)
	assert.True(t, fg.Leaf().NotBefore.Before(fg.Leaf().NotAfter))
	_, err = fg.Leaf().Verify(x509.VerifyOptions{DNSName: "expired.test", Roots: fx.set.Enterprise.Pool(), CurrentTime: fx.now})
	var invalid x509.CertificateInvalidError
	require.ErrorAs(t, err, &invalid, "an expired upstream yields an expired forgery")
	assert.Equal(t, x509.Expired, invalid.Reason)

	// The expired forgery is still served from the cache.
	_, err = f.Forge(t.Context(), "expired.test", expired.Leaf)
	require.NoError(t, err)
	assert.Equal(t, uint64(1), f.Stats().Hits)

	// A clock before the CA's start: the leaf starts with the CA.
	early := fx.forger(t, func(c *Config) {
		c.Now = func() time.Time { return fx.set.Enterprise.Cert.NotBefore.Add(10 * time.Minute) }
	})
	fg, err = early.Forge(t.Context(), "early.test", nil)
	require.NoError(t, err)
	assert.Equal(t, fx.set.Enterprise.Cert.NotBefore, fg.Leaf().NotBefore)
	assert.True(t, fg.Has(NoteValidityClampedToCA))
}

func TestCacheHitsAndMisses(t *testing.T) {
	fx := newFixture(t, pki.ECDSAP256)
	f := fx.forger(t)
	ctx := t.Context()

	a, err := f.Forge(ctx, "gateway-acme.sse.test", fx.upstream)
	require.NoError(t, err)
	assert.Equal(t, Stats{Misses: 1, Signings: 1, Cached: 1}, f.Stats())

	b, err := f.Forge(ctx, "GATEWAY-ACME.SSE.TEST", fx.upstream)
	require.NoError(t, err)
	assert.Same(t, a, b, "names are case-insensitive")
	assert.Equal(t, Stats{Hits: 1, Misses: 1, Signings: 1, Cached: 1}, f.Stats())

	c, err := f.Forge(ctx, "gateway-acme.sse.test", nil)
	require.NoError(t, err)
	assert.NotSame(t, a, c, "the key includes the upstream fingerprint")

	other, err := fx.set.Internet.Issue(pki.Leaf{DNSNames: []string{"gateway-acme.sse.test"}})
	require.NoError(t, err)
	d, err := f.Forge(ctx, "gateway-acme.sse.test", other.Leaf)
	require.NoError(t, err)
	assert.NotSame(t, a, d, "a rotated upstream certificate is forged anew")
	assert.Equal(t, Stats{Hits: 1, Misses: 3, Signings: 3, Cached: 3}, f.Stats())

	cert, err := f.Certificate(ctx, "gateway-acme.sse.test", fx.upstream)
	require.NoError(t, err)
	assert.Same(t, a.Certificate, cert)
	assert.Equal(t, uint64(2), f.Stats().Hits)
}

func TestExpiredCacheEntryIsReplaced(t *testing.T) {
	fx := newFixture(t, pki.ECDSAP256)
	var mu sync.Mutex
	now := fx.now
	f := fx.forger(t, func(c *Config) {
		c.Now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	})
	a, err := f.Forge(t.Context(), "x.test", nil)
	require.NoError(t, err)
	mu.Lock()
	now = a.Leaf().NotAfter.Add(time.Minute)
	mu.Unlock()
	b, err := f.Forge(t.Context(), "x.test", nil)
	require.NoError(t, err)
	assert.NotSame(t, a, b)
	assert.Equal(t, uint64(2), f.Stats().Signings)
}

func TestConcurrentRequestsSignOnce(t *testing.T) {
	for _, alg := range algorithms {
		t.Run(string(alg), func(t *testing.T) {
			fx := newFixture(t, alg)
			f := fx.forger(t)
			const n = 64
			var (
				start = make(chan struct{})
				wg    sync.WaitGroup
				got   [n]*Forged
				errs  [n]error
			)
			for i := range n {
				wg.Go(func() {
					<-start
					got[i], errs[i] = f.Forge(context.Background(), "gateway-acme.sse.test", fx.upstream)
				})
			}
			close(start)
			wg.Wait()
			for i := range n {
				require.NoError(t, errs[i])
				assert.Same(t, got[0], got[i])
			}
			st := f.Stats()
			assert.Equal(t, uint64(1), st.Signings, "exactly one signing for one name")
			assert.Equal(t, uint64(n), st.Hits+st.Misses)
			assert.Equal(t, 1, st.Cached)
		})
	}
}

func TestEvictionAtCapacity(t *testing.T) {
	fx := newFixture(t, pki.ECDSAP256)
	f := fx.forger(t, func(c *Config) { c.CacheSize = 2 })
	ctx := t.Context()
	for _, name := range []string{"a.test", "b.test", "c.test"} {
		_, err := f.Forge(ctx, name, nil)
		require.NoError(t, err)
	}
	assert.Equal(t, Stats{Misses: 3, Signings: 3, Evictions: 1, Cached: 2}, f.Stats())

	_, err := f.Forge(ctx, "c.test", nil) // most recent: hit
	require.NoError(t, err)
	_, err = f.Forge(ctx, "a.test", nil) // evicted first: signed again, evicts b
	require.NoError(t, err)
	assert.Equal(t, Stats{Hits: 1, Misses: 4, Signings: 4, Evictions: 2, Cached: 2}, f.Stats())
}

// gatedReader is crypto/rand whose reads block while the gate is closed.
type gatedReader struct {
	mu   sync.Mutex
	gate chan struct{} // nil: open
	hit  chan struct{} // receives once when a read blocks
}

func (g *gatedReader) Read(p []byte) (int, error) {
	g.mu.Lock()
	gate, hit := g.gate, g.hit
	g.hit = nil
	g.mu.Unlock()
	if gate != nil {
		if hit != nil {
			close(hit)
		}
		<-gate
	}
	return rand.Read(p)
}

func (g *gatedReader) close() (blocked <-chan struct{}, open func()) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.gate = make(chan struct{})
	hit := make(chan struct{})
	g.hit = hit
	gate := g.gate
	return hit, func() {
		g.mu.Lock()
		g.gate = nil
		g.mu.Unlock()
		close(gate)
	}
}

func TestContextCancellation(t *testing.T) {
	fx := newFixture(t, pki.ECDSAP256)
	gr := &gatedReader{}
	now := func() time.Time { return fx.now }
	ca, err := pki.NewCA(pki.Config{Rand: gr, Now: now}, "gated CA", "pinwall")
	require.NoError(t, err)
	f, err := New(Config{CA: ca, Now: now})
	require.NoError(t, err)

	cancelled, cancel := context.WithCancel(t.Context())
	cancel()
	_, err = f.Forge(cancelled, "a.test", nil)
	require.ErrorIs(t, err, context.Canceled)
	assert.Equal(t, Stats{}, f.Stats(), "a cancelled request does no work")

	blocked, open := gr.close()
	signer := make(chan error, 1)
	go func() {
		_, err := f.Forge(context.Background(), "b.test", nil)
		signer <- err
	}()
	<-blocked // the signing is in progress and stuck

	ctx, cancelWaiter := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancelWaiter()
	_, err = f.Forge(ctx, "b.test", nil)
	require.ErrorIs(t, err, context.DeadlineExceeded, "a waiter honours its own context")

	open()
	require.NoError(t, <-signer)
	st := f.Stats()
	assert.Equal(t, uint64(1), st.Signings)
	assert.Equal(t, uint64(2), st.Misses)
	fg, err := f.Forge(t.Context(), "b.test", nil)
	require.NoError(t, err)
	assert.Equal(t, "b.test", fg.ServerName)
	assert.Equal(t, uint64(1), f.Stats().Hits)
}

func TestSigningErrorIsReturned(t *testing.T) {
	fx := newFixture(t, pki.ECDSAP256)
	failing := mustCAWithRand(t, fx.set.Enterprise, failingReader{})
	f, err := New(Config{CA: failing, Now: func() time.Time { return fx.now }})
	require.NoError(t, err)
	_, err = f.Forge(t.Context(), "x.test", nil)
	require.Error(t, err)
	assert.ErrorContains(t, err, "forge: sign x.test")
	assert.ErrorIs(t, err, errEntropy)
	assert.Equal(t, Stats{Misses: 1}, f.Stats(), "failures are neither counted as signings nor cached")
}

var errEntropy = errors.New("entropy exhausted")

// failingReader is an entropy source that always fails.
type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, errEntropy }

// mustCAWithRand reloads ca through PEM with a new entropy source.
func mustCAWithRand(t *testing.T, ca *pki.CA, r io.Reader) *pki.CA {
	t.Helper()
	keyPEM, err := ca.KeyPEM()
	require.NoError(t, err)
	loaded, err := pki.LoadCA(pki.Config{Rand: r}, ca.CertPEM(), keyPEM)
	require.NoError(t, err)
	return loaded
}

func TestTLSHandshakeThroughForgedCertificate(t *testing.T) {
	for _, alg := range algorithms {
		t.Run(string(alg), func(t *testing.T) {
			fx := newFixture(t, alg)
			fx.now = time.Now() // crypto/tls checks validity against the real clock
			fx = withUpstreamAt(t, fx)
			f := fx.forger(t)
			const sni = "gateway-acme.sse.test"

			srvCfg, err := f.ServerConfig(&tls.Config{MinVersion: tls.VersionTLS12}, sni, fx.upstream)
			require.NoError(t, err)
			state, err := handshake(t, srvCfg, &tls.Config{ServerName: sni, RootCAs: fx.set.Enterprise.Pool(), MinVersion: tls.VersionTLS12})
			require.NoError(t, err)
			require.Len(t, state.PeerCertificates, 2)
			assert.Equal(t, fx.set.Enterprise.Cert.Subject.CommonName, state.PeerCertificates[0].Issuer.CommonName)
			assert.Equal(t, fx.upstream.Subject.CommonName, state.PeerCertificates[0].Subject.CommonName)
			require.NotEmpty(t, state.VerifiedChains)
			chain := state.VerifiedChains[0]
			assert.True(t, chain[len(chain)-1].Equal(fx.set.Enterprise.Cert), "the client's trust anchor is the enterprise CA")

			// A client that trusts only the internet CA (an unmanaged laptop) refuses.
			_, err = handshake(t, srvCfg, &tls.Config{ServerName: sni, RootCAs: fx.set.Internet.Pool()})
			var unknown x509.UnknownAuthorityError
			require.ErrorAs(t, err, &unknown)
		})
	}
}

func TestGetCertificateCallback(t *testing.T) {
	fx := newFixture(t, pki.ECDSAP256)
	fx.now = time.Now()
	fx = withUpstreamAt(t, fx)
	f := fx.forger(t)
	var asked []string
	var mu sync.Mutex
	srvCfg := &tls.Config{GetCertificate: f.GetCertificate(func(h *tls.ClientHelloInfo) (*x509.Certificate, error) {
		mu.Lock()
		asked = append(asked, h.ServerName)
		mu.Unlock()
		return fx.upstream, nil
	})}
	state, err := handshake(t, srvCfg, &tls.Config{ServerName: "gateway-backup-acme.sse.test", RootCAs: fx.set.Enterprise.Pool()})
	require.NoError(t, err)
	assert.Equal(t, []string{"gateway-backup-acme.sse.test"}, asked)
	assert.Equal(t, fx.upstream.DNSNames, state.PeerCertificates[0].DNSNames)

	failing := &tls.Config{GetCertificate: f.GetCertificate(func(*tls.ClientHelloInfo) (*x509.Certificate, error) {
		return nil, errors.New("upstream unreachable")
	})}
	_, err = handshake(t, failing, &tls.Config{ServerName: "x.test", RootCAs: fx.set.Enterprise.Pool()})
	require.Error(t, err)
}

// withUpstreamAt reissues the fixture's upstream around fx.now.
func withUpstreamAt(t *testing.T, fx *fixture) *fixture {
	t.Helper()
	up, err := fx.set.Internet.Issue(pki.Leaf{
		Subject:   fx.upstream.Subject,
		DNSNames:  fx.upstream.DNSNames,
		IPs:       fx.upstream.IPAddresses,
		NotBefore: fx.now.Add(-time.Hour),
		NotAfter:  fx.now.Add(30 * 24 * time.Hour),
	})
	require.NoError(t, err)
	fx.upstream = up.Leaf
	return fx
}

// handshake runs a TLS handshake over an in-memory pipe and returns the
// client's view. The server's error is returned when the client succeeded.
func handshake(t *testing.T, srvCfg, cliCfg *tls.Config) (tls.ConnectionState, error) {
	t.Helper()
	c1, c2 := net.Pipe()
	srv := tls.Server(c1, srvCfg)
	cli := tls.Client(c2, cliCfg)
	// Close the pipe, not the tls.Conns: a close_notify on an unbuffered
	// pipe nobody reads would wait for crypto/tls's 5 s write deadline.
	defer c1.Close()
	defer c2.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	srvErr := make(chan error, 1)
	go func() {
		err := srv.HandshakeContext(ctx)
		if err != nil {
			_ = c1.Close() // unblock the client
		}
		srvErr <- err
	}()
	err := cli.HandshakeContext(ctx)
	if err != nil {
		_ = c2.Close()
		<-srvErr
		return tls.ConnectionState{}, err
	}
	if err := <-srvErr; err != nil {
		return tls.ConnectionState{}, fmt.Errorf("server: %w", err)
	}
	return cli.ConnectionState(), nil
}
