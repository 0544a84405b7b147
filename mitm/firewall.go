package mitm

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pinwall/pinwall/accept"
	"github.com/pinwall/pinwall/hostnet"
	"github.com/pinwall/pinwall/mitm/forge"
	"github.com/pinwall/pinwall/mitm/fwlog"
	"github.com/pinwall/pinwall/mitm/policy"
)

// Firewall is a running perimeter firewall. Create it with New, attach
// listeners with the Serve methods, stop it with Close.
//
// Every Serve method takes a context and a listener (or packet socket) it
// owns: it serves until ctx is done, the socket fails or the firewall
// closes, and closes the socket when ctx is done. Sessions it accepted
// belong to the firewall: TCP sessions run on until they end or Close ends
// them; UDP flows end with their socket (they are logged as aged out).
type Firewall struct {
	cfg    Config
	engine *policy.Engine
	forger *forge.Forger
	log    *fwlog.Log
	excl   *exclusionCache
	// upSessions resumes upstream handshakes (Config.UpstreamSessions); nil means none.
	upSessions tls.ClientSessionCache

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	packets   map[net.PacketConn]struct{}
	conns     map[net.Conn]struct{}

	sessionID atomic.Uint64
	active    atomic.Int64
	// earlyDials counts the early dials not yet taken or discarded.
	earlyDials atomic.Int64
	refused    atomic.Int64
	closeOnce  sync.Once
}

// New validates cfg and returns a Firewall with no listeners yet.
func New(cfg Config) (*Firewall, error) {
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("mitm: config: %w", err)
	}
	engine, err := policy.NewEngine(cfg.Policy, policy.EngineConfig{Resolver: cfg.Resolver, Now: cfg.Now, Logger: cfg.Logger})
	if err != nil {
		return nil, fmt.Errorf("mitm: %w", err)
	}
	forger, err := forge.New(forge.Config{
		CA: cfg.CA, ECDSACA: cfg.ECDSACA, UntrustedCA: cfg.UntrustedCA, KeyMode: cfg.ForgeKeyMode,
		Now: cfg.Now, Logger: cfg.Logger,
	})
	if err != nil {
		return nil, fmt.Errorf("mitm: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	f := &Firewall{
		cfg:       cfg,
		engine:    engine,
		forger:    forger,
		log:       fwlog.NewLog(fwlog.LogConfig{Writers: cfg.Writers, Keep: cfg.KeepRecords, Now: cfg.Now, Logger: cfg.Logger}),
		excl:      newExclusionCache(cfg.Now),
		ctx:       ctx,
		cancel:    cancel,
		listeners: map[net.Listener]struct{}{},
		packets:   map[net.PacketConn]struct{}{},
		conns:     map[net.Conn]struct{}{},
	}
	if cfg.UpstreamSessions > 0 {
		f.upSessions = tls.NewLRUClientSessionCache(cfg.UpstreamSessions)
	}
	return f, nil
}

// Records returns the session records kept in memory, oldest first.
func (f *Firewall) Records() []fwlog.Record { return f.log.Records() }

// Exclusions lists the learned decryption exclusions still in force.
func (f *Firewall) Exclusions() []Exclusion { return f.excl.list() }

// Engine exposes the policy engine (decision statistics, FQDN objects).
func (f *Firewall) Engine() *policy.Engine { return f.engine }

// Forger exposes the certificate forger (cache statistics).
func (f *Firewall) Forger() *forge.Forger { return f.forger }

// SwapPolicy replaces the rule base for new sessions.
func (f *Firewall) SwapPolicy(p *policy.Policy) error { return f.engine.Swap(p) }

// AcceptFailures counts the temporary errors (such as "too many open
// files") the firewall's listeners survived.
func (f *Firewall) AcceptFailures() int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	var n int64
	for l := range f.listeners {
		if al, ok := l.(*accept.Listener); ok {
			n += al.Failures()
		}
	}
	return n
}

// ActiveSessions counts TCP sessions in progress.
func (f *Firewall) ActiveSessions() int { return int(f.active.Load()) }

// Close stops every listener, ends every session (UDP flows are logged as
// aged out) and waits for all goroutines. It is idempotent.
func (f *Firewall) Close() error {
	f.closeOnce.Do(func() {
		f.cancel()
		f.mu.Lock()
		for l := range f.listeners {
			l.Close()
		}
		for pc := range f.packets {
			pc.Close()
		}
		for c := range f.conns {
			c.Close()
		}
		f.mu.Unlock()
		f.wg.Wait()
	})
	return nil
}

func (f *Firewall) track(l net.Listener) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.ctx.Err() != nil {
		l.Close()
		return false
	}
	f.listeners[l] = struct{}{}
	return true
}

