package mitm

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// arrivingConn is a source whose chunks arrive on a channel: those already
// sent are at hand (a read with a past deadline gets them), later ones
// come when the test sends them; a closed channel is EOF.
type arrivingConn struct {
	net.Conn
	ch         chan []byte
	noDeadline bool // SetReadDeadline fails, as on a connection without deadlines

	mu   sync.Mutex
	past bool
	rest []byte
}

func (c *arrivingConn) SetReadDeadline(t time.Time) error {
	if c.noDeadline {
		return errors.New("deadlines not supported")
	}
	c.mu.Lock()
	c.past = !t.IsZero() && t.Before(time.Now())
	c.mu.Unlock()
	return nil
}

func (c *arrivingConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	past := c.past
	c.mu.Unlock()
	if len(c.rest) == 0 {
		var (
			b  []byte
			ok bool
		)
		if past {
			select {
			case b, ok = <-c.ch:
			default:
				return 0, os.ErrDeadlineExceeded
			}
		} else {
			b, ok = <-c.ch
		}
		if !ok {
			return 0, io.EOF
		}
		c.rest = b
	}
	n := copy(p, c.rest)
	c.rest = c.rest[n:]
	return n, nil
}

// writesConn records each write it is given.
type writesConn struct {
	net.Conn
	mu     sync.Mutex
	writes [][]byte
	fail   error
	wrote  chan struct{}
}

func (c *writesConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fail != nil {
		return 0, c.fail
	}
	c.writes = append(c.writes, bytes.Clone(p))
	select {
	case c.wrote <- struct{}{}:
	default:
	}
	return len(p), nil
}

func (c *writesConn) got() [][]byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([][]byte(nil), c.writes...)
}

func TestCopyRecordsBatchesWhatIsAtHand(t *testing.T) {
	chunk := func(b byte, n int) []byte { return bytes.Repeat([]byte{b}, n) }
	tests := []struct {
		name       string
		chunks     [][]byte
		noDeadline bool
		wantWrites []int // sizes of the writes the destination saw
	}{
		{"three at hand go out in one write", [][]byte{chunk('a', 100), chunk('b', 200), chunk('c', 300)}, false, []int{600}},
		{"a lone chunk goes out alone", [][]byte{chunk('a', 10)}, false, []int{10}},
		{"a write never grows past the batch size by more than a read", [][]byte{chunk('a', 30<<10), chunk('b', 30<<10), chunk('c', 30<<10), chunk('d', 30<<10)}, false, []int{90 << 10, 30 << 10}},
		{"without deadlines nothing is batched", [][]byte{chunk('a', 100), chunk('b', 200)}, true, []int{100, 200}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := &arrivingConn{ch: make(chan []byte, len(tt.chunks)), noDeadline: tt.noDeadline}
			for _, c := range tt.chunks {
				src.ch <- c
			}
			close(src.ch)
			under := &writesConn{wrote: make(chan struct{}, 1)}
			dst := newBatchConn(under)
			n, err := copyRecords(dst, dst, src)
			require.NoError(t, err, "EOF ends the copy without an error, as io.Copy")
			var want []byte
			for _, c := range tt.chunks {
				want = append(want, c...)
			}
			assert.Equal(t, int64(len(want)), n)
			var sizes []int
			var got []byte
			for _, w := range under.got() {
				sizes = append(sizes, len(w))
				got = append(got, w...)
			}
			assert.Equal(t, tt.wantWrites, sizes)
			assert.Equal(t, want, got, "every byte, in order")
		})
	}
}

// TestCopyRecordsDoesNotWaitToBatch: a chunk read is written before the
// next one arrives; the copy never holds data back waiting for more.
func TestCopyRecordsDoesNotWaitToBatch(t *testing.T) {
	src := &arrivingConn{ch: make(chan []byte)}
	under := &writesConn{wrote: make(chan struct{}, 1)}
	dst := newBatchConn(under)
	done := make(chan error, 1)
	go func() {
		_, err := copyRecords(dst, dst, src)
		done <- err
	}()
	src.ch <- []byte("request")
	select {
	case <-under.wrote:
	case <-time.After(10 * time.Second):
		t.Fatal("the first chunk was held back waiting for a second")
	}
	assert.Equal(t, [][]byte{[]byte("request")}, under.got())
	close(src.ch)
	require.NoError(t, <-done)
}

