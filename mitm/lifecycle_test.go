package mitm_test

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestLifecycle: each Serve method stops when its context ends and closes
// its socket, leaving the firewall's other listeners serving; Close is
// idempotent and Serve after it refuses.
func TestLifecycle(t *testing.T) {
	fl := startForwardLab(t, nil)
	fw := fl.fw
	streams := map[string]func(context.Context, net.Listener) error{
		"ServeForward":   func(ctx context.Context, l net.Listener) error { return fw.ServeForward(ctx, l, fl.upstream) },
		"ServeProxy":     fw.ServeProxy,
		"ServeIntercept": fw.ServeIntercept,
	}
	for name, serve := range streams {
		t.Run(name+" stops with its context", func(t *testing.T) {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			require.NoError(t, err)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- serve(ctx, l) }()
			c, err := net.DialTimeout("tcp", l.Addr().String(), 10*time.Second)
			require.NoError(t, err)
			c.Close()
			cancel()
			select {
			case err := <-done:
				require.NoError(t, err)
			case <-time.After(10 * time.Second):
				t.Fatal("Serve did not return when its context ended")
			}
			_, err = l.Accept()
			assert.ErrorIs(t, err, net.ErrClosed, "Serve closed its listener")
		})
	}
	t.Run("ServeUDPIntercept stops with its context", func(t *testing.T) {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		require.NoError(t, err)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- fw.ServeUDPIntercept(ctx, pc) }()
		cancel()
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(10 * time.Second):
			t.Fatal("ServeUDPIntercept did not return when its context ended")
		}
		_, err = pc.WriteTo([]byte{0}, net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:9")))
		assert.ErrorIs(t, err, net.ErrClosed, "Serve closed its socket")
	})
	t.Run("the other listeners serve on", func(t *testing.T) {
		c, err := net.DialTimeout("tcp", fl.addr, 10*time.Second)
		require.NoError(t, err)
		c.Close()
	})
	t.Run("close twice, then Serve refuses", func(t *testing.T) {
		require.NoError(t, fw.Close())
		require.NoError(t, fw.Close())
		l, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		assert.ErrorIs(t, fw.ServeProxy(context.Background(), l), net.ErrClosed)
		_, err = l.Accept()
		assert.ErrorIs(t, err, net.ErrClosed, "Serve closed the listener it refused")
	})
}
