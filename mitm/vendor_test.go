package mitm_test

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pinwall/pinwall/hostnet"
	"github.com/pinwall/pinwall/mitm"
	"github.com/pinwall/pinwall/mitm/fwlog"
	"github.com/pinwall/pinwall/mitm/policy"
	"github.com/pinwall/pinwall/pki"
	"github.com/pinwall/pinwall/resolve"
)

// originLab is a firewall forwarding to one TLS origin whose certificate
// the test chooses.
type originLab struct {
	fw  *mitm.Firewall
	set *pki.Set
	cfg mitm.Config
	// dial connects to the firewall.
	addr string
}

func startOriginLab(t *testing.T, cert *tls.Certificate, set *pki.Set, policyYAML string, edit func(*mitm.Config)) *originLab {
	t.Helper()
	origin := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "pinwall test origin %s\n", r.Host)
	}))
	origin.TLS = &tls.Config{Certificates: []tls.Certificate{*cert}}
	origin.Config.ErrorLog = log.New(io.Discard, "", 0)
	origin.StartTLS()
	t.Cleanup(origin.Close)
	up := netip.MustParseAddrPort(origin.Listener.Addr().String())
	pol, err := policy.Parse("policy.yaml", []byte(policyYAML))
	require.NoError(t, err)
	zone, err := resolve.NewZone(resolve.Record{Name: siteName, Addrs: []netip.Addr{up.Addr()}})
	require.NoError(t, err)
	cfg := mitm.Config{
		Outside: hostnet.OS{}, Policy: pol, CA: set.Enterprise, Roots: set.Internet.Pool(), Resolver: zone,
		Logger: slog.New(slog.DiscardHandler),
	}
	if edit != nil {
		edit(&cfg)
	}
	fw, err := mitm.New(cfg)
	require.NoError(t, err)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fw.Close()
		require.NoError(t, err)
	}
	done := make(chan error, 1)
	go func() { done <- fw.ServeForward(context.Background(), l, up) }()
	t.Cleanup(func() {
		require.NoError(t, fw.Close())
		require.NoError(t, <-done)
	})
	return &originLab{fw: fw, set: set, cfg: cfg, addr: l.Addr().String()}
}

// get runs one HTTPS GET through the firewall with cfg and returns the
// leaf the client was shown, or the handshake error.
func (ol *originLab) get(t *testing.T, cfg *tls.Config) (*x509.Certificate, error) {
	t.Helper()
	c, err := net.DialTimeout("tcp", ol.addr, 10*time.Second)
	require.NoError(t, err)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var leaf *x509.Certificate
	roots := cfg.RootCAs
	cfg = cfg.Clone()
	cfg.ServerName = siteName
	// Verify by hand, as crypto/tls would, to see the leaf also when it
	// does not verify.
	cfg.InsecureSkipVerify = true
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		leaf = cs.PeerCertificates[0]
		inter := x509.NewCertPool()
		for _, c := range cs.PeerCertificates[1:] {
			inter.AddCert(c)
		}
		_, err := leaf.Verify(x509.VerifyOptions{DNSName: siteName, Roots: roots, Intermediates: inter})
		return err
	}
	tc := tls.Client(c, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		return leaf, err
	}
	_ = tc.SetDeadline(time.Now().Add(10 * time.Second))
	_, err = io.WriteString(tc, "GET / HTTP/1.1\r\nHost: "+siteName+"\r\nConnection: close\r\n\r\n")
	require.NoError(t, err)
	body, err := io.ReadAll(tc)
	require.NoError(t, err)
	assert.Contains(t, string(body), "pinwall test origin")
	return leaf, nil
}

const decryptTCP = "rules:\n  - name: decrypt-all\n    id: 42\n    match: {proto: tcp}\n    action: decrypt\n"