// TestCopyRecordsFlushError: a held write that fails when flushed ends the
// copy with the error.
func TestCopyRecordsFlushError(t *testing.T) {
	src := &arrivingConn{ch: make(chan []byte, 1)}
	src.ch <- []byte("data")
	close(src.ch)
	broken := errors.New("connection reset")
	dst := newBatchConn(&writesConn{fail: broken})
	_, err := copyRecords(dst, dst, src)
	require.ErrorIs(t, err, broken)
}

// TestBatchConnWritesInOrder: a write that is not held (an alert from
// Close) while writes are held goes out after them, not before.
func TestBatchConnWritesInOrder(t *testing.T) {
	under := &writesConn{}
	c := newBatchConn(under)
	c.hold()
	_, err := c.Write([]byte("record1"))
	require.NoError(t, err)
	assert.Equal(t, 7, c.pending())
	assert.Empty(t, under.got(), "held")
	require.NoError(t, c.flush())
	_, err = c.Write([]byte("alert"))
	require.NoError(t, err)
	assert.Equal(t, [][]byte{[]byte("record1"), []byte("alert")}, under.got())
	assert.Equal(t, 0, c.pending())
}

// scriptConn serves reads from a script of (bytes, error) steps, each
// step as much as the buffer given takes, and records the size of every
// buffer it was given.
type scriptConn struct {
	net.Conn
	steps []scriptStep
	sizes []int
}

type scriptStep struct {
	data []byte
	err  error
}

func (c *scriptConn) Read(p []byte) (int, error) {
	c.sizes = append(c.sizes, len(p))
	if len(c.steps) == 0 {
		return 0, io.EOF
	}
	st := &c.steps[0]
	n := copy(p, st.data)
	st.data = st.data[n:]
	if len(st.data) == 0 {
		c.steps = c.steps[1:]
		return n, st.err
	}
	return n, nil
}

// TestBatchConnReads: a session that waits reads into the caller's buffer
// (an idle session holds no pooled buffer); a read after one that filled
// the caller's buffer takes in up to batchSize at once and serves it over
// the next reads; an error that came with data comes after the data.
func TestBatchConnReads(t *testing.T) {
	broken := errors.New("connection reset")
	under := &scriptConn{steps: []scriptStep{
		{data: bytes.Repeat([]byte{'a'}, 100+3000)}, // 100 fill the first read; 3,000 wait
		{data: []byte("tail"), err: broken},
	}}
	c := newBatchConn(under)
	c.startBatching()
	p := make([]byte, 100)

	n, err := c.Read(p)
	require.NoError(t, err)
	assert.Equal(t, 100, n)
	assert.Equal(t, []int{100}, under.sizes, "the first read waits in the caller's buffer")

	got := 0
	for got < 3000 {
		n, err := c.Read(p)
		require.NoError(t, err)
		got += n
	}
	assert.Equal(t, []int{100, batchSize}, under.sizes, "the 3,000 waiting bytes came in one read of batchSize")
	assert.Nil(t, c.rbuf, "drained: the pooled buffer went back")

	n, err = c.Read(p)
	assert.Equal(t, 4, n, "the last read did not fill its buffer: this one waits in the caller's")
	require.ErrorIs(t, err, broken)
	assert.Equal(t, []int{100, batchSize, 100}, under.sizes)
}

// TestBatchConnErrorAfterBufferedData: an error that came with more data
// than the caller's buffer takes is returned once that data is read.
func TestBatchConnErrorAfterBufferedData(t *testing.T) {
	broken := errors.New("connection reset")
	under := &scriptConn{steps: []scriptStep{
		{data: bytes.Repeat([]byte{'a'}, 10)},
		{data: bytes.Repeat([]byte{'b'}, 25), err: broken},
	}}
	c := newBatchConn(under)
	c.startBatching()
	p := make([]byte, 10)
	var got []byte
	var last error
	for last == nil {
		n, err := c.Read(p)
		got = append(got, p[:n]...)
		last = err
	}
	require.ErrorIs(t, last, broken)
	assert.Equal(t, append(bytes.Repeat([]byte{'a'}, 10), bytes.Repeat([]byte{'b'}, 25)...), got, "every byte before the error")
}
