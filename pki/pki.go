package pki

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"strings"
	"time"
)

// KeyAlgorithm selects the key type of new keys.
type KeyAlgorithm string

// Supported key algorithms.
const (
	ECDSAP256 KeyAlgorithm = "ecdsa-p256"
	ECDSAP384 KeyAlgorithm = "ecdsa-p384"
	RSA2048   KeyAlgorithm = "rsa-2048"
	RSA3072   KeyAlgorithm = "rsa-3072"
	RSA4096   KeyAlgorithm = "rsa-4096"
)

// KeyAlgorithms lists the supported key algorithms.
func KeyAlgorithms() []KeyAlgorithm {
	return []KeyAlgorithm{ECDSAP256, ECDSAP384, RSA2048, RSA3072, RSA4096}
}

// AlgorithmOf returns the algorithm of a public key and true, or false for
// a key of another type or size.
func AlgorithmOf(pub crypto.PublicKey) (KeyAlgorithm, bool) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return ECDSAP256, true
		case elliptic.P384():
			return ECDSAP384, true
		}
	case *rsa.PublicKey:
		switch k.N.BitLen() {
		case 2048:
			return RSA2048, true
		case 3072:
			return RSA3072, true
		case 4096:
			return RSA4096, true
		}
	}
	return "", false
}

// Config controls key generation and validity. The zero value is ready to use:
// ECDSA P-256 keys from crypto/rand, validity starting an hour before time.Now.
type Config struct {
	// Algorithm of generated keys; empty means ECDSAP256.
	Algorithm KeyAlgorithm
	// Rand is the entropy source; nil means crypto/rand.Reader.
	Rand io.Reader
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
}

func (c Config) rand() io.Reader {
	if c.Rand != nil {
		return c.Rand
	}
	return rand.Reader
}

func (c Config) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

// GenerateKey makes a key of the configured algorithm.
func (c Config) GenerateKey() (crypto.Signer, error) {
	switch c.Algorithm {
	case "", ECDSAP256:
		return ecdsa.GenerateKey(elliptic.P256(), c.rand())
	case ECDSAP384:
		return ecdsa.GenerateKey(elliptic.P384(), c.rand())
	case RSA2048:
		return rsa.GenerateKey(c.rand(), 2048)
	case RSA3072:
		return rsa.GenerateKey(c.rand(), 3072)
	case RSA4096:
		return rsa.GenerateKey(c.rand(), 4096)
	default:
		return nil, fmt.Errorf("pki: unknown key algorithm %q (want one of %v)", c.Algorithm, KeyAlgorithms())
	}
}

// CA is a certificate authority: a self-signed certificate and its key.
type CA struct {
	Cert *x509.Certificate
	Key  crypto.Signer
	cfg  Config
}

// NewCA makes a self-signed CA named cn, in organisation org, valid ten years.
func NewCA(cfg Config, cn, org string) (*CA, error) {
	key, err := cfg.GenerateKey()
	if err != nil {
		return nil, fmt.Errorf("pki: ca key: %w", err)
	}
	serial, err := newSerial(cfg.rand())
	if err != nil {
		return nil, err
	}
	now := cfg.now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: cn, Organization: []string{org}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(10, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(cfg.rand(), tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("pki: sign ca %q: %w", cn, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("pki: parse ca %q: %w", cn, err)
	}
	return &CA{Cert: cert, Key: key, cfg: cfg}, nil
}

// LoadCA reads a CA from PEM: a certificate and an RSA or ECDSA private key
// (PKCS#1, SEC 1 or PKCS#8). cfg governs the leaves it issues.
func LoadCA(cfg Config, certPEM, keyPEM []byte) (*CA, error) {
	block, _ := pem.Decode(certPEM)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errors.New("pki: load ca: no CERTIFICATE block in certificate PEM")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("pki: load ca: %w", err)
	}
	if !cert.IsCA {
		return nil, fmt.Errorf("pki: load ca: %q is not a CA certificate (basicConstraints CA:FALSE)", cert.Subject)
	}
	key, err := ParseKeyPEM(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("pki: load ca: %w", err)
	}
	if !publicKeysEqual(key.Public(), cert.PublicKey) {
		return nil, errors.New("pki: load ca: private key does not match the certificate")
	}
	return &CA{Cert: cert, Key: key, cfg: cfg}, nil
}

// ParseKeyPEM parses an RSA or ECDSA private key from PEM.
func ParseKeyPEM(keyPEM []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(keyPEM)
	if block == nil {
		return nil, errors.New("no PEM block in key")
	}
	switch block.Type {
	case "RSA PRIVATE KEY":
		return x509.ParsePKCS1PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		return x509.ParseECPrivateKey(block.Bytes)
	case "PRIVATE KEY":
		k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return nil, err
		}
		s, ok := k.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("unsupported key type %T", k)
		}
		switch s.(type) {
		case *rsa.PrivateKey, *ecdsa.PrivateKey:
			return s, nil
		}
		return nil, fmt.Errorf("unsupported key type %T (want RSA or ECDSA)", k)
	default:
		return nil, fmt.Errorf("unsupported PEM block %q", block.Type)
	}
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	type equaler interface{ Equal(crypto.PublicKey) bool }
	e, ok := a.(equaler)
	return ok && e.Equal(b)
}

