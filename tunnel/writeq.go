package tunnel

import (
	"net"
	"sync"
	"time"
)

// writeQueueBytes bounds what a WriteQueue holds before Write blocks.
const writeQueueBytes = 512 << 10

// writeQueueClose bounds how long Close waits for queued bytes to leave.
const writeQueueClose = 5 * time.Second

// WriteQueue wraps the TCP connection under a tunnel's TLS connection so
// that, once the tunnel runs, TLS's writer only seals records: Write copies
// the record into a bounded queue and returns, and a goroutine of the
// WriteQueue's own sends what has queued up with one writev(2). crypto/tls
// writes every record (at most 16 KiB) with a system call of its own from
// the goroutine that sealed it, and yamux's single send loop is that
// goroutine for the whole tunnel; with the queue, sealing and sending run
// on two cores and several records leave in one call. Bytes and their
// order are unchanged.
//
// Until NewTLSSession starts the queue (through tls.Conn.NetConn), Write
// writes through, so the handshake, a refusal and the greeting go out as
// before. Once started, a write error is returned by the next Write (and
// every one after it), and Close waits up to 5 s for the queue to drain (so
// a close_notify or a last frame is not lost), then closes the connection;
// the goroutine has ended when Close returns. Read and the deadlines are
// the connection's.
func WriteQueue(c net.Conn) net.Conn {
	q := &writeQueue{Conn: c, done: make(chan struct{})}
	q.cond = sync.NewCond(&q.mu)
	return q
}

// startWriteQueue starts the queue under conn, a TLS connection over a
// WriteQueue; on any other connection it does nothing.
func startWriteQueue(conn net.Conn) {
	tc, ok := conn.(interface{ NetConn() net.Conn })
	if !ok {
		return
	}
	if q, ok := tc.NetConn().(*writeQueue); ok {
		q.start()
	}
}

type writeQueue struct {
	net.Conn
	mu      sync.Mutex
	cond    *sync.Cond
	queue   net.Buffers
	queued  int
	err     error
	closing bool
	started bool
	done    chan struct{}
	once    sync.Once
	// spare holds the buffers of the last batch sent, for reuse.
	spare [][]byte
}

// start switches Write from writing through to queueing; it is
// idempotent, and does nothing once Close has begun.
func (q *writeQueue) start() {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.started || q.closing {
		return
	}
	q.started = true
	go q.loop()
}

func (q *writeQueue) Write(p []byte) (int, error) {
	q.mu.Lock()
	if !q.started {
		q.mu.Unlock()
		return q.Conn.Write(p)
	}
	defer q.mu.Unlock()
	for q.err == nil && !q.closing && q.queued > 0 && q.queued+len(p) > writeQueueBytes {
		q.cond.Wait()
	}
	switch {
	case q.err != nil:
		return 0, q.err
	case q.closing:
		return 0, net.ErrClosed
	}
	var b []byte
	if n := len(q.spare); n > 0 {
		b, q.spare = q.spare[n-1][:0], q.spare[:n-1]
	}
	b = append(b, p...)
	q.queue = append(q.queue, b)
	q.queued += len(p)
	q.cond.Broadcast()
	return len(p), nil
}

func (q *writeQueue) loop() {
	defer close(q.done)
	var batch net.Buffers
	q.mu.Lock()
	for {
		for len(q.queue) == 0 && !q.closing {
			q.cond.Wait()
		}
		if len(q.queue) == 0 || q.err != nil {
			q.mu.Unlock()
			return
		}
		batch, q.queue = q.queue, batch[:0]
		q.mu.Unlock()
		bufs := append([][]byte(nil), batch...)
		_, err := batch.WriteTo(q.Conn)
		q.mu.Lock()
		if err != nil {
			q.err = err
			q.queue = nil
			q.cond.Broadcast()
			q.mu.Unlock()
			return
		}
		for _, b := range bufs {
			q.queued -= len(b)
			if len(q.spare) < 64 && cap(b) <= 32<<10 {
				q.spare = append(q.spare, b)
			}
		}
		batch = batch[:0]
		q.cond.Broadcast()
	}
}

// Close waits for the queue to drain (5 s at most), closes the connection
// and waits for the writer goroutine. It is idempotent.
func (q *writeQueue) Close() error {
	var err error
	q.once.Do(func() {
		q.mu.Lock()
		q.closing = true
		started := q.started
		q.cond.Broadcast()
		q.mu.Unlock()
		if started {
			_ = q.Conn.SetWriteDeadline(time.Now().Add(writeQueueClose))
			<-q.done
		}
		err = q.Conn.Close()
	})
	return err
}

// Unwrap returns the connection under the queue.
func (q *writeQueue) Unwrap() net.Conn { return q.Conn }
