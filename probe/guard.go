package probe

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/pinwall/pinwall/capture"
	"github.com/pinwall/pinwall/hostnet"
)

// ErrNotInBundle refuses a connection to an address outside the bundle and
// the proxy.
var ErrNotInBundle = errors.New("probe: address not in the bundle (the probe sends nothing elsewhere)")

// guard is the laptop's network as the probe uses it: only the allowed
// addresses, new connections paced. It does not tell the path MTU
// (hostnet.PathMTUer): across a customer's real perimeter and the internet
// a route's MTU can be larger than a hop further on that drops ICMP, so the
// probe's DTLS tunnel keeps the 1,200-byte packets that cross any path
// (RFC 8899's reason for probing rather than trusting the route).
type guard struct {
	stack   hostnet.Stack
	allowed map[netip.AddrPort]bool
	gap     time.Duration
	// leg, if set, records every connection opened (package capture).
	leg *capture.Leg

	mu    sync.Mutex
	next  time.Time
	dials int
	// refused lists the addresses refused (a bug if ever non-empty).
	refused []string
}

func newGuard(stack hostnet.Stack, rate float64, allowed []netip.AddrPort) *guard {
	g := &guard{stack: stack, allowed: map[netip.AddrPort]bool{}, gap: time.Duration(float64(time.Second) / rate)}
	for _, a := range allowed {
		g.allowed[netip.AddrPortFrom(a.Addr().Unmap(), a.Port())] = true
	}
	return g
}

// wait takes the next slot for a new connection.
func (g *guard) wait(ctx context.Context) error {
	g.mu.Lock()
	now := time.Now()
	at := now
	if g.next.After(now) {
		at = g.next
	}
	g.next = at.Add(g.gap)
	g.dials++
	g.mu.Unlock()
	if d := at.Sub(now); d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

func (g *guard) check(network, address string) error {
	ap, err := hostnet.ParseAddrPort(address)
	if err != nil {
		return err
	}
	if !g.allowed[netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())] {
		g.mu.Lock()
		g.refused = append(g.refused, network+" "+address)
		g.mu.Unlock()
		return &net.OpError{Op: "dial", Net: network, Addr: net.TCPAddrFromAddrPort(ap), Err: fmt.Errorf("%w: %s", ErrNotInBundle, ap)}
	}
	return nil
}

func (g *guard) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	if err := g.check(network, address); err != nil {
		return nil, err
	}
	if err := g.wait(ctx); err != nil {
		return nil, err
	}
	c, err := g.stack.DialContext(ctx, network, address)
	if err != nil || g.leg == nil {
		return c, err
	}
	return g.leg.Conn(c), nil
}

func (g *guard) Listen(context.Context, string, string) (net.Listener, error) {
	return nil, errors.New("probe: the probe listens on nothing")
}

// ListenPacket opens the DTLS client's socket; its datagrams go only where
// the client sends them (the bundle's gateways).
func (g *guard) ListenPacket(ctx context.Context, network, address string) (net.PacketConn, error) {
	if err := g.wait(ctx); err != nil {
		return nil, err
	}
	pc, err := g.stack.ListenPacket(ctx, network, address)
	if err != nil {
		return nil, err
	}
	return &guardedPacketConn{PacketConn: pc, g: g}, nil
}

// Dials counts the new connections and sockets opened.
func (g *guard) Dials() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.dials
}

type guardedPacketConn struct {
	net.PacketConn
	g *guard
}

func (p *guardedPacketConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	if err := p.g.check("udp", addr.String()); err != nil {
		return 0, err
	}
	return p.PacketConn.WriteTo(b, addr)
}

func base64Std(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
