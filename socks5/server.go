package socks5

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pinwall/pinwall/accept"
	"github.com/pinwall/pinwall/failure"
	"github.com/pinwall/pinwall/relay"
)

// Defaults for the zero values of Server's fields.
const (
	DefaultHandshakeTimeout = 10 * time.Second
	DefaultConnectTimeout   = 30 * time.Second
	DefaultMaxConns         = 1024
)

// ErrServerClosed is returned by Serve called after Close.
var ErrServerClosed = errors.New("socks5: server closed")

// Server serves SOCKS5 CONNECT requests by dialing through Dial and relaying
// bytes both ways. Set its fields before the first Serve and do not change
// them afterwards; a Server must not be copied after first use. One Server
// may run several Serve calls at once (one per listener).
type Server struct {
	// Dial connects to the requested destination: network is "tcp", address
	// is "host:port" where host is an IP literal or, for a domain-name
	// request, the name as the client sent it (unresolved). Required. Dial
	// must honour ctx: it is cancelled by Close and bounded by ConnectTimeout.
	// Its error picks the reply code (see ReplyFor).
	Dial func(ctx context.Context, network, address string) (net.Conn, error)

	// Logger receives one line per refusal, malformed handshake and rejected
	// connection, and a debug line per relayed connection. Nil discards.
	Logger *slog.Logger

	// HandshakeTimeout bounds the time from accept to the end of the request
	// (greeting, method reply, request), so slow or silent peers cannot hold a
	// connection slot. Zero means DefaultHandshakeTimeout.
	HandshakeTimeout time.Duration

	// ConnectTimeout bounds each call to Dial. Zero means DefaultConnectTimeout.
	ConnectTimeout time.Duration

	// MaxConns caps the connections handled at once across every Serve call.
	// Beyond it a new connection is accepted, logged and closed at once.
	// Zero (or negative) means DefaultMaxConns.
	MaxConns int

	active atomic.Int64
	nextID atomic.Uint64

	mu     sync.Mutex
	closed bool
	serves map[*serveState]struct{}
	wg     sync.WaitGroup // running Serve calls
}

// serveState is one Serve call: its context and the sessions it owns.
type serveState struct {
	cancel context.CancelFunc

	mu       sync.Mutex
	stopping bool
	sessions map[*session]struct{}
	wg       sync.WaitGroup // connection handlers and the listener closer
}

// session is one client connection and, once dialed, its upstream.
type session struct {
	id     uint64
	client net.Conn

	mu       sync.Mutex
	closed   bool
	upstream net.Conn
}

func (s *Server) logger() *slog.Logger {
	if s.Logger != nil {
		return s.Logger
	}
	return slog.New(slog.DiscardHandler)
}

func (s *Server) handshakeTimeout() time.Duration {
	if s.HandshakeTimeout > 0 {
		return s.HandshakeTimeout
	}
	return DefaultHandshakeTimeout
}

func (s *Server) connectTimeout() time.Duration {
	if s.ConnectTimeout > 0 {
		return s.ConnectTimeout
	}
	return DefaultConnectTimeout
}

func (s *Server) maxConns() int64 {
	if s.MaxConns > 0 {
		return int64(s.MaxConns)
	}
	return DefaultMaxConns
}

// Serve accepts connections on l and serves each in its own goroutine until
// ctx is done, Close is called or l fails. It always closes l, then closes
// every connection it accepted and waits for their goroutines before it
// returns. It returns nil when stopped by ctx or Close, ErrServerClosed when
// called after Close, and the accept error (wrapping net.ErrClosed if l was
// closed by someone else) otherwise.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	if s.Dial == nil {
		l.Close()
		return errors.New("socks5: Server.Dial is nil")
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st := &serveState{cancel: cancel, sessions: make(map[*session]struct{})}

	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		l.Close()
		return ErrServerClosed
	}
	if s.serves == nil {
		s.serves = make(map[*serveState]struct{})
	}
	s.serves[st] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.serves, st)
		s.mu.Unlock()
		s.wg.Done()
	}()

	acceptDone := make(chan struct{})
	st.wg.Add(1)
	go closeListenerOnDone(ctx, l, acceptDone, &st.wg)

	err := s.acceptLoop(ctx, l, st)
	close(acceptDone)
	cancel()
	st.shutdown()
	st.wg.Wait()
	return err
}

