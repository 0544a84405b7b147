package hostnet

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	proxyproto "github.com/pires/go-proxyproto"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var (
	laptopIP  = netip.MustParseAddr("10.10.10.100")
	fwInIP    = netip.MustParseAddr("10.10.10.254")
	fwOutIP   = netip.MustParseAddr("198.51.100.1")
	gatewayIP = netip.MustParseAddr("203.0.113.10")
	lan       = netip.MustParsePrefix("10.10.10.0/24")
)

type world struct {
	sim                          *Sim
	laptop, fwIn, fwOut, gateway *Host
}

func newWorld(t *testing.T) world {
	t.Helper()
	s := NewSim(nil)
	w := world{sim: s}
	var err error
	w.laptop, err = s.AddHost("laptop", laptopIP)
	require.NoError(t, err)
	w.fwIn, err = s.AddHost("fw-inside", fwInIP)
	require.NoError(t, err)
	w.fwOut, err = s.AddHost("fw-outside", fwOutIP)
	require.NoError(t, err)
	w.gateway, err = s.AddHost("gateway", gatewayIP, netip.MustParseAddr("203.0.113.11"))
	require.NoError(t, err)
	return w
}

// TestPathMTU: the kernel's stack and a simulated host tell the path MTU
// (every simulated hop is loopback); a stack without the method cannot.
func TestPathMTU(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("IP_MTU is Linux's")
	}
	raw, err := os.ReadFile("/sys/class/net/lo/mtu")
	require.NoError(t, err)
	lo, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	require.NoError(t, err)
	lo = min(lo, 65535) // loopback's 65536, as the largest IPv4 packet

	mtu, ok := PathMTU(OS{}, netip.MustParseAddr("127.0.0.1"))
	require.True(t, ok)
	assert.Equal(t, lo, mtu)

	w := newWorld(t)
	mtu, ok = PathMTU(w.laptop, gatewayIP)
	require.True(t, ok)
	assert.Equal(t, lo, mtu, "the laptop's path to the gateway is loopback underneath")

	_, ok = PathMTU(noMTU{w.laptop}, gatewayIP)
	assert.False(t, ok)
}

// noMTU is a Stack that does not tell its path MTU.
type noMTU struct{ s Stack }

func (n noMTU) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	return n.s.DialContext(ctx, network, address)
}

func (n noMTU) Listen(ctx context.Context, network, address string) (net.Listener, error) {
	return n.s.Listen(ctx, network, address)
}

func (n noMTU) ListenPacket(ctx context.Context, network, address string) (net.PacketConn, error) {
	return n.s.ListenPacket(ctx, network, address)
}

func TestLoopbackMapping(t *testing.T) {
	w := newWorld(t)
	assert.Equal(t, netip.MustParseAddr("127.10.10.100"), w.laptop.Loopback())
	assert.Equal(t, netip.MustParseAddr("127.0.113.10"), w.gateway.Loopback())
	// A second host whose natural loopback collides gets one from 127.200/16.
	h, err := w.sim.AddHost("twin", netip.MustParseAddr("11.10.10.100"))
	require.NoError(t, err)
	assert.Equal(t, netip.MustParseAddr("127.200.0.1"), h.Loopback())

	_, err = w.sim.AddHost("dup", laptopIP)
	assert.ErrorContains(t, err, "already belongs")
	_, err = w.sim.AddHost("laptop", netip.MustParseAddr("10.0.0.9"))
	assert.ErrorContains(t, err, "exists")
}

