package fault_test

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pinwall/pinwall/fault"
	"github.com/pinwall/pinwall/hostnet"
)

// echoServer answers every datagram on loopback until the test ends.
func echoServer(t *testing.T) string {
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	require.NoError(t, err)
	done := make(chan struct{})
	t.Cleanup(func() { pc.Close(); <-done })
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = pc.WriteTo(buf[:n], from)
		}
	}()
	return pc.LocalAddr().String()
}

// TestImpairedStack: a dialled UDP socket loses, delays (both ways) and
// reorders as told; Impair applies to open sockets; deadlines work; TCP
// and listeners pass through; Close ends the socket's goroutine.
func TestImpairedStack(t *testing.T) {
	addr := echoServer(t)
	s := fault.NewImpairedStack(hostnet.OS{}, fault.Impairment{})
	c, err := s.DialContext(context.Background(), "udp", addr)
	require.NoError(t, err)
	defer c.Close()

	roundTrip := func(i uint32) (time.Duration, bool) {
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], i)
		start := time.Now()
		_, err := c.Write(b[:])
		require.NoError(t, err)
		require.NoError(t, c.SetReadDeadline(time.Now().Add(200*time.Millisecond)))
		buf := make([]byte, 16)
		for {
			n, err := c.Read(buf)
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return 0, false
			}
			require.NoError(t, err)
			if n == 4 && binary.BigEndian.Uint32(buf) == i {
				return time.Since(start), true
			}
		}
	}
	_, ok := roundTrip(1)
	require.True(t, ok, "no impairment: the echo comes back")

	s.Impair(fault.Impairment{Latency: 30 * time.Millisecond})
	rtt, ok := roundTrip(2)
	require.True(t, ok)
	assert.GreaterOrEqual(t, rtt, 60*time.Millisecond, "30ms each way")

	s.Impair(fault.Impairment{Loss: 1})
	_, ok = roundTrip(3)
	assert.False(t, ok, "everything lost")
	assert.Positive(t, s.Stats().Dropped)

	// Reordering: a burst comes back out of order when some datagrams
	// skip the delay the others wait.
	s.Impair(fault.Impairment{Latency: 20 * time.Millisecond, Reorder: 0.3, Seed: 3})
	require.NoError(t, c.SetReadDeadline(time.Time{}))
	const burst = 40
	for i := range burst {
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], uint32(100+i))
		_, err := c.Write(b[:])
		require.NoError(t, err)
	}
	var got []uint32
	require.NoError(t, c.SetReadDeadline(time.Now().Add(2*time.Second)))
	buf := make([]byte, 16)
	for len(got) < burst {
		n, err := c.Read(buf)
		require.NoError(t, err)
		if n == 4 {
			got = append(got, binary.BigEndian.Uint32(buf))
		}
	}
	inversions := 0
	for i := 1; i < len(got); i++ {
		if got[i] < got[i-1] {
			inversions++
		}
	}
	assert.Positive(t, inversions, "some datagrams overtook others: %v", got)
	st := s.Stats()
	assert.Positive(t, st.Reordered)
	assert.Positive(t, st.Delayed)

	// A read deadline set while a read waits wakes it.
	s.Impair(fault.Impairment{})
	require.NoError(t, c.SetReadDeadline(time.Time{}))
	errc := make(chan error, 1)
	go func() { _, err := c.Read(buf); errc <- err }()
	time.Sleep(20 * time.Millisecond)
	require.NoError(t, c.SetReadDeadline(time.Now()))
	select {
	case err := <-errc:
		assert.ErrorIs(t, err, os.ErrDeadlineExceeded)
	case <-time.After(5 * time.Second):
		t.Fatal("the new deadline did not wake the read")
	}

	// TCP passes through unwrapped.
	l, err := s.Listen(context.Background(), "tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	tc, err := s.DialContext(context.Background(), "tcp", l.Addr().String())
	require.NoError(t, err)
	_, isTCP := tc.(*net.TCPConn)
	assert.True(t, isTCP)
	tc.Close()

	require.NoError(t, c.Close())
	_, err = c.Write([]byte("x"))
	assert.ErrorIs(t, err, net.ErrClosed)
	_, err = c.Read(buf)
	assert.ErrorIs(t, err, net.ErrClosed)
}
