// Package relay copies bytes both ways between two connections, the way a
// proxy splices a flow: each direction half-closes its destination when its
// source ends, the flow ends when both directions have, and an error in
// either direction tears both down.
//
// Between two kernel TCP connections io.Copy uses splice(2); Pipe keeps that
// fast path by handing io.Copy the connections themselves.
package relay

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"time"
)

// Result describes a finished relay. "Up" is a → b, "Down" is b → a.
type Result struct {
	Up, Down       int64
	UpErr, DownErr error
	// First names which source ended first: "a", "b" or "" (cancelled).
	First string
	// Duration is how long the relay ran.
	Duration time.Duration
}

// Err returns the first non-EOF error of either direction.
func (r Result) Err() error {
	if r.UpErr != nil {
		return r.UpErr
	}
	return r.DownErr
}

type closeWriter interface{ CloseWrite() error }

// Counter observes bytes as they pass; it must be safe for concurrent use.
type Counter func(up bool, n int)

// Pipe relays between a and b until both directions end, an error occurs or
// ctx is done, then closes both. It owns one goroutine, which has ended when
// Pipe returns. Between kernel connections it keeps io.Copy's splice path.
func Pipe(ctx context.Context, a, b net.Conn) Result {
	return pipe(ctx, a, b, nil, 0)
}

// PipeCounting is Pipe with a callback on every chunk copied (for live byte
// counters); with a nil counter it keeps io.Copy's splice fast path.
func PipeCounting(ctx context.Context, a, b net.Conn, count Counter) Result {
	return pipe(ctx, a, b, count, 0)
}

// PipeBuffered is Pipe copying through a buffer of size bytes in each
// direction, for a side that is not a kernel socket (a multiplexed stream):
// io.Copy's 32 KiB chunks there cost one frame, and one lock round trip
// with the multiplexer's send loop, each.
func PipeBuffered(ctx context.Context, a, b net.Conn, size int) Result {
	return pipe(ctx, a, b, nil, size)
}

// Copier copies src to dst until src ends (nil at EOF), as io.Copy does.
type Copier func(dst, src net.Conn) (int64, error)

// PipeCopying is Pipe with cp doing each direction's copying (a copy that
// knows its connections, e.g. TLS on both sides).
func PipeCopying(ctx context.Context, a, b net.Conn, cp Copier) Result {
	return pipeWith(ctx, a, b, nil, 0, cp)
}

// readerOnly and writerOnly hide ReadFrom/WriteTo so io.CopyBuffer uses the buffer.
type readerOnly struct{ io.Reader }
type writerOnly struct{ io.Writer }

func pipe(ctx context.Context, a, b net.Conn, count Counter, bufSize int) Result {
	return pipeWith(ctx, a, b, count, bufSize, nil)
}

func pipeWith(ctx context.Context, a, b net.Conn, count Counter, bufSize int, cp Copier) Result {
	start := time.Now()
	var (
		res      Result
		mu       sync.Mutex
		once     sync.Once
		stopOnce sync.Once
	)
	closeBoth := func() {
		stopOnce.Do(func() {
			_ = a.Close()
			_ = b.Close()
		})
	}
	stop := context.AfterFunc(ctx, closeBoth)
	defer stop()

	copyDir := func(dst, src net.Conn, up bool) (int64, error) {
		var w io.Writer = dst
		if count != nil {
			w = countingWriter{w: dst, up: up, count: count}
		}
		var (
			n   int64
			err error
		)
		switch {
		case cp != nil:
			n, err = cp(dst, src)
		case bufSize > 0:
			n, err = io.CopyBuffer(writerOnly{w}, readerOnly{src}, make([]byte, bufSize))
		default:
			n, err = io.Copy(w, src)
		}
		if err == nil || errors.Is(err, io.EOF) {
			once.Do(func() {
				mu.Lock()
				if up {
					res.First = "a"
				} else {
					res.First = "b"
				}
				mu.Unlock()
			})
			if cw, ok := dst.(closeWriter); ok {
				_ = cw.CloseWrite()
			} else {
				_ = dst.Close()
			}
			return n, nil
		}
		closeBoth()
		return n, err
	}

	done := make(chan struct{})
	go func() {
		defer close(done)
		n, err := copyDir(a, b, false)
		mu.Lock()
		res.Down, res.DownErr = n, err
		mu.Unlock()
	}()
	n, err := copyDir(b, a, true)
	mu.Lock()
	res.Up, res.UpErr = n, err
	mu.Unlock()
	<-done
	closeBoth()
	if err := ctx.Err(); err != nil {
		if res.UpErr == nil || errors.Is(res.UpErr, net.ErrClosed) {
			res.UpErr = err
		}
		if res.DownErr == nil || errors.Is(res.DownErr, net.ErrClosed) {
			res.DownErr = err
		}
	}
	res.Duration = time.Since(start)
	// Errors caused by our own closing are not the flow's fault.
	if errors.Is(res.UpErr, net.ErrClosed) && res.DownErr != nil && !errors.Is(res.DownErr, net.ErrClosed) {
		res.UpErr = nil
	}
	if errors.Is(res.DownErr, net.ErrClosed) && res.UpErr != nil && !errors.Is(res.UpErr, net.ErrClosed) {
		res.DownErr = nil
	}
	return res
}

type countingWriter struct {
	w     io.Writer
	up    bool
	count Counter
}

func (c countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	if n > 0 {
		c.count(c.up, n)
	}
	return n, err
}