func TestTCPLogicalAddresses(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	l, err := w.gateway.Listen(ctx, "tcp", "0.0.0.0:443")
	require.NoError(t, err)
	defer l.Close()
	assert.Equal(t, "203.0.113.10:443", l.Addr().String())

	for _, dst := range []string{"203.0.113.10:443", "203.0.113.11:443"} {
		accepted := make(chan net.Conn, 1)
		go func() {
			c, err := l.Accept()
			if err == nil {
				accepted <- c
			}
			close(accepted)
		}()
		c, err := w.laptop.DialContext(ctx, "tcp", dst)
		require.NoError(t, err)
		sc := <-accepted
		require.NotNil(t, sc)
		assert.Equal(t, dst, c.RemoteAddr().String())
		assert.Equal(t, laptopIP, c.LocalAddr().(*net.TCPAddr).AddrPort().Addr())
		assert.Equal(t, c.LocalAddr().String(), sc.RemoteAddr().String(), "server sees the laptop's logical address")
		_, err = c.Write([]byte("ping"))
		require.NoError(t, err)
		buf := make([]byte, 4)
		_, err = io.ReadFull(sc, buf)
		require.NoError(t, err)
		assert.Equal(t, "ping", string(buf))
		c.Close()
		sc.Close()
	}

	_, err = w.laptop.DialContext(ctx, "tcp", "203.0.113.10:8443")
	assert.True(t, errors.Is(err, syscall.ECONNREFUSED), "closed port refuses: %v", err)

	_, err = w.laptop.DialContext(ctx, "tcp", "www.social.test:443")
	assert.ErrorIs(t, err, ErrNotIP)

	tctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	_, err = w.laptop.DialContext(tctx, "tcp", "203.0.113.99:443")
	assert.ErrorIs(t, err, context.DeadlineExceeded, "unknown address blackholes")

	l.Close()
	_, err = w.laptop.DialContext(ctx, "tcp", "203.0.113.10:443")
	assert.Error(t, err, "closed listener no longer answers")
}

func TestHostDown(t *testing.T) {
	w := newWorld(t)
	l, err := w.gateway.Listen(context.Background(), "tcp", "203.0.113.10:443")
	require.NoError(t, err)
	defer l.Close()
	w.gateway.SetDown(true)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err = w.laptop.DialContext(ctx, "tcp", "203.0.113.10:443")
	assert.ErrorIs(t, err, context.DeadlineExceeded)

	w.gateway.SetDown(false)
	c, err := w.laptop.DialContext(context.Background(), "tcp", "203.0.113.10:443")
	require.NoError(t, err)
	c.Close()
}

func TestRoutedTCPCarriesProxyHeader(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	icpt, err := w.fwIn.Listen(ctx, "tcp", "10.10.10.254:0")
	require.NoError(t, err)
	defer icpt.Close()
	ipkt, err := w.fwIn.ListenPacket(ctx, "udp", "10.10.10.254:0")
	require.NoError(t, err)
	defer ipkt.Close()
	w.sim.Route(lan, Router{TCP: icpt.Addr().(*net.TCPAddr).AddrPort(), UDP: ipkt.LocalAddr().(*net.UDPAddr).AddrPort()})

	done := make(chan ProxyHeader, 1)
	go func() {
		defer close(done)
		c, err := icpt.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		h, err := ReadProxyHeader(c)
		if err != nil {
			return
		}
		buf := make([]byte, 5)
		if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "hello" {
			return
		}
		done <- h
	}()
	c, err := w.laptop.DialContext(ctx, "tcp", "203.0.113.10:443")
	require.NoError(t, err)
	defer c.Close()
	assert.Equal(t, "203.0.113.10:443", c.RemoteAddr().String())
	_, err = c.Write([]byte("hello"))
	require.NoError(t, err)
	h, ok := <-done
	require.True(t, ok, "router got no header")
	assert.Equal(t, ProtoTCP, h.Proto)
	assert.Equal(t, c.LocalAddr().String(), h.Src.String())
	assert.Equal(t, "203.0.113.10:443", h.Dst.String())

	// LAN-internal traffic is not routed: the laptop reaches the firewall's inside directly.
	_, routed := w.sim.routeFor(laptopIP, fwInIP)
	assert.False(t, routed)

	// UDP: every datagram carries the header.
	uc, err := w.laptop.DialContext(ctx, "udp", "203.0.113.10:443")
	require.NoError(t, err)
	defer uc.Close()
	_, err = uc.Write([]byte("dtls?"))
	require.NoError(t, err)
	buf := make([]byte, 2048)
	require.NoError(t, ipkt.SetReadDeadline(time.Now().Add(5*time.Second)))
	n, from, err := ipkt.ReadFrom(buf)
	require.NoError(t, err)
	uh, payload, err := ParseProxyHeader(buf[:n])
	require.NoError(t, err)
	assert.Equal(t, ProtoUDP, uh.Proto)
	assert.Equal(t, "203.0.113.10:443", uh.Dst.String())
	assert.Equal(t, from.String(), uh.Src.String())
	assert.Equal(t, "dtls?", string(payload))

	// The router answers the laptop raw, at its logical address.
	_, err = ipkt.WriteTo([]byte("reply"), from)
	require.NoError(t, err)
	require.NoError(t, uc.SetReadDeadline(time.Now().Add(5*time.Second)))
	n, err = uc.Read(buf)
	require.NoError(t, err)
	assert.Equal(t, "reply", string(buf[:n]))

	w.sim.Unroute(lan)
	_, routed = w.sim.routeFor(laptopIP, gatewayIP)
	assert.False(t, routed)
}

