package client_test

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pinwall/pinwall/client"
	"github.com/pinwall/pinwall/failure"
	"github.com/pinwall/pinwall/hostnet"
	"github.com/pinwall/pinwall/resolve"
)

// stallingGateway accepts TCP connections and never answers: every tunnel
// attempt stays in flight until the test lets it go.
func stallingGateway(t *testing.T) (port uint16, accepted <-chan net.Conn) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ch := make(chan net.Conn, 16)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			ch <- c
		}
	}()
	t.Cleanup(func() {
		l.Close()
		<-done
		close(ch)
		for c := range ch {
			c.Close()
		}
	})
	return uint16(l.Addr().(*net.TCPAddr).Port), ch
}

func stallingClient(t *testing.T, port uint16) *client.Client {
	t.Helper()
	c := newStallingClient(t, port)
	require.NoError(t, c.Start(context.Background()))
	return c
}

// newStallingClient is a client of the stalling gateway, not started; the
// test's cleanup closes it.
func newStallingClient(t *testing.T, port uint16) *client.Client {
	t.Helper()
	zone, err := resolve.NewZone(resolve.Record{Name: "gw.test", Addrs: []netip.Addr{netip.MustParseAddr("127.0.0.1")}})
	require.NoError(t, err)
	c, err := client.New(client.Config{
		Gateways: []string{"gw.test"}, Port: port, Transport: client.TransportTLS,
		InsecureSkipVerify: true, Stack: hostnet.OS{}, Resolver: zone,
		HandshakeTimeout: 30 * time.Second,
	})
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return c
}

// TestShutdownLetsTheAttemptInFlightFinish: Shutdown starts no new attempt
// and waits for the one in flight, whose own outcome is recorded.
func TestShutdownLetsTheAttemptInFlightFinish(t *testing.T) {
	port, accepted := stallingGateway(t)
	c := stallingClient(t, port)
	conn := <-accepted // the client's attempt is in flight

	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		shut <- c.Shutdown(ctx)
	}()
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned (%v) while the attempt was still in flight", err)
	case <-time.After(200 * time.Millisecond):
	}
	require.NoError(t, conn.Close(), "the gateway hangs up: the attempt ends on its own")
	require.NoError(t, <-shut)

	h := c.History()
	require.NotEmpty(t, h)
	last := h[len(h)-1]
	assert.Equal(t, "attempt-failed", last.Event)
	assert.Equal(t, failure.CauseConnectionReset, last.Cause, "the attempt's own outcome, not the shutdown's")
	select {
	case extra := <-accepted:
		extra.Close()
		t.Fatal("a new attempt started after Shutdown")
	default:
	}
	assert.False(t, c.State().Up)
}

// TestShutdownBoundedByContext: when the context ends first, Shutdown
// cuts the attempt short, closes the client and says so.
func TestShutdownBoundedByContext(t *testing.T) {
	port, accepted := stallingGateway(t)
	c := stallingClient(t, port)
	<-accepted
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	require.ErrorIs(t, c.Shutdown(ctx), context.DeadlineExceeded)
	assert.NoError(t, c.Close(), "Close after Shutdown is harmless")
	_, err := c.Dial(context.Background(), "tcp", "www.social.test:443")
	assert.Equal(t, failure.CauseClosed, failure.CauseOf(err), "a closed client refuses flows: %v", err)
}

// TestShutdownEndsAnUnansweredDTLSAttempt: a DTLS attempt nothing has
// answered has nothing left to finish, and Shutdown does not wait out its
// timeout; one the gateway has answered keeps Shutdown waiting.
func TestShutdownEndsAnUnansweredDTLSAttempt(t *testing.T) {
	for _, tc := range []struct {
		name     string
		answer   bool // the gateway sends a datagram back
		wantWait bool // Shutdown waits for the attempt (here: until its context ends)
	}{
		{name: "unanswered", answer: false, wantWait: false},
		{name: "answered", answer: true, wantWait: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pc, err := net.ListenPacket("udp", "127.0.0.1:0")
			require.NoError(t, err)
			defer pc.Close()
			zone, err := resolve.NewZone(resolve.Record{Name: "gw.test", Addrs: []netip.Addr{netip.MustParseAddr("127.0.0.1")}})
			require.NoError(t, err)
			c, err := client.New(client.Config{
				Gateways: []string{"gw.test"}, Port: uint16(pc.LocalAddr().(*net.UDPAddr).Port), Transport: client.TransportDTLS,
				InsecureSkipVerify: true, Stack: hostnet.OS{}, Resolver: zone,
				HandshakeTimeout: 30 * time.Second,
			})
			require.NoError(t, err)
			defer c.Close()
			require.NoError(t, c.Start(context.Background()))

			buf := make([]byte, 2048)
			require.NoError(t, pc.SetReadDeadline(time.Now().Add(10*time.Second)))
			_, from, err := pc.ReadFrom(buf) // the ClientHello: the attempt is in flight
			require.NoError(t, err)
			if tc.answer {
				_, err := pc.WriteTo([]byte("not a DTLS record"), from)
				require.NoError(t, err)
				time.Sleep(50 * time.Millisecond) // let the client read it
			}

			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			err = c.Shutdown(ctx)
			if tc.wantWait {
				require.ErrorIs(t, err, context.DeadlineExceeded, "an answered attempt is let finish")
				return
			}
			require.NoError(t, err, "the unanswered attempt ended at once")
			h := c.History()
			require.NotEmpty(t, h)
			last := h[len(h)-1]
			assert.Equal(t, "attempt-failed", last.Event)
			assert.Equal(t, failure.CauseClosed, last.Cause, "cut by the shutdown, not timed out: %s", last.Error)
		})
	}
}
