package failure

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestAlertNames(t *testing.T) {
	assert.Equal(t, "handshake_failure", AlertName(40))
	assert.Equal(t, "certificate_required", AlertName(116))
	assert.Equal(t, "alert(200)", AlertName(200))
	assert.True(t, CertificateAlert("bad_certificate"))
	assert.True(t, CertificateAlert("unknown_ca"))
	assert.False(t, CertificateAlert("handshake_failure"))
	assert.False(t, CertificateAlert(""))
}

func TestKeyTypeAndCertOf(t *testing.T) {
	ec, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	require.NoError(t, err)
	assert.Equal(t, "ECDSA P-384", KeyType(&ec.PublicKey))
	rk, err := rsa.GenerateKey(rand.Reader, 1024)
	require.NoError(t, err)
	assert.Equal(t, "RSA 1024", KeyType(&rk.PublicKey))

	leaf := selfSigned(t).Leaf
	if leaf == nil {
		t.Skip("no parsed leaf")
	}
	c := CertOf(leaf)
	assert.Equal(t, "CN=self.test", c.Subject)
	assert.Equal(t, "CN=self.test", c.Issuer)
	assert.Equal(t, "ECDSA P-256", c.KeyType)
	assert.Contains(t, c.SPKI, "sha256/")
	assert.Equal(t, `subject "CN=self.test", ECDSA P-256 key, issued by "CN=self.test"`, c.String())
}

func TestHandshakeString(t *testing.T) {
	dev := &Cert{Subject: "CN=alice"}
	tests := []struct {
		h    *Handshake
		want string
	}{
		{nil, "no handshake recorded"},
		{&Handshake{Alert: "handshake_failure"}, "no certificate presented; alert handshake_failure"},
		{&Handshake{Chain: []Cert{{Subject: "CN=gw", Issuer: "CN=mitmproxy", KeyType: "RSA 2048"}}, CertRequested: true, CertSent: true, Device: dev, Alert: "certificate_required"},
			`presented chain subject "CN=gw", RSA 2048 key, issued by "CN=mitmproxy"; device certificate "CN=alice" sent on request; then alert certificate_required after the device certificate`},
		{&Handshake{CertRequested: true}, "no certificate presented; client certificate requested, none sent"},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, tt.h.String())
	}
	assert.Equal(t, "", (*Handshake)(nil).Issuer())
}

func TestBasis(t *testing.T) {
	assert.Empty(t, Basis(nil))
	got := Basis([]Evidence{
		{From: FromClient, Fact: "presented chain issued by CN=mitmproxy"},
		{From: FromGateway, Fact: "no handshake from this device"},
		{From: FromClient, Fact: "alert handshake_failure"},
		{From: FromFirewall, Fact: "decrypt-cert-validation"},
	})
	assert.Equal(t, "attributed from: client (presented chain issued by CN=mitmproxy; alert handshake_failure), gateway log (no handshake from this device), firewall log (decrypt-cert-validation)", got)
}
