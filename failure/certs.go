package failure

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"fmt"
	"strings"

	"github.com/pinwall/pinwall/pki"
)

// Cert describes a certificate a peer presented: who it names, who issued
// it, and whose key it carries. It is what an error report and an
// attribution from the endpoints need of a chain, without the chain.
type Cert struct {
	Subject string `json:"subject"`
	Issuer  string `json:"issuer"`
	// KeyType is the public key's algorithm and size: "ECDSA P-256",
	// "RSA 2048", "Ed25519".
	KeyType string `json:"key_type"`
	// SPKI is the key's SPKI SHA-256 pin ("sha256/…").
	SPKI string `json:"spki_sha256"`
}

// CertOf describes c.
func CertOf(c *x509.Certificate) Cert {
	return Cert{Subject: c.Subject.String(), Issuer: c.Issuer.String(), KeyType: KeyType(c.PublicKey), SPKI: string(pki.SPKIPin(c))}
}

// String is "subject "S", RSA 2048 key, issued by "I"".
func (c Cert) String() string {
	return fmt.Sprintf("subject %q, %s key, issued by %q", c.Subject, orUnknown(c.KeyType), c.Issuer)
}

// KeyType names a public key's algorithm and size.
func KeyType(pub any) string {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		return "ECDSA " + k.Curve.Params().Name
	case *rsa.PublicKey:
		return fmt.Sprintf("RSA %d", k.N.BitLen())
	case ed25519.PublicKey:
		return "Ed25519"
	}
	return fmt.Sprintf("%T", pub)
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

// PinMismatchError reports a server key that matched none of the pins. It is
// wrapped in an *Error with CausePinMismatch.
type PinMismatchError struct {
	// ServerName is the name the client asked for.
	ServerName string
	// Issuer is the presented leaf's issuer distinguished name.
	Issuer string
	// Leaf describes the presented leaf (subject, key type, issuer).
	Leaf Cert
	// Presented holds the SPKI SHA-256 pins of every certificate presented, leaf first.
	Presented []string
	// Pins is the client's pin set.
	Pins []string
}

func (e *PinMismatchError) Error() string {
	return fmt.Sprintf("no pinned key for %s: presented chain (subject %q, %s key) issued by %q holds no pinned gateway key: something between the client and the gateway presented it (or the pins are stale); presented [%s], pins [%s]",
		e.ServerName, e.Leaf.Subject, orUnknown(e.Leaf.KeyType), e.Issuer, strings.Join(e.Presented, " "), strings.Join(e.Pins, " "))
}

// CertificateError reports a chain that failed verification. It is wrapped in
// an *Error with CauseUnknownAuthority or CauseCertificateInvalid.
type CertificateError struct {
	ServerName string
	// Issuer and Subject describe the presented leaf.
	Issuer, Subject string
	// KeyType is the presented leaf's key ("ECDSA P-256", "RSA 2048").
	KeyType string
	// SPKI is the presented leaf's SPKI SHA-256 pin.
	SPKI string
	Err  error
}

func (e *CertificateError) Error() string {
	return fmt.Sprintf("certificate for %s (subject %q, %s key, issuer %q, spki %s): %v",
		e.ServerName, e.Subject, orUnknown(e.KeyType), e.Issuer, e.SPKI, e.Err)
}

func (e *CertificateError) Unwrap() error { return e.Err }
