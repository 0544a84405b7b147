package tunnel

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/dtls/v3"
	dtlsnet "github.com/pion/dtls/v3/pkg/net"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pinwall/pinwall/pki"
)

// muxClientHello is a DTLS 1.2 ClientHello record carrying cookie.
func muxClientHello(cookie []byte) []byte {
	body := []byte{0xfe, 0xfd}
	body = append(body, bytes.Repeat([]byte{7}, 32)...)
	body = append(body, 0, byte(len(cookie)))
	body = append(body, cookie...)
	body = append(body, 0, 2, 0xc0, 0x2b, 1, 0, 0, 0)
	n := len(body)
	hs := append([]byte{1, byte(n >> 16), byte(n >> 8), byte(n), 0, 0, 0, 0, 0, byte(n >> 16), byte(n >> 8), byte(n)}, body...)
	return append([]byte{22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, byte(len(hs) >> 8), byte(len(hs))}, hs...)
}

// muxHelloVerify is a HelloVerifyRequest record carrying cookie.
func muxHelloVerify(cookie []byte) []byte {
	body := append([]byte{0xfe, 0xff, byte(len(cookie))}, cookie...)
	n := len(body)
	hs := append([]byte{3, byte(n >> 16), byte(n >> 8), byte(n), 0, 0, 0, 0, 0, byte(n >> 16), byte(n >> 8), byte(n)}, body...)
	return append([]byte{22, 0xfe, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, byte(len(hs) >> 8), byte(len(hs))}, hs...)
}

// muxLab is a UDPMux on loopback and a way to send it datagrams from new
// source ports.
type muxLab struct {
	mux  *UDPMux
	addr string

	mu       sync.Mutex
	refusals []error
	released atomic.Int64
}

func startMuxLab(t *testing.T, cfg UDPMuxConfig) *muxLab {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	require.NoError(t, err)
	lab := &muxLab{addr: pc.LocalAddr().String()}
	cfg.Refused = func(_ netip.AddrPort, err error) {
		lab.mu.Lock()
		lab.refusals = append(lab.refusals, err)
		lab.mu.Unlock()
	}
	admit := cfg.Admit
	cfg.Admit = func(p netip.AddrPort) (func(), error) {
		if admit != nil {
			if _, err := admit(p); err != nil {
				return nil, err
			}
		}
		return func() { lab.released.Add(1) }, nil
	}
	lab.mux = NewUDPMux(pc, cfg)
	t.Cleanup(func() { lab.mux.Close() })
	return lab
}

// send writes b from a new socket and returns it (closed at cleanup).
func (l *muxLab) send(t *testing.T, b []byte) net.Conn {
	t.Helper()
	c, err := net.Dial("udp", l.addr)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	_, err = c.Write(b)
	require.NoError(t, err)
	return c
}

func (l *muxLab) refused() []error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]error(nil), l.refusals...)
}

func TestMuxRefusesBeyondItsLimits(t *testing.T) {
	errBusy := errors.New("source busy")
	tests := []struct {
		name string
		cfg  UDPMuxConfig
		send [][]byte
		want error
	}{
		{"not a hello", UDPMuxConfig{}, [][]byte{[]byte("GET / HTTP/1.1\r\n")}, ErrNotHello},
		{"peer limit", UDPMuxConfig{MaxPeers: 1}, [][]byte{muxClientHello(nil), muxClientHello(nil)}, ErrPeerLimit},
		{"unverified limit", UDPMuxConfig{MaxUnverified: 1}, [][]byte{muxClientHello(nil), muxClientHello(nil)}, ErrUnverifiedLimit},
		{"admission", UDPMuxConfig{Admit: func(netip.AddrPort) (func(), error) { return nil, errBusy }}, [][]byte{muxClientHello(nil)}, errBusy},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lab := startMuxLab(t, tt.cfg)
			for _, b := range tt.send {
				lab.send(t, b)
			}
			require.Eventually(t, func() bool { return len(lab.refused()) == 1 }, 5*time.Second, time.Millisecond)
			assert.ErrorIs(t, lab.refused()[0], tt.want)
			assert.EqualValues(t, 1, lab.mux.Refused())
		})
	}
}

