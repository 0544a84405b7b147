package gateway_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pinwall/pinwall/gateway"
	"github.com/pinwall/pinwall/internal/syncbuf"
	"github.com/pinwall/pinwall/tunnel"
)

var attackerIP = netip.MustParseAddr("198.51.100.66")

// dtlsHello is a DTLS 1.2 ClientHello record without a cookie: enough for
// the gateway to start a handshake and answer with a HelloVerifyRequest.
func dtlsHello() []byte {
	body := []byte{0xfe, 0xfd}
	body = append(body, bytes.Repeat([]byte{7}, 32)...)
	body = append(body, 0, 0, 0, 2, 0xc0, 0x2b, 1, 0, 0, 0)
	n := len(body)
	hs := append([]byte{1, byte(n >> 16), byte(n >> 8), byte(n), 0, 0, 0, 0, 0, byte(n >> 16), byte(n >> 8), byte(n)}, body...)
	return append([]byte{22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, byte(len(hs) >> 8), byte(len(hs))}, hs...)
}

func summaries(evs []gateway.Event, src netip.Addr, tr tunnel.Transport) []gateway.Event {
	var out []gateway.Event
	for _, e := range evs {
		if e.Event == gateway.EventRefusalSummary && e.Client == src.String() && e.Transport == string(tr) {
			out = append(out, e)
		}
	}
	return out
}

// TestPreAuthPerSourceLimit: a source holding its handshakes-in-progress
// limit gets its further attempts refused at once, over TLS (connections
// reset, not held) and DTLS (hellos dropped before any handshake state);
// the refusals are counted in one summary per interval with at most ten
// logged one by one; devices on other addresses are not affected.
func TestPreAuthPerSourceLimit(t *testing.T) {
	const limit, extra = 4, 30
	for _, tr := range transports {
		t.Run(string(tr), func(t *testing.T) {
			logs := &syncbuf.Buffer{}
			w := newWorld(t, func(c *gateway.Config) {
				c.MaxHandshakesPerSource = limit
				c.HandshakeTimeout = 5 * time.Second // the attacker's handshakes stay in progress
				c.RefusalSummary = time.Hour         // one summary, at Close
				c.Logger = slog.New(slog.NewTextHandler(logs, nil))
			})
			attacker, err := w.sim.AddHost("attacker", attackerIP)
			require.NoError(t, err)
			ctx := testCtx(t, 30*time.Second)

			switch tr {
			case tunnel.TransportTLS:
				for i := range limit {
					c, err := attacker.DialContext(ctx, "tcp", gatewayAddr)
					require.NoError(t, err, "connection %d", i)
					t.Cleanup(func() { c.Close() })
				}
				require.Eventually(t, func() bool { return w.gw.Stats().TLSHandshakes == limit }, 10*time.Second, time.Millisecond)
				start := time.Now()
				for range extra {
					c, err := attacker.DialContext(ctx, "tcp", gatewayAddr)
					if err != nil {
						continue // reset before the dial returned
					}
					_ = c.SetReadDeadline(time.Now().Add(4 * time.Second))
					_, err = io.Copy(io.Discard, c)
					c.Close()
					var ne net.Error
					require.False(t, errors.As(err, &ne) && ne.Timeout(), "a connection beyond the limit was held")
				}
				assert.Less(t, time.Since(start), 4*time.Second, "refused at once, not after the handshake deadline")
			case tunnel.TransportDTLS:
				for range limit + extra {
					c, err := attacker.DialContext(ctx, "udp", gatewayAddr)
					require.NoError(t, err)
					t.Cleanup(func() { c.Close() })
					_, err = c.Write(dtlsHello())
					require.NoError(t, err)
				}
				require.Eventually(t, func() bool { return w.gw.Stats().UDPRefused == extra }, 10*time.Second, time.Millisecond)
				st := w.gw.Stats()
				assert.Equal(t, limit, st.DTLSHandshakes)
				assert.Equal(t, limit, st.UDPPeers)
			}

			// A device elsewhere still gets its tunnel.
			requireEcho(t, ctx, w.openTunnel(t, ctx, tr), 1)

			// Refusals from the attacker: at most ten one by one (TLS; a
			// DTLS source is never named before it returns its cookie),
			// and one summary at Close counting them all.
			var one int
			for _, e := range w.gw.Events() {
				if e.Event == gateway.EventTunnelRefused && strings.HasPrefix(e.Client, attackerIP.String()+":") {
					one++
					assert.Contains(t, e.Reason, "handshakes in progress from this source at their limit (4)")
				}
			}
			if tr == tunnel.TransportTLS {
				assert.Equal(t, 10, one, "ten refusals logged one by one")
			} else {
				assert.Zero(t, one)
			}
			require.NoError(t, w.gw.Close())
			sums := summaries(w.gw.Events(), attackerIP, tr)
			require.Len(t, sums, 1, "one summary per source and interval")
			assert.Equal(t, extra, sums[0].Causes["source-limit"])
			sampled := 0 // now that Close has failed the handshakes in progress too
			for _, e := range w.gw.Events() {
				if e.Event == gateway.EventTunnelRefused && strings.HasPrefix(e.Client, attackerIP.String()+":") {
					sampled++
				}
			}
			assert.Equal(t, sampled, sums[0].Sampled)
			// The device's own late datagrams may be refused too (after its
			// tunnel ended): count the attacker's.
			var fromAttacker []gateway.Event
			for _, e := range w.gw.Events() {
				if e.Client == attackerIP.String() || strings.HasPrefix(e.Client, attackerIP.String()+":") {
					fromAttacker = append(fromAttacker, e)
				}
			}
			assert.Equal(t, sums[0].Count, gateway.Refusals(fromAttacker), "events one by one plus the summary's rest")
			assert.GreaterOrEqual(t, sums[0].Count, extra)
			assert.Contains(t, sums[0].Reason, "pre-auth "+string(tr)+" attempts from "+attackerIP.String())
			assert.Contains(t, string(logs.Bytes()), "refused "+sums[0].Reason[len("refused "):])
			w.requireWrittenLog(t)
		})
	}
}

