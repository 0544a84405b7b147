package client

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pinwall/pinwall/failure"
	"github.com/pinwall/pinwall/resolve"
	"github.com/pinwall/pinwall/tunnel"
)

// Client is a running endpoint agent. Create it with New, start it with
// Start, stop it with Close.
type Client struct {
	cfg Config

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	// stopping is closed by Shutdown: no new tunnel attempt starts.
	stopping chan struct{}
	stopOnce sync.Once

	mu        sync.Mutex
	slots     []*slot
	history   []Transition
	lastErr   error
	stickyTLS bool
	fallback  *Transition
	changed   chan struct{} // closed and replaced whenever a slot goes up or down
	started   bool
	stopWatch func() bool // stops Start's watch on its context

	flowID    atomic.Uint64
	tunnelled atomic.Int64
	direct    atomic.Int64
	refused   atomic.Int64
	reopened  atomic.Int64
	closeOnce sync.Once
}

// slot is one tunnel the client keeps.
type slot struct {
	index int
	up    *attempt
	since time.Time
}

// Events of the client's history (Transition.Event).
const (
	// EventUp: a tunnel came up.
	EventUp = "up"
	// EventDown: a tunnel that was up was lost.
	EventDown = "down"
	// EventAttemptFailed: an attempt to bring a tunnel up failed.
	EventAttemptFailed = "attempt-failed"
	// EventFallback: DTLS went unanswered; the client falls back to TLS.
	EventFallback = "fallback"
	// EventFailover: the client moves on to the next gateway.
	EventFailover = "failover"
)

// Transition is one entry of the client's history.
type Transition struct {
	Time      time.Time        `json:"time"`
	Event     string           `json:"event"` // EventUp, EventDown, ...
	Session   int              `json:"session"`
	Gateway   string           `json:"gateway,omitempty"`
	Addr      string           `json:"addr,omitempty"`
	Transport tunnel.Transport `json:"transport,omitempty"`
	TunnelID  string           `json:"tunnel_id,omitempty"`
	Leg       failure.Leg      `json:"leg,omitempty"`
	Cause     failure.Cause    `json:"cause,omitempty"`
	Error     string           `json:"error,omitempty"`
	TookMS    int64            `json:"took_ms,omitempty"`
	// Via is the upstream proxy a TLS attempt went through, "" when it
	// went straight to the gateway (DTLS always does).
	Via string `json:"via,omitempty"`
	// Handshake is what the client saw of a failed attempt's handshake
	// (the chain presented, the certificate request, the alert), when it
	// got that far: the facts its leg and cause rest on.
	Handshake *failure.Handshake `json:"handshake,omitempty"`
}

// State summarises the client now.
type State struct {
	Up        bool             `json:"up"`
	Transport tunnel.Transport `json:"transport,omitempty"`
	Gateway   string           `json:"gateway,omitempty"`
	Addr      string           `json:"addr,omitempty"`
	TunnelID  string           `json:"tunnel_id,omitempty"`
	// Via is the upstream proxy the tunnel goes through, "" when it goes
	// straight to the gateway.
	Via   string    `json:"via,omitempty"`
	Since time.Time `json:"since,omitzero"`
	// Fallback explains why the client is on TLS in auto mode.
	Fallback *Transition `json:"fallback,omitempty"`
	// LastError is the most recent establishment failure.
	LastError string `json:"last_error,omitempty"`
	// Flows counts flows by path.
	Tunnelled int64 `json:"tunnelled"`
	Direct    int64 `json:"direct"`
	Refused   int64 `json:"refused"`
	// Reopened counts flows opened again because a tunnel broke before
	// the gateway acknowledged them.
	Reopened int64 `json:"reopened,omitempty"`
}

