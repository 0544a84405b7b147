package pki

import (
	"crypto/tls"
	"crypto/x509/pkix"
	"fmt"
)

// Set is the three authorities of one run.
type Set struct {
	// Internet signs origin and gateway server certificates.
	Internet *CA
	// Tenant signs device (client) certificates.
	Tenant *CA
	// Enterprise is the firewall's forging CA.
	Enterprise *CA
}

// NewSet makes the three authorities of a run for tenant.
func NewSet(cfg Config, tenant string) (*Set, error) {
	internet, err := NewCA(cfg, "pinwall Internet Root CA", "pinwall simulated internet")
	if err != nil {
		return nil, err
	}
	tenantCA, err := NewCA(cfg, "pinwall "+tenant+" Device CA", tenant)
	if err != nil {
		return nil, err
	}
	enterprise, err := NewCA(cfg, "pinwall Enterprise Forward Trust CA", "pinwall enterprise firewall")
	if err != nil {
		return nil, err
	}
	return &Set{Internet: internet, Tenant: tenantCA, Enterprise: enterprise}, nil
}

// ServerCert issues an internet-CA server certificate for names; the first
// name is the subject's common name.
func (s *Set) ServerCert(names ...string) (*tls.Certificate, error) {
	if len(names) == 0 {
		return nil, fmt.Errorf("pki: server certificate needs at least one name")
	}
	return s.Internet.Issue(Leaf{
		Subject:  pkix.Name{CommonName: names[0], Organization: []string{"pinwall simulated internet"}},
		DNSNames: names,
		Usage:    ServerAuth,
	})
}

// DeviceCert issues a tenant-CA client certificate naming the user (common
// name) and the device (subject serial number).
func (s *Set) DeviceCert(tenant, user, device string) (*tls.Certificate, error) {
	return s.Tenant.Issue(Leaf{
		Subject: pkix.Name{
			CommonName:         user,
			SerialNumber:       device,
			Organization:       []string{tenant},
			OrganizationalUnit: []string{"devices"},
		},
		Usage: ClientAuth,
	})
}
