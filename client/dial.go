package client

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/pinwall/pinwall/failure"
	"github.com/pinwall/pinwall/tunnel"
)

// Route says where a flow goes.
type Route string

// Routes.
const (
	RouteTunnel Route = "tunnel"
	RouteDirect Route = "direct"
)

// Steer decides the route of a flow to host:port and explains why.
func (c *Client) Steer(host string, port uint16) (Route, string) {
	steeredPort := false
	for _, p := range c.cfg.Steering.Ports {
		if p == port {
			steeredPort = true
			break
		}
	}
	if !steeredPort {
		return RouteDirect, fmt.Sprintf("port %d is not steered", port)
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		for _, p := range c.cfg.Steering.ExceptCIDRs {
			if p.Contains(ip.Unmap()) {
				return RouteDirect, "exception " + p.String()
			}
		}
		return RouteTunnel, "steered"
	}
	name := strings.ToLower(strings.TrimSuffix(host, "."))
	for _, d := range c.cfg.Steering.ExceptDomains {
		d = strings.ToLower(strings.TrimSuffix(d, "."))
		if suffix, ok := strings.CutPrefix(d, "*."); ok {
			if strings.HasSuffix(name, "."+suffix) {
				return RouteDirect, "exception " + d
			}
		} else if name == d {
			return RouteDirect, "exception " + d
		}
	}
	return RouteTunnel, "steered"
}

// steerResolved is Steer, also applying the CIDR exceptions to a name's
// address as the client's own resolver answers it (a packet-level client
// sees the destination IP after DNS). A name that does not resolve is
// steered: the gateway resolves names itself.
func (c *Client) steerResolved(ctx context.Context, host string, port uint16) (Route, string) {
	route, why := c.Steer(host, port)
	if route == RouteDirect || len(c.cfg.Steering.ExceptCIDRs) == 0 {
		return route, why
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return route, why
	}
	rctx, cancel := context.WithTimeout(ctx, c.cfg.DialTimeout)
	defer cancel()
	ip, err := c.resolveOne(rctx, host)
	if err != nil {
		return route, why
	}
	for _, p := range c.cfg.Steering.ExceptCIDRs {
		if p.Contains(ip.Unmap()) {
			return RouteDirect, fmt.Sprintf("exception %s (%s resolves to %s)", p, host, ip)
		}
	}
	return route, why
}

// Conn is a flow the client opened. Route says whether it went through the
// tunnel; Origin is the address the gateway (or the laptop, direct) reached.
type Conn struct {
	net.Conn
	Route     Route
	Transport tunnel.Transport
	TunnelID  string
	// Gateway names the gateway whose tunnel carries the flow.
	Gateway string
	FlowID  uint64
	// Reopened counts the times the flow was opened again, transparently,
	// because a tunnel broke before the gateway acknowledged it.
	Reopened int
	sess     tunnel.Session // the carrying tunnel, nil for a direct flow
	Origin   netip.AddrPort
	// Why explains the route: "steered", a steering exception, or
	// "fail-open" for a steered flow sent direct because no tunnel was up.
	Why    string
	remote net.Addr
}

// TunnelEnded waits until the tunnel carrying the flow has ended, or ctx
// ends, and returns why it ended (nil while it lives, and for a direct
// flow). An application whose flow broke asks it to tell a tunnel that
// went down from a failure of the flow itself: the error it saw is often
// only a symptom (an HTTP/2 connection "could not be established").
func (c *Conn) TunnelEnded(ctx context.Context) error {
	if c.sess == nil {
		return nil
	}
	select {
	case <-c.sess.Done():
		if err := c.sess.Err(); err != nil {
			return err
		}
		return tunnel.ErrSessionClosed
	case <-ctx.Done():
		return nil
	}
}

// RemoteAddr is the destination as the application asked for it.
func (c *Conn) RemoteAddr() net.Addr { return c.remote }

// CloseWrite half-closes the flow.
func (c *Conn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Conn.Close()
}

type destAddr struct{ s string }

func (d destAddr) Network() string { return "tcp" }
func (d destAddr) String() string  { return d.s }

