package reports

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"
)

func requireTool(t *testing.T, name, pkg string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		t.Skipf("%s not installed (Debian package %s; .ci/run installs it)", name, pkg)
	}
}

// keyFile writes a private key in one of the formats LoadSigner reads.
func keyFile(t *testing.T, dir, name string, kind string) string {
	t.Helper()
	file := filepath.Join(dir, name)
	switch kind {
	case "ssh-keygen ed25519", "ssh-keygen ecdsa":
		requireTool(t, "ssh-keygen", "openssh-client")
		typ := strings.TrimPrefix(kind, "ssh-keygen ")
		out, err := exec.Command("ssh-keygen", "-q", "-t", typ, "-N", "", "-C", "auditor@example.test", "-f", file).CombinedOutput()
		require.NoError(t, err, "%s", out)
	case "openssl ed25519":
		requireTool(t, "openssl", "openssl")
		out, err := exec.Command("openssl", "genpkey", "-algorithm", "ed25519", "-out", file).CombinedOutput()
		require.NoError(t, err, "%s", out)
	case "pkcs8 ed25519":
		_, k, err := ed25519.GenerateKey(rand.Reader)
		require.NoError(t, err)
		der, err := x509.MarshalPKCS8PrivateKey(k)
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600))
	case "sec1 p384":
		k, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
		require.NoError(t, err)
		der, err := x509.MarshalECPrivateKey(k)
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600))
	default:
		t.Fatalf("unknown key kind %q", kind)
	}
	return file
}

// TestSignVerifiedByStandardTools signs a bundle with Ed25519 and ECDSA keys
// in PEM and OpenSSH formats and verifies the manifest with ssh-keygen -Y
// verify and openssl, as the README and the report tell a reviewer to.
func TestSignVerifiedByStandardTools(t *testing.T) {
	requireTool(t, "ssh-keygen", "openssh-client")
	requireTool(t, "openssl", "openssl")
	for _, tc := range []struct {
		kind, alg string
	}{
		{"ssh-keygen ed25519", "ed25519"},
		{"ssh-keygen ecdsa", "ecdsa-p256"},
		{"openssl ed25519", "ed25519"},
		{"pkcs8 ed25519", "ed25519"},
		{"sec1 p384", "ecdsa-p384"},
	} {
		t.Run(tc.kind, func(t *testing.T) {
			keys := t.TempDir()
			s, err := LoadSigner(keyFile(t, keys, "key", tc.kind))
			require.NoError(t, err)
			dir := t.TempDir()
			require.NoError(t, WriteSigned(dir, fixtureMeta(), fixtureScenarios(), fixtureResults(), s))
			run := func(name string, args ...string) (string, error) {
				cmd := exec.Command(name, args...)
				cmd.Dir = dir
				if name == "ssh-keygen" && args[0] == "-Y" {
					f, err := os.Open(filepath.Join(dir, ManifestFile))
					require.NoError(t, err)
					defer f.Close()
					cmd.Stdin = f
				}
				out, err := cmd.CombinedOutput()
				return string(out), err
			}
			verifyAll := func() error {
				if out, err := run("ssh-keygen", "-Y", "verify", "-f", AllowedSignersFile, "-I", SignaturePrincipal, "-n", SignatureNamespace, "-s", SignatureFile); err != nil {
					return &toolError{out}
				}
				var args []string
				if tc.alg == "ed25519" {
					args = []string{"pkeyutl", "-verify", "-pubin", "-inkey", SignerPEMFile, "-rawin", "-in", ManifestFile, "-sigfile", OpenSSLSignatureFile}
				} else {
					args = []string{"dgst", "-sha256", "-verify", SignerPEMFile, "-signature", OpenSSLSignatureFile, ManifestFile}
				}
				if out, err := run("openssl", args...); err != nil {
					return &toolError{out}
				}
				return nil
			}
			require.NoError(t, verifyAll())

			// The report and evidence.json name the key ssh-keygen fingerprints.
			out, err := run("ssh-keygen", "-lf", SignerPublicKeyFile)
			require.NoError(t, err, out)
			fp := strings.Fields(out)[1]
			assert.Equal(t, s.Fingerprint(), fp)
			ev, err := os.ReadFile(filepath.Join(dir, EvidenceFile))
			require.NoError(t, err)
			e, err := ReadEvidence(bytes.NewReader(ev))
			require.NoError(t, err)
			require.NotNil(t, e.Meta.Signature)
			assert.Equal(t, fp, e.Meta.Signature.Fingerprint)
			assert.Equal(t, tc.alg, e.Meta.Signature.Algorithm)
			assert.Equal(t, ManifestFile, e.Meta.Signature.Signed)
			var schema map[string]any
			require.NoError(t, json.Unmarshal(Schema(), &schema))
			var doc any
			require.NoError(t, json.Unmarshal(ev, &doc))
			require.Empty(t, schemaValidator{root: schema}.validate(schema, doc, "$"), "a signed bundle's evidence.json against the schema")
			md, err := os.ReadFile(filepath.Join(dir, MarkdownFile))
			require.NoError(t, err)
			assert.Contains(t, string(md), "is signed with the "+tc.alg+" key `"+fp+"`")

			// A changed manifest no longer verifies with either tool.
			m, err := os.ReadFile(filepath.Join(dir, ManifestFile))
			require.NoError(t, err)
			require.NoError(t, os.WriteFile(filepath.Join(dir, ManifestFile), append(m, []byte("0000  extra\n")...), 0o644))
			assert.Error(t, verifyAll(), "a tampered manifest must fail")
		})
	}
}

type toolError struct{ out string }

func (e *toolError) Error() string { return e.out }

func TestLoadSignerRejects(t *testing.T) {
	dir := t.TempDir()
	_, err := LoadSigner(filepath.Join(dir, "missing"))
	assert.ErrorIs(t, err, os.ErrNotExist)

	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	rsaFile := filepath.Join(dir, "rsa")
	require.NoError(t, os.WriteFile(rsaFile, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rk)}), 0o600))
	_, err = LoadSigner(rsaFile)
	assert.ErrorContains(t, err, "want Ed25519 or ECDSA")

	_, ek, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	blk, err := ssh.MarshalPrivateKeyWithPassphrase(ek, "", []byte("secret"))
	require.NoError(t, err)
	encFile := filepath.Join(dir, "enc")
	require.NoError(t, os.WriteFile(encFile, pem.EncodeToMemory(blk), 0o600))
	_, err = LoadSigner(encFile)
	assert.ErrorIs(t, err, ErrKeyEncrypted)

	garbage := filepath.Join(dir, "garbage")
	require.NoError(t, os.WriteFile(garbage, []byte("not a key"), 0o600))
	_, err = LoadSigner(garbage)
	assert.ErrorContains(t, err, "want an Ed25519 or ECDSA private key")
}
