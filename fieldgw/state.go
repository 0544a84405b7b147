package fieldgw

import (
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/pinwall/pinwall/outfile"
	"github.com/pinwall/pinwall/pki"
)

// State is the gateway's identity, kept in a directory across restarts.
type State struct {
	// Certificate is the gateway's server certificate and key (the key
	// the bundles pin).
	Certificate *tls.Certificate
	// DeviceCA issues the probes' device certificates and verifies them.
	DeviceCA *pki.CA
	// Decoy is the decoy's certificate: same issuer, a name that is not
	// the gateways' (nil: no decoy can be served).
	Decoy *tls.Certificate
	// Dir is where the state lives ("" for a state made in memory).
	Dir string
}

// State files in the directory.
const (
	gatewayCAFile    = "gateway-ca.pem"
	gatewayCertFile  = "gateway.pem"
	gatewayKeyFile   = "gateway-key.pem"
	deviceCAFile     = "device-ca.pem"
	deviceCAKeyFile  = "device-ca-key.pem"
	decoyCertFile    = "decoy.pem"
	decoyKeyFile     = "decoy-key.pem"
	BundleFile       = "probe-bundle.json"
	bundlesDir       = "bundles"
	GatewayLogFile   = "gateway.jsonl"
	RunLogFile       = "probe-runs.jsonl"
	gatewayCAComName = "pinwall field gateway CA"
)

// NewState makes a gateway identity in memory for names (the first is
// the certificate's subject).
func NewState(cfg pki.Config, names ...string) (*State, error) {
	ca, err := pki.NewCA(cfg, gatewayCAComName, "pinwall field probe")
	if err != nil {
		return nil, err
	}
	cert, err := ca.Issue(pki.Leaf{Subject: pkix.Name{CommonName: names[0], Organization: []string{"pinwall field probe"}}, DNSNames: names, Usage: pki.ServerAuth})
	if err != nil {
		return nil, err
	}
	decoyName := "decoy." + names[0]
	decoy, err := ca.Issue(pki.Leaf{Subject: pkix.Name{CommonName: decoyName, Organization: []string{"pinwall field probe"}}, DNSNames: []string{decoyName}, Usage: pki.ServerAuth})
	if err != nil {
		return nil, err
	}
	dca, err := pki.NewCA(cfg, "pinwall field probe Device CA", "pinwall field probe")
	if err != nil {
		return nil, err
	}
	return &State{Certificate: cert, DeviceCA: dca, Decoy: decoy}, nil
}

// LoadState reads the state in dir, or makes it there on first use for
// names (the gateway's, the backup's and the control name: the
// certificate's SANs). Private keys are written 0600.
func LoadState(dir string, names ...string) (*State, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("fieldgw: state: %w", err)
	}
	_, err := os.Stat(filepath.Join(dir, gatewayCertFile))
	switch {
	case err == nil:
		return readState(dir)
	case !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("fieldgw: state: %w", err)
	}
	st, err := NewState(pki.Config{}, names...)
	if err != nil {
		return nil, err
	}
	st.Dir = dir
	d, err := outfile.OpenDir(dir)
	if err != nil {
		return nil, fmt.Errorf("fieldgw: state: %w", err)
	}
	defer d.Close()
	signer, ok := st.Certificate.PrivateKey.(crypto.Signer)
	if !ok {
		return nil, errors.New("fieldgw: state: the gateway key cannot sign")
	}
	key, err := pki.KeyPEM(signer)
	if err != nil {
		return nil, err
	}
	dcaKey, err := st.DeviceCA.KeyPEM()
	if err != nil {
		return nil, err
	}
	decoyKey, err := pki.KeyPEM(st.Decoy.PrivateKey.(crypto.Signer))
	if err != nil {
		return nil, err
	}
	for _, f := range []struct {
		name string
		data []byte
		perm fs.FileMode
	}{
		{gatewayKeyFile, key, outfile.Private},
		{deviceCAKeyFile, dcaKey, outfile.Private},
		{deviceCAFile, st.DeviceCA.CertPEM(), outfile.Public},
		{decoyKeyFile, decoyKey, outfile.Private},
		{decoyCertFile, pki.ChainPEM(st.Decoy), outfile.Public},
		{gatewayCertFile, pki.ChainPEM(st.Certificate), outfile.Public},
	} {
		if err := d.WriteFile(f.name, f.data, f.perm); err != nil {
			return nil, fmt.Errorf("fieldgw: state: %w", err)
		}
	}
	return st, nil
}

func readState(dir string) (*State, error) {
	read := func(name string) ([]byte, error) {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return nil, fmt.Errorf("fieldgw: state: %w", err)
		}
		return b, nil
	}
	certPEM, err := read(gatewayCertFile)
	if err != nil {
		return nil, err
	}
	keyPEM, err := read(gatewayKeyFile)
	if err != nil {
		return nil, err
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("fieldgw: state %s: %s with %s: %w", dir, gatewayCertFile, gatewayKeyFile, err)
	}
	dcaPEM, err := read(deviceCAFile)
	if err != nil {
		return nil, err
	}
	dcaKey, err := read(deviceCAKeyFile)
	if err != nil {
		return nil, err
	}
	dca, err := pki.LoadCA(pki.Config{}, dcaPEM, dcaKey)
	if err != nil {
		return nil, fmt.Errorf("fieldgw: state %s: %s: %w", dir, deviceCAFile, err)
	}
	st := &State{Certificate: &cert, DeviceCA: dca, Dir: dir}
	if dc, err := os.ReadFile(filepath.Join(dir, decoyCertFile)); err == nil {
		dk, err := read(decoyKeyFile)
		if err != nil {
			return nil, err
		}
		d, err := tls.X509KeyPair(dc, dk)
		if err != nil {
			return nil, fmt.Errorf("fieldgw: state %s: %s with %s: %w", dir, decoyCertFile, decoyKeyFile, err)
		}
		st.Decoy = &d
	}
	return st, nil
}

// newID returns a random identifier of n bytes, in hex.
func newID(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
