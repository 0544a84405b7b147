//go:build linux

package fault_test

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pinwall/pinwall/fault"
	"github.com/pinwall/pinwall/netsetup/nstest"
)

// udpEcho serves UDP echoes in ns on addr until the test ends.
func udpEcho(t *testing.T, ns *nstest.NS, addr string) {
	pc, err := ns.Stack().ListenPacket(context.Background(), "udp", addr)
	require.NoError(t, err)
	done := make(chan struct{})
	t.Cleanup(func() { pc.Close(); <-done })
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = pc.WriteTo(buf[:n], from)
		}
	}()
}

// probeUDP sends n datagrams from ns to addr one at a time and returns how
// many echoes came back and the shortest round trip.
func probeUDP(t *testing.T, ns *nstest.NS, addr string, n int) (int, time.Duration) {
	c, err := ns.Stack().DialContext(context.Background(), "udp", addr)
	require.NoError(t, err)
	defer c.Close()
	got, best := 0, time.Hour
	buf := make([]byte, 64)
	for i := range n {
		start := time.Now()
		_, err := c.Write([]byte{byte(i)})
		require.NoError(t, err)
		_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		for {
			m, err := c.Read(buf)
			if err != nil {
				var ne net.Error
				require.True(t, errors.As(err, &ne) && ne.Timeout(), "read: %v", err)
				break
			}
			if m == 1 && buf[0] == byte(i) {
				got++
				best = min(best, time.Since(start))
				break
			}
		}
	}
	return got, best
}

// TestNetemOnVeth installs netem between two namespaces and measures it:
// UDP loses and is delayed as configured, TCP is left alone, a filter on
// another destination leaves this one alone, and clearing restores the
// link.
func TestNetemOnVeth(t *testing.T) {
	env := nstest.Guard(t)
	a, b := env.NS("a"), env.NS("b")
	env.Link(a, "pw-a", netip.MustParsePrefix("198.18.250.1/30"), b, "pw-b", netip.MustParsePrefix("198.18.250.2/30"))
	udpEcho(t, b, "198.18.250.2:9000")
	l, err := b.Stack().Listen(context.Background(), "tcp", "198.18.250.2:9001")
	require.NoError(t, err)
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	apply := func(n fault.Netem) { a.MustDo(func() error { return fault.ApplyNetem(n) }) }
	if err := a.Do(func() error {
		return fault.ApplyNetem(fault.Netem{Iface: "pw-a", Impairment: fault.Impairment{Loss: 0.01}})
	}); errors.Is(err, fault.ErrNetemUnavailable) {
		t.Skipf("this kernel cannot run netem: %v", err)
	}

	got, rtt := probeUDP(t, a, "198.18.250.2:9000", 5)
	require.Equal(t, 5, got, "unimpaired")
	require.Less(t, rtt, 40*time.Millisecond)

	apply(fault.Netem{Iface: "pw-a", Impairment: fault.Impairment{Latency: 60 * time.Millisecond, Jitter: 10 * time.Millisecond}})
	a.MustDo(func() error {
		im, ok, err := fault.NetemOn("pw-a")
		require.NoError(t, err)
		require.True(t, ok)
		assert.InDelta(t, float64(60*time.Millisecond), float64(im.Latency), float64(time.Millisecond))
		assert.InDelta(t, float64(10*time.Millisecond), float64(im.Jitter), float64(time.Millisecond))
		return nil
	})
	got, rtt = probeUDP(t, a, "198.18.250.2:9000", 5)
	assert.Equal(t, 5, got)
	assert.GreaterOrEqual(t, rtt, 50*time.Millisecond, "one way delayed by 60ms ± 10ms")

	apply(fault.Netem{Iface: "pw-a", Impairment: fault.Impairment{Loss: 1}})
	got, _ = probeUDP(t, a, "198.18.250.2:9000", 3)
	assert.Zero(t, got, "every datagram lost")
	c, err := a.Stack().DialContext(context.Background(), "tcp", "198.18.250.2:9001")
	require.NoError(t, err, "TCP is not impaired")
	c.Close()

	apply(fault.Netem{Iface: "pw-a", Impairment: fault.Impairment{Loss: 1}, Dst: netip.MustParsePrefix("198.18.250.1/32")})
	got, _ = probeUDP(t, a, "198.18.250.2:9000", 3)
	assert.Equal(t, 3, got, "a filter on another destination leaves this one alone")

	apply(fault.Netem{Iface: "pw-a", Impairment: fault.Impairment{Loss: 1}, AllProtocols: true})
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	_, err = a.Stack().DialContext(ctx, "tcp", "198.18.250.2:9001")
	cancel()
	assert.Error(t, err, "with every protocol, TCP is lost too")

	apply(fault.Netem{Iface: "pw-a"}) // zero: clear
	a.MustDo(func() error {
		_, ok, err := fault.NetemOn("pw-a")
		require.NoError(t, err)
		assert.False(t, ok, "cleared")
		return nil
	})
	got, _ = probeUDP(t, a, "198.18.250.2:9000", 3)
	assert.Equal(t, 3, got)

	err = a.Do(func() error {
		return fault.ApplyNetem(fault.Netem{Iface: "nope0", Impairment: fault.Impairment{Loss: 0.1}})
	})
	assert.ErrorContains(t, err, "nope0")
}