// TestForgedKeyFollowsServer: an RSA-2048 server gets an RSA-2048 forgery
// and an ECDSA one an ECDSA forgery, as PAN-OS and FortiOS forge; the
// Decryption record names the server certificate's key, serial, dates and
// root, the cipher suite and the handshake messages.
func TestForgedKeyFollowsServer(t *testing.T) {
	set, err := pki.NewSet(pki.Config{}, "acme")
	require.NoError(t, err)
	for _, alg := range []pki.KeyAlgorithm{pki.RSA2048, pki.ECDSAP256} {
		t.Run(string(alg), func(t *testing.T) {
			key, err := pki.Config{Algorithm: alg}.GenerateKey()
			require.NoError(t, err)
			cert, err := set.Internet.Issue(pki.Leaf{Subject: pkix.Name{CommonName: siteName}, DNSNames: []string{siteName}, Key: key})
			require.NoError(t, err)
			ol := startOriginLab(t, cert, set, decryptTCP, nil)
			leaf, err := ol.get(t, &tls.Config{RootCAs: set.Enterprise.Pool()})
			require.NoError(t, err)
			got, ok := pki.AlgorithmOf(leaf.PublicKey)
			require.True(t, ok)
			assert.Equal(t, alg, got, "the forged key follows the server's")

			r := waitRecords(t, ol.fw, 1)[0]
			d := r.Decryption
			require.NotNil(t, d)
			assert.Equal(t, fwlog.OutcomeDecrypted, d.Outcome)
			assert.Equal(t, 42, r.RuleID, "the rule's ID")
			assert.Equal(t, string(alg), d.ForgedKey)
			assert.Equal(t, fwlog.ForgedByTrust, d.ForgedBy)
			assert.Equal(t, cert.Leaf.SerialNumber.Text(16), d.UpstreamSerial)
			assert.True(t, cert.Leaf.NotAfter.Equal(d.UpstreamNotAfter))
			assert.Equal(t, "pinwall Internet Root CA", d.UpstreamRoot)
			want := map[pki.KeyAlgorithm]string{pki.RSA2048: "RSA", pki.ECDSAP256: "ECDSA"}[alg]
			assert.Equal(t, want, d.UpstreamKeyType)
			assert.Equal(t, map[pki.KeyAlgorithm]int{pki.RSA2048: 2048, pki.ECDSAP256: 256}[alg], d.UpstreamKeyBits)
			assert.Equal(t, "TLS1.3", d.TLSVersion)
			assert.Regexp(t, `^TLS_(AES_128_GCM|AES_256_GCM|CHACHA20_POLY1305)_SHA(256|384)$`, d.CipherSuite)
			assert.Equal(t, "Finished", d.ClientMessage)
			assert.Equal(t, "Finished", d.ServerMessage)
			assert.NotEmpty(t, r.JA3)
			assert.NotEmpty(t, r.JA4)
			if runtime.GOOS == "linux" {
				assert.Equal(t, "tcp_info", r.PacketsSource)
				assert.Greater(t, r.PacketsSent, uint64(2), "handshake, request, ACKs and FIN from the client")
				assert.Greater(t, r.PacketsReceived, uint64(2), "handshake, response, ACKs and FIN from the server")
			}
		})
	}
}

