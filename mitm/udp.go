package mitm

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pinwall/pinwall/accept"
	"github.com/pinwall/pinwall/hostnet"
	"github.com/pinwall/pinwall/mitm/clienthello"
	"github.com/pinwall/pinwall/mitm/fwlog"
	"github.com/pinwall/pinwall/mitm/policy"
)

type flowKey struct{ src, dst netip.AddrPort }

// udpSocket is where an engine's datagrams come from and how its answers
// reach the clients: a PROXY-v2 intercept socket (ServeUDPIntercept) or a
// TPROXY socket (ServeUDPTransparent).
type udpSocket interface {
	// readFlow reads the next datagram into buf and returns its flow, its
	// payload (a slice of buf) and the address it came from. An error
	// wrapping errBadDatagram drops the datagram; any other error is the
	// socket's.
	readFlow(buf []byte) (key flowKey, payload []byte, from net.Addr, err error)
	// answerer returns how to send answers to the client of key, as if
	// from key.dst (from is where the flow's first datagram came from),
	// and how to release what that needs.
	answerer(key flowKey, from net.Addr) (udpAnswerer, error)
}

// udpAnswerer sends a flow's answers to its client.
type udpAnswerer interface {
	send(b []byte) error
	close()
}

// errBadDatagram marks a datagram the socket could not attribute to a flow.
var errBadDatagram = errors.New("datagram dropped")

// proxySocket is ServeUDPIntercept's socket: every datagram starts with a
// PROXY v2 header, answers go back plain to where it came from.
type proxySocket struct{ pc net.PacketConn }

func (p proxySocket) readFlow(buf []byte) (flowKey, []byte, net.Addr, error) {
	n, from, err := p.pc.ReadFrom(buf)
	if err != nil {
		return flowKey{}, nil, nil, err
	}
	h, payload, err := hostnet.ParseProxyHeader(buf[:n])
	if err != nil {
		return flowKey{}, nil, from, fmt.Errorf("%w: %w", errBadDatagram, err)
	}
	if h.Proto != hostnet.ProtoUDP {
		return flowKey{}, nil, from, fmt.Errorf("%w: PROXY header for a stream on a datagram socket", errBadDatagram)
	}
	return flowKey{h.Src, h.Dst}, payload, from, nil
}

func (p proxySocket) answerer(_ flowKey, from net.Addr) (udpAnswerer, error) {
	return writeTo{p.pc, from}, nil
}

// writeTo answers through the shared socket.
type writeTo struct {
	pc net.PacketConn
	to net.Addr
}

func (w writeTo) send(b []byte) error {
	_, err := w.pc.WriteTo(b, w.to)
	return err
}

func (writeTo) close() {}

// udpFlow is one tracked UDP session.
type udpFlow struct {
	s       *session
	key     flowKey
	reply   udpAnswerer // nil when denied
	up      net.Conn    // nil when denied
	denied  bool
	last    atomic.Int64
	sent    atomic.Uint64
	rcvd    atomic.Uint64
	pktSent atomic.Uint64
	pktRcvd atomic.Uint64
	done    chan struct{}
}

// udpEngine tracks the flows arriving on one intercept socket.
type udpEngine struct {
	f    *Firewall
	sock udpSocket

	mu    sync.Mutex
	flows map[flowKey]*udpFlow
	wg    sync.WaitGroup
}

// ServeUDPIntercept serves datagrams that each start with a PROXY v2
// header naming their original source and destination (the in-process
// stand-in for TPROXY). Allowed flows are forwarded from the outside leg,
// answers go back to the client; denied flows are logged once and dropped.
// It returns when ctx is done, pc closes or the firewall does.
func (f *Firewall) ServeUDPIntercept(ctx context.Context, pc net.PacketConn) error {
	return f.serveUDP(ctx, pc, proxySocket{pc})
}

