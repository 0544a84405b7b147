package mitm

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"time"
)

// A decrypted session re-encrypts every record it relays, and on the data
// path each record used to cost the firewall a read and a write system call
// on each side: as many as the crypto itself in a bulk transfer's profile.
// batchConn and copyRecords take in several records with one read and send
// the records re-encrypted from them with one write. The bytes on the wire
// are the same TLS records; only how many the kernel is handed at once
// changes (as with any proxy's buffered relay, e.g. sslsplit's libevent
// bufferevents).

// batchSize bounds what one read takes in and what a relay holds before
// it sends.
const batchSize = 64 << 10

// The buffers are pooled and held only while data flows: an idle session
// (most of a firewall's) holds none. A write buffer has room for a batch
// and one more record (16 KiB of plaintext and its overhead), so that
// appending the last record does not grow it.
var (
	readBufs  = sync.Pool{New: func() any { b := make([]byte, batchSize); return &b }}
	writeBufs = sync.Pool{New: func() any { b := make([]byte, 0, batchSize+17<<10); return &b }}
)

// batchConn is the raw connection under one side of a decrypted session's
// TLS. Once both handshakes are done (startBatching), a read that follows
// one which filled the reader's buffer (more is likely waiting) takes in up
// to batchSize with one system call, and a relay may hold writes (hold)
// and send them together (flush). Until then it is the connection itself:
// nothing the handshakes read is buffered here, so a session that goes no
// further leaves its connection as it was.
type batchConn struct {
	net.Conn

	// Read side, used by the session's one reader.
	batching bool
	more     bool    // the last read filled the buffer it was given
	rbuf     *[]byte // pooled; (*rbuf)[r:w] not yet read; nil when drained
	r, w     int
	rerr     error // an error that came with data, for the next read

	mu   sync.Mutex // guards held and wbuf, and orders writes
	held bool
	wbuf *[]byte // pooled while writes are held
}

func newBatchConn(c net.Conn) *batchConn { return &batchConn{Conn: c} }

// startBatching turns batched reads on. Call it before the relay starts
// and after the handshake's last read.
func (c *batchConn) startBatching() { c.batching = true }

func (c *batchConn) Read(p []byte) (int, error) {
	if !c.batching {
		return c.Conn.Read(p)
	}
	if c.rbuf != nil {
		n := copy(p, (*c.rbuf)[c.r:c.w])
		c.r += n
		if c.r == c.w {
			readBufs.Put(c.rbuf)
			c.rbuf = nil
		}
		return n, nil
	}
	if err := c.rerr; err != nil {
		c.rerr = nil
		return 0, err
	}
	if !c.more {
		// Waiting for data: with the caller's buffer, not a pooled one.
		n, err := c.Conn.Read(p)
		c.more = n == len(p)
		return n, err
	}
	c.more = false
	b := readBufs.Get().(*[]byte)
	n, err := c.Conn.Read(*b)
	if n == 0 {
		readBufs.Put(b)
		return 0, err
	}
	c.more = n == len(*b)
	m := copy(p, (*b)[:n])
	if m < n {
		c.rbuf, c.r, c.w = b, m, n
		c.rerr = err
		return m, nil
	}
	readBufs.Put(b)
	return m, err
}

// Write sends p, or keeps it for flush while writes are held. A write
// that is not held (an alert from Close) waits for a flush under way, so
// the records stay in order.
func (c *batchConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.held {
		if c.wbuf == nil {
			c.wbuf = writeBufs.Get().(*[]byte)
		}
		*c.wbuf = append(*c.wbuf, p...)
		return len(p), nil
	}
	return c.Conn.Write(p)
}

// hold keeps writes until flush.
func (c *batchConn) hold() {
	c.mu.Lock()
	c.held = true
	c.mu.Unlock()
}

// pending is how many bytes are held.
func (c *batchConn) pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.wbuf == nil {
		return 0
	}
	return len(*c.wbuf)
}

// flush sends what was held, in one write, and stops holding.
func (c *batchConn) flush() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.held = false
	if c.wbuf == nil {
		return nil
	}
	b := c.wbuf
	c.wbuf = nil
	_, err := c.Conn.Write(*b)
	if cap(*b) <= batchSize+17<<10 { // one grown past that is not kept
		*b = (*b)[:0]
		writeBufs.Put(b)
	}
	return err
}

// Unwrap returns the wrapped connection (resetConn, segment counts).
func (c *batchConn) Unwrap() net.Conn { return c.Conn }

// CloseWrite half-closes the wrapped connection.
func (c *batchConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Close()
}

// copyRecords copies src to dst until src ends, as io.Copy does, where src
// and dst are TLS connections and dstRaw is the batchConn under dst. After
// each read that had to wait, it goes on reading what src already has at
// hand (in its TLS buffer or its raw connection's read buffer) without
// waiting, writing each piece to dst held, and sends them all with one
// write. Nothing waits for more data to make a batch: a lone record goes
// out as soon as it is read.
func copyRecords(dst net.Conn, dstRaw *batchConn, src net.Conn) (int64, error) {
	buf := make([]byte, 32<<10) // more than a record's plaintext (16 KiB)
	var total int64
	for {
		n, err := src.Read(buf)
		if n > 0 {
			dstRaw.hold()
			k, werr := dst.Write(buf[:n])
			total += int64(k)
			for werr == nil && err == nil && dstRaw.pending() < batchSize {
				if n, err = readAtHand(src, buf); n == 0 {
					break
				}
				k, werr = dst.Write(buf[:n])
				total += int64(k)
			}
			if ferr := dstRaw.flush(); werr == nil {
				werr = ferr
			}
			if werr != nil {
				return total, werr
			}
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				return total, nil
			}
			return total, err
		}
	}
}

// aLongTimeAgo is a read deadline that has passed: a read with it returns
// what is buffered or, at once, a timeout.
var aLongTimeAgo = time.Unix(1, 0)

// readAtHand reads what src has buffered without waiting for the network:
// (0, nil) when nothing is. A read deadline's timeout does not break a
// crypto/tls connection (only a write's does: crypto/tls's Conn.Write
// documentation); the partial record stays buffered for the next read.
func readAtHand(src net.Conn, buf []byte) (int, error) {
	if src.SetReadDeadline(aLongTimeAgo) != nil {
		return 0, nil // no deadlines here: reading could wait
	}
	n, err := src.Read(buf)
	_ = src.SetReadDeadline(time.Time{})
	if errors.Is(err, os.ErrDeadlineExceeded) {
		err = nil
	}
	return n, err
}
