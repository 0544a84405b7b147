package mitm

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pinwall/pinwall/hostnet"
	"github.com/pinwall/pinwall/mitm/clienthello"
	"github.com/pinwall/pinwall/mitm/fwlog"
	"github.com/pinwall/pinwall/mitm/policy"
)

type flowKey struct{ src, dst netip.AddrPort }

// udpFlow is one tracked UDP session.
type udpFlow struct {
	s       *session
	key     flowKey
	reply   net.Addr // where the client's datagrams came from, for answers
	up      net.Conn // nil when denied
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
	f  *Firewall
	pc net.PacketConn

	mu    sync.Mutex
	flows map[flowKey]*udpFlow
	wg    sync.WaitGroup
}

// ServeUDPIntercept serves datagrams that each start with a PROXY v2
// header naming their original source and destination (the in-process
// stand-in for TPROXY). Allowed flows are forwarded from the outside leg,
// answers go back to the client; denied flows are logged once and dropped.
// It returns when pc closes or the firewall does.
func (f *Firewall) ServeUDPIntercept(pc net.PacketConn) error {
	return f.serveUDP(pc, func(b []byte, from net.Addr) (flowKey, []byte, error) {
		h, payload, err := hostnet.ParseProxyHeader(b)
		if err != nil {
			return flowKey{}, nil, err
		}
		if h.Proto != hostnet.ProtoUDP {
			return flowKey{}, nil, errors.New("PROXY header for a stream on a datagram socket")
		}
		return flowKey{h.Src, h.Dst}, payload, nil
	})
}

func (f *Firewall) serveUDP(pc net.PacketConn, parse func([]byte, net.Addr) (flowKey, []byte, error)) error {
	f.mu.Lock()
	if f.ctx.Err() != nil {
		f.mu.Unlock()
		pc.Close()
		return net.ErrClosed
	}
	f.packets[pc] = struct{}{}
	f.mu.Unlock()
	e := &udpEngine{f: f, pc: pc, flows: map[flowKey]*udpFlow{}}
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		e.reap()
	}()
	defer e.closeAll()
	buf := make([]byte, 64<<10)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			if f.ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			continue
		}
		key, payload, err := parse(buf[:n], from)
		if err != nil {
			f.cfg.Logger.Debug("mitm: dropped a datagram", "from", from.String(), "err", err)
			continue
		}
		e.handle(key, payload, from)
	}
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
	fl := &udpFlow{s: s, key: key, reply: from, done: make(chan struct{})}
	app := clienthello.Classify(first)
	s.rec.App = fwlog.App(app)
	// The SNI of a DTLS hello is logged but not matched: SNI rules are
	// decryption rules for TLS over TCP, and UDP is allowed or blocked by
	// address, port and protocol (so an SNI bypass does not cover DTLS,
	// an IP-range one does).
	ps := policy.Session{Src: key.src, Dst: key.dst, Proto: policy.ProtoUDP}
	if app == clienthello.AppDTLS {
		if info, err := clienthello.ParseDTLS(first); err == nil {
			s.hello = info
			s.rec.SNI = info.ServerName
		}
	}
	dec := f.engine.Decide(f.ctx, ps)
	s.rec.Rule = dec.RuleName
	if dec.Action == policy.ActionBlock {
		fl.denied = true
		s.rec.Action, s.rec.EndReason = fwlog.ActionDeny, fwlog.EndPolicyDeny
		s.rec.App = fwlog.AppNotApplicable // PAN-OS logs denied-at-first-packet sessions so
		s.rec.BytesSent, s.rec.PacketsSent = uint64(len(first)), 1
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
		s.finish()
		return fl
	}
	s.rec.NATSrc = addrPortOf(up.LocalAddr())
	fl.up = up
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
		if _, err := e.pc.WriteTo(buf[:n], fl.reply); err != nil {
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
	if fl.denied {
		return
	}
	s := fl.s
	s.rec.BytesSent, s.rec.BytesReceived = fl.sent.Load(), fl.rcvd.Load()
	s.rec.PacketsSent, s.rec.PacketsReceived = fl.pktSent.Load(), fl.pktRcvd.Load()
	s.rec.EndReason = fwlog.EndAgedOut
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
