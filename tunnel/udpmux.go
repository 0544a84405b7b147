package tunnel

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pinwall/pinwall/accept"
	"github.com/pinwall/pinwall/mitm/clienthello"
)

// UDPMux demultiplexes one UDP socket into a virtual connection per remote
// address, so a DTLS server can run one handshake per peer on a shared port.
//
// What a peer can hold before it is known is bounded, since a datagram's
// source address costs nothing to forge:
//
//   - A new peer is admitted only by a datagram that looks like a DTLS
//     handshake record of epoch 0, and only within MaxPeers, MaxUnverified
//     and what Admit allows (the gateway's per-source limit). Everything
//     else is dropped, counted and reported to Refused, never logged one
//     by one.
//   - A peer is unverified until it returns the cookie of the server's
//     HelloVerifyRequest (RFC 6347 section 4.2.1), which proves it receives
//     at its address; the mux sees the cookie go out and come back. An
//     unverified peer is forgotten after CookieTimeout.
//   - A peer stops counting as a handshake in progress (Admit's release)
//     when the server calls Established, or when it is forgotten.
//
// pion/dtls builds a connection's state from the first ClientHello and
// picks its own random cookie, and the cookie exchange cannot be moved in
// front of it: the ClientHello that carries the cookie has message_seq 1
// and is part of the handshake transcript, so a server that had not sent
// the HelloVerifyRequest itself could not continue the handshake. The
// state before the cookie is therefore bounded (per source by Admit, in
// all by MaxUnverified, in time by CookieTimeout) rather than absent.
type UDPMux struct {
	pc  net.PacketConn
	cfg UDPMuxConfig
	log *slog.Logger

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu         sync.Mutex
	peers      map[string]*muxPeer
	unverified int

	accept chan *muxPeer

	dropped   atomic.Int64
	refused   atomic.Int64
	closeOnce sync.Once
}

// Reasons a datagram from a new peer is refused, passed to
// UDPMuxConfig.Refused.
var (
	// ErrNotHello: the datagram is not a DTLS handshake record of epoch 0.
	ErrNotHello = errors.New("tunnel: datagram from an unknown peer is not a DTLS hello")
	// ErrPeerLimit: MaxPeers peers are live.
	ErrPeerLimit = errors.New("tunnel: udp peer limit reached")
	// ErrUnverifiedLimit: MaxUnverified peers have not returned their cookie.
	ErrUnverifiedLimit = errors.New("tunnel: limit of peers without a returned cookie reached")
	// ErrAcceptBacklog: the server is not accepting new peers fast enough.
	ErrAcceptBacklog = errors.New("tunnel: udp accept backlog full")
	// ErrNoCookie is the error a peer's reads return once it was forgotten
	// for not returning its HelloVerifyRequest cookie within CookieTimeout.
	ErrNoCookie = errors.New("tunnel: peer did not return its HelloVerifyRequest cookie in time")
)

// UDPMuxConfig bounds a UDPMux. Zero values take the defaults given.
type UDPMuxConfig struct {
	// MaxPeers bounds concurrent peers; zero means 4096.
	MaxPeers int
	// MaxUnverified bounds peers that have not returned their
	// HelloVerifyRequest cookie; zero means 256.
	MaxUnverified int
	// CookieTimeout forgets a peer that has not returned its cookie this
	// long after its first datagram; zero means 3s (a client retransmits
	// its ClientHello after 1s).
	CookieTimeout time.Duration
	// QueueLen bounds datagrams queued per peer; zero means 1024.
	QueueLen int
	// IdleTimeout drops a peer silent for this long; zero means 2 minutes.
	IdleTimeout time.Duration
	// Admit, if set, is asked before a new peer is created: an error
	// refuses it (passed to Refused); otherwise the mux calls release once,
	// when the server calls Established or the peer is forgotten.
	Admit func(peer netip.AddrPort) (release func(), err error)
	// Refused, if set, is told about every datagram from a new peer that
	// was dropped and why (one of the Err values above, or Admit's error).
	// It is called on the read loop and must not block.
	Refused func(peer netip.AddrPort, err error)
	// Logger receives operational messages; nil discards.
	Logger *slog.Logger
}