// New validates cfg and returns a Client that is not yet running.
func New(cfg Config) (*Client, error) {
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("client: config: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &Client{cfg: cfg, ctx: ctx, cancel: cancel, changed: make(chan struct{}), stopping: make(chan struct{})}
	for i := 0; i < cfg.Sessions; i++ {
		c.slots = append(c.slots, &slot{index: i})
	}
	return c, nil
}

// Config returns the validated configuration (defaults filled in).
func (c *Client) Config() Config { return c.cfg }

// Start brings the tunnels up in the background. It returns at once; use
// WaitUp to wait for the first tunnel. ctx is the client's lifetime: when
// it is done the client closes as if Close were called. Start may be
// called once.
func (c *Client) Start(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.started {
		return errors.New("client: already started")
	}
	if c.ctx.Err() != nil {
		return errors.New("client: closed")
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("client: start: %w", err)
	}
	c.started = true
	c.stopWatch = context.AfterFunc(ctx, func() { _ = c.Close() })
	for _, s := range c.slots {
		c.wg.Add(1)
		go c.keep(s)
	}
	return nil
}

// Close tears the tunnels down and waits for the client's goroutines. It is
// idempotent and safe before Start.
func (c *Client) Close() error {
	c.closeOnce.Do(func() {
		c.cancel()
		c.mu.Lock()
		if c.stopWatch != nil {
			c.stopWatch()
		}
		for _, s := range c.slots {
			if s.up != nil {
				s.up.sess.Close()
			}
		}
		c.mu.Unlock()
		c.wg.Wait()
	})
	return nil
}

// Settle waits until no tunnel holds a stream its gateway has not closed
// too (tunnel.Session.Unsettled): the last bytes of the flows the
// applications have finished, an origin's close_notify say, have reached
// the client, so that closing the tunnel next cuts none of them at the
// gateway. A flow still open keeps Settle waiting; it gives up, returning
// ctx's error, when ctx ends.
func (c *Client) Settle(ctx context.Context) error {
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		n := 0
		c.mu.Lock()
		for _, s := range c.slots {
			if s.up != nil {
				n += s.up.sess.Unsettled()
			}
		}
		c.mu.Unlock()
		if n == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("client: %d tunnel streams not closed by the gateway: %w", n, ctx.Err())
		case <-tick.C:
		}
	}
}

// Shutdown stops the client gracefully: no new tunnel attempt starts, an
// attempt in flight is allowed to finish (so that the firewall and the
// gateway see it end on its own terms, not cut short by the shutdown), and
// then Close tears everything down. A DTLS attempt nothing has answered yet
// ends at once: it has nothing left to finish. When ctx ends first, Close cuts the
// attempt short and Shutdown returns ctx's error. It is safe to call with
// or after Close.
func (c *Client) Shutdown(ctx context.Context) error {
	c.stopOnce.Do(func() { close(c.stopping) })
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.wg.Wait()
	}()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = ctx.Err()
	}
	c.Close()
	<-done
	return err
}

// stopped reports whether Close or Shutdown has begun.
func (c *Client) stopped() bool {
	select {
	case <-c.stopping:
		return true
	default:
		return c.ctx.Err() != nil
	}
}

// ResetTransport forgets a fallback to TLS, as after a network change: the
// next connection attempt tries DTLS again.
func (c *Client) ResetTransport() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stickyTLS = false
	c.fallback = nil
}

// State returns the client's current state.
func (c *Client) State() State {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := State{Tunnelled: c.tunnelled.Load(), Direct: c.direct.Load(), Refused: c.refused.Load(), Reopened: c.reopened.Load()}
	for _, s := range c.slots {
		if s.up != nil {
			st.Up = true
			st.Transport = s.up.transport
			st.Gateway = s.up.gateway
			st.Addr = s.up.addr.String()
			st.TunnelID = s.up.tunnelID
			st.Via = s.up.via
			st.Since = s.since
			break
		}
	}
	if c.fallback != nil {
		fb := *c.fallback
		st.Fallback = &fb
	}
	if c.lastErr != nil {
		st.LastError = c.lastErr.Error()
	}
	return st
}

// History returns every transition so far, oldest first.
func (c *Client) History() []Transition {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Transition(nil), c.history...)
}

// LastError returns the most recent establishment failure, typed.
func (c *Client) LastError() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lastErr
}

// WaitUp waits until a tunnel is up, ctx ends or the client closes. On
// failure it returns the last establishment error (a *failure.Error) if any.
func (c *Client) WaitUp(ctx context.Context) (State, error) {
	for {
		c.mu.Lock()
		ch := c.changed
		up := c.anyUpLocked() != nil
		last := c.lastErr
		c.mu.Unlock()
		if up {
			return c.State(), nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			if last != nil {
				return c.State(), last
			}
			return c.State(), failure.New(failure.LegClientGateway, failure.CauseTunnelDown, "wait for tunnel", "", ctx.Err())
		case <-c.ctx.Done():
			return c.State(), failure.New(failure.LegClientGateway, failure.CauseClosed, "wait for tunnel", "", ErrClosed)
		}
	}
}

