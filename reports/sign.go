package reports

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"github.com/pinwall/pinwall/outfile"
	"golang.org/x/crypto/ssh"
)

// The files a signed bundle adds beside its manifest. None of them is in
// the manifest: they are made from it.
const (
	// SignatureFile is the manifest's signature in OpenSSH's SSHSIG format
	// (what `ssh-keygen -Y sign` writes), namespace SignatureNamespace.
	SignatureFile = "manifest.sha256.sig"
	// OpenSSLSignatureFile is the same signature for openssl: for an
	// Ed25519 key the raw 64-byte signature of the manifest, for ECDSA the
	// DER signature of its SHA-256.
	OpenSSLSignatureFile = "manifest.sha256.openssl.sig"
	// SignerPublicKeyFile is the public key in OpenSSH format.
	SignerPublicKeyFile = "signer.pub"
	// SignerPEMFile is the public key as PEM (SubjectPublicKeyInfo), for openssl.
	SignerPEMFile = "signer.pem"
	// AllowedSignersFile lists the key for `ssh-keygen -Y verify -f`.
	AllowedSignersFile = "allowed_signers"
	// SignaturePrincipal names the signer in AllowedSignersFile.
	SignaturePrincipal = "pinwall-evidence"
	// SignatureNamespace is the SSHSIG namespace: "file", ssh-keygen's
	// convention for signing files.
	SignatureNamespace = "file"
)

// Signature says how a bundle is signed; Meta carries it into the report.
type Signature struct {
	// Signed is the file that was signed: the manifest, which holds the
	// SHA-256 of every other file of the bundle.
	Signed string `json:"signed"`
	// Algorithm is the key's: "ed25519", "ecdsa-p256", "ecdsa-p384" or "ecdsa-p521".
	Algorithm string `json:"algorithm"`
	// Fingerprint is the key's OpenSSH fingerprint ("SHA256:…", what
	// `ssh-keygen -l` prints).
	Fingerprint string `json:"fingerprint"`
	// PublicKey is the key in OpenSSH authorized_keys format.
	PublicKey string `json:"public_key"`
	// Namespace is the SSHSIG namespace.
	Namespace string `json:"namespace"`
	// Files are the signature and key files written beside the manifest.
	Files []string `json:"files"`
}

// Signer signs a bundle's manifest with a user's key.
type Signer struct {
	key crypto.Signer
	ssh ssh.Signer
	alg string
}

// ErrKeyEncrypted means the key file is protected by a passphrase.
var ErrKeyEncrypted = errors.New("the key is encrypted with a passphrase")

// LoadSigner reads a private key: Ed25519 or ECDSA (P-256, P-384, P-521),
// as PEM (PKCS #8 "PRIVATE KEY", SEC 1 "EC PRIVATE KEY") or in OpenSSH's
// format ("OPENSSH PRIVATE KEY", what ssh-keygen writes), unencrypted.
func LoadSigner(file string) (*Signer, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("reports: signing key: %w", err)
	}
	raw, err := ssh.ParseRawPrivateKey(data)
	if err != nil {
		var pm *ssh.PassphraseMissingError
		if errors.As(err, &pm) {
			return nil, fmt.Errorf("reports: signing key %s: %w (decrypt a copy: ssh-keygen -p -N '' -f COPY)", file, ErrKeyEncrypted)
		}
		return nil, fmt.Errorf("reports: signing key %s: %w (want an Ed25519 or ECDSA private key, PEM or OpenSSH)", file, err)
	}
	var key crypto.Signer
	switch k := raw.(type) {
	case *ed25519.PrivateKey:
		key = *k
	case ed25519.PrivateKey:
		key = k
	case *ecdsa.PrivateKey:
		key = k
	default:
		return nil, fmt.Errorf("reports: signing key %s: %T is not supported (want Ed25519 or ECDSA)", file, raw)
	}
	s, err := NewSigner(key)
	if err != nil {
		return nil, fmt.Errorf("reports: signing key %s: %w", file, err)
	}
	return s, nil
}

// NewSigner returns a Signer for an Ed25519 or ECDSA key.
func NewSigner(key crypto.Signer) (*Signer, error) {
	var alg string
	switch k := key.(type) {
	case ed25519.PrivateKey:
		alg = "ed25519"
	case *ecdsa.PrivateKey:
		switch k.Curve {
		case elliptic.P256():
			alg = "ecdsa-p256"
		case elliptic.P384():
			alg = "ecdsa-p384"
		case elliptic.P521():
			alg = "ecdsa-p521"
		default:
			return nil, fmt.Errorf("ECDSA curve %s is not supported (want P-256, P-384 or P-521)", k.Curve.Params().Name)
		}
	default:
		return nil, fmt.Errorf("%T keys are not supported (want Ed25519 or ECDSA)", key)
	}
	ss, err := ssh.NewSignerFromSigner(key)
	if err != nil {
		return nil, err
	}
	return &Signer{key: key, ssh: ss, alg: alg}, nil
}