// closeListenerOnDone closes l when ctx is done or the accept loop ends.
func closeListenerOnDone(ctx context.Context, l net.Listener, acceptDone <-chan struct{}, wg *sync.WaitGroup) {
	defer wg.Done()
	select {
	case <-ctx.Done():
	case <-acceptDone:
	}
	l.Close()
}

func (s *Server) acceptLoop(ctx context.Context, l net.Listener, st *serveState) error {
	log := s.logger()
	// Temporary errors (the descriptor limit, an aborted connection) are
	// retried with a pause, logged and counted by accept.Listener.
	al := accept.Wrap(l, accept.Config{Name: "socks5 " + l.Addr().String(), Logger: log})
	stop := context.AfterFunc(ctx, func() { al.Close() })
	defer stop()
	for {
		c, err := al.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("socks5.Serve: accept on %s: %w", l.Addr(), err)
		}
		if n := s.active.Add(1); n > s.maxConns() {
			s.active.Add(-1)
			log.Warn("socks5: too many connections, closing", "client", c.RemoteAddr().String(), "max_conns", s.maxConns())
			c.Close()
			continue
		}
		sess := &session{id: s.nextID.Add(1), client: c}
		if !st.add(sess) {
			s.active.Add(-1)
			c.Close()
			return nil
		}
		go s.handle(ctx, st, sess)
	}
}

// add registers sess and counts its goroutine; false once shutting down.
func (st *serveState) add(sess *session) bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.stopping {
		return false
	}
	st.sessions[sess] = struct{}{}
	st.wg.Add(1)
	return true
}

func (st *serveState) remove(sess *session) {
	st.mu.Lock()
	delete(st.sessions, sess)
	st.mu.Unlock()
}

// shutdown closes every session; their goroutines then return.
func (st *serveState) shutdown() {
	st.mu.Lock()
	st.stopping = true
	sessions := make([]*session, 0, len(st.sessions))
	for sess := range st.sessions {
		sessions = append(sessions, sess)
	}
	st.mu.Unlock()
	for _, sess := range sessions {
		sess.close()
	}
}

// setUpstream records the dialed upstream; false if the session was closed
// meanwhile (the caller then closes up itself).
func (sess *session) setUpstream(up net.Conn) bool {
	sess.mu.Lock()
	defer sess.mu.Unlock()
	if sess.closed {
		return false
	}
	sess.upstream = up
	return true
}

func (sess *session) close() {
	sess.mu.Lock()
	sess.closed = true
	up := sess.upstream
	sess.mu.Unlock()
	sess.client.Close()
	if up != nil {
		up.Close()
	}
}

// Close stops every Serve call (as if their contexts were done) and waits
// until each has closed its connections and goroutines. Serve called after
// Close returns ErrServerClosed. Close is idempotent and always returns nil.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	for st := range s.serves {
		st.cancel()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return nil
}

