//go:build linux

package mitm_test

import (
	"bufio"
	"context"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pinwall/pinwall/hostnet"
	"github.com/pinwall/pinwall/mitm"
	"github.com/pinwall/pinwall/mitm/fwlog"
	"github.com/pinwall/pinwall/mitm/policy"
	"github.com/pinwall/pinwall/netsetup"
	"github.com/pinwall/pinwall/netsetup/nstest"
	"github.com/pinwall/pinwall/pki"
	"github.com/pinwall/pinwall/resolve"
)

const transparentPolicy = `udp-idle-timeout: 1s
rules:
  - name: block-udp-4443
    match: { proto: udp, port: [4443] }
    action: block
  - name: allow-all
    action: allow
`

var (
	laptopAddr  = netip.MustParseAddr("10.10.10.100")
	fwInside    = netip.MustParseAddr("10.10.10.254")
	fwOutside   = netip.MustParseAddr("198.51.100.1")
	serverAddr  = netip.MustParseAddr("198.51.100.20")
	gatewayAddr = netip.MustParseAddr("203.0.113.10")
)

// transparentLab is the container topology in three network namespaces:
// laptop (default route via the firewall) — firewall (netsetup's rules,
// ServeTransparent and ServeUDPTransparent) — server (a gateway address
// carried as a secondary address, no route back to the LAN).
type transparentLab struct {
	laptop, fw, server *nstest.NS
	firewall           *mitm.Firewall
}

func applyIn(t *testing.T, ns *nstest.NS, cfg netsetup.Config) {
	t.Helper()
	ns.MustDo(func() error {
		undo, err := netsetup.Apply(context.Background(), cfg)
		if err != nil {
			return err
		}
		t.Cleanup(func() { assert.NoError(t, undo()) })
		return nil
	})
}

func startTransparentLab(t *testing.T) *transparentLab {
	env := nstest.Guard(t)
	lab := &transparentLab{laptop: env.NS("laptop"), fw: env.NS("firewall"), server: env.NS("server")}
	env.Link(lab.laptop, "eth0", netip.PrefixFrom(laptopAddr, 24), lab.fw, "lan0", netip.PrefixFrom(fwInside, 24))
	env.Link(lab.fw, "wan0", netip.PrefixFrom(fwOutside, 24), lab.server, "eth0", netip.PrefixFrom(serverAddr, 24))
	require.NoError(t, lab.fw.Sysctl("net.ipv4.ip_forward", "1")) // docker run --sysctl

	applyIn(t, lab.server, netsetup.Config{Addrs: []netsetup.Addr{{Prefix: netip.PrefixFrom(gatewayAddr, 32)}}})
	applyIn(t, lab.laptop, netsetup.Config{DefaultVia: fwInside})
	applyIn(t, lab.fw, netsetup.Config{
		Routes:  []netsetup.Route{{Dst: netip.MustParsePrefix("203.0.113.0/24"), Via: serverAddr}},
		Forward: true,
		Intercept: &netsetup.Intercept{
			InIface:  "lan0",
			TCPPorts: []uint16{443}, TCPTo: 8443,
			UDPPorts: []uint16{443, 4443}, UDPTo: 8443,
			Masquerade: netip.MustParsePrefix("10.10.10.0/24"),
		},
	})

	pol, err := policy.Parse("transparent-policy.yaml", []byte(transparentPolicy))
	require.NoError(t, err)
	ca, err := pki.NewCA(pki.Config{}, "pinwall test enterprise CA", "pinwall")
	require.NoError(t, err)
	zone, err := resolve.NewZone()
	require.NoError(t, err)
	fw, err := mitm.New(mitm.Config{
		Outside:  lab.fw.Stack(), // dials from the firewall's namespace
		Policy:   pol,
		CA:       ca,
		Roots:    x509.NewCertPool(),
		Resolver: zone,
	})
	require.NoError(t, err)
	lab.firewall = fw

	var (
		tl net.Listener
		ul *net.UDPConn
	)
	lab.fw.MustDo(func() error {
		var err error
		if tl, err = mitm.ListenTransparentTCP(context.Background(), ":8443"); err != nil {
			return err
		}
		ul, err = mitm.ListenTransparentUDP(context.Background(), ":8443")
		return err
	})
	var wg sync.WaitGroup
	t.Cleanup(func() {
		require.NoError(t, fw.Close())
		wg.Wait()
	})
	wg.Add(2)
	go func() {
		defer wg.Done()
		assert.NoError(t, fw.ServeTransparent(context.Background(), tl))
	}()
	go func() {
		defer wg.Done()
		assert.NoError(t, fw.ServeUDPTransparent(context.Background(), ul))
	}()
	return lab
}

// serveTCP answers each connection on addr (in ns) with "from <peer>\n"
// after reading one line.
func serveTCP(t *testing.T, ns *nstest.NS, addr string) {
	var l net.Listener
	ns.MustDo(func() error {
		var err error
		l, err = net.Listen("tcp4", addr)
		return err
	})
	var wg sync.WaitGroup
	t.Cleanup(func() {
		l.Close()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				if _, err := bufio.NewReader(c).ReadString('\n'); err != nil {
					return
				}
				_, _ = io.WriteString(c, "from "+c.RemoteAddr().String()+"\n")
			}()
		}
	}()
}