// Dial opens a flow to address ("host:port") over "tcp". Steered flows go
// into the tunnel (or follow the fail mode when none is up); the others go
// direct. The returned net.Conn is a *Conn.
func (c *Client) Dial(ctx context.Context, network, address string) (net.Conn, error) {
	if network != "tcp" && network != "tcp4" {
		return nil, fmt.Errorf("client: network %q: only tcp flows are carried", network)
	}
	host, portStr, err := net.SplitHostPort(address)
	if err != nil {
		return nil, fmt.Errorf("client: dial %q: %w", address, err)
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil || port == 0 {
		return nil, fmt.Errorf("client: dial %q: bad port", address)
	}
	if c.ctx.Err() != nil {
		return nil, failure.New(failure.LegClientGateway, failure.CauseClosed, "dial", address, ErrClosed)
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.TunnelWait+c.cfg.DialTimeout)
	defer cancel()
	if route, why := c.steerResolved(ctx, host, uint16(port)); route == RouteDirect {
		return c.dialDirect(ctx, host, uint16(port), address, why)
	}
	reopened := 0
	var lastErr error
	for {
		a, err := c.waitSession(ctx)
		if err != nil {
			if lastErr != nil {
				// The flow was tried and no tunnel came back for it: say
				// what broke the try, not only that none is up now.
				err = lastErr
			}
			if c.cfg.FailMode == FailOpen && c.ctx.Err() == nil {
				return c.dialDirect(ctx, host, uint16(port), address, "fail-open")
			}
			c.refused.Add(1)
			return nil, err
		}
		conn, acked, err := c.openFlow(ctx, a, host, uint16(port), address)
		if err == nil {
			conn.Reopened = reopened
			return conn, nil
		}
		if acked || ctx.Err() != nil || c.ctx.Err() != nil {
			return nil, err
		}
		// The gateway never acknowledged the flow (its tunnel broke, or
		// said nothing in time): nothing of it reached the application or
		// the origin's data, so it is opened again on whichever tunnel is
		// up — the replacement, on the backup gateway if the primary died.
		// A broken tunnel is left a moment to be noticed first.
		lastErr = err
		reopened++
		c.reopened.Add(1)
		c.cfg.Logger.Info("client: flow not acknowledged, opening it again", "addr", address, "tunnel", a.tunnelID, "err", err)
		t := time.NewTimer(reopenPause)
		select {
		case <-a.sess.Done():
		case <-t.C:
		case <-ctx.Done():
		case <-c.ctx.Done():
		}
		t.Stop()
	}
}

// reopenPause bounds the wait, before a flow is opened again, for the
// tunnel that failed to acknowledge it to be declared dead.
const reopenPause = 100 * time.Millisecond

// waitSession returns a live tunnel, waiting up to TunnelWait for one.
func (c *Client) waitSession(ctx context.Context) (*attempt, error) {
	wait := time.NewTimer(c.cfg.TunnelWait)
	defer wait.Stop()
	for {
		c.mu.Lock()
		a := c.anyUpLocked()
		ch := c.changed
		last := c.lastErr
		c.mu.Unlock()
		if a != nil {
			return a, nil
		}
		var cause error = errors.New("no tunnel is up")
		if last != nil {
			cause = fmt.Errorf("no tunnel is up; last attempt: %w", last)
		}
		select {
		case <-ch:
		case <-wait.C:
			return nil, failure.New(failure.LegClientGateway, failure.CauseTunnelDown, "dial", "", cause)
		case <-ctx.Done():
			return nil, failure.New(failure.LegClientGateway, failure.CauseTunnelDown, "dial", "", cause)
		case <-c.ctx.Done():
			return nil, failure.New(failure.LegClientGateway, failure.CauseClosed, "dial", "", ErrClosed)
		}
	}
}

// openFlow opens one flow on a tunnel: a stream, the request, the
// gateway's reply. acked reports that the reply came (whatever it said);
// until then nothing of the flow has reached the application, so a
// failure may be retried elsewhere.
func (c *Client) openFlow(ctx context.Context, a *attempt, host string, port uint16, address string) (_ *Conn, acked bool, _ error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.DialTimeout)
	defer cancel()
	st, err := a.sess.Open(ctx)
	if err != nil {
		return nil, false, failure.New(failure.LegClientGateway, failure.CauseTunnelDown, "open stream", address, err)
	}
	id := c.flowID.Add(1)
	req, err := tunnel.AppendRequest(nil, tunnel.Request{Host: host, Port: port, FlowID: id})
	if err != nil {
		st.Close()
		return nil, true, fmt.Errorf("client: dial %q: %w", address, err) // not the tunnel's doing: no retry
	}
	stop := context.AfterFunc(ctx, func() { _ = st.SetDeadline(time.Now()) })
	defer stop()
	if _, err := st.Write(req); err != nil {
		st.Close()
		return nil, false, c.flowErr("send request", address, err, ctx)
	}
	reply, err := tunnel.ReadReply(st)
	if err != nil {
		st.Close()
		return nil, false, c.flowErr("read reply", address, err, ctx)
	}
	if err := reply.Err(address); err != nil {
		st.Close()
		return nil, true, err
	}
	if !stop() {
		st.Close()
		return nil, true, failure.New(failure.LegClientGateway, failure.CauseTimeout, "open flow", address, ctx.Err())
	}
	_ = st.SetDeadline(time.Time{})
	c.tunnelled.Add(1)
	return &Conn{Conn: st, Route: RouteTunnel, Transport: a.transport, TunnelID: a.tunnelID, Gateway: a.gateway, FlowID: id, Origin: reply.Addr, Why: "steered", remote: destAddr{address}, sess: a.sess}, true, nil
}

func (c *Client) flowErr(op, address string, err error, ctx context.Context) error {
	cause := failure.Classify(err)
	switch {
	case ctx.Err() != nil:
		cause = failure.CauseTimeout
	case cause == failure.CauseNone || cause == failure.CauseClosed:
		cause = failure.CauseConnectionReset
	}
	return failure.New(failure.LegClientGateway, cause, op, address, err)
}

// dialDirect resolves with the client's resolver and connects through the
// laptop's network, bypassing the tunnel.
func (c *Client) dialDirect(ctx context.Context, host string, port uint16, address, why string) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.DialTimeout)
	defer cancel()
	ip, err := c.resolveOne(ctx, host)
	if err != nil {
		return nil, failure.New(failure.LegClientOrigin, failure.CauseDNS, "resolve", host, err)
	}
	dst := netip.AddrPortFrom(ip, port)
	conn, err := c.cfg.Stack.DialContext(ctx, "tcp", dst.String())
	if err != nil {
		cause := failure.Classify(err)
		if cause == failure.CauseNone {
			cause = failure.CauseConnectionRefused
		}
		return nil, failure.New(failure.LegClientOrigin, cause, "dial direct", address, err)
	}
	c.direct.Add(1)
	return &Conn{Conn: conn, Route: RouteDirect, Origin: dst, Why: why, remote: destAddr{address}}, nil
}
