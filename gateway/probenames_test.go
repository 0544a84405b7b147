package gateway_test

import (
	"context"
	"crypto/tls"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pinwall/pinwall/gateway"
	"github.com/pinwall/pinwall/tunnel"
)

// TestProbeNames: a ClientHello naming a probe name gets the certificate
// without a certificate request, then the connection closes with no
// tunnel, logged as a refusal; the gateway's own name still requires the
// device certificate.
func TestProbeNames(t *testing.T) {
	const control = "control." + gatewayName
	w := newWorld(t, func(c *gateway.Config) { c.ProbeNames = []string{control} })
	ctx := testCtx(t, 10*time.Second)
	raw, err := w.laptop.DialContext(ctx, "tcp", gatewayAddr)
	require.NoError(t, err)
	defer raw.Close()
	asked := false
	conn := tls.Client(raw, &tls.Config{
		ServerName:         control,
		InsecureSkipVerify: true, // the test asks what is asked, not who answers
		MinVersion:         tls.VersionTLS13,
		NextProtos:         []string{tunnel.ALPN},
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			asked = true
			return w.device, nil
		},
	})
	require.NoError(t, conn.HandshakeContext(ctx))
	assert.False(t, asked, "no certificate request for a probe name")
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err = tunnel.ReadGreeting(conn)
	require.Error(t, err, "no tunnel for a probe name")
	assert.ErrorIs(t, err, io.EOF)
	evs := w.waitEvents(t, 1, func(e gateway.Event) bool {
		return e.Event == gateway.EventTunnelRefused && strings.Contains(e.Reason, "probe name "+control)
	})
	assert.Empty(t, evs[0].Cause)

	c, err := w.dialTLS(context.Background())
	require.NoError(t, err, "the gateway's own name still gets a tunnel with the device certificate")
	c.Close()
}
