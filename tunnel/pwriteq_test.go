package tunnel

import (
	"encoding/binary"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// recordingPacketConn records the datagrams written to it; gate, if not
// nil, holds every write until it is closed.
type recordingPacketConn struct {
	net.PacketConn // nil: only WriteTo and Close are called

	gate chan struct{}

	mu     sync.Mutex
	got    [][]byte
	closed bool
}

func (c *recordingPacketConn) WriteTo(b []byte, _ net.Addr) (int, error) {
	if c.gate != nil {
		<-c.gate
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return 0, net.ErrClosed
	}
	c.got = append(c.got, append([]byte(nil), b...))
	return len(b), nil
}

func (c *recordingPacketConn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	return nil
}

func (c *recordingPacketConn) datagrams() [][]byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.got
}

func TestPacketWriteQueue(t *testing.T) {
	tests := []struct {
		name  string
		count int
		size  int
	}{
		{"one datagram", 1, 100},
		{"many small ones", 5000, 64},
		{"more than the queue holds", 2000, 1200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			under := &recordingPacketConn{}
			q := PacketWriteQueue(under)
			buf := make([]byte, tt.size)
			for i := range tt.count {
				binary.BigEndian.PutUint32(buf, uint32(i))
				n, err := q.WriteTo(buf, nil)
				require.NoError(t, err)
				require.Equal(t, tt.size, n)
				buf[4] = byte(i) // the queue holds a copy, not buf
			}
			require.NoError(t, q.Close(), "Close drains the queue first")
			got := under.datagrams()
			require.Len(t, got, tt.count)
			for i, d := range got {
				require.Len(t, d, tt.size)
				require.Equal(t, uint32(i), binary.BigEndian.Uint32(d), "datagram %d out of order", i)
				if tt.size > 4 && i > 0 {
					require.Equal(t, byte(i-1), d[4], "datagram %d is not the bytes written", i)
				}
			}
			_, err := q.WriteTo(buf, nil)
			assert.ErrorIs(t, err, net.ErrClosed)
		})
	}
}

func TestPacketWriteQueueBlocksWhenFull(t *testing.T) {
	under := &recordingPacketConn{gate: make(chan struct{})}
	q := PacketWriteQueue(under)
	buf := make([]byte, 8<<10)
	// The sender holds the first datagram at the gate; the queue counts
	// the datagrams being sent until they are sent, so packetQueueBytes
	// of writes return and the next one waits.
	blocked := make(chan int, 1)
	go func() {
		for i := range 2*packetQueueBytes/len(buf) + 2 {
			if _, err := q.WriteTo(buf, nil); err != nil {
				blocked <- -1
				return
			}
			if i == packetQueueBytes/len(buf)-1 {
				blocked <- i
			}
		}
		blocked <- 0
	}()
	select {
	case i := <-blocked:
		require.Equal(t, packetQueueBytes/len(buf)-1, i)
	case <-time.After(10 * time.Second):
		t.Fatal("writes up to the bound did not return")
	}
	select {
	case <-blocked:
		t.Fatal("WriteTo did not wait with the queue full")
	case <-time.After(50 * time.Millisecond):
	}
	close(under.gate)
	require.Equal(t, 0, <-blocked, "the writes go on once the socket takes datagrams again")
	require.NoError(t, q.Close())
	assert.Len(t, under.datagrams(), 2*packetQueueBytes/len(buf)+2)
}

func TestPacketWriteQueueSocketClosedUnder(t *testing.T) {
	under := &recordingPacketConn{}
	q := PacketWriteQueue(under)
	require.NoError(t, under.Close())
	_, err := q.WriteTo([]byte("x"), nil)
	require.NoError(t, err, "the first write is queued before the socket refuses it")
	require.Eventually(t, func() bool {
		_, err := q.WriteTo([]byte("x"), nil)
		return err != nil
	}, 5*time.Second, time.Millisecond)
	_, err = q.WriteTo([]byte("x"), nil)
	assert.ErrorIs(t, err, net.ErrClosed)
	require.NoError(t, q.Close())
}
