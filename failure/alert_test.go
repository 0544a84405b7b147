package failure

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// pionAlert has the shape of a pion/dtls alert.
type pionAlert struct{ desc byte }

func (a pionAlert) Error() string              { return "alert" }
func (a pionAlert) IsFatalOrCloseNotify() bool { return true }
func (a pionAlert) Marshal() ([]byte, error)   { return []byte{2, a.desc}, nil }

// remoteTLSError is what crypto/tls's server reports when the client
// refuses its certificate: "remote error: tls: bad certificate".
func remoteTLSError(t *testing.T) error {
	t.Helper()
	c, s := net.Pipe()
	defer c.Close()
	defer s.Close()
	done := make(chan error, 1)
	go func() {
		// No certificate the client can trust: it answers with an alert.
		done <- tls.Client(c, &tls.Config{ServerName: "nobody.test"}).Handshake()
	}()
	srv := tls.Server(s, &tls.Config{GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
		return selfSigned(t), nil
	}})
	err := srv.Handshake()
	<-done
	require.Error(t, err)
	return err
}

func TestRemoteAlert(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want uint8
		ok   bool
	}{
		{"tls.AlertError", fmt.Errorf("wrapped: %w", tls.AlertError(116)), 116, true},
		{"crypto/tls remote error", remoteTLSError(t), 42, true},
		{"pion alert", fmt.Errorf("dtls: %w", pionAlert{48}), 48, true},
		{"no alert", errors.New("connection reset"), 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := RemoteAlert(tt.err)
			assert.Equal(t, tt.ok, ok, "%v", tt.err)
			assert.Equal(t, tt.want, got)
		})
	}
}

func selfSigned(t *testing.T) *tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "self.test"},
		DNSNames: []string{"self.test"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}
