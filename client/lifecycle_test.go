package client_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pinwall/pinwall/client"
)

// TestLifecycle: Start takes the client's lifetime as a context, Start runs
// once, Close is idempotent before and after Start.
func TestLifecycle(t *testing.T) {
	port, accepted := stallingGateway(t)

	t.Run("close twice before start, then start fails", func(t *testing.T) {
		c := newStallingClient(t, port)
		require.NoError(t, c.Close())
		require.NoError(t, c.Close())
		assert.ErrorContains(t, c.Start(context.Background()), "closed")
	})
	t.Run("start twice fails, close twice", func(t *testing.T) {
		c := newStallingClient(t, port)
		require.NoError(t, c.Start(context.Background()))
		assert.ErrorContains(t, c.Start(context.Background()), "already started")
		require.NoError(t, c.Close())
		require.NoError(t, c.Close())
	})
	t.Run("a start context already done", func(t *testing.T) {
		c := newStallingClient(t, port)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		assert.ErrorIs(t, c.Start(ctx), context.Canceled)
	})
	t.Run("the start context ends the client", func(t *testing.T) {
		c := newStallingClient(t, port)
		ctx, cancel := context.WithCancel(context.Background())
		require.NoError(t, c.Start(ctx))
		select {
		case <-accepted: // an attempt is in flight
		case <-time.After(10 * time.Second):
			t.Fatal("no tunnel attempt reached the gateway")
		}
		cancel()
		wctx, wcancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer wcancel()
		_, err := c.WaitUp(wctx)
		require.ErrorIs(t, err, client.ErrClosed, "the client closed when its context ended")
		require.NoError(t, c.Close())
	})
}
