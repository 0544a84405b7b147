package fault

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Stack is a host's network as pinwall's components use it (the method
// set of hostnet.Stack, repeated here so that this package stays a leaf).
type Stack interface {
	DialContext(ctx context.Context, network, address string) (net.Conn, error)
	Listen(ctx context.Context, network, address string) (net.Listener, error)
	ListenPacket(ctx context.Context, network, address string) (net.PacketConn, error)
}

// Stats counts what an ImpairedStack did to datagrams, in both directions.
type Stats struct {
	// Datagrams is every datagram that met an impairment.
	Datagrams int64 `json:"datagrams"`
	Dropped   int64 `json:"dropped"`
	Delayed   int64 `json:"delayed"`
	// Reordered counts datagrams sent at once while others were delayed.
	Reordered int64 `json:"reordered"`
}

// ImpairedStack impairs the datagrams of the UDP sockets dialled through
// it — what they send and what they receive, each direction decided on
// its own — as its current Impairment says; TCP and listening sockets pass
// through untouched. Impair changes the impairment of every socket at
// once, including those already open. It is how a runner degrades the
// laptop's path in both runners (in process over a hostnet.Sim host, in
// a container over the kernel's network), so the two mean the same.
//
// A dialled UDP socket gets a goroutine reading from the kernel (so that
// received datagrams can be held back); it ends when the socket closes.
type ImpairedStack struct {
	Stack
	cur   atomic.Pointer[Impairer]
	stats struct{ datagrams, dropped, delayed, reordered atomic.Int64 }
}

// PathMTU is the wrapped stack's path MTU towards dst, when it can tell
// (it has a PathMTU method of this signature, as hostnet's stacks do).
// The impairment drops and delays datagrams; it does not change their size.
func (s *ImpairedStack) PathMTU(dst netip.Addr) (int, error) {
	if p, ok := s.Stack.(interface {
		PathMTU(netip.Addr) (int, error)
	}); ok {
		return p.PathMTU(dst)
	}
	return 0, errors.New("fault: the wrapped network does not tell its path MTU")
}

// NewImpairedStack wraps s with im as the initial impairment (zero: none).
func NewImpairedStack(s Stack, im Impairment) *ImpairedStack {
	is := &ImpairedStack{Stack: s}
	is.Impair(im)
	return is
}

// Impair replaces the impairment (a zero one clears it). Datagrams already
// held back keep their delay.
func (s *ImpairedStack) Impair(im Impairment) {
	if im.IsZero() {
		s.cur.Store(nil)
		return
	}
	s.cur.Store(NewImpairer(im))
}

// Impairment is the current impairment.
func (s *ImpairedStack) Impairment() Impairment {
	if p := s.cur.Load(); p != nil {
		return p.Impairment()
	}
	return Impairment{}
}

// Stats returns the counts so far.
func (s *ImpairedStack) Stats() Stats {
	return Stats{Datagrams: s.stats.datagrams.Load(), Dropped: s.stats.dropped.Load(),
		Delayed: s.stats.delayed.Load(), Reordered: s.stats.reordered.Load()}
}

// decide draws one datagram's fate under the current impairment.
func (s *ImpairedStack) decide() (drop bool, delay time.Duration) {
	p := s.cur.Load()
	if p == nil {
		return false, 0
	}
	s.stats.datagrams.Add(1)
	drop, delay = p.Next()
	switch {
	case drop:
		s.stats.dropped.Add(1)
	case delay > 0:
		s.stats.delayed.Add(1)
	case p.im.Latency > 0:
		s.stats.reordered.Add(1)
	}
	return drop, delay
}

// DialContext dials through the wrapped stack; a UDP socket comes back
// impaired.
func (s *ImpairedStack) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	c, err := s.Stack.DialContext(ctx, network, address)
	if err != nil || (network != "udp" && network != "udp4") {
		return c, err
	}
	return newImpairedConn(s, c), nil
}