// TestUntrustedServer answers a server whose chain the firewall does not
// trust as the rule says: a leaf from the untrusted CA (the default, what
// PAN-OS and FortiOS do), a reset, or a trusted forgery (FortiOS ignore).
func TestUntrustedServer(t *testing.T) {
	set, err := pki.NewSet(pki.Config{}, "acme")
	require.NoError(t, err)
	rogue, err := pki.NewCA(pki.Config{}, "Rogue CA", "nobody")
	require.NoError(t, err)
	cert, err := rogue.Issue(pki.Leaf{Subject: pkix.Name{CommonName: siteName}, DNSNames: []string{siteName}})
	require.NoError(t, err)
	untrustedCA, err := pki.NewCA(pki.Config{}, "Acme Forward Untrust", "acme")
	require.NoError(t, err)

	t.Run("untrusted-ca", func(t *testing.T) {
		ol := startOriginLab(t, cert, set, decryptTCP, func(c *mitm.Config) { c.UntrustedCA = untrustedCA })
		leaf, err := ol.get(t, &tls.Config{RootCAs: set.Enterprise.Pool()})
		require.Error(t, err, "the client does not trust the untrusted CA")
		var ua x509.UnknownAuthorityError
		assert.True(t, errors.As(err, &ua) || leaf != nil, "%v", err)
		require.NotNil(t, leaf, "the client was shown a certificate, not a reset")
		assert.Equal(t, "Acme Forward Untrust", leaf.Issuer.CommonName)
		r := waitRecords(t, ol.fw, 1)[0]
		assert.Equal(t, fwlog.ForgedByUntrust, r.Decryption.ForgedBy)
		assert.Equal(t, fwlog.ChainUntrusted, r.Decryption.ChainStatus)
		assert.Equal(t, fwlog.OutcomeFailed, r.Decryption.Outcome, "the client refused it")
		assert.Equal(t, "client", r.Decryption.AlertFrom)

		// A client that accepts the untrusted CA is decrypted.
		_, err = ol.get(t, &tls.Config{RootCAs: untrustedCA.Pool()})
		require.NoError(t, err)
		r = waitRecords(t, ol.fw, 2)[1]
		assert.Equal(t, fwlog.OutcomeDecrypted, r.Decryption.Outcome)
		assert.Equal(t, fwlog.ChainUntrusted, r.Decryption.ChainStatus)
	})
	t.Run("block", func(t *testing.T) {
		ol := startOriginLab(t, cert, set, decryptTCP+"    options: {untrusted-cert: block}\n", nil)
		leaf, err := ol.get(t, &tls.Config{RootCAs: set.Enterprise.Pool()})
		require.Error(t, err)
		assert.Nil(t, leaf, "refused before any certificate")
		r := waitRecords(t, ol.fw, 1)[0]
		assert.Equal(t, fwlog.OutcomeFailed, r.Decryption.Outcome)
		assert.Equal(t, "firewall-gateway", string(r.Decryption.Leg))
		assert.Equal(t, "unknown-authority", string(r.Decryption.Cause))
		assert.Equal(t, "Certificate", r.Decryption.ServerMessage)
	})
	t.Run("ignore", func(t *testing.T) {
		ol := startOriginLab(t, cert, set, decryptTCP+"    options: {untrusted-cert: ignore}\n", nil)
		leaf, err := ol.get(t, &tls.Config{RootCAs: set.Enterprise.Pool()})
		require.NoError(t, err, "forged with the enterprise CA: the client trusts it")
		assert.Equal(t, set.Enterprise.Cert.Subject.CommonName, leaf.Issuer.CommonName)
		r := waitRecords(t, ol.fw, 1)[0]
		assert.Equal(t, fwlog.OutcomeDecrypted, r.Decryption.Outcome)
		assert.Equal(t, fwlog.ChainUntrusted, r.Decryption.ChainStatus)
		assert.Equal(t, fwlog.ForgedByTrust, r.Decryption.ForgedBy)
	})
}

// TestECDSAForwardTrustCA: with an RSA and an ECDSA forward trust CA, an
// ECDSA server's forgery chains to the ECDSA one.
func TestECDSAForwardTrustCA(t *testing.T) {
	rsaSet, err := pki.NewSet(pki.Config{Algorithm: pki.RSA2048}, "acme")
	require.NoError(t, err)
	ecCA, err := pki.NewCA(pki.Config{}, "Acme Forward Trust ECDSA", "acme")
	require.NoError(t, err)
	cert, err := rsaSet.Internet.Issue(pki.Leaf{Subject: pkix.Name{CommonName: siteName}, DNSNames: []string{siteName}, Key: mustKey(t, pki.ECDSAP256)})
	require.NoError(t, err)
	ol := startOriginLab(t, cert, rsaSet, decryptTCP, func(c *mitm.Config) { c.ECDSACA = ecCA })
	leaf, err := ol.get(t, &tls.Config{RootCAs: ecCA.Pool()})
	require.NoError(t, err)
	assert.Equal(t, "Acme Forward Trust ECDSA", leaf.Issuer.CommonName)
}

func mustKey(t *testing.T, alg pki.KeyAlgorithm) interface {
	Public() crypto.PublicKey
	Sign(io.Reader, []byte, crypto.SignerOpts) ([]byte, error)
} {
	t.Helper()
	k, err := pki.Config{Algorithm: alg}.GenerateKey()
	require.NoError(t, err)
	return k
}
