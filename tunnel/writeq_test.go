package tunnel

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// tcpPair is a connected pair of loopback TCP connections.
func tcpPair(t *testing.T) (a, b net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	var (
		wg     sync.WaitGroup
		accErr error
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		b, accErr = ln.Accept()
	}()
	a, err = net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	wg.Wait()
	require.NoError(t, accErr)
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

func TestWriteQueueKeepsBytesAndOrder(t *testing.T) {
	a, b := tcpPair(t)
	q := WriteQueue(a)
	_, err := q.Write([]byte("before"))
	require.NoError(t, err, "writes through before the queue starts")
	q.(*writeQueue).start()
	data := make([]byte, 3<<20)
	_, _ = rand.Read(data)
	want := sha256.Sum256(data)
	got := make(chan [32]byte, 1)
	go func() {
		h := sha256.New()
		pre := make([]byte, 6)
		_, _ = io.ReadFull(b, pre)
		_, _ = io.Copy(h, b)
		var s [32]byte
		copy(s[:], h.Sum(nil))
		got <- s
	}()
	// Writes of every size, more than the queue holds in all.
	for off, i := 0, 1; off < len(data); i++ {
		n := min(len(data)-off, (i*7919)%(40<<10)+1)
		k, err := q.Write(data[off : off+n])
		require.NoError(t, err)
		require.Equal(t, n, k)
		off += n
	}
	require.NoError(t, q.Close(), "close drains the queue first")
	assert.Equal(t, want, <-got)
	assert.NoError(t, q.Close(), "idempotent")
	_, err = q.Write([]byte("x"))
	assert.ErrorIs(t, err, net.ErrClosed)
}

func TestWriteQueueReportsWriteError(t *testing.T) {
	a, b := tcpPair(t)
	q := WriteQueue(a)
	q.(*writeQueue).start()
	require.NoError(t, b.(*net.TCPConn).SetLinger(0))
	b.Close()
	chunk := bytes.Repeat([]byte("x"), 16<<10)
	var err error
	deadline := time.Now().Add(10 * time.Second)
	for err == nil && time.Now().Before(deadline) {
		_, err = q.Write(chunk)
	}
	require.Error(t, err, "a write after the peer's reset fails")
	var ne net.Error
	assert.True(t, errors.As(err, &ne) || errors.Is(err, net.ErrClosed), "the connection's own error: %v", err)
	_, err2 := q.Write(chunk)
	assert.Equal(t, err, err2, "every later write fails the same way")
	assert.NoError(t, q.Close())
}

func TestWriteQueueCloseBoundedByStalledPeer(t *testing.T) {
	a, _ := tcpPair(t) // the peer never reads
	q := WriteQueue(a)
	q.(*writeQueue).start()
	require.NoError(t, a.SetWriteDeadline(time.Now().Add(200*time.Millisecond)))
	chunk := bytes.Repeat([]byte("x"), 64<<10)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			if _, err := q.Write(chunk); err != nil {
				return
			}
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("writes to a stalled peer never failed past the write deadline")
	}
	assert.NoError(t, q.Close())
}

func TestWriteQueueNotStarted(t *testing.T) {
	a, b := tcpPair(t)
	q := WriteQueue(a)
	_, err := q.Write([]byte("hi"))
	require.NoError(t, err)
	require.NoError(t, q.Close(), "no goroutine to wait for")
	got, err := io.ReadAll(b)
	require.NoError(t, err)
	assert.Equal(t, "hi", string(got))
	q.(*writeQueue).start() // after Close: nothing starts
	assert.False(t, q.(*writeQueue).started)
}