// Fingerprint is the key's OpenSSH SHA-256 fingerprint.
func (s *Signer) Fingerprint() string { return ssh.FingerprintSHA256(s.ssh.PublicKey()) }

// Describe says what Sign writes, for Meta.Signature.
func (s *Signer) Describe() *Signature {
	return &Signature{
		Signed: ManifestFile, Algorithm: s.alg, Fingerprint: s.Fingerprint(),
		PublicKey: strings.TrimSpace(string(ssh.MarshalAuthorizedKey(s.ssh.PublicKey()))),
		Namespace: SignatureNamespace,
		Files:     []string{SignatureFile, OpenSSLSignatureFile, SignerPublicKeyFile, SignerPEMFile, AllowedSignersFile},
	}
}

// Sign signs dir's manifest and writes the signatures and the public key
// beside it.
func (s *Signer) Sign(dir string) error {
	out, err := outfile.OpenDir(dir)
	if err != nil {
		return fmt.Errorf("reports: sign: %w", err)
	}
	defer out.Close()
	return s.sign(out)
}

// sign signs out's manifest and writes the signature files beside it,
// never through a planted link (package outfile).
func (s *Signer) sign(out *outfile.Dir) error {
	manifest, err := fs.ReadFile(out.FS(), ManifestFile)
	if err != nil {
		return fmt.Errorf("reports: sign: %w", err)
	}
	armored, err := s.sshsig(manifest)
	if err != nil {
		return fmt.Errorf("reports: sign: %w", err)
	}
	var raw []byte
	switch k := s.key.(type) {
	case ed25519.PrivateKey:
		raw = ed25519.Sign(k, manifest)
	case *ecdsa.PrivateKey:
		sum := sha256.Sum256(manifest)
		if raw, err = ecdsa.SignASN1(rand.Reader, k, sum[:]); err != nil {
			return fmt.Errorf("reports: sign: %w", err)
		}
	}
	spki, err := x509.MarshalPKIXPublicKey(s.key.Public())
	if err != nil {
		return fmt.Errorf("reports: sign: %w", err)
	}
	authorized := ssh.MarshalAuthorizedKey(s.ssh.PublicKey())
	files := []struct {
		name string
		data []byte
	}{
		{SignatureFile, armored},
		{OpenSSLSignatureFile, raw},
		{SignerPublicKeyFile, authorized},
		{SignerPEMFile, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: spki})},
		{AllowedSignersFile, append([]byte(SignaturePrincipal+" "), authorized...)},
	}
	for _, f := range files {
		if err := out.WriteFile(f.name, f.data, outfile.Public); err != nil {
			return fmt.Errorf("reports: sign: %w", err)
		}
	}
	return nil
}

// sshsig signs msg in OpenSSH's SSHSIG format (PROTOCOL.sshsig): the key
// signs the preamble "SSHSIG", the namespace, an empty reserved field,
// the hash algorithm and the message's SHA-512; the armored blob carries
// the public key, those fields and the signature.
func (s *Signer) sshsig(msg []byte) ([]byte, error) {
	h := sha512.Sum512(msg)
	signed := []byte("SSHSIG")
	signed = appendSSHString(signed, []byte(SignatureNamespace))
	signed = appendSSHString(signed, nil)
	signed = appendSSHString(signed, []byte("sha512"))
	signed = appendSSHString(signed, h[:])
	sig, err := s.ssh.Sign(rand.Reader, signed)
	if err != nil {
		return nil, err
	}
	blob := []byte("SSHSIG")
	blob = binary.BigEndian.AppendUint32(blob, 1)
	blob = appendSSHString(blob, s.ssh.PublicKey().Marshal())
	blob = appendSSHString(blob, []byte(SignatureNamespace))
	blob = appendSSHString(blob, nil)
	blob = appendSSHString(blob, []byte("sha512"))
	blob = appendSSHString(blob, ssh.Marshal(sig))
	b64 := base64.StdEncoding.EncodeToString(blob)
	var out strings.Builder
	out.WriteString("-----BEGIN SSH SIGNATURE-----\n")
	for len(b64) > 70 {
		out.WriteString(b64[:70] + "\n")
		b64 = b64[70:]
	}
	out.WriteString(b64 + "\n-----END SSH SIGNATURE-----\n")
	return []byte(out.String()), nil
}

func appendSSHString(b, s []byte) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
	return append(b, s...)
}