// WaitOutcome waits until a tunnel is up or an attempt has failed since the
// call, whichever comes first, and returns the state and that failure. It
// measures single attempts (a laptop reconnecting) without waiting for
// retries.
func (c *Client) WaitOutcome(ctx context.Context) (State, error) {
	c.mu.Lock()
	seen := len(c.history)
	c.mu.Unlock()
	for {
		c.mu.Lock()
		ch := c.changed
		up := c.anyUpLocked() != nil
		var failed error
		for _, h := range c.history[min(seen, len(c.history)):] {
			if h.Event == EventAttemptFailed {
				failed = c.lastErr
			}
		}
		c.mu.Unlock()
		if up {
			return c.State(), nil
		}
		if failed != nil {
			return c.State(), failed
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return c.State(), failure.New(failure.LegClientGateway, failure.CauseTunnelDown, "wait for tunnel", "", ctx.Err())
		case <-c.ctx.Done():
			return c.State(), failure.New(failure.LegClientGateway, failure.CauseClosed, "wait for tunnel", "", ErrClosed)
		}
	}
}

// Changed returns a channel that is closed at the client's next change: a
// tunnel up or down, or a failed attempt. Callers that decide from the
// client's state wait on it instead of polling; take a new channel after
// each change.
func (c *Client) Changed() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.changed
}

// ErrClosed is returned by a closed Client.
var ErrClosed = errors.New("client: closed")

func (c *Client) anyUpLocked() *attempt {
	var best *attempt
	for _, s := range c.slots {
		if s.up == nil {
			continue
		}
		select {
		case <-s.up.sess.Done():
			continue // dead, about to be replaced
		default:
		}
		if best == nil || s.up.sess.NumStreams() < best.sess.NumStreams() {
			best = s.up
		}
	}
	return best
}

func (c *Client) record(t Transition) {
	t.Time = c.cfg.Now()
	c.history = append(c.history, t)
	c.cfg.Logger.Info("client: "+t.Event, "session", t.Session, "gateway", t.Gateway, "addr", t.Addr,
		"transport", t.Transport, "cause", t.Cause, "err", t.Error)
}

func (c *Client) notifyLocked() {
	close(c.changed)
	c.changed = make(chan struct{})
}

// keep maintains one tunnel slot until the client closes.
func (c *Client) keep(s *slot) {
	defer c.wg.Done()
	backoff := c.cfg.BackoffMin
	for !c.stopped() {
		a := c.establish(s)
		if a == nil {
			// Every gateway failed this round.
			if !c.sleep(jitter(backoff)) {
				return
			}
			backoff = min(backoff*2, c.cfg.BackoffMax)
			continue
		}
		backoff = c.cfg.BackoffMin
		c.mu.Lock()
		s.up, s.since = a, c.cfg.Now()
		c.record(Transition{Event: EventUp, Session: s.index, Gateway: a.gateway, Addr: a.addr.String(), Transport: a.transport, TunnelID: a.tunnelID, TookMS: a.took.Milliseconds(), Via: a.via})
		c.notifyLocked()
		c.mu.Unlock()

		select {
		case <-a.sess.Done():
		case <-c.ctx.Done():
		case <-c.stopping:
		}
		a.sess.Close()
		c.mu.Lock()
		s.up = nil
		if !c.stopped() {
			errText := ""
			if err := a.sess.Err(); err != nil {
				errText = err.Error()
			}
			c.record(Transition{Event: EventDown, Session: s.index, Gateway: a.gateway, Addr: a.addr.String(), Transport: a.transport, TunnelID: a.tunnelID, Cause: failure.CauseConnectionReset, Leg: failure.LegClientGateway, Error: errText})
		}
		c.notifyLocked()
		c.mu.Unlock()
	}
}

func (c *Client) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-c.ctx.Done():
		return false
	case <-c.stopping:
		return false
	}
}

func jitter(d time.Duration) time.Duration {
	return d/2 + time.Duration(rand.Int64N(int64(d/2)+1))
}