func TestUDPImpairment(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	pc, err := w.gateway.ListenPacket(ctx, "udp", "203.0.113.10:443")
	require.NoError(t, err)
	defer pc.Close()

	w.laptop.Impair(Impairment{Loss: 1})
	c, err := w.laptop.DialContext(ctx, "udp", "203.0.113.10:443")
	require.NoError(t, err)
	defer c.Close()
	_, err = c.Write([]byte("lost"))
	require.NoError(t, err)
	require.NoError(t, pc.SetReadDeadline(time.Now().Add(100*time.Millisecond)))
	_, _, err = pc.ReadFrom(make([]byte, 64))
	assert.ErrorIs(t, err, os.ErrDeadlineExceeded)
	assert.EqualValues(t, 1, w.laptop.DroppedUDP())

	w.laptop.Impair(Impairment{Loss: 0.5, Seed: 7})
	const sent = 400
	for i := 0; i < sent; i++ {
		_, err := c.Write([]byte("x"))
		require.NoError(t, err)
	}
	got := 0
	require.NoError(t, pc.SetReadDeadline(time.Now().Add(300*time.Millisecond)))
	for {
		_, from, err := pc.ReadFrom(make([]byte, 64))
		if err != nil {
			break
		}
		assert.Equal(t, laptopIP, from.(*net.UDPAddr).AddrPort().Addr())
		got++
	}
	assert.InDelta(t, sent/2, got, sent/5, "about half arrive")

	w.laptop.Impair(Impairment{})
	_, err = c.Write([]byte("ok"))
	require.NoError(t, err)
	require.NoError(t, pc.SetReadDeadline(time.Now().Add(5*time.Second)))
	_, _, err = pc.ReadFrom(make([]byte, 64))
	require.NoError(t, err)
}

func TestUDPBlackhole(t *testing.T) {
	w := newWorld(t)
	c, err := w.laptop.DialContext(context.Background(), "udp", "203.0.113.77:443")
	require.NoError(t, err)
	_, err = c.Write([]byte("anyone?"))
	require.NoError(t, err)
	require.NoError(t, c.SetReadDeadline(time.Now().Add(20*time.Millisecond)))
	_, err = c.Read(make([]byte, 8))
	assert.ErrorIs(t, err, os.ErrDeadlineExceeded)
	require.NoError(t, c.Close())
	_, err = c.Read(make([]byte, 8))
	assert.ErrorIs(t, err, net.ErrClosed)
}

func TestProxyHeaderInterop(t *testing.T) {
	tests := []ProxyHeader{
		{Proto: ProtoTCP, Src: netip.MustParseAddrPort("10.10.10.100:51000"), Dst: netip.MustParseAddrPort("203.0.113.10:443")},
		{Proto: ProtoUDP, Src: netip.MustParseAddrPort("10.10.10.100:51000"), Dst: netip.MustParseAddrPort("203.0.113.10:443")},
		{Proto: ProtoTCP, Src: netip.MustParseAddrPort("[2001:db8::1]:1"), Dst: netip.MustParseAddrPort("[2001:db8::2]:443")},
	}
	for _, h := range tests {
		t.Run(h.Proto.String()+" "+h.Src.String(), func(t *testing.T) {
			b, err := AppendProxyHeader(nil, h)
			require.NoError(t, err)

			// Ours parses with the reference implementation...
			ref, err := proxyproto.Read(bufio.NewReader(bytes.NewReader(b)))
			require.NoError(t, err)
			srcIP, dstIP, ok := ref.IPs()
			require.True(t, ok)
			assert.Equal(t, h.Src.Addr().String(), srcIP.String())
			assert.Equal(t, h.Dst.Addr().String(), dstIP.String())
			sp, dp, _ := ref.Ports()
			assert.EqualValues(t, h.Src.Port(), sp)
			assert.EqualValues(t, h.Dst.Port(), dp)
			assert.Equal(t, h.Proto == ProtoUDP, ref.TransportProtocol.IsDatagram())

			// ...and the reference's output parses with ours.
			refBytes, err := ref.Format()
			require.NoError(t, err)
			got, rest, err := ParseProxyHeader(append(refBytes, "tail"...))
			require.NoError(t, err)
			assert.Equal(t, h, got)
			assert.Equal(t, "tail", string(rest))

			got2, err := ReadProxyHeader(io.MultiReader(bytes.NewReader(b), bytes.NewReader([]byte("next"))))
			require.NoError(t, err)
			assert.Equal(t, h, got2)
		})
	}
}