// serveUDP runs the flow engine on sock, whose underlying socket pc the
// firewall closes when it stops or ctx is done.
func (f *Firewall) serveUDP(ctx context.Context, pc net.PacketConn, sock udpSocket) error {
	f.mu.Lock()
	if f.ctx.Err() != nil {
		f.mu.Unlock()
		pc.Close()
		return net.ErrClosed
	}
	f.packets[pc] = struct{}{}
	// Counted under f.mu, as in trackConn, so that Close's Wait cannot
	// race with it.
	f.wg.Add(1)
	f.mu.Unlock()
	defer context.AfterFunc(ctx, func() { pc.Close() })()
	e := &udpEngine{f: f, sock: sock, flows: map[flowKey]*udpFlow{}}
	go func() {
		defer f.wg.Done()
		e.reap()
	}()
	defer e.closeAll()
	buf := make([]byte, 64<<10)
	var pause accept.Backoff
	for {
		key, payload, from, err := sock.readFlow(buf)
		if errors.Is(err, errBadDatagram) {
			f.cfg.Logger.Debug("mitm: dropped a datagram", "from", addrString(from), "err", err)
			continue
		}
		if err != nil {
			if f.ctx.Err() != nil || ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			// The socket stays usable after a read error; pause so that a
			// lasting one does not spin.
			f.cfg.Logger.Debug("mitm: udp read", "err", err)
			if !pause.Wait(f.ctx.Done()) {
				return nil
			}
			continue
		}
		pause.Reset()
		e.handle(key, payload, from)
	}
}

func addrString(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.String()
}

func (e *udpEngine) handle(key flowKey, payload []byte, from net.Addr) {
	f := e.f
	e.mu.Lock()
	fl, ok := e.flows[key]
	if !ok {
		if len(e.flows) >= f.cfg.MaxUDPFlows {
			e.mu.Unlock()
			f.refused.Add(1)
			return
		}
		fl = e.open(key, payload, from)
		e.flows[key] = fl
	}
	e.mu.Unlock()
	fl.last.Store(time.Now().UnixNano())
	fl.pktSent.Add(1)
	fl.sent.Add(uint64(len(payload)))
	if fl.denied || fl.up == nil {
		return
	}
	_, _ = fl.up.Write(payload)
}

// open creates a flow for its first datagram: classify, decide, and for an
// allowed flow connect from the outside leg and start answering.
func (e *udpEngine) open(key flowKey, first []byte, from net.Addr) *udpFlow {
	f := e.f
	s := f.newSession(origin{src: key.src, dst: key.dst}, fwlog.ProtoUDP)
	fl := &udpFlow{s: s, key: key, done: make(chan struct{})}
	app := clienthello.Classify(first)
	s.rec.App = fwlog.App(app)
	// The SNI of a DTLS hello is logged but not matched: SNI rules are
	// decryption rules for TLS over TCP, and UDP is allowed or blocked by
	// address, port and protocol (so an SNI bypass does not cover DTLS,
	// an IP-range one does).
	ps := policy.Session{Src: key.src, Dst: key.dst, Proto: policy.ProtoUDP, App: policy.App(app)}
	if app == clienthello.AppDTLS {
		if info, err := clienthello.ParseDTLS(first); err == nil {
			s.setHello(info)
		}
	}
	dec := f.engine.Decide(f.ctx, ps)
	s.rec.Rule, s.rec.RuleID = dec.RuleName, dec.Number()
	if dec.Action == policy.ActionBlock {
		fl.denied = true
		s.rec.Action, s.rec.EndReason = fwlog.ActionDeny, fwlog.EndPolicyDeny
		s.rec.App = fwlog.AppNotApplicable // PAN-OS logs denied-at-first-packet sessions so
		s.rec.BytesSent, s.rec.PacketsSent, s.rec.PacketsSource = uint64(len(first)), 1, "datagrams"
		// A deny is logged at once, as firewalls do; the flow is kept so
		// retransmissions do not log again.
		s.finish()
		return fl
	}
	if dec.Action == policy.ActionDecrypt || dec.Action == policy.ActionNoDecrypt {
		d := s.decryption()
		d.Outcome, d.ChainStatus = fwlog.OutcomeNotDecrypted, fwlog.ChainUninspected
		d.Reason = "UDP is never decrypted (rule " + dec.RuleName + ")"
	}
	ctx, cancel := context.WithTimeout(f.ctx, f.cfg.DialTimeout)
	up, err := f.cfg.Outside.DialContext(ctx, "udp", key.dst.String())
	cancel()
	if err != nil {
		fl.denied = true
		s.rec.EndReason = fwlog.EndUnknown
		s.rec.Reason = "cannot open the flow's outside socket: " + err.Error()
		f.cfg.Logger.Warn("mitm: cannot forward a UDP flow", "src", key.src.String(), "dst", key.dst.String(), "err", err)
		s.finish()
		return fl
	}
	reply, err := e.sock.answerer(key, from)
	if err != nil {
		up.Close()
		fl.denied = true
		s.rec.EndReason = fwlog.EndUnknown
		s.rec.Reason = "cannot answer the client: " + err.Error()
		f.cfg.Logger.Warn("mitm: cannot answer a UDP flow", "src", key.src.String(), "dst", key.dst.String(), "err", err)
		s.finish()
		return fl
	}
	s.rec.NATSrc = addrPortOf(up.LocalAddr())
	fl.up, fl.reply = up, reply
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		e.answer(fl)
	}()
	return fl
}

