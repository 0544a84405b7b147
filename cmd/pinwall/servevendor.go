package main

import (
	"flag"
	"os"

	"github.com/pinwall/pinwall/mitm"
	"github.com/pinwall/pinwall/mitm/forge"
	"github.com/pinwall/pinwall/mitm/fwlog"
	"github.com/pinwall/pinwall/pki"
)

// vendorFlags are serve firewall's options for forging and logging like the
// vendors: a second (ECDSA) forward trust CA, the forward untrust CA, the
// forged key, the PAN-OS log layout.
type vendorFlags struct {
	ecdsaCert, ecdsaKey         string
	untrustedCert, untrustedKey string
	forgeKey, panVersion        string
}

func (v *vendorFlags) flags(fs *flag.FlagSet) {
	fs.StringVar(&v.ecdsaCert, "ecdsa-ca-cert", "", "a second enterprise CA (PEM) that signs the forged leaves with an ECDSA key, --ca-cert signing the others (PAN-OS keeps one forward trust certificate per key type)")
	fs.StringVar(&v.ecdsaKey, "ecdsa-ca-key", "", "the ECDSA enterprise CA's private key, PEM")
	fs.StringVar(&v.untrustedCert, "untrusted-ca-cert", "", "the CA (PEM) that signs the leaves presented for servers the firewall does not trust (default: one generated at start)")
	fs.StringVar(&v.untrustedKey, "untrusted-ca-key", "", "the untrusted CA's private key, PEM")
	fs.StringVar(&v.forgeKey, "forge-key", string(forge.KeyFollowUpstream), "forged keys: upstream (type and size of the server's key, as the vendors do) or fixed (one key of the CA's type)")
	fs.StringVar(&v.panVersion, "pan-version", fwlog.DefaultPANVersion, "PAN-OS log layout: 9.1 or 10.0 (TRAFFIC 75 fields, DECRYPTION 91 on 10.0), 10.1 to 11.2 (TRAFFIC 115, DECRYPTION 107)")
}

// apply sets the firewall configuration and the log device.
func (v *vendorFlags) apply(cfg *mitm.Config) (fwlog.Device, error) {
	if _, err := fwlog.ParsePANVersion(v.panVersion); err != nil {
		return fwlog.Device{}, usageError("serve firewall: --pan-version: %v", err)
	}
	switch forge.KeyMode(v.forgeKey) {
	case forge.KeyFollowUpstream, forge.KeyFixed:
		cfg.ForgeKeyMode = forge.KeyMode(v.forgeKey)
	default:
		return fwlog.Device{}, usageError("serve firewall: --forge-key %q is not upstream or fixed", v.forgeKey)
	}
	var err error
	if cfg.ECDSACA, err = loadCAPair("--ecdsa-ca-cert", v.ecdsaCert, v.ecdsaKey); err != nil {
		return fwlog.Device{}, err
	}
	if cfg.UntrustedCA, err = loadCAPair("--untrusted-ca-cert", v.untrustedCert, v.untrustedKey); err != nil {
		return fwlog.Device{}, err
	}
	return fwlog.Device{PANVersion: v.panVersion}, nil
}

// loadCAPair loads an optional CA given as certificate and key files.
func loadCAPair(flagName, certFile, keyFile string) (*pki.CA, error) {
	if certFile == "" && keyFile == "" {
		return nil, nil
	}
	if certFile == "" || keyFile == "" {
		return nil, usageError("serve firewall: %s needs its -key file too (and the other way round)", flagName)
	}
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, &exitError{code: 2, err: err}
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, &exitError{code: 2, err: err}
	}
	ca, err := pki.LoadCA(pki.Config{}, certPEM, keyPEM)
	if err != nil {
		return nil, &exitError{code: 2, err: err}
	}
	return ca, nil
}