// NewUDPMux starts demultiplexing pc. Close stops it and closes pc.
func NewUDPMux(pc net.PacketConn, cfg UDPMuxConfig) *UDPMux {
	if cfg.MaxPeers <= 0 {
		cfg.MaxPeers = 4096
	}
	if cfg.MaxUnverified <= 0 {
		cfg.MaxUnverified = 256
	}
	if cfg.CookieTimeout <= 0 {
		cfg.CookieTimeout = 3 * time.Second
	}
	if cfg.QueueLen <= 0 {
		cfg.QueueLen = 1024
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = 2 * time.Minute
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	m := &UDPMux{
		pc: pc, cfg: cfg, log: log, ctx: ctx, cancel: cancel,
		peers:  make(map[string]*muxPeer),
		accept: make(chan *muxPeer, 64),
	}
	m.wg.Add(2)
	go m.readLoop()
	go m.reapLoop()
	return m
}

// Accept returns the next new peer as a PacketConn bound to its address.
func (m *UDPMux) Accept(ctx context.Context) (net.PacketConn, net.Addr, error) {
	select {
	case p := <-m.accept:
		return p, p.raddr, nil
	case <-ctx.Done():
		return nil, nil, ctx.Err()
	case <-m.ctx.Done():
		return nil, nil, net.ErrClosed
	}
}

// Established tells the mux that pc, a peer from Accept, has authenticated:
// it no longer counts as a handshake in progress (Admit's release runs).
func (m *UDPMux) Established(pc net.PacketConn) {
	p, ok := pc.(*muxPeer)
	if !ok || p.mux != m {
		return
	}
	m.mu.Lock()
	m.verifyLocked(p)
	m.mu.Unlock()
	p.releaseAdmission()
}

// Dropped counts datagrams dropped because a peer's queue was full.
func (m *UDPMux) Dropped() int64 { return m.dropped.Load() }

// Refused counts datagrams from new peers that were dropped (see Refused
// in UDPMuxConfig).
func (m *UDPMux) Refused() int64 { return m.refused.Load() }

// Peers counts live peers.
func (m *UDPMux) Peers() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.peers)
}

// Unverified counts live peers that have not returned their cookie.
func (m *UDPMux) Unverified() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.unverified
}

// Close stops the mux, closes every peer and the socket.
func (m *UDPMux) Close() error {
	m.closeOnce.Do(func() {
		m.cancel()
		_ = m.pc.Close()
		m.wg.Wait()
		m.mu.Lock()
		peers := m.peers
		m.peers = map[string]*muxPeer{}
		m.unverified = 0
		m.mu.Unlock()
		for _, p := range peers {
			p.releaseAdmission()
			p.shut(net.ErrClosed)
		}
	})
	return nil
}

func (m *UDPMux) refuse(addr net.Addr, err error) {
	m.refused.Add(1)
	if m.cfg.Refused != nil {
		m.cfg.Refused(addrPort(addr), err)
	}
}

