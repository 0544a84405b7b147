package probe

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"time"

	"github.com/pinwall/pinwall/pki"
)

// BundleSchema names the bundle format.
const BundleSchema = "pinwall.probe-bundle/v1"

// MaxBundleSize bounds a bundle file.
const MaxBundleSize = 1 << 20

// Endpoint is one gateway as the probe reaches it: its name and its
// address (IP literal and port; the probe never resolves names).
type Endpoint struct {
	Name string         `json:"name"`
	Addr netip.AddrPort `json:"addr"`
}

// Bundle is everything a probe needs and nothing more: where the
// gateways are, what they present (the pin and the certificate behind it),
// the device identity to present, and the server names to try. The
// gateway signs it with its own key; Parse checks that signature against
// the bundle's gateway certificate and the pin against that certificate,
// so a bundle edited by hand (another address, another pin) is refused.
type Bundle struct {
	Schema string `json:"schema"`
	// ID names the bundle (and its device certificate) at the gateway.
	ID      string    `json:"id"`
	Created time.Time `json:"created"`
	// Expires: the probe refuses the bundle after it.
	Expires time.Time `json:"expires"`
	Primary Endpoint  `json:"primary"`
	// Backup is optional: without it the failover questions go unasked.
	Backup *Endpoint `json:"backup,omitempty"`
	// Decoy, optional, is an address of the gateway's machine that is no
	// gateway address (not in the customer's bypass): the gateway's name
	// sent there tells whether a bypass by server name can be spoofed.
	Decoy *netip.AddrPort `json:"decoy,omitempty"`
	// DecoyPin is the SPKI pin of the decoy's own certificate, which does
	// not name the gateways (a spoofer's server cannot present theirs):
	// the probe tells the decoy's answer from a firewall's forgery by it.
	DecoyPin pki.Pin `json:"decoy_pin,omitempty"`
	// ControlName is a server name the gateway answers without asking
	// for a client certificate (gateway.Config.ProbeNames): what the
	// firewall does to it tells a bypass rule from a client-certificate
	// exclusion.
	ControlName string `json:"control_name"`
	// ServerNames are the names the probe sends: the gateways' and the
	// control name.
	ServerNames []string `json:"server_names"`
	// Pin is the SPKI pin of the gateway's key (pki.Pin form).
	Pin pki.Pin `json:"pin"`
	// GatewayCert is the gateway's certificate (PEM), the one pinned.
	GatewayCert string `json:"gateway_cert"`
	// DeviceCert and DeviceKey are the device identity (PEM).
	DeviceCert string `json:"device_cert"`
	DeviceKey  string `json:"device_key"`
	// Signature is the gateway key's signature (base64 in JSON) over the
	// bundle's JSON with this field empty.
	Signature []byte `json:"signature"`
}

// BundleError is a bundle refused: the file and what is wrong with it.
type BundleError struct {
	File  string
	Field string
	Err   error
}

func (e *BundleError) Error() string {
	f := e.File
	if f == "" {
		f = "bundle"
	}
	if e.Field != "" {
		return fmt.Sprintf("%s: field %s: %v", f, e.Field, e.Err)
	}
	return fmt.Sprintf("%s: %v", f, e.Err)
}

func (e *BundleError) Unwrap() error { return e.Err }

// Sentinel causes of a refused bundle.
var (
	ErrBundleExpired  = errors.New("bundle expired")
	ErrBundleTampered = errors.New("bundle signature does not verify with the bundle's gateway certificate: the file was changed after the gateway wrote it")
	ErrPinMismatch    = errors.New("pin does not match the bundle's gateway certificate")
)

// Identity is a parsed bundle's key material.
type Identity struct {
	Gateway *x509.Certificate
	Device  *tls.Certificate
	Pins    pki.PinSet
	// DecoyPins pin the decoy's certificate (empty without a decoy).
	DecoyPins pki.PinSet
}

// Sign fills b.Signature with key's signature (key is the gateway's).
func (b *Bundle) Sign(key crypto.Signer) error {
	msg, err := b.signedBytes()
	if err != nil {
		return err
	}
	var sig []byte
	switch key.Public().(type) {
	case ed25519.PublicKey:
		sig, err = key.Sign(rand.Reader, msg, crypto.Hash(0))
	default:
		d := sha256.Sum256(msg)
		sig, err = key.Sign(rand.Reader, d[:], crypto.SHA256)
	}
	if err != nil {
		return fmt.Errorf("probe: sign bundle: %w", err)
	}
	b.Signature = sig
	return nil
}

func (b *Bundle) signedBytes() ([]byte, error) {
	c := *b
	c.Signature = nil
	return json.Marshal(c)
}

