package tunnel

import (
	"context"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/yamux"
)

// yamuxSession carries streams over a TLS connection with yamux.
type yamuxSession struct {
	mux  *yamux.Session
	conn net.Conn

	closeOnce  sync.Once
	mu         sync.Mutex
	closedByUs bool
}

// NewTLSSession multiplexes streams over conn, an established TLS
// connection, and returns the session. ctx bounds setting the session up
// only, as NewDTLSSession's does; yamux has no handshake of its own, so a
// ctx already done is the only way it can cut the setup short.
func NewTLSSession(ctx context.Context, conn net.Conn, role Role, cfg Config) (Session, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("tunnel: yamux: %w", err)
	}
	ycfg := yamux.DefaultConfig()
	ycfg.LogOutput = nil
	ycfg.Logger = yamuxLogger{log: cfg.logger().With("mux", "yamux", "role", role.String())}
	ycfg.EnableKeepAlive = true
	ycfg.KeepAliveInterval = cfg.keepAliveInterval()
	ycfg.ConnectionWriteTimeout = max(10*time.Second, cfg.keepAliveTimeout())
	ycfg.MaxStreamWindowSize = cfg.streamWindow()
	ycfg.AcceptBacklog = cfg.acceptBacklog()
	// yamux closes the whole session when a stream open is not acknowledged
	// in time, so this is a last resort, not a flow timeout.
	ycfg.StreamOpenTimeout = 30 * time.Second
	ycfg.StreamCloseTimeout = time.Minute
	startWriteQueue(conn)
	var (
		mux *yamux.Session
		err error
	)
	if role == RoleClient {
		mux, err = yamux.Client(conn, ycfg)
	} else {
		mux, err = yamux.Server(conn, ycfg)
	}
	if err != nil {
		return nil, fmt.Errorf("tunnel: yamux: %w", err)
	}
	return &yamuxSession{mux: mux, conn: conn}, nil
}

func (s *yamuxSession) Open(ctx context.Context) (Stream, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	st, err := s.mux.OpenStream()
	if err != nil {
		return nil, s.wrapErr("open stream", err)
	}
	return yamuxStream{Stream: st, eofIsLoss: true}, nil
}

func (s *yamuxSession) Accept(ctx context.Context) (Stream, error) {
	st, err := s.mux.AcceptStreamWithContext(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, s.wrapErr("accept stream", err)
	}
	return yamuxStream{Stream: st}, nil
}

func (s *yamuxSession) wrapErr(op string, err error) error {
	if s.mux.IsClosed() {
		return fmt.Errorf("tunnel: %s: %w: %w", op, ErrSessionClosed, err)
	}
	return fmt.Errorf("tunnel: %s: %w", op, err)
}

func (s *yamuxSession) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closedByUs = true
		s.mu.Unlock()
		_ = s.mux.Close()
		_ = s.conn.Close()
	})
	return nil
}

func (s *yamuxSession) Done() <-chan struct{} { return s.mux.CloseChan() }

func (s *yamuxSession) Err() error {
	if !s.mux.IsClosed() {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closedByUs {
		return ErrSessionClosed
	}
	return fmt.Errorf("%w: yamux session ended by peer, keepalive or connection loss", ErrSessionClosed)
}

func (s *yamuxSession) Transport() Transport { return TransportTLS }
func (s *yamuxSession) NumStreams() int      { return s.mux.NumStreams() }

// Unsettled implements Session: yamux keeps a stream until both sides
// have sent their FIN (or one reset it).
func (s *yamuxSession) Unsettled() int {
	if s.mux.IsClosed() {
		return 0
	}
	return s.mux.NumStreams()
}
func (s *yamuxSession) LocalAddr() net.Addr  { return s.conn.LocalAddr() }
func (s *yamuxSession) RemoteAddr() net.Addr { return s.conn.RemoteAddr() }

type yamuxStream struct {
	*yamux.Stream
	// eofIsLoss: an EOF read once the session has closed is the tunnel
	// ending under the flow (see Read).
	eofIsLoss bool
}

func (y yamuxStream) CloseWrite() error { return y.Stream.Close() }

// Read maps the end of the session to a typed loss. yamux force-closes
// every stream when its session ends, and a force-closed stream reads io.EOF
// like one its peer closed in order; yamux marks the session closed first.
// On the opening side (the client's flows) an EOF from a closed session is
// therefore the tunnel ending under the flow: the application must not take
// a truncated reply for a whole one. The accepting side (the gateway) cannot
// tell that from a flow its client closed in order just before closing the
// tunnel, which yamux leaves looking the same, so there EOF stays EOF.
func (y yamuxStream) Read(p []byte) (int, error) {
	n, err := y.Stream.Read(p)
	switch {
	case err == io.EOF && y.eofIsLoss && y.Session().IsClosed():
		err = sessionLost(ErrSessionClosed, io.ErrUnexpectedEOF)
	case err != nil && err != io.EOF && y.Session().IsClosed():
		err = sessionLost(ErrSessionClosed, err)
	}
	return n, err
}

func (y yamuxStream) Write(p []byte) (int, error) {
	n, err := y.Stream.Write(p)
	if err != nil && y.Session().IsClosed() {
		err = sessionLost(ErrSessionClosed, err)
	}
	return n, err
}
func (y yamuxStream) ID() uint32 { return y.StreamID() }