func addrPort(a net.Addr) netip.AddrPort {
	if u, ok := a.(*net.UDPAddr); ok {
		return u.AddrPort()
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap
}

func (m *UDPMux) readLoop() {
	defer m.wg.Done()
	buf := make([]byte, 64<<10)
	var pause accept.Backoff
	for {
		n, addr, err := m.pc.ReadFrom(buf)
		if err != nil {
			if m.ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			// A read error on a UDP socket (ICMP-reported, ENOBUFS) leaves
			// it usable; pause so that a lasting one does not spin.
			m.log.Debug("udp mux read", "err", err)
			if !pause.Wait(m.ctx.Done()) {
				return
			}
			continue
		}
		pause.Reset()
		key := addr.String()
		m.mu.Lock()
		p, ok := m.peers[key]
		if ok {
			if !p.verified && p.returnsCookie(buf[:n]) {
				m.verifyLocked(p)
			}
			m.mu.Unlock()
			p.deliver(buf[:n])
			continue
		}
		var refusal error
		switch {
		case !clienthello.IsDTLSHandshake(buf[:n]):
			refusal = ErrNotHello
		case len(m.peers) >= m.cfg.MaxPeers:
			refusal = ErrPeerLimit
		case m.unverified >= m.cfg.MaxUnverified:
			refusal = ErrUnverifiedLimit
		}
		if refusal != nil {
			m.mu.Unlock()
			m.refuse(addr, refusal)
			continue
		}
		var release func()
		if m.cfg.Admit != nil {
			if release, err = m.cfg.Admit(addrPort(addr)); err != nil {
				m.mu.Unlock()
				m.refuse(addr, err)
				continue
			}
		}
		p = newMuxPeer(m, addr, release)
		m.peers[key] = p
		m.unverified++
		m.mu.Unlock()
		select {
		case m.accept <- p:
		default:
			m.drop(p, ErrAcceptBacklog)
			m.refuse(addr, ErrAcceptBacklog)
			continue
		}
		p.deliver(buf[:n])
	}
}

// verifyLocked marks p as having returned its cookie. m.mu is held.
func (m *UDPMux) verifyLocked(p *muxPeer) {
	if p.verified {
		return
	}
	p.verified = true
	if cur, ok := m.peers[p.key]; ok && cur == p {
		m.unverified--
	}
}

func (m *UDPMux) reapLoop() {
	defer m.wg.Done()
	t := time.NewTicker(min(m.cfg.IdleTimeout/4, m.cfg.CookieTimeout/4))
	defer t.Stop()
	for {
		select {
		case <-m.ctx.Done():
			return
		case <-t.C:
		}
		now := time.Now()
		idleCutoff := now.Add(-m.cfg.IdleTimeout).UnixNano()
		cookieCutoff := now.Add(-m.cfg.CookieTimeout)
		type gone struct {
			p   *muxPeer
			err error
		}
		var reaped []gone
		m.mu.Lock()
		for k, p := range m.peers {
			switch {
			case !p.verified && p.created.Before(cookieCutoff):
				reaped = append(reaped, gone{p, ErrNoCookie})
			case p.lastSeen.Load() < idleCutoff:
				reaped = append(reaped, gone{p, net.ErrClosed})
			default:
				continue
			}
			if !p.verified {
				m.unverified--
			}
			delete(m.peers, k)
		}
		m.mu.Unlock()
		for _, g := range reaped {
			// Release before shut: whoever shut wakes sees the admission
			// already given back.
			g.p.releaseAdmission()
			g.p.shut(g.err)
		}
	}
}

// drop forgets p and ends it with err.
func (m *UDPMux) drop(p *muxPeer, err error) {
	m.forget(p)
	p.releaseAdmission()
	p.shut(err)
}

func (m *UDPMux) forget(p *muxPeer) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if cur, ok := m.peers[p.key]; ok && cur == p {
		delete(m.peers, p.key)
		if !p.verified {
			m.unverified--
		}
	}
}

// muxPeer is one remote address's view of the shared socket.
type muxPeer struct {
	mux     *UDPMux
	raddr   net.Addr
	key     string
	queue   chan []byte
	created time.Time

	lastSeen atomic.Int64

	// verified and cookie are guarded by mux.mu: the cookie of the
	// HelloVerifyRequest sent to this peer, until it comes back.
	verified bool
	cookie   []byte

	release     func()
	releaseOnce sync.Once

	dlMu     sync.Mutex
	deadline time.Time
	dlChange chan struct{}

	closed    chan struct{}
	closeErr  error // set before closed is closed
	closeOnce sync.Once
}

