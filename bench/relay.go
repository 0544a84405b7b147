package bench

import (
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"

	"github.com/pinwall/pinwall/accept"
)

// Relay is the reference userspace proxy: for every accepted connection it
// dials the upstream and copies both ways with io.Copy (splice(2) between
// two kernel TCP connections), half-closing each side when its source ends.
type Relay struct {
	ln       net.Listener
	upstream netip.AddrPort

	wg        sync.WaitGroup
	mu        sync.Mutex
	conns     map[net.Conn]struct{}
	closed    bool
	closeOnce sync.Once
}

// StartRelay listens on a loopback port and relays to upstream until Close.
func StartRelay(upstream netip.AddrPort) (*Relay, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("bench: relay: %w", err)
	}
	r := &Relay{ln: accept.Wrap(ln, accept.Config{Name: "bench relay"}), upstream: upstream, conns: map[net.Conn]struct{}{}}
	r.wg.Add(1)
	go r.acceptLoop()
	return r, nil
}

// Addr is where the relay listens.
func (r *Relay) Addr() netip.AddrPort { return r.ln.Addr().(*net.TCPAddr).AddrPort() }

// Close stops the relay and every connection and waits for them. It is
// idempotent.
func (r *Relay) Close() error {
	r.closeOnce.Do(func() {
		r.mu.Lock()
		r.closed = true
		r.ln.Close()
		for c := range r.conns {
			c.Close()
		}
		r.mu.Unlock()
		r.wg.Wait()
	})
	return nil
}

func (r *Relay) track(cs ...net.Conn) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return false
	}
	for _, c := range cs {
		r.conns[c] = struct{}{}
	}
	return true
}

func (r *Relay) untrack(cs ...net.Conn) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range cs {
		delete(r.conns, c)
	}
}

func (r *Relay) acceptLoop() {
	defer r.wg.Done()
	for {
		c, err := r.ln.Accept()
		if err != nil {
			return // temporary errors are retried by accept.Listener
		}
		if !r.track(c) {
			c.Close()
			return
		}
		r.wg.Add(1)
		go r.serve(c.(*net.TCPConn))
	}
}

func (r *Relay) serve(c *net.TCPConn) {
	defer r.wg.Done()
	defer r.untrack(c)
	defer c.Close()
	d := net.Dialer{Timeout: dialTimeout}
	uc, err := d.Dial("tcp", r.upstream.String())
	if err != nil {
		return
	}
	up := uc.(*net.TCPConn)
	if !r.track(up) {
		up.Close()
		return
	}
	defer r.untrack(up)
	defer up.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		relayCopy(c, up)
	}()
	relayCopy(up, c)
	<-done
}

// relayCopy copies src to dst and half-closes dst; on an error it closes
// both so the other direction ends too.
func relayCopy(dst, src *net.TCPConn) {
	if _, err := io.Copy(dst, src); err != nil {
		_ = src.SetLinger(0)
		src.Close()
		dst.Close()
		return
	}
	_ = dst.CloseWrite()
}
