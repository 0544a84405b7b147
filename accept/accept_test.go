package accept_test

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/pinwall/pinwall/accept"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// scripted is a listener whose Accept returns the scripted errors first,
// then blocks until Close.
type scripted struct {
	mu     sync.Mutex
	errs   []error
	calls  int
	conn   net.Conn
	closed chan struct{}
	once   sync.Once
}

func newScripted(conn net.Conn, errs ...error) *scripted {
	return &scripted{errs: errs, conn: conn, closed: make(chan struct{})}
}

func (s *scripted) Accept() (net.Conn, error) {
	s.mu.Lock()
	s.calls++
	if len(s.errs) > 0 {
		err := s.errs[0]
		s.errs = s.errs[1:]
		s.mu.Unlock()
		return nil, err
	}
	c := s.conn
	s.conn = nil
	s.mu.Unlock()
	if c != nil {
		return c, nil
	}
	<-s.closed
	return nil, net.ErrClosed
}

func (s *scripted) Close() error   { s.once.Do(func() { close(s.closed) }); return nil }
func (s *scripted) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9} }

func acceptErr(errno syscall.Errno) error {
	return &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", errno)}
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func TestAcceptSurvivesTemporaryErrors(t *testing.T) {
	tests := []struct {
		name  string
		errno syscall.Errno
	}{
		{"too many open files", syscall.EMFILE},
		{"file table overflow", syscall.ENFILE},
		{"connection aborted", syscall.ECONNABORTED},
		{"no buffer space", syscall.ENOBUFS},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := net.Pipe()
			t.Cleanup(func() { a.Close(); b.Close() })
			inner := newScripted(a, acceptErr(tt.errno), acceptErr(tt.errno), acceptErr(tt.errno))
			var logs syncBuf
			l := accept.Wrap(inner, accept.Config{Name: "test", MinDelay: time.Millisecond, MaxDelay: 2 * time.Millisecond,
				Logger: slog.New(slog.NewTextHandler(&logs, nil))})
			t.Cleanup(func() { l.Close() })

			c, err := l.Accept()
			require.NoError(t, err)
			assert.Same(t, a, c)
			assert.EqualValues(t, 3, l.Failures())
			out := logs.String()
			assert.Contains(t, out, "accept failed, retrying")
			assert.Contains(t, out, tt.errno.Error())
			assert.Contains(t, out, "accept recovered")
			assert.Contains(t, out, "failures=3")
		})
	}
}

func TestAcceptReturnsPermanentErrors(t *testing.T) {
	boom := errors.New("listener broken")
	inner := newScripted(nil, boom)
	l := accept.Wrap(inner, accept.Config{})
	t.Cleanup(func() { l.Close() })
	_, err := l.Accept()
	require.ErrorIs(t, err, boom)
	assert.Zero(t, l.Failures())
}

func TestCloseWakesAPausingAccept(t *testing.T) {
	errs := make([]error, 1000)
	for i := range errs {
		errs[i] = acceptErr(syscall.EMFILE)
	}
	inner := newScripted(nil, errs...)
	// A pause of an hour: only Close can end it.
	l := accept.Wrap(inner, accept.Config{MinDelay: time.Hour, MaxDelay: time.Hour})
	done := make(chan error, 1)
	go func() { _, err := l.Accept(); done <- err }()
	require.Eventually(t, func() bool { return l.Failures() == 1 }, 5*time.Second, time.Millisecond)
	require.NoError(t, l.Close())
	select {
	case err := <-done:
		require.ErrorIs(t, err, net.ErrClosed)
	case <-time.After(5 * time.Second):
		t.Fatal("Accept still pausing after Close")
	}
}

func TestFailingStreakLogsAtMostOneLineASecond(t *testing.T) {
	errs := make([]error, 200)
	for i := range errs {
		errs[i] = acceptErr(syscall.EMFILE)
	}
	a, b := net.Pipe()
	t.Cleanup(func() { a.Close(); b.Close() })
	inner := newScripted(a, errs...)
	var logs syncBuf
	l := accept.Wrap(inner, accept.Config{MinDelay: time.Microsecond, MaxDelay: time.Microsecond,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	t.Cleanup(func() { l.Close() })
	start := time.Now()
	_, err := l.Accept()
	require.NoError(t, err)
	elapsed := time.Since(start)
	assert.EqualValues(t, 200, l.Failures())
	lines := strings.Count(logs.String(), "accept failed, retrying")
	assert.GreaterOrEqual(t, lines, 1)
	assert.LessOrEqual(t, lines, 1+int(elapsed/time.Second), "200 failures in %v wrote %d lines", elapsed, lines)
}

func TestBackoffDoublesToItsCap(t *testing.T) {
	var b accept.Backoff
	var got []time.Duration
	for range 10 {
		got = append(got, b.Next())
	}
	ms := time.Millisecond
	assert.Equal(t, []time.Duration{5 * ms, 10 * ms, 20 * ms, 40 * ms, 80 * ms, 160 * ms, 320 * ms, 640 * ms, time.Second, time.Second}, got)
	b.Reset()
	assert.Equal(t, 5*ms, b.Next())
}

func TestTemporary(t *testing.T) {
	tests := []struct {
		err  error
		want bool
	}{
		{acceptErr(syscall.EMFILE), true},
		{acceptErr(syscall.ENFILE), true},
		{acceptErr(syscall.ECONNABORTED), true},
		{fmt.Errorf("wrapped: %w", acceptErr(syscall.ENOMEM)), true},
		{os.ErrDeadlineExceeded, true},
		{net.ErrClosed, false},
		{acceptErr(syscall.EBADF), false},
		{acceptErr(syscall.EINVAL), false},
		{errors.New("other"), false},
		{nil, false},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, accept.Temporary(tt.err), "%v", tt.err)
	}
}