// inboundQueue bounds the datagrams received and not yet read, like a
// socket's receive buffer: more are dropped.
const inboundQueue = 4096

// impairedConn is a dialled UDP socket whose datagrams are impaired.
type impairedConn struct {
	net.Conn
	s        *ImpairedStack
	out, in  DelayLine
	queue    chan []byte
	pumpDone chan struct{}
	readErr  error // set before pumpDone closes

	mu       sync.Mutex
	deadline time.Time
	wake     chan struct{}
	closed   chan struct{}
	once     sync.Once
}

func newImpairedConn(s *ImpairedStack, c net.Conn) *impairedConn {
	ic := &impairedConn{Conn: c, s: s, queue: make(chan []byte, inboundQueue), pumpDone: make(chan struct{}),
		wake: make(chan struct{}, 1), closed: make(chan struct{})}
	go ic.pump()
	return ic
}

// pump reads what the kernel received and hands each datagram on after
// its fate is decided.
func (c *impairedConn) pump() {
	defer close(c.pumpDone)
	buf := make([]byte, 64<<10)
	for {
		n, err := c.Conn.Read(buf)
		if err != nil {
			c.readErr = err
			return
		}
		drop, delay := c.s.decide()
		if drop {
			continue
		}
		b := append([]byte(nil), buf[:n]...)
		if delay == 0 {
			c.enqueue(b)
			continue
		}
		c.in.Send(time.Now().Add(delay), func() { c.enqueue(b) })
	}
}

func (c *impairedConn) enqueue(b []byte) {
	select {
	case c.queue <- b:
	default: // the receive buffer is full: lost, as in the kernel
	}
}

// Write sends b now, later, or never.
func (c *impairedConn) Write(b []byte) (int, error) {
	select {
	case <-c.closed:
		return 0, net.ErrClosed
	default:
	}
	drop, delay := c.s.decide()
	switch {
	case drop:
		return len(b), nil
	case delay == 0:
		return c.Conn.Write(b)
	}
	d := append([]byte(nil), b...)
	c.out.Send(time.Now().Add(delay), func() { _, _ = c.Conn.Write(d) })
	return len(b), nil
}

// Read returns the next datagram handed on by the pump.
func (c *impairedConn) Read(b []byte) (int, error) {
	for {
		c.mu.Lock()
		dl := c.deadline
		c.mu.Unlock()
		n, again, err := c.readOnce(b, dl)
		if !again {
			return n, err
		}
	}
}

// readOnce waits for a datagram until the deadline dl; again reports that
// the deadline changed meanwhile.
func (c *impairedConn) readOnce(b []byte, dl time.Time) (n int, again bool, err error) {
	select {
	case <-c.closed:
		return 0, false, net.ErrClosed
	default:
	}
	var timer <-chan time.Time
	if !dl.IsZero() {
		d := time.Until(dl)
		if d <= 0 {
			return 0, false, os.ErrDeadlineExceeded
		}
		t := time.NewTimer(d)
		defer t.Stop()
		timer = t.C
	}
	select {
	case p := <-c.queue:
		return copy(b, p), false, nil
	case <-c.closed:
		return 0, false, net.ErrClosed
	case <-c.pumpDone:
		// The socket failed; hand out what is still queued first.
		select {
		case p := <-c.queue:
			return copy(b, p), false, nil
		default:
			return 0, false, c.readErr
		}
	case <-timer:
		return 0, false, os.ErrDeadlineExceeded
	case <-c.wake:
		return 0, true, nil
	}
}

func (c *impairedConn) SetDeadline(t time.Time) error {
	_ = c.SetReadDeadline(t)
	return c.Conn.SetWriteDeadline(t)
}

func (c *impairedConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	c.deadline = t
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
	return nil
}

// Close closes the socket, drops what is held back and waits for the pump.
func (c *impairedConn) Close() error {
	var err error
	c.once.Do(func() {
		close(c.closed)
		err = c.Conn.Close()
		<-c.pumpDone
		c.out.Close()
		c.in.Close()
	})
	return err
}
