package node

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fakeListener accepts the connections a test queues, each with the local
// address it names (the address the peer sent to).
type fakeListener struct {
	conns  chan net.Conn
	closed chan struct{}
}

func newFakeListener() *fakeListener {
	return &fakeListener{conns: make(chan net.Conn, 8), closed: make(chan struct{})}
}

func (l *fakeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}
func (l *fakeListener) Close() error   { close(l.closed); return nil }
func (l *fakeListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4zero, Port: 443} }

// dial queues a connection to local and returns the peer's end.
func (l *fakeListener) dial(local string) net.Conn {
	a, b := net.Pipe()
	l.conns <- localConn{Conn: a, local: net.TCPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr(local), 443))}
	return b
}

// acceptWithin accepts from l, failing the test when nothing comes within d
// (the connection went elsewhere).
func acceptWithin(t *testing.T, l net.Listener, d time.Duration) net.Conn {
	t.Helper()
	type res struct {
		c   net.Conn
		err error
	}
	ch := make(chan res, 1)
	go func() { c, err := l.Accept(); ch <- res{c, err} }()
	select {
	case r := <-ch:
		require.NoError(t, r.err)
		return r.c
	case <-time.After(d):
		l.Close() // ends the Accept above
		t.Fatalf("no connection on %v within %v", l.Addr(), d)
		return nil
	}
}

// assertRefused checks that the demultiplexer closed its end of c: the
// read ends with io.EOF. The deadline only bounds a wrong answer; setting
// it fails (io.ErrClosedPipe) once the other end is closed already, which
// is the answer expected.
func assertRefused(t *testing.T, c net.Conn) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := c.Read(make([]byte, 1))
	assert.ErrorIs(t, err, io.EOF)
}

type localConn struct {
	net.Conn
	local net.Addr
}

func (c localConn) LocalAddr() net.Addr { return c.local }

func TestAddrDemux(t *testing.T) {
	fl := newFakeListener()
	d := newAddrDemux(fl, slog.New(slog.DiscardHandler))
	primary := d.Listener([]netip.Addr{netip.MustParseAddr("203.0.113.9"), netip.MustParseAddr("203.0.113.10")})
	backup := d.Listener([]netip.Addr{netip.MustParseAddr("203.0.113.137")})
	served := make(chan struct{})
	go func() { defer close(served); d.Serve() }()

	tests := []struct {
		local string
		want  net.Listener // nil: refused
	}{
		{"203.0.113.9", primary},
		{"203.0.113.10", primary},
		{"203.0.113.137", backup},
		{"203.0.113.200", nil},
	}
	for _, tt := range tests {
		t.Run(tt.local, func(t *testing.T) {
			peer := tt.want
			c := fl.dial(tt.local)
			defer c.Close()
			if peer == nil {
				// Refused: the demultiplexer closes its end.
				assertRefused(t, c)
				return
			}
			got := acceptWithin(t, peer, 5*time.Second)
			defer got.Close()
			assert.Equal(t, tt.local, got.LocalAddr().(*net.TCPAddr).AddrPort().Addr().String())
		})
	}

	t.Run("a closed gateway's addresses are refused", func(t *testing.T) {
		require.NoError(t, backup.Close())
		_, err := backup.Accept()
		assert.ErrorIs(t, err, net.ErrClosed)
		c := fl.dial("203.0.113.137")
		defer c.Close()
		assertRefused(t, c)
	})

	require.NoError(t, d.Close())
	<-served
	_, err := primary.Accept()
	assert.True(t, errors.Is(err, net.ErrClosed), "every share closes with the shared listener: %v", err)
}
