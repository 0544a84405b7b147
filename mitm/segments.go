package mitm

import (
	"io"
	"net"
	"sync"
	"sync/atomic"
)

// TCP packet counts. A proxy does not see packets, only bytes; the kernel
// does, and Linux reports per socket how many segments it received and
// sent (TCP_INFO tcpi_segs_in, tcpi_segs_out, SYN, pure ACKs, FIN and
// retransmissions included, as a firewall counts packets). segConn reads
// them just before its connection closes. The client socket's segs_in is
// the session's packets sent (client to server), the server socket's
// segs_in its packets received: the packets that crossed the firewall each
// way. Elsewhere (or when the socket is not the kernel's) nothing is
// counted and the record says so (PacketsSource empty).

// segCounts accumulates a session's segment counts.
type segCounts struct {
	fromClient, fromServer atomic.Uint64
	counted                atomic.Bool
}

// segConn wraps a TCP connection and reports the kernel's segment counters
// to add just before the connection closes.
type segConn struct {
	net.Conn
	once sync.Once
	add  func(segsIn uint64)
}

func countSegments(c net.Conn, add func(segsIn uint64)) net.Conn {
	return &segConn{Conn: c, add: add}
}

func (c *segConn) snapshot() {
	c.once.Do(func() {
		if tc := kernelTCP(c.Conn); tc != nil {
			if in, ok := tcpSegmentsIn(tc); ok {
				c.add(in)
			}
		}
	})
}

// Close reads the counters, then closes.
func (c *segConn) Close() error {
	c.snapshot()
	return c.Conn.Close()
}

// Unwrap returns the wrapped connection (resetConn, SO_ORIGINAL_DST).
func (c *segConn) Unwrap() net.Conn { return c.Conn }

// CloseWrite half-closes the wrapped connection.
func (c *segConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Close()
}

type writerOnly struct{ io.Writer }
type readerOnly struct{ io.Reader }

// ReadFrom keeps io.Copy's splice path: a segConn source is unwrapped and
// the wrapped connection's ReadFrom does the copy.
func (c *segConn) ReadFrom(r io.Reader) (int64, error) {
	if o, ok := r.(*segConn); ok {
		r = o.Conn
	}
	if rf, ok := c.Conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(writerOnly{c.Conn}, r)
}

// WriteTo keeps io.Copy's splice path the same way.
func (c *segConn) WriteTo(w io.Writer) (int64, error) {
	if o, ok := w.(*segConn); ok {
		w = o.Conn
	}
	if wt, ok := c.Conn.(io.WriterTo); ok {
		return wt.WriteTo(w)
	}
	return io.Copy(w, readerOnly{c.Conn})
}

// kernelTCP follows Unwrap and NetConn to the kernel TCP connection, or
// nil.
func kernelTCP(c net.Conn) *net.TCPConn {
	for range 8 {
		switch v := c.(type) {
		case *net.TCPConn:
			return v
		case interface{ Unwrap() net.Conn }:
			c = v.Unwrap()
		case interface{ NetConn() net.Conn }:
			c = v.NetConn()
		default:
			return nil
		}
	}
	return nil
}
