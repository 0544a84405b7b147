package hostnet

import (
	"context"
	"io"
	"net"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// tapConn records what one end writes.
type tapConn struct {
	net.Conn
	mu    sync.Mutex
	wrote []byte
}

func (c *tapConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	c.wrote = append(c.wrote, p...)
	c.mu.Unlock()
	return c.Conn.Write(p)
}

func (c *tapConn) CloseWrite() error { return c.Conn.(interface{ CloseWrite() error }).CloseWrite() }

func (c *tapConn) written() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return string(c.wrote)
}

type tapPacketConn struct{ net.PacketConn }

func (p *tapPacketConn) Unwrap() net.PacketConn { return p.PacketConn }

type seen struct {
	kind          string // dialled, accepted
	proto         Proto
	from, to      string
	local, remote string
	c             *tapConn
}

// recordingTap remembers every end it is shown.
type recordingTap struct {
	mu      sync.Mutex
	ends    []seen
	packets []string
}

func (r *recordingTap) add(s seen) net.Conn {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ends = append(r.ends, s)
	return s.c
}

func (r *recordingTap) DialledConn(proto Proto, from, to *Host, c net.Conn) net.Conn {
	return r.add(seen{"dialled", proto, from.Name(), to.Name(), c.LocalAddr().String(), c.RemoteAddr().String(), &tapConn{Conn: c}})
}

func (r *recordingTap) AcceptedConn(from, at *Host, c net.Conn) net.Conn {
	return r.add(seen{"accepted", ProtoTCP, from.Name(), at.Name(), c.LocalAddr().String(), c.RemoteAddr().String(), &tapConn{Conn: c}})
}

func (r *recordingTap) PacketConn(h *Host, pc net.PacketConn) net.PacketConn {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.packets = append(r.packets, h.Name()+" "+pc.LocalAddr().String())
	return &tapPacketConn{pc}
}

func (r *recordingTap) find(kind, from string) seen {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range r.ends {
		if s.kind == kind && s.from == from {
			return s
		}
	}
	return seen{}
}

func TestTap(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	tap := &recordingTap{}
	w.sim.SetTap(tap)

	icpt, err := w.fwIn.Listen(ctx, "tcp", "10.10.10.254:0")
	require.NoError(t, err)
	w.sim.Route(lan, Router{TCP: icpt.Addr().(*net.TCPAddr).AddrPort()})
	gw, err := w.gateway.Listen(ctx, "tcp", "203.0.113.10:443")
	require.NoError(t, err)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer gw.Close() // before wg.Wait's defer: runs first
	defer icpt.Close()
	for _, l := range []net.Listener{icpt, gw} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := l.Accept()
			if err == nil {
				_, _ = io.Copy(io.Discard, c)
				_, _ = c.Write([]byte("bye"))
				c.Close()
			}
		}()
	}

	// Routed: the laptop's end answers at the firewall; the tap sees the
	// logical destination and none of the PROXY header.
	c, err := w.laptop.DialContext(ctx, "tcp", "203.0.113.10:443")
	require.NoError(t, err)
	_, err = c.Write([]byte("hello"))
	require.NoError(t, err)
	require.NoError(t, c.(interface{ CloseWrite() error }).CloseWrite())
	_, _ = io.ReadAll(c)
	c.Close()
	// Direct: the firewall's outside dials the gateway.
	c, err = w.fwOut.DialContext(ctx, "tcp", "203.0.113.10:443")
	require.NoError(t, err)
	require.NoError(t, c.(interface{ CloseWrite() error }).CloseWrite())
	_, _ = io.ReadAll(c)
	c.Close()
	// UDP to nowhere is not tapped (no host answers); a listening socket is.
	u, err := w.laptop.DialContext(ctx, "udp", "192.0.2.99:443")
	require.NoError(t, err)
	u.Close()
	pc, err := w.gateway.ListenPacket(ctx, "udp", "203.0.113.10:443")
	require.NoError(t, err)
	real, ok := RealAddr(pc)
	assert.True(t, ok, "RealAddr sees through the tap's wrapper")
	assert.True(t, real.Addr().IsLoopback())
	pc.Close()

	d := tap.find("dialled", "laptop")
	assert.Equal(t, ProtoTCP, d.proto)
	assert.Equal(t, "fw-inside", d.to)
	assert.Equal(t, "203.0.113.10:443", d.remote)
	assert.Contains(t, d.local, "10.10.10.100:")
	assert.Equal(t, "hello", d.c.written())
	a := tap.find("accepted", "laptop")
	assert.Equal(t, "fw-inside", a.to)
	assert.Equal(t, d.local, a.remote, "the accepted end's remote is the dialler's local address")
	assert.Equal(t, "bye", a.c.written())
	assert.Equal(t, "gateway", tap.find("dialled", "fw-outside").to)
	assert.Equal(t, "gateway", tap.find("accepted", "fw-outside").to)
	tap.mu.Lock()
	assert.Len(t, tap.ends, 4)
	assert.Equal(t, []string{"gateway 203.0.113.10:443"}, tap.packets)
	tap.mu.Unlock()

	w.sim.SetTap(nil)
	c, err = w.fwOut.DialContext(ctx, "tcp", "203.0.113.10:443")
	require.NoError(t, err)
	_, isTap := c.(*tapConn)
	assert.False(t, isTap, "no tap after SetTap(nil)")
	c.Close()
}