// serveUDP echoes each datagram on addr (in ns) prefixed with "echo:".
func serveUDP(t *testing.T, ns *nstest.NS, addr string) {
	var pc net.PacketConn
	ns.MustDo(func() error {
		var err error
		pc, err = net.ListenPacket("udp4", addr)
		return err
	})
	done := make(chan struct{})
	t.Cleanup(func() {
		pc.Close()
		<-done
	})
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = pc.WriteTo(append([]byte("echo:"), buf[:n]...), from)
		}
	}()
}

// dial connects from ns.
func dial(t *testing.T, ns *nstest.NS, network, addr string) net.Conn {
	t.Helper()
	var c net.Conn
	ns.MustDo(func() error {
		var err error
		c, err = net.DialTimeout(network, addr, 5*time.Second)
		return err
	})
	t.Cleanup(func() { c.Close() })
	require.NoError(t, c.SetDeadline(time.Now().Add(5*time.Second)))
	return c
}

// request sends one line and returns the one-line answer.
func request(t *testing.T, c net.Conn, line string) string {
	t.Helper()
	_, err := io.WriteString(c, line)
	require.NoError(t, err)
	answer, err := bufio.NewReader(c).ReadString('\n')
	require.NoError(t, err)
	return strings.TrimSpace(answer)
}

// dtlsRecord is a datagram the firewall classifies as DTLS: a handshake
// record header (DTLS 1.2, epoch 0, sequence 0) and 4 bytes of body.
var dtlsRecord = []byte{22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 1, 2, 3, 4}

func recordsWith(fw *mitm.Firewall, keep func(fwlog.Record) bool) []fwlog.Record {
	var out []fwlog.Record
	for _, r := range fw.Records() {
		if keep(r) {
			out = append(out, r)
		}
	}
	return out
}

