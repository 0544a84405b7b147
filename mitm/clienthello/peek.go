package clienthello

import (
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// Peek defaults.
const (
	// DefaultPeekMaxBytes bounds what Peek buffers when
	// PeekOptions.MaxBytes is zero: a full 16 KiB TLS record and a good
	// part of a second, far above the 1.3 to 2 KiB of a browser's or Go's
	// post-quantum (X25519MLKEM768) ClientHello.
	DefaultPeekMaxBytes = 32 << 10

	// DefaultPeekTimeout bounds how long Peek waits for the whole
	// ClientHello when PeekOptions.Timeout is zero.
	DefaultPeekTimeout = 10 * time.Second

	// initialPeekBuf is Peek's first buffer, enough for most hellos in
	// one read; it grows, up to MaxBytes, when a hello says it needs more.
	initialPeekBuf = 2 << 10

	// maxEmptyReads bounds successive (0, nil) reads, which io.Reader
	// discourages, before Peek gives up with io.ErrNoProgress.
	maxEmptyReads = 100
)

// PeekOptions bound Peek. The zero value is ready to use.
type PeekOptions struct {
	// MaxBytes is the most Peek reads from the connection; a ClientHello
	// whose records need more fails with ErrTooLarge as soon as its
	// headers say so. Zero or negative means DefaultPeekMaxBytes.
	MaxBytes int

	// Timeout bounds the whole peek, not each read, so a client that
	// sends one byte a second still times out. Peek sets it as the
	// connection's read deadline and clears the deadline before it
	// returns (replacing any deadline the caller had set). Zero means
	// DefaultPeekTimeout; negative means no deadline, leaving the
	// connection's own deadline alone.
	Timeout time.Duration
}

func (o PeekOptions) maxBytes() int {
	if o.MaxBytes <= 0 {
		return DefaultPeekMaxBytes
	}
	return o.MaxBytes
}

func (o PeekOptions) timeout() time.Duration {
	if o.Timeout == 0 {
		return DefaultPeekTimeout
	}
	return o.Timeout
}

// Peek reads from conn until it holds a complete TLS ClientHello, and
// returns the parsed hello and a *Conn that replays every byte read before
// reading more from conn. Nothing is consumed: whoever reads the *Conn (a
// tls.Server that terminates the session, or an io.Copy that splices it
// upstream) sees exactly what the client sent.
//
// On error Peek still returns the *Conn, holding whatever it buffered, so
// the caller can log, forward or close it. The error matches, under
// errors.Is: ErrNotTLS, ErrMalformed or ErrTooLarge (from Parse, or
// ErrTooLarge when the hello would need more than opts.MaxBytes);
// os.ErrDeadlineExceeded when opts.Timeout passed (and errors.As finds a
// net.Error whose Timeout is true); io.EOF when the client closed before
// sending anything; io.ErrUnexpectedEOF when it closed mid-hello; or the
// connection's own read error.
func Peek(conn net.Conn, opts PeekOptions) (*Info, *Conn, error) {
	limit, timeout := opts.maxBytes(), opts.timeout()
	c := &Conn{conn: conn}
	if timeout > 0 {
		// A connection already closed (net.Pipe refuses deadlines once
		// either end has hung up) is no reason to fail here: its first
		// read returns at once and says what happened.
		if err := conn.SetReadDeadline(time.Now().Add(timeout)); err != nil &&
			!errors.Is(err, io.ErrClosedPipe) && !errors.Is(err, net.ErrClosed) {
			return nil, c, fmt.Errorf("clienthello: peek: set read deadline: %w", err)
		}
		// Best effort: a connection closed meanwhile has no deadline left.
		defer func() { _ = conn.SetReadDeadline(time.Time{}) }()
	}

	buf := make([]byte, 0, min(initialPeekBuf, limit))
	want := 1 // parsing is pointless until len(buf) reaches want
	empty := 0
	for {
		if len(buf) >= want {
			info, err := Parse(buf)
			if err == nil {
				c.setBuffered(buf)
				return info, c, nil
			}
			var inc *IncompleteError
			if !errors.As(err, &inc) {
				c.setBuffered(buf)
				return nil, c, err
			}
			want = len(buf) + inc.Need
			if want > limit {
				c.setBuffered(buf)
				return nil, c, tooLarge("the ClientHello's records need at least %d bytes, peek limit %d", want, limit)
			}
		}
		if len(buf) == cap(buf) {
			grown := make([]byte, len(buf), min(max(2*cap(buf), want), limit))
			copy(grown, buf)
			buf = grown
		}
		n, err := conn.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == nil {
			if n == 0 {
				if empty++; empty >= maxEmptyReads {
					c.setBuffered(buf)
					return nil, c, fmt.Errorf("clienthello: peek: %w", io.ErrNoProgress)
				}
			} else {
				empty = 0
			}
			continue
		}
		// The bytes that came with the error may complete the hello.
		if n > 0 && len(buf) >= want {
			if info, perr := Parse(buf); perr == nil || !errors.Is(perr, ErrIncomplete) {
				c.setBuffered(buf)
				return info, c, perr
			}
		}
		c.setBuffered(buf)
		if errors.Is(err, io.EOF) {
			if len(buf) > 0 {
				err = io.ErrUnexpectedEOF
			}
			return nil, c, fmt.Errorf("clienthello: peek: client closed after %d bytes: %w", len(buf), err)
		}
		return nil, c, fmt.Errorf("clienthello: peek: read after %d bytes: %w", len(buf), err)
	}
}

// Conn is a net.Conn whose first reads replay the bytes Peek buffered.
//
// Like net.Conn, one goroutine may read while another writes; concurrent
// reads are not safe (the replay position is not locked, just as a
// bufio.Reader's is not).
type Conn struct {
	conn   net.Conn
	peeked []byte // everything Peek read
	rest   []byte // the part of peeked not yet replayed
}

var (
	_ net.Conn      = (*Conn)(nil)
	_ io.WriterTo   = (*Conn)(nil)
	_ io.ReaderFrom = (*Conn)(nil)
)

func (c *Conn) setBuffered(b []byte) {
	c.peeked = b
	c.rest = b
}

// Buffered returns the bytes Peek read from the connection, whether or
// not they have been replayed yet. The slice aliases Conn's buffer: do not
// modify it.
func (c *Conn) Buffered() []byte { return c.peeked }

// Unwrap returns the connection Peek read from.
func (c *Conn) Unwrap() net.Conn { return c.conn }

// Read replays the peeked bytes not read yet, then reads from the
// underlying connection. It never allocates.
func (c *Conn) Read(p []byte) (int, error) {
	if len(c.rest) > 0 {
		n := copy(p, c.rest)
		c.rest = c.rest[n:]
		return n, nil
	}
	return c.conn.Read(p)
}

// WriteTo writes the peeked bytes not read yet to w, then copies the
// underlying connection to w with io.Copy until EOF, so that a relay
// between two TCP connections still splices in the kernel.
func (c *Conn) WriteTo(w io.Writer) (int64, error) {
	var written int64
	if len(c.rest) > 0 {
		n, err := w.Write(c.rest)
		c.rest = c.rest[n:]
		written += int64(n)
		if err != nil {
			return written, err
		}
	}
	n, err := io.Copy(w, c.conn)
	return written + n, err
}

// ReadFrom copies r to the underlying connection until EOF, through the
// connection's own ReadFrom when it has one, so that a relay between two
// TCP connections still splices in the kernel.
func (c *Conn) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := c.conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(c.conn, r)
}

