package fieldgw

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/pinwall/pinwall/pki"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestLoadStateMakesThenReuses(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	st, err := LoadState(dir, "gw.test", "backup-gw.test", "control.gw.test")
	require.NoError(t, err)
	for _, f := range []string{gatewayKeyFile, deviceCAKeyFile, decoyKeyFile} {
		fi, err := os.Stat(filepath.Join(dir, f))
		require.NoError(t, err)
		assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm(), f)
	}
	again, err := LoadState(dir, "ignored.test")
	require.NoError(t, err)
	assert.Equal(t, pki.SPKIPin(st.Certificate.Leaf), pki.SPKIPin(again.Certificate.Leaf), "a restart keeps the pinned key")
	assert.Equal(t, st.DeviceCA.Cert.Raw, again.DeviceCA.Cert.Raw)
	require.NotNil(t, again.Decoy)
	assert.NotContains(t, again.Decoy.Leaf.DNSNames, "gw.test", "the decoy does not name the gateway")
}

func TestBuiltInOriginsOnly(t *testing.T) {
	m := newMemStack()
	l, err := m.Listen(context.Background(), "tcp", "192.0.2.1:80")
	require.NoError(t, err)
	defer l.Close()
	_, err = m.DialContext(context.Background(), "tcp", "198.51.100.7:443")
	require.Error(t, err)
	assert.True(t, errors.Is(err, ErrNotBuiltIn), "%v", err)
	go func() {
		c, err := l.Accept()
		if err == nil {
			c.Close()
		}
	}()
	c, err := m.DialContext(context.Background(), "tcp", "192.0.2.1:80")
	require.NoError(t, err)
	c.Close()
}
