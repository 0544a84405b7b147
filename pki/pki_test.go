package pki

import (
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestSetIssuesVerifiableCertificates(t *testing.T) {
	set, err := NewSet(Config{}, "acme")
	require.NoError(t, err)

	gw, err := set.ServerCert("gateway-acme.sse.test", "gateway-backup-acme.sse.test")
	require.NoError(t, err)
	for _, name := range []string{"gateway-acme.sse.test", "gateway-backup-acme.sse.test"} {
		_, err = gw.Leaf.Verify(x509.VerifyOptions{DNSName: name, Roots: set.Internet.Pool()})
		assert.NoError(t, err, name)
	}
	_, err = gw.Leaf.Verify(x509.VerifyOptions{DNSName: "gateway-acme.sse.test", Roots: set.Enterprise.Pool()})
	assert.Error(t, err, "gateway certificate must not chain to the enterprise CA")

	dev, err := set.DeviceCert("acme", "alice@acme.test", "LAPTOP-0001")
	require.NoError(t, err)
	_, err = dev.Leaf.Verify(x509.VerifyOptions{Roots: set.Tenant.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	require.NoError(t, err)
	assert.Equal(t, "alice@acme.test", dev.Leaf.Subject.CommonName)
	assert.Equal(t, "LAPTOP-0001", dev.Leaf.Subject.SerialNumber)
}

func TestPins(t *testing.T) {
	set, err := NewSet(Config{}, "acme")
	require.NoError(t, err)
	gw, err := set.ServerCert("gw.test")
	require.NoError(t, err)
	other, err := set.ServerCert("gw.test")
	require.NoError(t, err)

	pin := SPKIPin(gw.Leaf)
	parsed, err := ParsePin(string(pin))
	require.NoError(t, err)
	assert.Equal(t, pin, parsed)

	tests := []struct {
		name  string
		pins  PinSet
		chain []*x509.Certificate
		want  bool
	}{
		{"leaf pinned", PinSet{pin}, []*x509.Certificate{gw.Leaf}, true},
		{"other key", PinSet{pin}, []*x509.Certificate{other.Leaf}, false},
		{"ca pinned", PinSet{SPKIPin(set.Internet.Cert)}, []*x509.Certificate{other.Leaf, set.Internet.Cert}, true},
		{"empty set", nil, []*x509.Certificate{gw.Leaf}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { assert.Equal(t, tt.want, tt.pins.Match(tt.chain)) })
	}

	for _, bad := range []string{"", "sha1/AAAA", "sha256/!!", "sha256/AAAA"} {
		_, err := ParsePin(bad)
		assert.Error(t, err, bad)
	}
}

func TestLoadCARoundTrip(t *testing.T) {
	for _, alg := range []KeyAlgorithm{ECDSAP256, RSA2048} {
		t.Run(string(alg), func(t *testing.T) {
			cfg := Config{Algorithm: alg, Now: func() time.Time { return time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC) }}
			ca, err := NewCA(cfg, "Imported", "corp")
			require.NoError(t, err)
			keyPEM, err := ca.KeyPEM()
			require.NoError(t, err)
			loaded, err := LoadCA(cfg, ca.CertPEM(), keyPEM)
			require.NoError(t, err)
			leaf, err := loaded.Issue(Leaf{DNSNames: []string{"x.test"}})
			require.NoError(t, err)
			_, err = leaf.Leaf.Verify(x509.VerifyOptions{DNSName: "x.test", Roots: ca.Pool(), CurrentTime: cfg.Now()})
			require.NoError(t, err)
			_, err = tls.X509KeyPair(ChainPEM(leaf), mustKeyPEM(t, leaf))
			require.NoError(t, err)
		})
	}

	ca, err := NewCA(Config{}, "A", "a")
	require.NoError(t, err)
	other, err := NewCA(Config{}, "B", "b")
	require.NoError(t, err)
	otherKey, err := other.KeyPEM()
	require.NoError(t, err)
	_, err = LoadCA(Config{}, ca.CertPEM(), otherKey)
	assert.ErrorContains(t, err, "does not match")
	_, err = LoadCA(Config{}, []byte("junk"), otherKey)
	assert.ErrorContains(t, err, "no CERTIFICATE")
}

func mustKeyPEM(t *testing.T, c *tls.Certificate) []byte {
	t.Helper()
	k, err := KeyPEM(c.PrivateKey.(crypto.Signer))
	require.NoError(t, err)
	return k
}
