package gateway

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pinwall/pinwall/failure"
	"github.com/pinwall/pinwall/relay"
	"github.com/pinwall/pinwall/tunnel"
)

// relayBuffer is the copy buffer between a tunnel stream and its origin:
// large writes into a stream become large frames (measured by make bench:
// the TLS tunnel's one-flow throughput rose from about 0.5x to 0.7-0.8x of
// raw TLS going from 32 KiB to 256 KiB; 1 MiB was slower again).
const relayBuffer = 256 << 10

// tunnelState is one live tunnel and its flows.
type tunnelState struct {
	g      *Gateway
	id     string
	tr     tunnel.Transport
	sess   tunnel.Session
	device *Identity
	client string
	local  string

	wg     sync.WaitGroup
	active atomic.Int64
	flows  atomic.Int64
}

// serve accepts streams until the session ends and returns why it ended.
func (t *tunnelState) serve() string {
	ctx, cancel := context.WithCancel(t.g.ctx)
	defer cancel()
	stop := context.AfterFunc(ctx, func() { t.sess.Close() })
	defer stop()
	defer t.wg.Wait()
	defer t.sess.Close()
	for {
		st, err := t.sess.Accept(ctx)
		if err != nil {
			if t.g.ctx.Err() != nil {
				return "gateway shutting down"
			}
			if serr := t.sess.Err(); serr != nil {
				return serr.Error()
			}
			return err.Error()
		}
		t.g.flows.Add(1)
		if n := t.active.Add(1); n > int64(t.g.cfg.MaxStreams) {
			t.active.Add(-1)
			t.wg.Add(1)
			go func() {
				defer t.wg.Done()
				defer t.g.flows.Add(-1)
				t.refuseStream(st, tunnel.StatusStreamLimit, fmt.Sprintf("tunnel carries %d flows (limit %d)", n-1, t.g.cfg.MaxStreams))
			}()
			continue
		}
		t.wg.Add(1)
		go func() {
			defer t.wg.Done()
			defer t.g.flows.Add(-1)
			defer t.active.Add(-1)
			t.serveFlow(ctx, st)
		}()
	}
}

func (t *tunnelState) refuseStream(st tunnel.Stream, status tunnel.Status, reason string) {
	defer st.Close()
	_ = st.SetWriteDeadline(time.Now().Add(t.g.cfg.HeaderTimeout))
	_, _ = st.Write(tunnel.AppendReply(nil, tunnel.Reply{Status: status, Message: reason}))
	t.g.event(Event{Event: EventStreamRefused, TunnelID: t.id, Transport: string(t.tr), Client: t.client, Device: t.device,
		StreamID: st.ID(), Result: status.String(), Reason: reason, Cause: status.Cause()})
}

// serveFlow reads one stream's Request, dials the origin and relays.
func (t *tunnelState) serveFlow(ctx context.Context, st tunnel.Stream) {
	start := time.Now()
	_ = st.SetReadDeadline(start.Add(t.g.cfg.HeaderTimeout))
	req, err := tunnel.ReadRequest(st)
	if err != nil {
		t.refuseStream(st, tunnel.StatusBadRequest, "bad stream header: "+err.Error())
		return
	}
	_ = st.SetReadDeadline(time.Time{})
	t.flows.Add(1)
	ev := Event{Event: EventFlow, TunnelID: t.id, Transport: string(t.tr), Client: t.client, Device: t.device,
		FlowID: req.FlowID, StreamID: st.ID(), Host: req.Host, Port: req.Port}

	origin, err := t.dial(ctx, req)
	if err != nil && ctx.Err() != nil {
		// The tunnel or the gateway is closing: that is no verdict on the
		// origin, and a reply would make the client blame it. The stream
		// ends with the tunnel.
		st.Close()
		ev.Result, ev.Error = ResultTunnelClosed, err.Error()
		ev.DurationMS = time.Since(start).Milliseconds()
		t.g.event(ev)
		return
	}
	if err != nil {
		status := tunnel.StatusFor(failure.Classify(err))
		_, _ = st.Write(tunnel.AppendReply(nil, tunnel.Reply{Status: status, Message: err.Error()}))
		st.Close()
		ev.Result, ev.Error = status.String(), err.Error()
		ev.DurationMS = time.Since(start).Milliseconds()
		t.g.event(ev)
		return
	}
	ev.Origin = origin.RemoteAddr().String()
	reply := tunnel.Reply{Status: tunnel.StatusOK}
	if ap, ok := origin.RemoteAddr().(*net.TCPAddr); ok {
		reply.Addr = ap.AddrPort()
	}
	if _, err := st.Write(tunnel.AppendReply(nil, reply)); err != nil {
		origin.Close()
		st.Close()
		ev.Result, ev.Error = ResultClientGone, err.Error()
		t.g.event(ev)
		return
	}
	res := relay.PipeBuffered(ctx, st, origin, relayBuffer)
	ev.BytesUp, ev.BytesDown = res.Up, res.Down
	ev.DurationMS = time.Since(start).Milliseconds()
	ev.Result = ResultOK
	if err := res.Err(); err != nil && !errors.Is(err, context.Canceled) {
		ev.Result = ResultError
		ev.Error = err.Error()
	} else if errors.Is(err, context.Canceled) {
		ev.Result = ResultTunnelClosed
	}
	t.g.event(ev)
}

// dial resolves the destination with the gateway's resolver and connects,
// trying each address in turn within DialTimeout.
func (t *tunnelState) dial(ctx context.Context, req tunnel.Request) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, t.g.cfg.DialTimeout)
	defer cancel()
	ans, err := t.g.cfg.Resolver.Lookup(ctx, req.Host)
	if err != nil {
		return nil, failure.New(failure.LegGatewayOrigin, failure.CauseDNS, "resolve", req.Host, err)
	}
	var last error
	for _, ip := range ans.Addrs {
		addr := net.JoinHostPort(ip.String(), strconv.Itoa(int(req.Port)))
		c, err := t.g.cfg.Stack.DialContext(ctx, "tcp", addr)
		if err == nil {
			return c, nil
		}
		last = err
	}
	if last == nil {
		return nil, failure.New(failure.LegGatewayOrigin, failure.CauseDNS, "resolve", req.Host, errors.New("no addresses"))
	}
	cause := failure.Classify(last)
	if cause == failure.CauseNone || cause == failure.CauseClosed {
		cause = failure.CauseConnectionRefused
	}
	return nil, failure.New(failure.LegGatewayOrigin, cause, "dial origin", req.Destination(), last)
}
