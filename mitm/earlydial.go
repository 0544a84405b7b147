package mitm

import (
	"context"
	"net"
	"net/netip"
)

// An inline firewall lets a client's TCP handshake through to the server
// before any data: the SYN is checked against the policy and forwarded,
// and the server's SYN-ACK comes back, while App-ID and decryption wait
// for the first data packet, the ClientHello (Palo Alto Networks,
// LIVEcommunity, "Discussion of the week: Application incomplete";
// docs/sources.md#firewall-early-dial). pinwall's firewall accepts the
// client itself, so it does the same by connecting to the destination as a
// session starts, while the ClientHello is on its way (an early dial): the
// server's connection is ready when the hello has been read and decided.
//
// What the firewall logs does not change. The dial's result is taken only
// once the session has been decided and wants a connection, so a
// destination that refuses or never answers is logged as before, after
// the hello. A session that ends without taking it (a malformed or
// unfinished hello, a strict certificate check that blocks) resets the
// connection, as PAN-OS's reset-both resets the server too; the server
// saw a connection and no data (inferred for pinwall's resets: a PAN-OS
// session that ends before any data is logged "incomplete" and its server
// saw the same).
//
// Early dials are bounded (Config.EarlyDials): past the bound, a session
// connects after its hello as it did before, so a flood of clients that
// connect and never speak makes the firewall hold at most that many
// connections to the servers behind it.

// earlyDial is one session's connection to its destination, started
// before the session's hello was read.
type earlyDial struct {
	f      *Firewall
	done   chan struct{} // closed when the dial returned
	cancel context.CancelFunc
	conn   net.Conn
	err    error
	// ended: taken or discarded; the slot is given back once.
	ended bool
}

// startEarlyDial connects to dst in the background, or returns nil when
// early dials are off or at their bound (the session then dials when it
// needs to). The session goroutine that calls it must take or discard it.
func (f *Firewall) startEarlyDial(dst netip.AddrPort) *earlyDial {
	if f.cfg.EarlyDials < 0 {
		return nil
	}
	if f.earlyDials.Add(1) > int64(f.cfg.EarlyDials) {
		f.earlyDials.Add(-1)
		return nil
	}
	ctx, cancel := context.WithTimeout(f.ctx, f.cfg.DialTimeout)
	d := &earlyDial{f: f, done: make(chan struct{}), cancel: cancel}
	// The caller is a session the firewall's wait group already counts,
	// so the count is above zero here.
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		defer close(d.done)
		d.conn, d.err = f.cfg.Outside.DialContext(ctx, "tcp", dst.String())
	}()
	return d
}

// take waits for the dial and hands its connection (or its error) to the
// session. ctx ending first discards the dial and returns ctx's error.
func (d *earlyDial) take(ctx context.Context) (net.Conn, error) {
	select {
	case <-d.done:
	case <-ctx.Done():
		d.discard()
		return nil, ctx.Err()
	}
	d.end()
	return d.conn, d.err
}

// discard cancels the dial and resets the connection it made, if any. It
// waits for the dial to return, which cancelling makes prompt. It does
// nothing once the dial has been taken.
func (d *earlyDial) discard() {
	if d == nil || d.ended {
		return
	}
	d.cancel()
	<-d.done
	d.end()
	if d.conn != nil {
		resetConn(d.conn)
	}
}

// end gives the dial's slot back and releases its timer.
func (d *earlyDial) end() {
	if d.ended {
		return
	}
	d.ended = true
	d.cancel()
	d.f.earlyDials.Add(-1)
}
