package tunnel

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pinwall/pinwall/accept"
)

// UDPMux demultiplexes one UDP socket into a virtual connection per remote
// address, so a DTLS server can run one handshake per peer on a shared port.
// A new peer is admitted only by a datagram that looks like a DTLS handshake
// record of epoch 0; state per peer is bounded (queue length, peer count) and
// idle peers are dropped.
type UDPMux struct {
	pc  net.PacketConn
	cfg UDPMuxConfig
	log *slog.Logger

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu    sync.Mutex
	peers map[string]*muxPeer

	accept chan *muxPeer

	dropped   atomic.Int64
	refused   atomic.Int64
	closeOnce sync.Once
}

// UDPMuxConfig bounds a UDPMux. Zero values take the defaults given.
type UDPMuxConfig struct {
	// MaxPeers bounds concurrent peers; zero means 4096.
	MaxPeers int
	// QueueLen bounds datagrams queued per peer; zero means 1024.
	QueueLen int
	// IdleTimeout drops a peer silent for this long; zero means 2 minutes.
	IdleTimeout time.Duration
	// Logger receives refusals; nil discards.
	Logger *slog.Logger
}

// NewUDPMux starts demultiplexing pc. Close stops it and closes pc.
func NewUDPMux(pc net.PacketConn, cfg UDPMuxConfig) *UDPMux {
	if cfg.MaxPeers <= 0 {
		cfg.MaxPeers = 4096
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

// Dropped counts datagrams dropped because a peer's queue was full.
func (m *UDPMux) Dropped() int64 { return m.dropped.Load() }

// Refused counts datagrams from unknown peers that did not start a DTLS handshake.
func (m *UDPMux) Refused() int64 { return m.refused.Load() }

// Peers counts live peers.
func (m *UDPMux) Peers() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.peers)
}

// Close stops the mux, closes every peer and the socket.
func (m *UDPMux) Close() error {
	m.closeOnce.Do(func() {
		m.cancel()
		_ = m.pc.Close()
		m.wg.Wait()
		m.mu.Lock()
		for _, p := range m.peers {
			p.shut()
		}
		m.peers = map[string]*muxPeer{}
		m.mu.Unlock()
	})
	return nil
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
		if !ok {
			if !looksLikeDTLSHello(buf[:n]) {
				m.mu.Unlock()
				m.refused.Add(1)
				m.log.Debug("udp mux: datagram from unknown peer is not a DTLS hello", "peer", key, "bytes", n)
				continue
			}
			if len(m.peers) >= m.cfg.MaxPeers {
				m.mu.Unlock()
				m.refused.Add(1)
				m.log.Warn("udp mux: peer limit reached, refusing", "peer", key, "limit", m.cfg.MaxPeers)
				continue
			}
			p = newMuxPeer(m, addr)
			m.peers[key] = p
			m.mu.Unlock()
			select {
			case m.accept <- p:
			default:
				m.mu.Lock()
				delete(m.peers, key)
				m.mu.Unlock()
				m.refused.Add(1)
				m.log.Warn("udp mux: accept backlog full, refusing", "peer", key)
				continue
			}
		} else {
			m.mu.Unlock()
		}
		p.deliver(buf[:n])
	}
}

func (m *UDPMux) reapLoop() {
	defer m.wg.Done()
	t := time.NewTicker(m.cfg.IdleTimeout / 4)
	defer t.Stop()
	for {
		select {
		case <-m.ctx.Done():
			return
		case <-t.C:
		}
		cutoff := time.Now().Add(-m.cfg.IdleTimeout).UnixNano()
		m.mu.Lock()
		for k, p := range m.peers {
			if p.lastSeen.Load() < cutoff {
				delete(m.peers, k)
				p.shut()
			}
		}
		m.mu.Unlock()
	}
}

func (m *UDPMux) forget(p *muxPeer) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if cur, ok := m.peers[p.raddr.String()]; ok && cur == p {
		delete(m.peers, p.raddr.String())
	}
}

// looksLikeDTLSHello reports a DTLS handshake record of epoch 0.
func looksLikeDTLSHello(b []byte) bool {
	return len(b) >= 13 && b[0] == 22 && b[1] == 0xfe && b[3] == 0 && b[4] == 0
}

// muxPeer is one remote address's view of the shared socket.
type muxPeer struct {
	mux   *UDPMux
	raddr net.Addr
	queue chan []byte

	lastSeen atomic.Int64

	dlMu     sync.Mutex
	deadline time.Time
	dlChange chan struct{}

	closed    chan struct{}
	closeOnce sync.Once
}

func newMuxPeer(m *UDPMux, raddr net.Addr) *muxPeer {
	p := &muxPeer{
		mux: m, raddr: raddr,
		queue:    make(chan []byte, m.cfg.QueueLen),
		dlChange: make(chan struct{}, 1),
		closed:   make(chan struct{}),
	}
	p.lastSeen.Store(time.Now().UnixNano())
	return p
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
		return nil, net.ErrClosed
	case <-timeout:
		return nil, os.ErrDeadlineExceeded
	case <-p.dlChange:
		return nil, nil
	}
}

func (p *muxPeer) WriteTo(b []byte, _ net.Addr) (int, error) {
	select {
	case <-p.closed:
		return 0, net.ErrClosed
	default:
	}
	return p.mux.pc.WriteTo(b, p.raddr)
}

func (p *muxPeer) shut() { p.closeOnce.Do(func() { close(p.closed) }) }

// Close forgets the peer; a later datagram from it starts a new handshake.
func (p *muxPeer) Close() error {
	p.shut()
	p.mux.forget(p)
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
