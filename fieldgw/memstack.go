package fieldgw

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"

	"github.com/pinwall/pinwall/hostnet"
)

// ErrNotBuiltIn refuses an inner flow to anything but a built-in test
// origin.
var ErrNotBuiltIn = errors.New("fieldgw: not one of the gateway's built-in test origins, nor an origin it was told to serve (serve gateway --origin)")

// memStack holds in-memory listeners; its DialContext reaches them and
// nothing else.
type memStack struct {
	mu        sync.Mutex
	listeners map[netip.AddrPort]*memListener
}

func newMemStack() *memStack { return &memStack{listeners: map[netip.AddrPort]*memListener{}} }

func (m *memStack) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	ap, err := hostnet.ParseAddrPort(address)
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	l := m.listeners[ap]
	m.mu.Unlock()
	if l == nil || network != "tcp" {
		return nil, &net.OpError{Op: "dial", Net: network, Addr: net.TCPAddrFromAddrPort(ap), Err: fmt.Errorf("%w: connection refused", ErrNotBuiltIn)}
	}
	a, b := net.Pipe()
	local := net.TCPAddrFromAddrPort(netip.AddrPortFrom(netip.IPv6Loopback(), 1))
	remote := net.TCPAddrFromAddrPort(ap)
	select {
	case l.ch <- &pipeConn{Conn: b, local: remote, remote: local}:
		return &pipeConn{Conn: a, local: local, remote: remote}, nil
	case <-l.done:
		a.Close()
		b.Close()
		return nil, &net.OpError{Op: "dial", Net: network, Addr: remote, Err: errors.New("connection refused")}
	case <-ctx.Done():
		a.Close()
		b.Close()
		return nil, ctx.Err()
	}
}

func (m *memStack) Listen(_ context.Context, network, address string) (net.Listener, error) {
	ap, err := hostnet.ParseAddrPort(address)
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.listeners[ap]; ok {
		return nil, fmt.Errorf("fieldgw: %s already listening", ap)
	}
	l := &memListener{m: m, addr: ap, ch: make(chan net.Conn), done: make(chan struct{})}
	m.listeners[ap] = l
	return l, nil
}

func (m *memStack) ListenPacket(context.Context, string, string) (net.PacketConn, error) {
	return nil, errors.New("fieldgw: the built-in origins serve no UDP")
}

type memListener struct {
	m    *memStack
	addr netip.AddrPort
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
}

func (l *memListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *memListener) Close() error {
	l.once.Do(func() {
		close(l.done)
		l.m.mu.Lock()
		delete(l.m.listeners, l.addr)
		l.m.mu.Unlock()
	})
	return nil
}

func (l *memListener) Addr() net.Addr { return net.TCPAddrFromAddrPort(l.addr) }

type pipeConn struct {
	net.Conn
	local, remote net.Addr
}

func (p *pipeConn) LocalAddr() net.Addr  { return p.local }
func (p *pipeConn) RemoteAddr() net.Addr { return p.remote }

// gatewayStack is the gateway's network: it listens on the host's, and
// its inner flows reach the built-in origins, and the allowed origins'
// addresses (Config.Origins) over the origins' network, nothing else.
type gatewayStack struct {
	outer   hostnet.Stack
	inner   *memStack
	origins hostnet.Stack
	allowed map[netip.AddrPort]bool
}

func (g gatewayStack) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	if network == "tcp" && len(g.allowed) > 0 {
		if ap, err := hostnet.ParseAddrPort(address); err == nil && g.allowed[netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())] {
			return g.origins.DialContext(ctx, network, address)
		}
	}
	return g.inner.DialContext(ctx, network, address)
}

func (g gatewayStack) Listen(ctx context.Context, network, address string) (net.Listener, error) {
	return g.outer.Listen(ctx, network, address)
}

func (g gatewayStack) ListenPacket(ctx context.Context, network, address string) (net.PacketConn, error) {
	return g.outer.ListenPacket(ctx, network, address)
}

// PathMTU is the outer network's: the gateway's tunnels cross it.
func (g gatewayStack) PathMTU(dst netip.Addr) (int, error) {
	if mtu, ok := hostnet.PathMTU(g.outer, dst); ok {
		return mtu, nil
	}
	return 0, errors.New("fieldgw: the gateway's network does not tell its path MTU")
}
