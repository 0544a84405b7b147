package tunnel

import (
	"errors"
	"net"
	"sync"
)

// packetQueueBytes bounds what a PacketWriteQueue holds before WriteTo
// blocks: a few hundred datagrams, well under the 4 MiB socket buffers.
const packetQueueBytes = 512 << 10

// PacketWriteQueue wraps the UDP socket under a DTLS connection so that
// pion/dtls's writer only seals records: WriteTo copies the datagram into a
// bounded queue and returns, and a goroutine of the queue's own sends what
// has queued up, in order. pion/dtls sends every record with a system call
// of its own from the goroutine that sealed it, and pion/sctp's single
// write loop is that goroutine for the whole tunnel; with the queue,
// sealing and sending run on two cores. It is WriteQueue's counterpart for
// the DTLS tunnel.
//
// A datagram the socket refuses is lost, as one lost on the path would be
// (SCTP resends it); once the socket is closed under the queue, WriteTo
// returns net.ErrClosed. Close waits for the queue to drain (so a
// close_notify is not lost), then closes the socket; the goroutine has
// ended when Close returns. Reads and deadlines are the socket's.
func PacketWriteQueue(pc net.PacketConn) net.PacketConn {
	q := &packetWriteQueue{PacketConn: pc, done: make(chan struct{})}
	q.cond = sync.NewCond(&q.mu)
	go q.loop()
	return q
}

type queuedPacket struct {
	b    []byte
	addr net.Addr
}

type packetWriteQueue struct {
	net.PacketConn

	mu      sync.Mutex
	cond    *sync.Cond
	pending []queuedPacket
	sending []queuedPacket
	spare   [][]byte
	bytes   int
	err     error
	closing bool

	closeOnce sync.Once
	closeErr  error
	done      chan struct{}
}

func (q *packetWriteQueue) WriteTo(b []byte, addr net.Addr) (int, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for q.bytes >= packetQueueBytes && q.err == nil && !q.closing {
		q.cond.Wait()
	}
	switch {
	case q.err != nil:
		return 0, q.err
	case q.closing:
		return 0, net.ErrClosed
	}
	var buf []byte
	if n := len(q.spare); n > 0 {
		buf, q.spare = q.spare[n-1], q.spare[:n-1]
	}
	buf = append(buf[:0], b...)
	q.pending = append(q.pending, queuedPacket{buf, addr})
	q.bytes += len(b)
	if len(q.pending) == 1 {
		q.cond.Broadcast()
	}
	return len(b), nil
}

func (q *packetWriteQueue) loop() {
	defer close(q.done)
	q.mu.Lock()
	defer q.mu.Unlock()
	for {
		for len(q.pending) == 0 && !q.closing {
			q.cond.Wait()
		}
		if len(q.pending) == 0 {
			return
		}
		batch := q.pending
		q.pending, q.sending = q.sending[:0], nil
		q.mu.Unlock()
		sent := 0
		var err error
		for _, p := range batch {
			if _, werr := q.PacketConn.WriteTo(p.b, p.addr); werr != nil && errors.Is(werr, net.ErrClosed) {
				err = werr
			}
			sent += len(p.b)
		}
		q.mu.Lock()
		for i := range batch {
			q.spare = append(q.spare, batch[i].b)
			batch[i] = queuedPacket{}
		}
		q.sending = batch[:0]
		q.bytes -= sent
		if err != nil && q.err == nil {
			q.err = err
		}
		q.cond.Broadcast()
	}
}

// Close drains the queue, ends its goroutine and closes the socket.
func (q *packetWriteQueue) Close() error {
	q.closeOnce.Do(func() {
		q.mu.Lock()
		q.closing = true
		q.cond.Broadcast()
		q.mu.Unlock()
		<-q.done
		q.closeErr = q.PacketConn.Close()
	})
	return q.closeErr
}