// trackConn records c for Close and counts its goroutine in f.wg, both
// under f.mu while the firewall is not closing: Close cancels f.ctx before
// it takes f.mu, so an Add here happens before Close's Wait (an Add after
// the lock is released could race with it). The caller must start a
// goroutine that calls f.wg.Done when it returns true.
func (f *Firewall) trackConn(c net.Conn) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.ctx.Err() != nil {
		return false
	}
	f.conns[c] = struct{}{}
	f.wg.Add(1)
	return true
}

func (f *Firewall) untrackConn(c net.Conn) {
	f.mu.Lock()
	delete(f.conns, c)
	f.mu.Unlock()
}

// origin describes how a connection reached the firewall.
type origin struct {
	src, dst netip.AddrPort
	hint     string // CONNECT target name
}

// serve runs an accept loop until ctx is done (which closes l), l fails or
// the firewall closes; resolve turns an accepted connection into its
// original source and destination (reading a PROXY header, asking the
// kernel, or answering a CONNECT).
//
// Temporary accept errors (the descriptor limit reached, a connection
// aborted before it was accepted) are retried with a growing pause, logged
// and counted (AcceptFailures); only a listener that fails for good ends
// the loop with an error.
func (f *Firewall) serve(ctx context.Context, inner net.Listener, kind string, resolve func(net.Conn) (net.Conn, origin, error)) error {
	l := accept.Wrap(inner, accept.Config{Name: "mitm " + kind + " " + inner.Addr().String(), Logger: f.cfg.Logger})
	if !f.track(l) {
		return net.ErrClosed
	}
	defer context.AfterFunc(ctx, func() { l.Close() })()
	f.cfg.Logger.Info("mitm: listening", "kind", kind, "addr", l.Addr().String())
	for {
		c, err := l.Accept()
		if err != nil {
			if f.ctx.Err() != nil || ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("mitm: accept %s: %w", kind, err)
		}
		if f.active.Add(1) > int64(f.cfg.MaxSessions) {
			f.active.Add(-1)
			f.refused.Add(1)
			f.cfg.Logger.Warn("mitm: session limit reached, resetting", "peer", c.RemoteAddr().String(), "limit", f.cfg.MaxSessions)
			resetConn(c)
			continue
		}
		if !f.trackConn(c) {
			f.active.Add(-1)
			c.Close()
			return nil
		}
		go func() {
			defer f.wg.Done()
			defer f.active.Add(-1)
			defer f.untrackConn(c)
			conn, o, err := resolve(c)
			if err != nil {
				f.cfg.Logger.Info("mitm: dropped connection", "kind", kind, "peer", c.RemoteAddr().String(), "err", err)
				c.Close()
				return
			}
			f.handleTCP(conn, o)
		}()
	}
}

// ServeIntercept serves connections that start with a PROXY v2 header
// naming their original source and destination: the in-process stand-in
// for a transparent redirect. It returns when ctx is done, l closes or the
// firewall does.
func (f *Firewall) ServeIntercept(ctx context.Context, l net.Listener) error {
	return f.serve(ctx, l, "intercept", func(c net.Conn) (net.Conn, origin, error) {
		_ = c.SetReadDeadline(time.Now().Add(f.cfg.PeekTimeout))
		h, err := hostnet.ReadProxyHeader(c)
		_ = c.SetReadDeadline(time.Time{})
		if err != nil {
			return nil, origin{}, err
		}
		if h.Proto != hostnet.ProtoTCP {
			return nil, origin{}, fmt.Errorf("PROXY header for %s on a stream", h.Proto)
		}
		return c, origin{src: h.Src, dst: h.Dst}, nil
	})
}

// ServeForward sends every connection on l to upstream: the explicit
// destination mode for measuring the firewall outside a lab. It returns
// when ctx is done, l closes or the firewall does.
func (f *Firewall) ServeForward(ctx context.Context, l net.Listener, upstream netip.AddrPort) error {
	return f.serve(ctx, l, "forward", func(c net.Conn) (net.Conn, origin, error) {
		return c, origin{src: addrPortOf(c.RemoteAddr()), dst: upstream}, nil
	})
}

func addrPortOf(a net.Addr) netip.AddrPort {
	switch v := a.(type) {
	case *net.TCPAddr:
		return v.AddrPort()
	case *net.UDPAddr:
		return v.AddrPort()
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap
}

// resetConn closes c with a TCP reset where it can.
func resetConn(c net.Conn) {
	type linger interface{ SetLinger(int) error }
	if l, ok := c.(linger); ok {
		_ = l.SetLinger(0)
	} else if u, ok := c.(interface{ Unwrap() net.Conn }); ok {
		if l, ok := u.Unwrap().(linger); ok {
			_ = l.SetLinger(0)
		}
	}
	_ = c.Close()
}
