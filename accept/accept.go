package accept

import (
	"errors"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Defaults for Config's and Backoff's zero values: net/http's Server pause.
const (
	DefaultMinDelay = 5 * time.Millisecond
	DefaultMaxDelay = time.Second
	// logInterval bounds the lines one failing streak writes.
	logInterval = time.Second
)

// Config configures Wrap. The zero value is usable.
type Config struct {
	// Name labels the listener in log lines ("gateway tls"); empty means
	// the listener's address.
	Name string
	// Logger receives the failures and recoveries; nil discards.
	Logger *slog.Logger
	// MinDelay is the pause after the first temporary error; zero means
	// DefaultMinDelay. MaxDelay caps the doubling; zero means
	// DefaultMaxDelay.
	MinDelay, MaxDelay time.Duration
}

// Listener is a net.Listener whose Accept survives temporary errors. It is
// safe for concurrent use.
type Listener struct {
	net.Listener
	cfg Config
	log *slog.Logger

	closed    chan struct{}
	closeOnce sync.Once

	failures atomic.Int64

	mu      sync.Mutex
	streak  int64     // temporary errors since the last success
	since   time.Time // first error of the streak
	logged  time.Time // last line written about the streak
	lastErr error
}

// Wrap returns l with an Accept that retries temporary errors. Close the
// returned Listener (it closes l); closing l directly also ends Accept, at
// the latest after the pause in progress.
func Wrap(l net.Listener, cfg Config) *Listener {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.Name == "" {
		cfg.Name = l.Addr().String()
	}
	return &Listener{Listener: l, cfg: cfg, log: log, closed: make(chan struct{})}
}

// Accept waits for the next connection. A temporary error (see Temporary)
// is logged and counted and the accept retried after a pause; Accept
// returns an error only when the listener is closed or fails for good.
func (l *Listener) Accept() (net.Conn, error) {
	b := Backoff{Min: l.cfg.MinDelay, Max: l.cfg.MaxDelay}
	for {
		c, err := l.Listener.Accept()
		if err == nil {
			l.recovered()
			return c, nil
		}
		select {
		case <-l.closed:
			return nil, err
		default:
		}
		if !Temporary(err) {
			return nil, err
		}
		d := b.Next()
		l.failed(err, d)
		if !sleep(d, l.closed) {
			return nil, net.ErrClosed
		}
	}
}

// Close closes the listener and wakes an Accept that is pausing.
func (l *Listener) Close() error {
	l.closeOnce.Do(func() { close(l.closed) })
	return l.Listener.Close()
}

// Unwrap returns the wrapped listener.
func (l *Listener) Unwrap() net.Listener { return l.Listener }

// Failures counts the temporary errors Accept has survived.
func (l *Listener) Failures() int64 { return l.failures.Load() }

func (l *Listener) failed(err error, pause time.Duration) {
	l.failures.Add(1)
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.streak == 0 {
		l.since = now
	}
	l.streak++
	l.lastErr = err
	if l.streak > 1 && now.Sub(l.logged) < logInterval {
		return
	}
	l.logged = now
	l.log.Warn("accept failed, retrying", "listener", l.cfg.Name, "err", err,
		"failures_in_a_row", l.streak, "failing_for", now.Sub(l.since).Round(time.Millisecond).String(), "retry_in", pause.String())
}

func (l *Listener) recovered() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.streak == 0 {
		return
	}
	l.log.Warn("accept recovered", "listener", l.cfg.Name, "failures", l.streak,
		"failed_for", time.Since(l.since).Round(time.Millisecond).String(), "last_err", l.lastErr)
	l.streak, l.lastErr = 0, nil
}

// Temporary reports whether err from Accept (or ReadFrom) leaves the socket
// usable, so that retrying later can succeed: running out of descriptors
// (EMFILE, ENFILE), memory or buffers (ENOMEM, ENOBUFS), a connection
// aborted or reset before it was accepted (ECONNABORTED, ECONNRESET, EPROTO),
// an interrupted call (EINTR, EAGAIN), a deadline, or an error that says so
// itself with a Temporary method (a listener from another package). A
// closed listener is never temporary.
func Temporary(err error) bool {
	if err == nil || errors.Is(err, net.ErrClosed) {
		return false
	}
	for _, e := range temporaryErrnos {
		if errors.Is(err, e) {
			return true
		}
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	var te interface{ Temporary() bool }
	return errors.As(err, &te) && te.Temporary()
}

var temporaryErrnos = []error{
	syscall.EMFILE, syscall.ENFILE, syscall.ENOMEM, syscall.ENOBUFS,
	syscall.ECONNABORTED, syscall.ECONNRESET, syscall.EPROTO,
	syscall.EINTR, syscall.EAGAIN, syscall.ETIMEDOUT,
}

// Backoff is the pause between retries: Min, doubling on each Next up to
// Max. The zero value uses DefaultMinDelay and DefaultMaxDelay. It is not
// safe for concurrent use.
type Backoff struct {
	Min, Max time.Duration
	cur      time.Duration
}

// Next returns the next pause.
func (b *Backoff) Next() time.Duration {
	lo, hi := b.Min, b.Max
	if lo <= 0 {
		lo = DefaultMinDelay
	}
	if hi <= 0 {
		hi = DefaultMaxDelay
	}
	b.cur = min(max(2*b.cur, lo), hi)
	return b.cur
}

// Reset starts the doubling again from Min.
func (b *Backoff) Reset() { b.cur = 0 }

// Wait pauses for Next, or until done is closed; it reports whether the
// pause ran to its end.
func (b *Backoff) Wait(done <-chan struct{}) bool { return sleep(b.Next(), done) }

func sleep(d time.Duration, done <-chan struct{}) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-done:
		return false
	case <-t.C:
		return true
	}
}
