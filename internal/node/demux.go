package node

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"sync"

	"github.com/pinwall/pinwall/accept"
	"github.com/pinwall/pinwall/hostnet"
)

// demuxBacklog bounds the connections a demultiplexed listener holds for
// its gateway before they are refused (closed), like a kernel's accept
// backlog.
const demuxBacklog = 128

// addrDemux hands the connections one listener accepts to the listener of
// the address each was sent to: several gateways on one node share the
// wildcard port, each gets the connections to its own addresses. A
// connection to an address no listener holds is closed and logged.
type addrDemux struct {
	l   net.Listener
	log *slog.Logger

	mu   sync.Mutex
	subs map[netip.Addr]*demuxListener
	all  []*demuxListener
}

// newAddrDemux demultiplexes l, whose temporary accept errors (a
// descriptor shortage, say) are retried as a gateway's own listener's are.
func newAddrDemux(l net.Listener, log *slog.Logger) *addrDemux {
	return &addrDemux{l: accept.Wrap(l, accept.Config{Name: "gateways tls " + l.Addr().String(), Logger: log}), log: log, subs: map[netip.Addr]*demuxListener{}}
}

// Listener returns the listener for connections to addrs.
func (d *addrDemux) Listener(addrs []netip.Addr) net.Listener {
	s := &demuxListener{addr: d.l.Addr(), conns: make(chan net.Conn, demuxBacklog), done: make(chan struct{})}
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, a := range addrs {
		d.subs[a.Unmap()] = s
	}
	d.all = append(d.all, s)
	return s
}

// Serve accepts until the listener closes, then closes every listener it
// handed out.
func (d *addrDemux) Serve() {
	defer func() {
		d.mu.Lock()
		defer d.mu.Unlock()
		for _, s := range d.all {
			s.Close()
		}
	}()
	for {
		c, err := d.l.Accept()
		if err != nil {
			return // closed: accept.Listener retries the rest
		}
		var local netip.Addr
		if ta, ok := c.LocalAddr().(*net.TCPAddr); ok {
			local = ta.AddrPort().Addr().Unmap()
		}
		d.mu.Lock()
		s := d.subs[local]
		d.mu.Unlock()
		if s == nil || !s.offer(c) {
			d.log.Warn("gateways: connection refused", "local", c.LocalAddr().String(), "peer", c.RemoteAddr().String(),
				"why", map[bool]string{true: "no gateway on this address", false: "the gateway's backlog is full or it closed"}[s == nil])
			c.Close()
		}
	}
}

// Close closes the shared listener (Serve then closes the others).
func (d *addrDemux) Close() error { return d.l.Close() }

// demuxListener is one gateway's share of an addrDemux.
type demuxListener struct {
	addr  net.Addr
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
	mu    sync.Mutex // orders offer's send against Close's drain
}

func (s *demuxListener) offer(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-s.done:
		return false
	default:
	}
	select {
	case s.conns <- c:
		return true
	default:
		return false
	}
}

// Accept implements net.Listener.
func (s *demuxListener) Accept() (net.Conn, error) {
	select {
	case c := <-s.conns:
		return c, nil
	case <-s.done:
		return nil, net.ErrClosed
	}
}

// Close implements net.Listener: connections not yet accepted are closed.
func (s *demuxListener) Close() error {
	s.once.Do(func() {
		s.mu.Lock()
		close(s.done)
		s.mu.Unlock()
		for {
			select {
			case c := <-s.conns:
				c.Close()
			default:
				return
			}
		}
	})
	return nil
}

// Addr implements net.Listener: the shared listener's address.
func (s *demuxListener) Addr() net.Addr { return s.addr }

// listenerStack is a hostnet.Stack whose TCP listener is l, whatever the
// address asked for: a gateway on a node with Gateway.Hosts listens
// through its addrDemux share.
type listenerStack struct {
	hostnet.Stack
	l net.Listener
}

func (s listenerStack) Listen(ctx context.Context, network, address string) (net.Listener, error) {
	return s.l, nil
}
