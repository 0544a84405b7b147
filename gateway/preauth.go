package gateway

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"
)

// Pre-authentication refusals: a peer that has not authenticated may hold
// only so much of the gateway.
var (
	// errSourceLimit: the source already has MaxHandshakesPerSource
	// handshakes in progress.
	errSourceLimit = errors.New("handshakes in progress from this source at their limit")
	// errHandshakeLimit: MaxHandshakes handshakes are in progress.
	errHandshakeLimit = errors.New("handshakes in progress at their limit")
)

// preAuth counts handshakes in progress per source address and in all, for
// one transport, and refuses beyond its limits. Its map holds at most max
// entries (each counts at least one handshake), so its memory is bounded
// whatever the sources.
type preAuth struct {
	perSource, max int

	mu    sync.Mutex
	total int
	bySrc map[netip.Addr]int
}

func newPreAuth(perSource, max int) *preAuth {
	return &preAuth{perSource: perSource, max: max, bySrc: make(map[netip.Addr]int)}
}

// acquire counts a new handshake from src, or refuses it; release undoes a
// successful acquire once.
func (p *preAuth) acquire(src netip.Addr) (release func(), err error) {
	src = src.Unmap()
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.total >= p.max:
		return nil, fmt.Errorf("%w (%d)", errHandshakeLimit, p.max)
	case p.bySrc[src] >= p.perSource:
		return nil, fmt.Errorf("%w (%d)", errSourceLimit, p.perSource)
	}
	p.total++
	p.bySrc[src]++
	var once sync.Once
	return func() { once.Do(func() { p.release(src) }) }, nil
}

func (p *preAuth) release(src netip.Addr) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.total--
	if n := p.bySrc[src] - 1; n > 0 {
		p.bySrc[src] = n
	} else {
		delete(p.bySrc, src)
	}
}

// inProgress counts handshakes in progress.
func (p *preAuth) inProgress() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.total
}