// Usage says what a leaf certificate is for.
type Usage int

// Leaf usages.
const (
	ServerAuth Usage = iota
	ClientAuth
)

// Leaf describes a certificate to issue. Zero fields get defaults: a fresh key
// of the CA's algorithm, one year of validity from an hour ago.
type Leaf struct {
	Subject   pkix.Name
	DNSNames  []string
	IPs       []net.IP
	Usage     Usage
	NotBefore time.Time
	NotAfter  time.Time
	// Key is the leaf's key; nil generates one.
	Key crypto.Signer
}

// Issue signs a leaf. The returned tls.Certificate holds the leaf only (as a
// server sends it, without the root) with Leaf parsed.
func (ca *CA) Issue(l Leaf) (*tls.Certificate, error) {
	key := l.Key
	if key == nil {
		var err error
		if key, err = ca.cfg.GenerateKey(); err != nil {
			return nil, fmt.Errorf("pki: leaf key: %w", err)
		}
	}
	serial, err := newSerial(ca.cfg.rand())
	if err != nil {
		return nil, err
	}
	now := ca.cfg.now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               l.Subject,
		DNSNames:              l.DNSNames,
		IPAddresses:           l.IPs,
		NotBefore:             l.NotBefore,
		NotAfter:              l.NotAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
	}
	if tmpl.NotBefore.IsZero() {
		tmpl.NotBefore = now.Add(-time.Hour)
	}
	if tmpl.NotAfter.IsZero() {
		tmpl.NotAfter = now.AddDate(1, 0, 0)
	}
	if _, isRSA := key.(*rsa.PrivateKey); isRSA {
		tmpl.KeyUsage |= x509.KeyUsageKeyEncipherment
	}
	switch l.Usage {
	case ClientAuth:
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	default:
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	}
	der, err := x509.CreateCertificate(ca.cfg.rand(), tmpl, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		return nil, fmt.Errorf("pki: sign leaf %q: %w", l.Subject.CommonName, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("pki: parse leaf: %w", err)
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

// Pool returns a pool holding only this CA.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// CertPEM returns the CA certificate in PEM.
func (ca *CA) CertPEM() []byte { return CertPEM(ca.Cert) }

// KeyPEM returns the CA key in PKCS#8 PEM.
func (ca *CA) KeyPEM() ([]byte, error) { return KeyPEM(ca.Key) }

// CertPEM encodes a certificate in PEM.
func CertPEM(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

// KeyPEM encodes a private key in PKCS#8 PEM.
func KeyPEM(k crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, fmt.Errorf("pki: marshal key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// ChainPEM encodes a tls.Certificate's chain in PEM.
func ChainPEM(c *tls.Certificate) []byte {
	var b bytes.Buffer
	for _, der := range c.Certificate {
		_ = pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: der})
	}
	return b.Bytes()
}

// Fingerprint is the SHA-256 of a certificate's DER, in lower-case hex.
func Fingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return hex.EncodeToString(sum[:])
}

// FingerprintDER is Fingerprint of a DER-encoded certificate.
func FingerprintDER(der []byte) string {
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:])
}

func newSerial(r io.Reader) (*big.Int, error) {
	s, err := rand.Int(r, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("pki: serial: %w", err)
	}
	return s.Add(s, big.NewInt(1)), nil
}

// Pin is an SPKI SHA-256 pin in "sha256/<base64>" form.
type Pin string

// PinPrefix starts every Pin.
const PinPrefix = "sha256/"

// SPKIPin returns the pin of a certificate's public key.
func SPKIPin(c *x509.Certificate) Pin {
	sum := sha256.Sum256(c.RawSubjectPublicKeyInfo)
	return Pin(PinPrefix + base64.StdEncoding.EncodeToString(sum[:]))
}

// ParsePin validates a pin string.
func ParsePin(s string) (Pin, error) {
	b64, ok := strings.CutPrefix(s, PinPrefix)
	if !ok {
		return "", fmt.Errorf("pki: pin %q: want %q prefix", s, PinPrefix)
	}
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return "", fmt.Errorf("pki: pin %q: %w", s, err)
	}
	if len(raw) != sha256.Size {
		return "", fmt.Errorf("pki: pin %q: %d bytes, want %d", s, len(raw), sha256.Size)
	}
	return Pin(s), nil
}

// PinSet is a set of acceptable pins.
type PinSet []Pin

// Match reports whether any certificate of chain carries a pinned key.
func (ps PinSet) Match(chain []*x509.Certificate) bool {
	for _, c := range chain {
		p := SPKIPin(c)
		for _, want := range ps {
			if p == want {
				return true
			}
		}
	}
	return false
}

// Strings returns the pins as strings.
func (ps PinSet) Strings() []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = string(p)
	}
	return out
}