// answer relays the destination's datagrams back to the client.
func (e *udpEngine) answer(fl *udpFlow) {
	buf := make([]byte, 64<<10)
	for {
		n, err := fl.up.Read(buf)
		if err != nil {
			return
		}
		fl.last.Store(time.Now().UnixNano())
		fl.pktRcvd.Add(1)
		fl.rcvd.Add(uint64(n))
		if err := fl.reply.send(buf[:n]); err != nil {
			e.f.cfg.Logger.Warn("mitm: cannot answer a UDP client", "src", fl.key.src.String(), "dst", fl.key.dst.String(), "err", err)
			return
		}
	}
}

// reap ends flows idle for longer than the policy's UDP idle timeout.
func (e *udpEngine) reap() {
	f := e.f
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-f.ctx.Done():
			return
		case <-t.C:
		}
		idle := f.engine.Policy().IdleTimeout(policy.ProtoUDP)
		cutoff := time.Now().Add(-idle).UnixNano()
		e.mu.Lock()
		var expired []*udpFlow
		for k, fl := range e.flows {
			if fl.last.Load() < cutoff {
				delete(e.flows, k)
				expired = append(expired, fl)
			}
		}
		e.mu.Unlock()
		for _, fl := range expired {
			e.end(fl)
		}
	}
}

// end closes a flow and logs it (denied flows were logged when they began).
func (e *udpEngine) end(fl *udpFlow) {
	if fl.up != nil {
		fl.up.Close()
	}
	if fl.reply != nil {
		fl.reply.close()
	}
	if fl.denied {
		return
	}
	s := fl.s
	s.rec.BytesSent, s.rec.BytesReceived = fl.sent.Load(), fl.rcvd.Load()
	s.rec.PacketsSent, s.rec.PacketsReceived = fl.pktSent.Load(), fl.pktRcvd.Load()
	s.rec.PacketsSource = "datagrams"
	s.rec.EndReason = fwlog.EndAgedOut
	if s.shuttingDown() {
		s.rec.Reason = reasonShutdown
	}
	s.finish()
}

// closeAll ends every flow when the socket stops.
func (e *udpEngine) closeAll() {
	e.mu.Lock()
	flows := e.flows
	e.flows = map[flowKey]*udpFlow{}
	e.mu.Unlock()
	for _, fl := range flows {
		e.end(fl)
	}
	e.wg.Wait()
}
