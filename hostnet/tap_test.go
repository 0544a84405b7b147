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

// tapConn records what a dialler writes.
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

func TestTap(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	type seen struct {
		proto    Proto
		from, to string
		local    string
		remote   string
		c        *tapConn
	}
	var mu sync.Mutex
	var taps []seen
	w.sim.SetTap(func(proto Proto, from, to *Host, c net.Conn) net.Conn {
		tc := &tapConn{Conn: c}
		mu.Lock()
		taps = append(taps, seen{proto, from.Name(), to.Name(), c.LocalAddr().String(), c.RemoteAddr().String(), tc})
		mu.Unlock()
		return tc
	})

	icpt, err := w.fwIn.Listen(ctx, "tcp", "10.10.10.254:0")
	require.NoError(t, err)
	w.sim.Route(lan, Router{TCP: icpt.Addr().(*net.TCPAddr).AddrPort()})
	gw, err := w.gateway.Listen(ctx, "tcp", "203.0.113.10:443")
	require.NoError(t, err)
	defer gw.Close() // after wg.Wait's defer: runs first
	defer icpt.Close()
	var wg sync.WaitGroup
	defer wg.Wait()
	for _, l := range []net.Listener{icpt, gw} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := l.Accept()
			if err == nil {
				_, _ = io.Copy(io.Discard, c)
				c.Close()
			}
		}()
	}

	// Routed: the laptop's connection answers at the firewall; the tap sees
	// the logical destination and none of the PROXY header.
	c, err := w.laptop.DialContext(ctx, "tcp", "203.0.113.10:443")
	require.NoError(t, err)
	_, err = c.Write([]byte("hello"))
	require.NoError(t, err)
	c.Close()
	// Direct: the firewall's outside dials the gateway.
	c, err = w.fwOut.DialContext(ctx, "tcp", "203.0.113.10:443")
	require.NoError(t, err)
	c.Close()
	// UDP to nowhere is not tapped (no host answers).
	u, err := w.laptop.DialContext(ctx, "udp", "192.0.2.99:443")
	require.NoError(t, err)
	u.Close()

	mu.Lock()
	defer mu.Unlock()
	require.Len(t, taps, 2)
	assert.Equal(t, ProtoTCP, taps[0].proto)
	assert.Equal(t, "laptop", taps[0].from)
	assert.Equal(t, "fw-inside", taps[0].to)
	assert.Equal(t, "203.0.113.10:443", taps[0].remote)
	assert.Contains(t, taps[0].local, "10.10.10.100:")
	taps[0].c.mu.Lock()
	assert.Equal(t, "hello", string(taps[0].c.wrote))
	taps[0].c.mu.Unlock()
	assert.Equal(t, "fw-outside", taps[1].from)
	assert.Equal(t, "gateway", taps[1].to)

	w.sim.SetTap(nil)
	c, err = w.fwOut.DialContext(ctx, "tcp", "203.0.113.10:443")
	require.NoError(t, err)
	_, isTap := c.(*tapConn)
	assert.False(t, isTap, "no tap after SetTap(nil)")
	c.Close()
}
