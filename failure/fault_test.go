package failure

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestErrorWrapping(t *testing.T) {
	inner := &PinMismatchError{ServerName: "gw.test", Issuer: "CN=Enterprise", Presented: []string{"a"}, Pins: []string{"b"}}
	err := fmt.Errorf("client.Dial: %w", New(LegClientGateway, CausePinMismatch, "tls handshake", "203.0.113.10:443", inner))

	fe, ok := As(err)
	require.True(t, ok)
	assert.Equal(t, LegClientGateway, fe.Leg)
	assert.Equal(t, CausePinMismatch, CauseOf(err))
	assert.Equal(t, LegClientGateway, LegOf(err))
	var pm *PinMismatchError
	require.ErrorAs(t, err, &pm)
	assert.Equal(t, "CN=Enterprise", pm.Issuer)
	assert.Contains(t, err.Error(), "pin-mismatch on leg client-gateway")

	var ne net.Error
	require.ErrorAs(t, New(LegClientGateway, CauseHandshakeTimeout, "dtls", "", nil), &ne)
	assert.True(t, ne.Timeout())
	assert.False(t, New(LegClientGateway, CausePinMismatch, "tls", "", nil).Timeout())
}

func TestClassify(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want Cause
	}{
		{"nil", nil, CauseNone},
		{"deadline", context.DeadlineExceeded, CauseTimeout},
		{"os deadline", fmt.Errorf("read: %w", os.ErrDeadlineExceeded), CauseTimeout},
		{"reset", &net.OpError{Op: "read", Err: os.NewSyscallError("read", syscall.ECONNRESET)}, CauseConnectionReset},
		{"refused", &net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}, CauseConnectionRefused},
		{"closed", net.ErrClosed, CauseClosed},
		{"dns", &net.DNSError{Err: "no such host", Name: "x.test"}, CauseDNS},
		{"already attributed", New(LegGatewayOrigin, CauseDNS, "resolve", "", nil), CauseDNS},
		{"unknown", errors.New("boom"), CauseNone},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, Classify(tt.err))
		})
	}
}

func TestValid(t *testing.T) {
	for _, l := range Legs {
		assert.True(t, l.Valid(), l)
	}
	for _, c := range Causes {
		assert.True(t, c.Valid(), c)
	}
	assert.False(t, Leg("sideways").Valid())
	assert.False(t, Cause("gremlins").Valid())
}
