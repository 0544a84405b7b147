package capture

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// tcpFlow synthesizes one TCP connection's segments. End 0 is the
// dialler (a), end 1 the listener (b).
type tcpFlow struct {
	leg *Leg
	key flowKey // in the Recorder's registry (zero: not registered)

	mu      sync.Mutex
	ends    [2]netip.AddrPort
	started bool         // the ends are known and the handshake is out
	t0      time.Time    // when the flow was first seen: the handshake's time
	queue   []func()     // events of the listener's end before the dialler's arrived
	refs    atomic.Int32 // wrappers attached and not yet closed
	next    [2]uint32    // next sequence number each end sends
	acked   [2]uint32    // highest acknowledgement each end has sent
	kept    [2]int       // payload bytes kept, per direction
	id      [2]uint16    // IP identification, per direction
	fin     [2]bool
	closed  bool // reset, or both ends finished
}

// start sets the flow's ends and sends the three-way handshake, then
// whatever the listener's end did before (f.mu held).
func (f *tcpFlow) start(a, b netip.AddrPort) {
	if f.started {
		return
	}
	f.ends, f.started = [2]netip.AddrPort{a, b}, true
	isnA, isnB := f.leg.r.isn(), f.leg.r.isn()
	f.id = [2]uint16{uint16(isnA >> 16), uint16(isnB >> 16)}
	t := f.t0
	f.send(t, 0, tcpSegment{seq: isnA, flags: flagSYN, syn: true})
	f.send(t, 1, tcpSegment{seq: isnB, ack: isnA + 1, flags: flagSYN | flagACK, syn: true})
	f.next = [2]uint32{isnA + 1, isnB + 1}
	f.acked = [2]uint32{isnB + 1, isnA + 1}
	f.send(t, 0, tcpSegment{seq: isnA + 1, ack: isnB + 1, flags: flagACK})
	q := f.queue
	f.queue = nil
	for _, ev := range q {
		ev()
	}
}

// event runs fn with the current time now, or, before the flow has
// started, once it has (f.mu held while fn runs). The time is read under
// the lock, so that a flow's packets are in time order as they are in
// sequence order: an end that read the clock and then waited for the
// lock would otherwise stamp its packet earlier than packets it comes
// after.
func (f *tcpFlow) event(fn func(t time.Time)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	t := f.leg.r.now()
	if !f.started {
		f.queue = append(f.queue, func() { fn(t) })
		return
	}
	fn(t)
}

// send emits one segment from end d (f.mu held).
func (f *tcpFlow) send(t time.Time, d int, s tcpSegment) {
	s.src, s.dst = f.ends[d], f.ends[1-d]
	s.id = f.id[d]
	f.id[d]++
	keep := f.leg.keep(&f.kept[d], len(s.payload))
	pkt, orig := s.packet(keep)
	f.leg.emit(t, pkt, orig, 0)
}

// data records p sent by end d: segments of at most mss bytes, each
// acknowledging all the other end has sent, and the other end's
// acknowledgement after every ackEvery bytes and at the end.
func (f *tcpFlow) data(d int, p []byte) {
	if len(p) == 0 {
		return
	}
	f.mu.Lock()
	queued := !f.started
	f.mu.Unlock()
	if queued {
		p = slices.Clone(p) // the caller reuses its buffer
	}
	f.event(func(t time.Time) {
		if f.closed || f.fin[d] {
			return
		}
		sinceAck := 0
		for len(p) > 0 {
			n := min(len(p), mss)
			flags := uint8(flagACK)
			if n == len(p) {
				flags |= flagPSH
			}
			f.send(t, d, tcpSegment{seq: f.next[d], ack: f.next[1-d], flags: flags, payload: p[:n]})
			f.acked[d] = f.next[1-d]
			f.next[d] += uint32(n)
			p = p[n:]
			sinceAck += n
			if sinceAck >= ackEvery || len(p) == 0 {
				f.ack(t, 1-d)
				sinceAck = 0
			}
		}
	})
}

// ack makes end d acknowledge everything the other end has sent, unless
// it already has (f.mu held).
func (f *tcpFlow) ack(t time.Time, d int) {
	if f.acked[d] == f.next[1-d] {
		return
	}
	f.send(t, d, tcpSegment{seq: f.next[d], ack: f.next[1-d], flags: flagACK})
	f.acked[d] = f.next[1-d]
}

// finish records end d closing its direction (FIN), acknowledged by the
// other end.
func (f *tcpFlow) finish(d int) {
	f.event(func(t time.Time) {
		if f.closed || f.fin[d] {
			return
		}
		f.send(t, d, tcpSegment{seq: f.next[d], ack: f.next[1-d], flags: flagFIN | flagACK})
		f.acked[d] = f.next[1-d]
		f.next[d]++
		f.fin[d] = true
		f.ack(t, 1-d)
		f.closed = f.fin[0] && f.fin[1]
	})
}

// reset records end d resetting the connection.
func (f *tcpFlow) reset(d int) {
	f.event(func(t time.Time) {
		if f.closed {
			return
		}
		f.send(t, d, tcpSegment{seq: f.next[d], ack: f.next[1-d], flags: flagRST | flagACK})
		f.closed = true
	})
}

// tcpConn records one end of a TCP connection: what it writes, before it
// goes out (so a request always precedes its answer), its FIN or reset
// when it closes; and, when it is the only end recorded (oneSided), what
// it reads and the peer's FIN or reset as they arrive.
type tcpConn struct {
	net.Conn
	f        *tcpFlow
	side     int // 0 the dialler, 1 the listener
	oneSided bool
	linger0  atomic.Bool
	once     sync.Once
}

func (c *tcpConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if !c.oneSided {
		return n, err
	}
	if n > 0 {
		c.f.data(1-c.side, p[:n])
	}
	switch {
	case err == io.EOF:
		c.f.finish(1 - c.side)
	case isReset(err):
		c.f.reset(1 - c.side)
	}
	return n, err
}

func (c *tcpConn) Write(p []byte) (int, error) {
	c.f.data(c.side, p)
	n, err := c.Conn.Write(p)
	if c.oneSided && isReset(err) {
		c.f.reset(1 - c.side)
	}
	return n, err
}

// CloseWrite half-closes: a FIN from this end.
func (c *tcpConn) CloseWrite() error {
	cw, ok := c.Conn.(interface{ CloseWrite() error })
	if !ok {
		return c.Close()
	}
	c.f.finish(c.side)
	return cw.CloseWrite()
}

// SetLinger passes on to the connection; a zero linger makes Close a reset.
func (c *tcpConn) SetLinger(sec int) error {
	l, ok := c.Conn.(interface{ SetLinger(int) error })
	if !ok {
		if u, uok := c.Conn.(interface{ Unwrap() net.Conn }); uok {
			l, ok = u.Unwrap().(interface{ SetLinger(int) error })
		}
	}
	if !ok {
		return errors.ErrUnsupported
	}
	err := l.SetLinger(sec)
	if err == nil {
		c.linger0.Store(sec == 0)
	}
	return err
}

// Close ends this end: a FIN, or a reset after SetLinger(0).
func (c *tcpConn) Close() error {
	c.once.Do(func() {
		if c.linger0.Load() {
			c.f.reset(c.side)
		} else {
			c.f.finish(c.side)
		}
		c.f.leg.r.release(c.f)
	})
	return c.Conn.Close()
}

// Unwrap returns the recorded connection.
func (c *tcpConn) Unwrap() net.Conn { return c.Conn }

func isReset(err error) bool {
	return err != nil && (errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE))
}
