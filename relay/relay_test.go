package relay

import (
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// tcpPair returns two ends of a loopback TCP connection.
func tcpPair(t *testing.T) (net.Conn, net.Conn) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	ch := make(chan net.Conn, 1)
	go func() {
		c, _ := l.Accept()
		ch <- c
	}()
	c, err := net.Dial("tcp", l.Addr().String())
	require.NoError(t, err)
	s := <-ch
	require.NotNil(t, s)
	return c, s
}

func TestPipeHalfCloseBothWays(t *testing.T) {
	for _, counted := range []bool{false, true} {
		t.Run(map[bool]string{false: "splice", true: "counted"}[counted], func(t *testing.T) {
			client, proxyA := tcpPair(t)
			proxyB, server := tcpPair(t)
			var seen atomic.Int64
			var counter Counter
			if counted {
				counter = func(up bool, n int) { seen.Add(int64(n)) }
			}
			resCh := make(chan Result, 1)
			go func() { resCh <- PipeCounting(context.Background(), proxyA, proxyB, counter) }()

			up := make([]byte, 1<<20)
			for i := range up {
				up[i] = byte(i)
			}
			go func() {
				_, _ = client.Write(up)
				_ = client.(*net.TCPConn).CloseWrite()
			}()
			got, err := io.ReadAll(server)
			require.NoError(t, err)
			assert.Equal(t, sha256.Sum256(up), sha256.Sum256(got))
			// The server answers after the client half-closed.
			_, err = server.Write([]byte("reply"))
			require.NoError(t, err)
			require.NoError(t, server.Close())
			back, err := io.ReadAll(client)
			require.NoError(t, err)
			assert.Equal(t, "reply", string(back))
			client.Close()

			res := <-resCh
			assert.EqualValues(t, len(up), res.Up)
			assert.EqualValues(t, 5, res.Down)
			assert.NoError(t, res.Err())
			assert.Equal(t, "a", res.First)
			if counted {
				assert.EqualValues(t, len(up)+5, seen.Load())
			}
		})
	}
}

func TestPipeCancel(t *testing.T) {
	client, proxyA := tcpPair(t)
	proxyB, server := tcpPair(t)
	defer client.Close()
	defer server.Close()
	ctx, cancel := context.WithCancel(context.Background())
	resCh := make(chan Result, 1)
	go func() { resCh <- Pipe(ctx, proxyA, proxyB) }()
	time.Sleep(10 * time.Millisecond)
	cancel()
	select {
	case res := <-resCh:
		assert.ErrorIs(t, res.Err(), context.Canceled)
	case <-time.After(5 * time.Second):
		t.Fatal("Pipe ignored cancellation")
	}
	_, err := client.Read(make([]byte, 1))
	assert.Error(t, err, "the client's connection is closed by the relay")
}

func TestPipeResetTearsDown(t *testing.T) {
	client, proxyA := tcpPair(t)
	proxyB, server := tcpPair(t)
	defer client.Close()
	resCh := make(chan Result, 1)
	go func() { resCh <- Pipe(context.Background(), proxyA, proxyB) }()
	// The server resets: SO_LINGER 0 then close.
	require.NoError(t, server.(*net.TCPConn).SetLinger(0))
	_, _ = client.Write([]byte("x"))
	time.Sleep(10 * time.Millisecond)
	require.NoError(t, server.Close())
	select {
	case res := <-resCh:
		require.Error(t, res.Err())
		assert.False(t, errors.Is(res.Err(), net.ErrClosed), "the reset, not our own close, is reported: %v", res.Err())
	case <-time.After(5 * time.Second):
		t.Fatal("relay did not end after a reset")
	}
}