func TestTransparent(t *testing.T) {
	lab := startTransparentLab(t)
	serveTCP(t, lab.server, netip.AddrPortFrom(gatewayAddr, 443).String())
	serveTCP(t, lab.server, netip.AddrPortFrom(gatewayAddr, 8080).String())
	serveUDP(t, lab.server, netip.AddrPortFrom(gatewayAddr, 443).String())
	serveUDP(t, lab.server, netip.AddrPortFrom(gatewayAddr, 4443).String())
	fw := lab.firewall

	t.Run("tcp redirected and spliced", func(t *testing.T) {
		c := dial(t, lab.laptop, "tcp4", "203.0.113.10:443")
		answer := request(t, c, "GET / HTTP/1.1\r\n")
		seen, ok := strings.CutPrefix(answer, "from ")
		require.True(t, ok, answer)
		natSrc := netip.MustParseAddrPort(seen)
		assert.Equal(t, fwOutside, natSrc.Addr(), "the server sees the firewall's outside address")
		require.NoError(t, c.Close())

		src := netip.MustParseAddrPort(c.LocalAddr().String())
		var rec fwlog.Record
		require.Eventually(t, func() bool {
			rs := recordsWith(fw, func(r fwlog.Record) bool { return r.Proto == fwlog.ProtoTCP && r.Src == src })
			if len(rs) == 1 {
				rec = rs[0]
			}
			return len(rs) == 1
		}, 5*time.Second, 20*time.Millisecond)
		assert.Equal(t, src, rec.Src)
		assert.Equal(t, netip.MustParseAddrPort("203.0.113.10:443"), rec.Dst, "SO_ORIGINAL_DST")
		assert.Equal(t, natSrc, rec.NATSrc)
		assert.Equal(t, fwlog.AppWebBrowsing, rec.App)
		assert.Equal(t, "allow-all", rec.Rule)
		assert.Equal(t, fwlog.ActionAllow, rec.Action)
		assert.Equal(t, uint64(len("GET / HTTP/1.1\r\n")), rec.BytesSent)
		assert.Equal(t, uint64(len(answer)+1), rec.BytesReceived)
	})

	t.Run("udp diverted and answered from the destination", func(t *testing.T) {
		c := dial(t, lab.laptop, "udp4", "203.0.113.10:443")
		src := netip.MustParseAddrPort(c.LocalAddr().String())
		buf := make([]byte, 2048)
		for range 3 {
			_, err := c.Write(dtlsRecord)
			require.NoError(t, err)
			// A connected UDP socket takes only datagrams from
			// 203.0.113.10:443: the answer came from the original
			// destination, not from the firewall.
			n, err := c.Read(buf)
			require.NoError(t, err)
			assert.Equal(t, append([]byte("echo:"), dtlsRecord...), buf[:n])
		}
		// The flow ages out after the policy's 1s idle timeout.
		var rec fwlog.Record
		require.Eventually(t, func() bool {
			rs := recordsWith(fw, func(r fwlog.Record) bool { return r.Proto == fwlog.ProtoUDP && r.Src == src })
			if len(rs) == 1 {
				rec = rs[0]
			}
			return len(rs) == 1
		}, 10*time.Second, 50*time.Millisecond)
		assert.Equal(t, netip.MustParseAddrPort("203.0.113.10:443"), rec.Dst, "IP_ORIGDSTADDR")
		assert.Equal(t, fwOutside, rec.NATSrc.Addr())
		assert.Equal(t, fwlog.AppDTLS, rec.App)
		assert.Equal(t, "allow-all", rec.Rule)
		assert.Equal(t, fwlog.EndAgedOut, rec.EndReason)
		assert.Equal(t, uint64(3), rec.PacketsSent)
		assert.Equal(t, uint64(3), rec.PacketsReceived)
		assert.Equal(t, uint64(3*len(dtlsRecord)), rec.BytesSent)
		assert.Equal(t, uint64(3*(len(dtlsRecord)+5)), rec.BytesReceived)
	})

	t.Run("udp denied and logged once", func(t *testing.T) {
		c := dial(t, lab.laptop, "udp4", "203.0.113.10:4443")
		src := netip.MustParseAddrPort(c.LocalAddr().String())
		for range 3 {
			_, err := c.Write(dtlsRecord)
			require.NoError(t, err)
		}
		require.NoError(t, c.SetReadDeadline(time.Now().Add(300*time.Millisecond)))
		_, err := c.Read(make([]byte, 2048))
		var ne net.Error
		require.True(t, errors.As(err, &ne) && ne.Timeout(), "no answer through a deny: %v", err)
		time.Sleep(100 * time.Millisecond) // the three datagrams reached the firewall
		rs := recordsWith(fw, func(r fwlog.Record) bool { return r.Proto == fwlog.ProtoUDP && r.Src == src })
		require.Len(t, rs, 1)
		assert.Equal(t, netip.MustParseAddrPort("203.0.113.10:4443"), rs[0].Dst)
		assert.Equal(t, fwlog.ActionDeny, rs[0].Action)
		assert.Equal(t, fwlog.EndPolicyDeny, rs[0].EndReason)
		assert.Equal(t, "block-udp-4443", rs[0].Rule)
	})

	t.Run("other ports forwarded with masquerade", func(t *testing.T) {
		before := len(fw.Records())
		c := dial(t, lab.laptop, "tcp4", "203.0.113.10:8080")
		answer := request(t, c, "hello\n")
		assert.True(t, strings.HasPrefix(answer, "from 198.51.100.1:"), "source-NATed to the firewall: %s", answer)
		require.NoError(t, c.Close())
		time.Sleep(100 * time.Millisecond)
		assert.Len(t, fw.Records(), before, "not intercepted, not logged")
	})

	t.Run("the firewall's own addresses are not redirected", func(t *testing.T) {
		before := len(fw.Records())
		// Straight to the transparent listener: no original destination
		// but itself, so the firewall drops it rather than dial itself.
		c := dial(t, lab.laptop, "tcp4", "10.10.10.254:8443")
		_, _ = io.WriteString(c, "GET / HTTP/1.1\r\n")
		_, err := c.Read(make([]byte, 64))
		require.Error(t, err)
		assert.False(t, isTimeout(err), "closed at once, not left hanging: %v", err)
		time.Sleep(100 * time.Millisecond)
		assert.Len(t, fw.Records(), before)
	})
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func TestServeUDPTransparentNeedsOptions(t *testing.T) {
	pol, err := policy.Parse("p.yaml", []byte("rules:\n  - name: allow-all\n    action: allow\n"))
	require.NoError(t, err)
	ca, err := pki.NewCA(pki.Config{}, "ca", "pinwall")
	require.NoError(t, err)
	zone, err := resolve.NewZone()
	require.NoError(t, err)
	fw, err := mitm.New(mitm.Config{Outside: hostnet.OS{}, Policy: pol, CA: ca, Roots: x509.NewCertPool(), Resolver: zone})
	require.NoError(t, err)
	defer fw.Close()

	pc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	defer pc.Close()
	err = fw.ServeUDPTransparent(context.Background(), pc)
	require.Error(t, err)
	assert.Equal(t, "mitm: ServeUDPTransparent: socket lacks [IP_TRANSPARENT IP_RECVORIGDSTADDR] (open the socket with ListenTransparentUDP)", err.Error())
}

func TestListenTransparentAddress(t *testing.T) {
	for _, addr := range []string{"[::1]:8443", "8443", "localhost:8443"} {
		_, err := mitm.ListenTransparentTCP(context.Background(), addr)
		assert.Error(t, err, addr)
		_, err = mitm.ListenTransparentUDP(context.Background(), addr)
		assert.Error(t, err, addr)
	}
	l, err := mitm.ListenTransparentTCP(context.Background(), "127.0.0.1:0")
	require.NoError(t, err)
	require.NoError(t, l.Close())
}