// establish tries each gateway in order, AttemptsPerGateway times each, and
// returns the first tunnel up, or nil.
func (c *Client) establish(s *slot) *attempt {
	for gi, gw := range c.cfg.Gateways {
		if c.stopped() {
			return nil
		}
		if gi > 0 {
			c.mu.Lock()
			c.record(Transition{Event: EventFailover, Session: s.index, Gateway: gw})
			c.mu.Unlock()
		}
		for try := 0; try < c.cfg.AttemptsPerGateway; try++ {
			if c.stopped() {
				return nil
			}
			if try > 0 && !c.sleep(jitter(c.cfg.BackoffMin)) {
				return nil
			}
			a := c.connect(s, gw)
			if a.err == nil {
				return a
			}
		}
	}
	return nil
}

// connect makes one attempt at one gateway: DTLS first in auto mode (unless
// fallen back), then TLS.
func (c *Client) connect(s *slot, gw string) (last *attempt) {
	start := time.Now()
	addr, err := c.resolveGateway(gw)
	if err != nil {
		a := &attempt{gateway: gw, err: failure.New(failure.LegClientGateway, failure.CauseDNS, "resolve gateway", gw, err)}
		c.failed(s, a)
		return a
	}
	c.mu.Lock()
	mode := c.cfg.Transport
	sticky := c.stickyTLS
	c.mu.Unlock()

	if mode == TransportDTLS || (mode == TransportAuto && !sticky) {
		timeout := c.cfg.HandshakeTimeout
		if mode == TransportAuto {
			timeout = c.cfg.FallbackTimeout
		}
		sess, id, seen, err := c.connectDTLS(c.ctx, gw, addr, timeout)
		a := &attempt{gateway: gw, addr: addr, transport: tunnel.TransportDTLS, sess: sess, tunnelID: id, seen: seen, err: err, took: time.Since(start)}
		if err == nil || mode == TransportDTLS || c.stopped() {
			if err != nil {
				c.failed(s, a)
			}
			return a
		}
		c.failed(s, a)
		c.mu.Lock()
		fb := Transition{Event: EventFallback, Session: s.index, Gateway: gw, Addr: addr.String(), Transport: tunnel.TransportTLS,
			Leg: failure.LegOf(err), Cause: failure.CauseOf(err), Error: err.Error(), TookMS: time.Since(start).Milliseconds()}
		c.record(fb)
		c.mu.Unlock()
		defer func() {
			// DTLS failed where TLS works: a UDP path problem. Stay on TLS
			// until the network changes. If TLS fails too, the gateway is
			// the problem and DTLS stays first in line.
			if a := last; a != nil && a.err == nil {
				c.mu.Lock()
				c.stickyTLS = true
				c.fallback = &fb
				c.mu.Unlock()
			}
		}()
	}
	sess, id, seen, err := c.connectTLS(c.ctx, gw, addr)
	last = &attempt{gateway: gw, addr: addr, transport: tunnel.TransportTLS, sess: sess, tunnelID: id, seen: seen, err: err, took: time.Since(start), via: c.via(tunnel.TransportTLS)}
	if err != nil {
		c.failed(s, last)
	}
	return last
}

func (c *Client) failed(s *slot, a *attempt) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ctx.Err() != nil {
		return
	}
	c.lastErr = a.err
	t := Transition{Event: EventAttemptFailed, Session: s.index, Gateway: a.gateway, Transport: a.transport, Leg: failure.LegOf(a.err), Cause: failure.CauseOf(a.err), Error: a.err.Error(), TookMS: a.took.Milliseconds(),
		Handshake: a.seen, Via: a.via}
	if a.addr.IsValid() {
		t.Addr = a.addr.String()
	}
	c.record(t)
	c.notifyLocked()
}

// resolveGateway asks the client's own resolver and takes the first address
// of the answer (a GSLB rotates its answers).
func (c *Client) resolveGateway(name string) (netip.AddrPort, error) {
	ctx, cancel := context.WithTimeout(c.ctx, c.cfg.HandshakeTimeout)
	defer cancel()
	ip, err := c.resolveOne(ctx, name)
	if err != nil {
		return netip.AddrPort{}, err
	}
	return netip.AddrPortFrom(ip, c.cfg.Port), nil
}

func (c *Client) resolveOne(ctx context.Context, host string) (netip.Addr, error) {
	return resolve.Addr(ctx, c.cfg.Resolver, host)
}
