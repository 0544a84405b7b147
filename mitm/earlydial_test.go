package mitm_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pinwall/pinwall/hostnet"
	"github.com/pinwall/pinwall/mitm"
	"github.com/pinwall/pinwall/mitm/fwlog"
	"github.com/pinwall/pinwall/mitm/policy"
	"github.com/pinwall/pinwall/pki"
	"github.com/pinwall/pinwall/resolve"
)

// spliceAll passes every TCP session undecrypted.
const spliceAll = `rules:
  - name: no-decrypt-all
    match: { proto: tcp }
    action: no-decrypt
`

// rawDest is a plain TCP destination that keeps what each connection
// it accepted sent, in the order accepted, and closes each once its peer
// has closed.
type rawDest struct {
	ln net.Listener
	wg sync.WaitGroup

	mu    sync.Mutex
	conns []*destConn
}

type destConn struct {
	c    net.Conn
	done chan struct{} // closed once the peer closed or reset
	got  bytes.Buffer  // guarded by done
	err  error         // what ended the read, nil for EOF
}

func startRawDest(t *testing.T) *rawDest {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	d := &rawDest{ln: ln}
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			dc := &destConn{c: c, done: make(chan struct{})}
			d.mu.Lock()
			d.conns = append(d.conns, dc)
			d.mu.Unlock()
			d.wg.Add(1)
			go func() {
				defer d.wg.Done()
				defer close(dc.done)
				_, err := io.Copy(&dc.got, c)
				dc.err = err
				c.Close() // the peer said all it had: so does the destination
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		d.mu.Lock()
		for _, dc := range d.conns {
			dc.c.Close()
		}
		d.mu.Unlock()
		d.wg.Wait()
	})
	return d
}

func (d *rawDest) addr() netip.AddrPort { return netip.MustParseAddrPort(d.ln.Addr().String()) }

func (d *rawDest) accepted() []*destConn {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]*destConn(nil), d.conns...)
}

// startSpliceFirewall forwards a firewall that splices everything to dst.
func startSpliceFirewall(t *testing.T, dst netip.AddrPort, edit func(*mitm.Config)) (*mitm.Firewall, string) {
	t.Helper()
	set, err := pki.NewSet(pki.Config{}, "acme")
	require.NoError(t, err)
	pol, err := policy.Parse("splice.yaml", []byte(spliceAll))
	require.NoError(t, err)
	cfg := mitm.Config{
		Outside:  hostnet.OS{},
		Policy:   pol,
		CA:       set.Enterprise,
		Roots:    set.Internet.Pool(),
		Resolver: &resolve.Zone{},
	}
	if edit != nil {
		edit(&cfg)
	}
	fw, err := mitm.New(cfg)
	require.NoError(t, err)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- fw.ServeForward(context.Background(), l, dst) }()
	t.Cleanup(func() {
		require.NoError(t, fw.Close())
		l.Close()
		require.NoError(t, <-done)
	})
	return fw, l.Addr().String()
}