func TestProxyHeaderRejects(t *testing.T) {
	good, err := AppendProxyHeader(nil, ProxyHeader{Proto: ProtoTCP, Src: netip.MustParseAddrPort("1.2.3.4:5"), Dst: netip.MustParseAddrPort("5.6.7.8:9")})
	require.NoError(t, err)
	mutate := func(i int, v byte) []byte { b := bytes.Clone(good); b[i] = v; return b }
	tests := map[string][]byte{
		"short":       good[:10],
		"truncated":   good[:20],
		"signature":   mutate(0, 'X'),
		"version":     mutate(12, 0x11),
		"family":      mutate(13, 0x31),
		"transport":   mutate(13, 0x13),
		"huge length": append(bytes.Clone(good[:14]), 0xff, 0xff),
		// Present in full, but more TLV bytes than either parser accepts:
		// the slice parser must not take what the stream reader refuses.
		"oversized TLVs": append(append(append(bytes.Clone(good[:14]), 0x04, 0x24), good[16:]...), make([]byte, 0x424-12)...),
	}
	for name, b := range tests {
		t.Run(name, func(t *testing.T) {
			_, _, err := ParseProxyHeader(b)
			assert.ErrorIs(t, err, ErrProxyHeader)
			_, err = ReadProxyHeader(bytes.NewReader(b))
			assert.ErrorIs(t, err, ErrProxyHeader)
		})
	}
	_, err = AppendProxyHeader(nil, ProxyHeader{Proto: ProtoTCP, Src: netip.MustParseAddrPort("1.2.3.4:5"), Dst: netip.MustParseAddrPort("[::2]:9")})
	assert.ErrorIs(t, err, ErrProxyHeader)
}

func FuzzParseProxyHeader(f *testing.F) {
	for _, h := range []ProxyHeader{
		{Proto: ProtoTCP, Src: netip.MustParseAddrPort("10.10.10.100:51000"), Dst: netip.MustParseAddrPort("203.0.113.10:443")},
		{Proto: ProtoUDP, Src: netip.MustParseAddrPort("[2001:db8::1]:1"), Dst: netip.MustParseAddrPort("[2001:db8::2]:443")},
	} {
		b, _ := AppendProxyHeader(nil, h)
		f.Add(append(b, 0x16, 0x03, 0x01))
	}
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		h, rest, err := ParseProxyHeader(b)
		if err != nil {
			return
		}
		if len(rest) > len(b) {
			t.Fatalf("rest longer than input")
		}
		// Whatever parses re-encodes to something that parses the same.
		enc, err := AppendProxyHeader(nil, h)
		if err != nil {
			return
		}
		h2, _, err := ParseProxyHeader(enc)
		if err != nil || h2 != h {
			t.Fatalf("round trip: %v %+v != %+v", err, h2, h)
		}
		h3, err := ReadProxyHeader(bytes.NewReader(b))
		if err != nil || h3 != h {
			t.Fatalf("ReadProxyHeader disagrees: %v", err)
		}
	})
}

func TestLoopbackIsOutsideTheSimulation(t *testing.T) {
	w := newWorld(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err == nil {
			_, _ = c.Write([]byte("real"))
			c.Close()
		}
	}()
	c, err := w.laptop.DialContext(context.Background(), "tcp", l.Addr().String())
	require.NoError(t, err)
	defer c.Close()
	b, err := io.ReadAll(c)
	require.NoError(t, err)
	assert.Equal(t, "real", string(b))
}