// Write writes to the underlying connection.
func (c *Conn) Write(p []byte) (int, error) { return c.conn.Write(p) }

// Close closes the underlying connection.
func (c *Conn) Close() error { return c.conn.Close() }

// CloseWrite shuts down the writing side of the underlying connection
// (a TCP half-close). It fails with an error matching errors.ErrUnsupported
// when the connection has no CloseWrite.
func (c *Conn) CloseWrite() error {
	if cw, ok := c.conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return fmt.Errorf("clienthello: %T has no CloseWrite: %w", c.conn, errors.ErrUnsupported)
}

// LocalAddr returns the underlying connection's local address.
func (c *Conn) LocalAddr() net.Addr { return c.conn.LocalAddr() }

// RemoteAddr returns the underlying connection's remote address.
func (c *Conn) RemoteAddr() net.Addr { return c.conn.RemoteAddr() }

// SetDeadline sets the underlying connection's deadlines. Replayed bytes
// are returned whatever the deadline.
func (c *Conn) SetDeadline(t time.Time) error { return c.conn.SetDeadline(t) }

// SetReadDeadline sets the underlying connection's read deadline.
func (c *Conn) SetReadDeadline(t time.Time) error { return c.conn.SetReadDeadline(t) }

// SetWriteDeadline sets the underlying connection's write deadline.
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.conn.SetWriteDeadline(t) }