// Marshal returns the bundle as indented JSON.
func (b *Bundle) Marshal() ([]byte, error) {
	out, err := json.MarshalIndent(b, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(out, '\n'), nil
}

// LoadBundle reads and checks a bundle file at time now.
func LoadBundle(file string, now time.Time) (*Bundle, *Identity, error) {
	st, err := os.Stat(file)
	if err != nil {
		return nil, nil, &BundleError{File: file, Err: err}
	}
	if st.Size() > MaxBundleSize {
		return nil, nil, &BundleError{File: file, Err: fmt.Errorf("%d bytes, more than a bundle's %d", st.Size(), MaxBundleSize)}
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, nil, &BundleError{File: file, Err: err}
	}
	b, id, err := ParseBundle(data, now)
	if err != nil {
		var be *BundleError
		if errors.As(err, &be) {
			be.File = file
		}
		return nil, nil, err
	}
	return b, id, nil
}

// ParseBundle parses and checks a bundle: its schema and fields, its
// signature, its pin against its gateway certificate, its device key
// against its device certificate, and its expiry at now.
func ParseBundle(data []byte, now time.Time) (*Bundle, *Identity, error) {
	var b Bundle
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&b); err != nil {
		return nil, nil, &BundleError{Err: fmt.Errorf("not a probe bundle (JSON): %w", err)}
	}
	if dec.More() {
		return nil, nil, &BundleError{Err: errors.New("not a probe bundle: data after the JSON object")}
	}
	bad := func(field string, format string, args ...any) error {
		return &BundleError{Field: field, Err: fmt.Errorf(format, args...)}
	}
	if b.Schema != BundleSchema {
		return nil, nil, bad("schema", "%q, want %q", b.Schema, BundleSchema)
	}
	if b.ID == "" {
		return nil, nil, bad("id", "empty")
	}
	if b.Expires.IsZero() {
		return nil, nil, bad("expires", "missing")
	}
	for field, e := range map[string]*Endpoint{"primary": &b.Primary, "backup": b.Backup} {
		if e == nil {
			continue
		}
		if e.Name == "" {
			return nil, nil, bad(field+".name", "empty")
		}
		if !e.Addr.IsValid() || e.Addr.Port() == 0 || e.Addr.Addr().IsUnspecified() {
			return nil, nil, bad(field+".addr", "%q is not an address to reach (IP:port)", e.Addr)
		}
	}
	if b.Decoy != nil && (!b.Decoy.IsValid() || b.Decoy.Port() == 0 || b.Decoy.Addr().IsUnspecified()) {
		return nil, nil, bad("decoy", "%q is not an address to reach (IP:port)", *b.Decoy)
	}
	var decoyPins pki.PinSet
	if b.Decoy != nil {
		dp, err := pki.ParsePin(string(b.DecoyPin))
		if err != nil {
			return nil, nil, bad("decoy_pin", "%v", err)
		}
		decoyPins = pki.PinSet{dp}
	}
	if b.ControlName == "" {
		return nil, nil, bad("control_name", "empty")
	}
	if !slices.Contains(b.ServerNames, b.Primary.Name) {
		return nil, nil, bad("server_names", "does not hold the primary's name %q", b.Primary.Name)
	}
	pin, err := pki.ParsePin(string(b.Pin))
	if err != nil {
		return nil, nil, bad("pin", "%v", err)
	}
	gw, err := parseCertPEM(b.GatewayCert)
	if err != nil {
		return nil, nil, bad("gateway_cert", "%v", err)
	}
	if err := verifySignature(gw, &b); err != nil {
		return nil, nil, &BundleError{Field: "signature", Err: err}
	}
	if pki.SPKIPin(gw) != pin {
		return nil, nil, &BundleError{Field: "pin", Err: fmt.Errorf("%w: %s, the certificate's key is %s", ErrPinMismatch, pin, pki.SPKIPin(gw))}
	}
	dev, err := tls.X509KeyPair([]byte(b.DeviceCert), []byte(b.DeviceKey))
	if err != nil {
		return nil, nil, bad("device_cert", "with device_key: %v", err)
	}
	if now.After(b.Expires) {
		return nil, nil, &BundleError{Field: "expires", Err: fmt.Errorf("%w on %s (now %s): ask the gateway's operator for a new one", ErrBundleExpired,
			b.Expires.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))}
	}
	if dev.Leaf != nil && now.After(dev.Leaf.NotAfter) {
		return nil, nil, bad("device_cert", "expired on %s", dev.Leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	return &b, &Identity{Gateway: gw, Device: &dev, Pins: pki.PinSet{pin}, DecoyPins: decoyPins}, nil
}

func parseCertPEM(s string) (*x509.Certificate, error) {
	blk, _ := pem.Decode([]byte(s))
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, errors.New("no PEM CERTIFICATE block")
	}
	return x509.ParseCertificate(blk.Bytes)
}

func verifySignature(gw *x509.Certificate, b *Bundle) error {
	if len(b.Signature) == 0 {
		return errors.New("missing: the bundle is not signed")
	}
	msg, err := b.signedBytes()
	if err != nil {
		return err
	}
	var algo x509.SignatureAlgorithm
	switch gw.PublicKey.(type) {
	case *ecdsa.PublicKey:
		algo = x509.ECDSAWithSHA256
	case *rsa.PublicKey:
		algo = x509.SHA256WithRSA
	case ed25519.PublicKey:
		algo = x509.PureEd25519
	default:
		return fmt.Errorf("gateway key type %T not supported", gw.PublicKey)
	}
	if err := gw.CheckSignature(algo, msg, b.Signature); err != nil {
		return fmt.Errorf("%w (%v)", ErrBundleTampered, err)
	}
	return nil
}