func newMuxPeer(m *UDPMux, raddr net.Addr, release func()) *muxPeer {
	p := &muxPeer{
		mux: m, raddr: raddr, key: raddr.String(), release: release,
		queue:    make(chan []byte, m.cfg.QueueLen),
		created:  time.Now(),
		dlChange: make(chan struct{}, 1),
		closed:   make(chan struct{}),
	}
	p.lastSeen.Store(time.Now().UnixNano())
	return p
}

// returnsCookie reports whether b is a ClientHello carrying the cookie this
// peer was sent. mux.mu is held.
func (p *muxPeer) returnsCookie(b []byte) bool {
	if len(p.cookie) == 0 {
		return false
	}
	c, ok := clienthello.ClientHelloCookie(b)
	return ok && bytes.Equal(c, p.cookie)
}

func (p *muxPeer) releaseAdmission() {
	p.releaseOnce.Do(func() {
		if p.release != nil {
			p.release()
		}
	})
}

// Dropped returns why the mux ended this peer (ErrNoCookie, net.ErrClosed),
// or nil while it is live or after the server closed it.
func (p *muxPeer) Dropped() error {
	select {
	case <-p.closed:
		return p.closeErr
	default:
		return nil
	}
}

func (p *muxPeer) deliver(b []byte) {
	p.lastSeen.Store(time.Now().UnixNano())
	select {
	case <-p.closed:
		return
	default:
	}
	select {
	case p.queue <- append([]byte(nil), b...):
	default:
		p.mux.dropped.Add(1)
	}
}

func (p *muxPeer) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		p.dlMu.Lock()
		dl := p.deadline
		p.dlMu.Unlock()
		d, err := p.wait(dl)
		if err != nil {
			return 0, nil, err
		}
		if d != nil {
			return copy(b, d), p.raddr, nil
		}
	}
}

// wait returns the next datagram, an error, or (nil, nil) when the deadline changed.
func (p *muxPeer) wait(dl time.Time) ([]byte, error) {
	var timeout <-chan time.Time
	if !dl.IsZero() {
		d := time.Until(dl)
		if d <= 0 {
			return nil, os.ErrDeadlineExceeded
		}
		t := time.NewTimer(d)
		defer t.Stop()
		timeout = t.C
	}
	select {
	case d := <-p.queue:
		return d, nil
	case <-p.closed:
		return nil, p.closeErr
	case <-timeout:
		return nil, os.ErrDeadlineExceeded
	case <-p.dlChange:
		return nil, nil
	}
}

func (p *muxPeer) WriteTo(b []byte, _ net.Addr) (int, error) {
	select {
	case <-p.closed:
		return 0, p.closeErr
	default:
	}
	if c, ok := clienthello.HelloVerifyCookie(b); ok {
		p.mux.mu.Lock()
		if !p.verified {
			p.cookie = append(p.cookie[:0], c...)
		}
		p.mux.mu.Unlock()
	}
	return p.mux.pc.WriteTo(b, p.raddr)
}

// shut ends the peer's reads and writes with err (the first err wins).
func (p *muxPeer) shut(err error) {
	p.closeOnce.Do(func() {
		p.closeErr = err
		close(p.closed)
	})
}

// Close forgets the peer; a later datagram from it starts a new handshake.
func (p *muxPeer) Close() error {
	p.shut(net.ErrClosed)
	p.mux.forget(p)
	p.releaseAdmission()
	return nil
}

func (p *muxPeer) LocalAddr() net.Addr { return p.mux.pc.LocalAddr() }

func (p *muxPeer) SetDeadline(t time.Time) error { return p.SetReadDeadline(t) }

func (p *muxPeer) SetReadDeadline(t time.Time) error {
	p.dlMu.Lock()
	p.deadline = t
	p.dlMu.Unlock()
	select {
	case p.dlChange <- struct{}{}:
	default:
	}
	return nil
}

func (p *muxPeer) SetWriteDeadline(time.Time) error { return nil }

// String names the peer for logs.
func (p *muxPeer) String() string { return fmt.Sprintf("udp peer %s", p.raddr) }