// The firewall connects to a session's destination as the session starts,
// before its ClientHello, and sends the hello on that connection; past
// Config.EarlyDials at once, or with early dials off, a session connects
// after its hello. A connection no session took is reset, having carried
// nothing.
func TestEarlyDial(t *testing.T) {
	hello := goHello(t)
	tests := []struct {
		name       string
		earlyDials int
		// idle clients connect and never speak (their sessions age out);
		// then one client sends a hello.
		idle int
		// early is how many connections the destination must have
		// accepted before any hello was sent; total, in all.
		early, total int
	}{
		{name: "default: connected before the hello", earlyDials: 0, idle: 0, early: 1, total: 1},
		{name: "off: connected after the hello", earlyDials: -1, idle: 0, early: 0, total: 1},
		{name: "bounded: 2 of 4 idle sessions dial early", earlyDials: 2, idle: 4, early: 2, total: 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dest := startRawDest(t)
			// Long enough that every idle session is still waiting for its
			// hello when the last one starts, even on a loaded machine.
			const peek = 2 * time.Second
			fw, addr := startSpliceFirewall(t, dest.addr(), func(c *mitm.Config) {
				c.EarlyDials = tt.earlyDials
				c.PeekTimeout = peek
			})

			for range tt.idle {
				c, err := net.Dial("tcp", addr)
				require.NoError(t, err)
				defer c.Close() // held open, silent, until its session ages out
			}
			if tt.idle > 0 {
				// Every idle session ages out: each has called for its
				// early dial by then.
				recs := waitRecords(t, fw, tt.idle)
				for _, r := range recs {
					assert.Equal(t, fwlog.EndAgedOut, r.EndReason)
					assert.Zero(t, r.NATSrc, "an aged-out session used no connection to the destination")
				}
				require.Len(t, dest.accepted(), tt.early, "early dials while no hello came")
				for i, dc := range dest.accepted() {
					select {
					case <-dc.done:
					case <-time.After(5 * time.Second):
						t.Fatalf("early connection %d was not closed when its session ended", i)
					}
					assert.Zero(t, dc.got.Len(), "early connection %d carried nothing", i)
					assert.True(t, isReset(dc.err), "early connection %d is reset, got %v", i, dc.err)
				}
			}

			c, err := net.Dial("tcp", addr)
			require.NoError(t, err)
			defer c.Close()
			if tt.idle == 0 {
				if tt.early > 0 {
					require.Eventually(t, func() bool { return len(dest.accepted()) == tt.early }, 5*time.Second, time.Millisecond,
						"the destination is connected before the hello")
				} else {
					// Nothing to wait for: the session ages out unconnected.
					time.Sleep(50 * time.Millisecond)
					require.Empty(t, dest.accepted(), "no connection before the hello with early dials off")
				}
			}
			writeConn(t, c, hello)
			require.NoError(t, c.(*net.TCPConn).CloseWrite())
			_, err = readUntilClosed(t, c)
			require.ErrorIs(t, err, io.EOF, "the destination's close reaches the client")

			recs := waitRecords(t, fw, tt.idle+1)
			r := recs[len(recs)-1]
			assert.Equal(t, fwlog.EndTCPFin, r.EndReason)
			// One connection for the session, early or not (the idle
			// sessions' slots are free again by now).
			conns := dest.accepted()
			require.Len(t, conns, tt.total, "the session made one connection")
			last := conns[len(conns)-1]
			<-last.done
			assert.Equal(t, hello, last.got.Bytes(), "the hello went through unchanged")
			assert.Equal(t, r.NATSrc.String(), last.c.RemoteAddr().String(), "the record's NAT source is the connection used")
		})
	}
}

// A destination that refuses is logged as before: after the hello, as the
// server's reset, whether the early dial or a late one met the refusal.
func TestEarlyDialRefused(t *testing.T) {
	hello := goHello(t)
	for _, early := range []int{0, -1} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		dst := netip.MustParseAddrPort(ln.Addr().String())
		require.NoError(t, ln.Close())
		fw, addr := startSpliceFirewall(t, dst, func(c *mitm.Config) { c.EarlyDials = early })

		c, err := net.Dial("tcp", addr)
		require.NoError(t, err)
		writeConn(t, c, hello)
		_, err = readUntilClosed(t, c)
		c.Close()
		assert.True(t, isReset(err) || errors.Is(err, io.EOF), "early dials %d: the client is reset, got %v", early, err)
		r := waitRecords(t, fw, 1)[0]
		assert.Equal(t, fwlog.EndTCPRSTFromServer, r.EndReason, "early dials %d", early)
		assert.Equal(t, "www.social.test", r.SNI, "early dials %d: the hello was read first", early)
		assert.Contains(t, r.Reason, "destination unreachable", "early dials %d", early)
	}
}
