package mitm_test

import (
	"context"
	"crypto/tls"
	"io"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pinwall/pinwall/mitm/fwlog"
)

// TestDecryptMirrorsKeyExchange: the firewall offers the server the key
// exchanges the client offered, so interception neither adds nor strips
// post-quantum protection, and both legs' groups are logged.
func TestDecryptMirrorsKeyExchange(t *testing.T) {
	tests := []struct {
		name   string
		curves []tls.CurveID // nil: crypto/tls's defaults (hybrid first)
		want   tls.CurveID
		logged string
	}{
		{"classical client", []tls.CurveID{tls.X25519}, tls.X25519, "x25519"},
		{"P-256 only", []tls.CurveID{tls.CurveP256}, tls.CurveP256, "secp256r1"},
		{"post-quantum client", nil, tls.X25519MLKEM768, "X25519MLKEM768"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fl := startForwardLab(t, nil)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			tc := tls.Client(fl.dial(t), &tls.Config{ServerName: siteName, RootCAs: fl.pki.Enterprise.Pool(), CurvePreferences: tt.curves})
			require.NoError(t, tc.HandshakeContext(ctx))
			assert.Equal(t, tt.want, tc.ConnectionState().CurveID, "the client's own leg")
			_, err := io.WriteString(tc, "GET / HTTP/1.1\r\nHost: "+siteName+"\r\nConnection: close\r\n\r\n")
			require.NoError(t, err)
			_ = tc.SetReadDeadline(time.Now().Add(10 * time.Second))
			_, err = io.ReadAll(tc)
			require.NoError(t, err)
			tc.Close()

			r := waitRecords(t, fl.fw, 1)[0]
			require.NotNil(t, r.Decryption)
			require.Equal(t, fwlog.OutcomeDecrypted, r.Decryption.Outcome)
			assert.Equal(t, tt.logged, r.Decryption.KeyExchange)
			assert.Equal(t, tt.logged, r.Decryption.UpstreamKeyExchange, "the server was offered what the client offered")
		})
	}
}