// TestMuxForgetsPeersWithoutCookie: a peer that never returns its cookie
// is forgotten after CookieTimeout, its reads end with ErrNoCookie, and its
// admission is released; the mux holds nothing for it afterwards.
func TestMuxForgetsPeersWithoutCookie(t *testing.T) {
	lab := startMuxLab(t, UDPMuxConfig{CookieTimeout: 100 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	lab.send(t, muxClientHello(nil))
	pc, _, err := lab.mux.Accept(ctx)
	require.NoError(t, err)
	assert.Equal(t, 1, lab.mux.Unverified())
	// The server answers with a HelloVerifyRequest; the peer never returns.
	_, err = pc.WriteTo(muxHelloVerify([]byte("0123456789abcdefghij")), nil)
	require.NoError(t, err)
	buf := make([]byte, 2048)
	_, _, err = pc.ReadFrom(buf) // the hello itself
	require.NoError(t, err)
	_, _, err = pc.ReadFrom(buf)
	require.ErrorIs(t, err, ErrNoCookie)
	assert.ErrorIs(t, pc.(interface{ Dropped() error }).Dropped(), ErrNoCookie)
	assert.Equal(t, 0, lab.mux.Peers())
	assert.Equal(t, 0, lab.mux.Unverified())
	assert.EqualValues(t, 1, lab.released.Load())
	require.NoError(t, pc.Close())
	assert.EqualValues(t, 1, lab.released.Load(), "released once")
}

// TestMuxVerifiesARealClient: a pion client returns pion's cookie, which
// the mux sees go out and come back; the peer is then verified and is not
// forgotten however long its handshake takes.
func TestMuxVerifiesARealClient(t *testing.T) {
	lab := startMuxLab(t, UDPMuxConfig{CookieTimeout: 200 * time.Millisecond})
	set, err := pki.NewSet(pki.Config{}, "acme")
	require.NoError(t, err)
	cert, err := set.ServerCert("gw.test")
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	verified := make(chan error, 1)
	go func() {
		pc, raddr, err := lab.mux.Accept(ctx)
		if err != nil {
			verified <- err
			return
		}
		// Hold the handshake back until the cookie has come back and the
		// cookie deadline has passed: a verified peer is not forgotten.
		gate := &gatedPeer{PacketConn: pc, mux: lab.mux}
		dc, err := dtls.ServerWithOptions(gate, raddr, dtls.WithCertificates(*cert),
			dtls.WithExtendedMasterSecret(dtls.RequireExtendedMasterSecret))
		if err == nil {
			err = dc.HandshakeContext(ctx)
			if err == nil {
				lab.mux.Established(pc)
			}
			defer dc.Close()
		}
		verified <- err
		<-ctx.Done()
	}()
	uc, err := net.Dial("udp", lab.addr)
	require.NoError(t, err)
	dc, err := dtls.ClientWithOptions(dtlsnet.PacketConnFromConn(uc), uc.RemoteAddr(),
		dtls.WithRootCAs(set.Internet.Pool()), dtls.WithServerName("gw.test"),
		dtls.WithExtendedMasterSecret(dtls.RequireExtendedMasterSecret))
	require.NoError(t, err)
	defer dc.Close()
	require.NoError(t, dc.HandshakeContext(ctx))
	require.NoError(t, <-verified)
	assert.Equal(t, 1, lab.mux.Peers())
	assert.Equal(t, 0, lab.mux.Unverified())
	assert.EqualValues(t, 1, lab.released.Load(), "Established released the admission")
	cancel()
}

// gatedPeer delays the server's reads once the peer is verified until the
// cookie deadline has passed.
type gatedPeer struct {
	net.PacketConn
	mux  *UDPMux
	once sync.Once
}

func (g *gatedPeer) ReadFrom(b []byte) (int, net.Addr, error) {
	n, a, err := g.PacketConn.ReadFrom(b)
	if err == nil && g.mux.Unverified() == 0 {
		g.once.Do(func() { time.Sleep(3 * g.mux.cfg.CookieTimeout) })
	}
	return n, a, err
}