// protocolViolation reports whether a parse error is the peer breaking the
// protocol (worth a reply) rather than a read failure (EOF, deadline, close).
func protocolViolation(err error) bool {
	for _, e := range []error{ErrVersion, ErrNoMethods, ErrReserved, ErrAddrType, ErrEmptyName, ErrBadName} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

func (s *Server) handle(ctx context.Context, st *serveState, sess *session) {
	defer st.wg.Done()
	defer s.active.Add(-1)
	defer st.remove(sess)
	defer sess.close()

	c := sess.client
	log := s.logger().With("conn", sess.id, "client", c.RemoteAddr().String())
	start := time.Now()
	c.SetDeadline(start.Add(s.handshakeTimeout()))

	g, err := ReadGreeting(c)
	if err != nil {
		if protocolViolation(err) {
			log.Warn("socks5: bad greeting", "err", err)
			refuse(c, nil) // no reply fits a peer not speaking SOCKS5
			return
		}
		log.Warn("socks5: bad greeting", "err", err, "cause", causeOfRead(err))
		return
	}
	if !g.Offers(MethodNoAuth) {
		log.Warn("socks5: no acceptable authentication method", "methods", fmt.Sprintf("%x", g.Methods))
		refuse(c, []byte{Version, MethodNoAcceptable})
		return
	}
	if _, err := c.Write([]byte{Version, MethodNoAuth}); err != nil {
		log.Warn("socks5: write method reply", "err", err)
		return
	}

	q, err := ReadRequest(c)
	if err != nil {
		if protocolViolation(err) {
			rep := ReplyGeneralFailure
			if errors.Is(err, ErrAddrType) {
				rep = ReplyAddrTypeNotSupported
			}
			log.Warn("socks5: bad request", "err", err, "reply", rep.String())
			refuse(c, AppendReply(nil, rep, netip.AddrPort{}))
			return
		}
		log.Warn("socks5: bad request", "err", err, "cause", causeOfRead(err))
		return
	}
	log = log.With("cmd", q.Command.String(), "dst", q.Address())
	if q.Command != CmdConnect {
		log.Warn("socks5: refused", "reply", ReplyCommandNotSupported.String(), "cause", "command not supported")
		refuse(c, AppendReply(nil, ReplyCommandNotSupported, netip.AddrPort{}))
		return
	}

	dctx, dcancel := context.WithTimeout(ctx, s.connectTimeout())
	up, err := s.Dial(dctx, "tcp", q.Address())
	dcancel()
	if err == nil && up == nil {
		err = errors.New("socks5: Dial returned neither a connection nor an error")
	}
	if err != nil {
		if up != nil {
			up.Close()
		}
		rep := ReplyFor(err)
		cause := string(failure.Classify(err))
		if cause == "" {
			cause = "unclassified"
		}
		log.Warn("socks5: refused", "reply", rep.String(), "cause", cause, "leg", string(failure.LegOf(err)), "err", err)
		refuse(c, AppendReply(nil, rep, netip.AddrPort{}))
		return
	}
	if !sess.setUpstream(up) {
		up.Close()
		return
	}
	if _, err := c.Write(AppendReply(nil, ReplySucceeded, addrPortOf(up.LocalAddr()))); err != nil {
		log.Warn("socks5: write reply", "err", err)
		return
	}
	c.SetDeadline(time.Time{})
	log.Debug("socks5: connected", "upstream", up.RemoteAddr().String(), "handshake", time.Since(start))

	res := relay.Pipe(ctx, c, up)
	log.Debug("socks5: closed", "bytes_up", res.Up, "bytes_down", res.Down, "duration", time.Since(start))
}

// lingerTimeout bounds how long refuse drains a refused client.
const lingerTimeout = 500 * time.Millisecond

// refuse writes a final message and half-closes, then drains what the client
// still sends (the rest of a malformed request) for a moment: closing a
// socket with unread input sends a reset, which can destroy the reply before
// the client reads it.
func refuse(c net.Conn, msg []byte) {
	if len(msg) > 0 {
		if _, err := c.Write(msg); err != nil {
			return
		}
	}
	cw, ok := c.(closeWriter)
	if !ok || cw.CloseWrite() != nil {
		return
	}
	c.SetReadDeadline(time.Now().Add(lingerTimeout))
	io.CopyN(io.Discard, c, MaxRequestLen+MaxGreetingLen)
}

// causeOfRead names why a handshake read failed, for the log.
func causeOfRead(err error) string {
	switch {
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "truncated"
	case errors.Is(err, io.EOF):
		return "closed before handshake"
	}
	if c := failure.Classify(err); c != failure.CauseNone {
		return string(c)
	}
	return "read error"
}

func addrPortOf(a net.Addr) netip.AddrPort {
	switch a := a.(type) {
	case *net.TCPAddr:
		return a.AddrPort()
	case nil:
		return netip.AddrPort{}
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap
}

type closeWriter interface{ CloseWrite() error }
