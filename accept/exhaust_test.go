package accept_test

import (
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pinwall/pinwall/accept"
	"github.com/pinwall/pinwall/accept/accepttest"
)

// TestListenerSurvivesDescriptorExhaustion runs a real TCP listener out of
// descriptors: accept fails with EMFILE while a connection waits in the
// backlog; once descriptors are free the waiting connection and new ones
// are accepted.
func TestListenerSurvivesDescriptorExhaustion(t *testing.T) {
	if !accepttest.InChild(t, 64) {
		return
	}
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var logs syncBuf
	l := accept.Wrap(inner, accept.Config{Name: "exhaust", Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	accepted := make(chan net.Conn, 8)
	done := make(chan error, 1)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				done <- err
				return
			}
			accepted <- c
		}
	}()
	t.Cleanup(func() {
		l.Close()
		<-done
		close(accepted)
		for c := range accepted {
			c.Close()
		}
	})

	fill := accepttest.Exhaust(t)
	fill.Release(1) // room for the client's socket, none for the accepted one
	waiting, err := net.Dial("tcp", l.Addr().String())
	require.NoError(t, err)
	defer waiting.Close()
	require.Eventually(t, func() bool { return l.Failures() >= 2 }, 10*time.Second, time.Millisecond,
		"accept never failed with no descriptor left")
	// Nothing can be accepted while no descriptor is free. Something else
	// in the process may still free one meanwhile (seen once under -race
	// in CI, 2026-12-07: a finalizer closing a file the process had
	// dropped is the likely one): the waiting connection is then accepted
	// early, which is right for the listener, and the test goes on with it.
	if len(accepted) > 0 {
		t.Logf("a descriptor was freed outside the test while none was left: the waiting connection was accepted before the release")
	}

	fill.ReleaseAll()
	select {
	case c := <-accepted:
		assert.Equal(t, waiting.LocalAddr().String(), c.RemoteAddr().String())
		c.Close()
	case err := <-done:
		t.Fatalf("accept loop ended: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("the waiting connection was not accepted after descriptors were freed")
	}
	for range 3 {
		c, err := net.Dial("tcp", l.Addr().String())
		require.NoError(t, err)
		select {
		case a := <-accepted:
			a.Close()
		case <-time.After(10 * time.Second):
			t.Fatal("a new connection was not accepted")
		}
		c.Close()
	}
	assert.Contains(t, logs.String(), "too many open files")
	assert.Contains(t, logs.String(), "accept recovered")
}