// TestPreAuthGlobalLimit: handshakes in progress from all sources are
// bounded too, and beyond the bound new attempts are refused, not queued.
func TestPreAuthGlobalLimit(t *testing.T) {
	w := newWorld(t, func(c *gateway.Config) {
		c.MaxHandshakes = 3
		c.HandshakeTimeout = 2 * time.Second
	})
	ctx := testCtx(t, 30*time.Second)
	for i := range 3 {
		h, err := w.sim.AddHost(fmt.Sprintf("idle-%d", i), netip.AddrFrom4([4]byte{198, 51, 100, byte(70 + i)}))
		require.NoError(t, err)
		c, err := h.DialContext(ctx, "tcp", gatewayAddr)
		require.NoError(t, err)
		t.Cleanup(func() { c.Close() })
	}
	require.Eventually(t, func() bool { return w.gw.Stats().TLSHandshakes == 3 }, 10*time.Second, time.Millisecond)
	start := time.Now()
	_, err := w.dialTLS(ctx)
	require.Error(t, err, "no fourth handshake in progress")
	assert.Less(t, time.Since(start), time.Second, "refused at once")
	evs := w.waitEvents(t, 1, func(e gateway.Event) bool {
		return e.Event == gateway.EventTunnelRefused && strings.Contains(e.Reason, "handshakes in progress at their limit (3)")
	})
	assert.Equal(t, string(tunnel.TransportTLS), evs[0].Transport)
	// Once the idle ones time out, a tunnel comes up again.
	require.Eventually(t, func() bool { return w.gw.Stats().TLSHandshakes == 0 }, 10*time.Second, 10*time.Millisecond)
	requireEcho(t, ctx, w.openTunnel(t, ctx, tunnel.TransportTLS), 1)
}

// TestUnverifiedPeersForgotten: DTLS peers that never return their cookie
// (forged sources, say) are forgotten after CookieTimeout, counted in the
// summary and never named one by one.
func TestUnverifiedPeersForgotten(t *testing.T) {
	w := newWorld(t, func(c *gateway.Config) {
		c.CookieTimeout = 200 * time.Millisecond
		c.HandshakeTimeout = 5 * time.Second
		c.RefusalSummary = time.Hour
	})
	attacker, err := w.sim.AddHost("attacker", attackerIP)
	require.NoError(t, err)
	ctx := testCtx(t, 30*time.Second)
	for range 5 {
		c, err := attacker.DialContext(ctx, "udp", gatewayAddr)
		require.NoError(t, err)
		t.Cleanup(func() { c.Close() })
		_, err = c.Write(dtlsHello())
		require.NoError(t, err)
	}
	require.Eventually(t, func() bool { return w.gw.Stats().UDPPeers == 5 }, 10*time.Second, time.Millisecond)
	require.Eventually(t, func() bool {
		st := w.gw.Stats()
		return st.UDPPeers == 0 && st.DTLSHandshakes == 0
	}, 10*time.Second, 10*time.Millisecond, "peers without a cookie are forgotten well before the handshake deadline")
	requireEcho(t, ctx, w.openTunnel(t, ctx, tunnel.TransportDTLS), 1)
	for _, e := range w.gw.Events() {
		assert.NotEqual(t, gateway.EventTunnelRefused, e.Event, "%+v", e)
	}
	require.NoError(t, w.gw.Close())
	sums := summaries(w.gw.Events(), attackerIP, tunnel.TransportDTLS)
	require.Len(t, sums, 1)
	assert.Equal(t, 5, sums[0].Causes["no-cookie"])
}

// TestEventsKeptBounded: the gateway keeps its most recent events in
// memory, in order, up to KeepEvents; the log has them all.
func TestEventsKeptBounded(t *testing.T) {
	const keep = 3
	w := newWorld(t, func(c *gateway.Config) { c.KeepEvents = keep })
	ctx := testCtx(t, 30*time.Second)
	sess := w.openTunnel(t, ctx, tunnel.TransportTLS)
	for i := range 5 {
		requireEcho(t, ctx, sess, uint64(i+1))
	}
	// A flow's event is written when the gateway's relay of it ends, which
	// may be after the next flow's: wait until all five are written, then
	// the ring must hold the log's last events, in the log's order.
	require.Eventually(t, func() bool { return w.gw.Stats().EventsLogged == 6 && w.gw.ActiveFlows() == 0 },
		15*time.Second, 5*time.Millisecond, "tunnel-open and five flows logged")
	written, err := gateway.ReadEvents(bytes.NewReader(w.log.Bytes()))
	require.NoError(t, err)
	require.Len(t, written, 6, "tunnel-open and five flows, all written")
	kept := w.gw.Events()
	require.Len(t, kept, keep)
	for i, e := range kept {
		want := written[len(written)-keep+i]
		assert.Equal(t, want.Event, e.Event, "kept event %d is the log's", i)
		assert.Equal(t, want.FlowID, e.FlowID, "kept event %d is the log's, oldest first", i)
	}
	st := w.gw.Stats()
	assert.Equal(t, 6, st.EventsLogged)
	assert.Equal(t, keep, st.EventsKept)
}
