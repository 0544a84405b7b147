package tunnel

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/sctp"
)

// SCTP limits: pion/sctp refuses writes over its max message size (64 KiB)
// and a read needs a buffer at least as large as the message.
//
// Writes do not block in pion (WithBlockWrite(false)): a blocking write in
// pion waits until the whole association's pending queue has drained, so
// every stream's writer queues behind one slot and 16 flows went slower
// together than one alone. Instead each stream may have up to
// sctpStreamAllowance bytes queued in the association (pending or in
// flight), and all streams together up to sctpSessionAllowance; a writer
// past either waits for its stream's buffered-amount-low signal.
const (
	sctpWriteChunk       = 64 << 10
	sctpReadBuffer       = 64 << 10
	sctpStreamAllowance  = 1 << 20
	sctpSessionAllowance = 8 << 20
	// sctpAllowanceRecheck re-reads the buffered amounts while a writer
	// waits, in case no signal comes (a stream reset under it): the signals
	// are each stream's buffered-amount-low and, for the session-wide
	// allowance, any stream's.
	sctpAllowanceRecheck = 20 * time.Millisecond
	sctpControlID        = 0
	sctpOpenWindow       = 8 // streams opened but not yet answered; pion accepts 16 at once
	sctpRTOMaxMillis     = 2000
)

// sctpSession carries streams over a DTLS connection with SCTP.
type sctpSession struct {
	assoc *sctp.Association
	conn  net.Conn
	role  Role
	cfg   Config
	log   *slog.Logger

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	accepted chan *sctpStream
	openSem  chan struct{}

	mu      sync.Mutex
	streams map[uint16]*sctpStream
	// closing holds the streams this side closed until the peer has reset
	// its side too (Unsettled).
	closing map[*sctpStream]struct{}
	nextID  uint16
	err     error

	closeOnce sync.Once
	done      chan struct{}

	lastHeard atomic.Int64 // unix nanos of the last control message from the peer

	roomMu sync.Mutex
	room   chan struct{} // closed (and replaced) when any stream's queue went low
}

// roomSignal returns the channel closed at the next stream's
// buffered-amount-low.
func (s *sctpSession) roomSignal() <-chan struct{} {
	s.roomMu.Lock()
	defer s.roomMu.Unlock()
	return s.room
}

func (s *sctpSession) signalRoom() {
	s.roomMu.Lock()
	close(s.room)
	s.room = make(chan struct{})
	s.roomMu.Unlock()
}

// errTransportEnded marks the end of the DTLS connection under an
// association.
var errTransportEnded = errors.New("tunnel: dtls connection ended")

// endWatch is the DTLS connection as the association reads it. pion ends
// every stream still open with the connection's read error, which after the
// peer's close_notify is io.EOF — the same io.EOF as a peer's orderly stream
// reset. endWatch marks that error so the two stay apart: a stream reset
// in order reads io.EOF (pion no longer holds it when the connection ends),
// a stream cut by the end of the connection reads errTransportEnded
// (wrapping the connection's own error).
type endWatch struct{ net.Conn }

func (w endWatch) Read(p []byte) (int, error) {
	n, err := w.Conn.Read(p)
	if err != nil {
		err = fmt.Errorf("%w (%w)", errTransportEnded, err)
	}
	return n, err
}

// NewDTLSSession runs the SCTP association handshake over conn, an
// established DTLS connection, and returns the session. ctx bounds the
// handshake only.
func NewDTLSSession(ctx context.Context, conn net.Conn, role Role, cfg Config) (Session, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := cfg.logger().With("mux", "sctp", "role", role.String())
	opts := []sctp.AssociationOption{
		sctp.WithNetConn(endWatch{conn}),
		sctp.WithLoggerFactory(PionLoggerFactory(log)),
		sctp.WithMaxReceiveBufferSize(cfg.receiveBuffer()),
		sctp.WithMTU(cfg.mtu()),
		sctp.WithBlockWrite(false),
		// RFC 9653: SCTP over DTLS may leave its CRC32c checksum zero, the
		// DTLS record's AEAD already protecting the packet; negotiated in
		// the INIT, so a peer that does not offer it keeps checksums.
		sctp.WithEnableZeroChecksum(true),
		// Bound retransmission backoff: a tunnel should recover from a burst
		// of loss in seconds, not in pion's default minute.
		sctp.WithRTOMax(sctpRTOMaxMillis),
		sctp.WithName(role.String()),
	}
	type result struct {
		a   *sctp.Association
		err error
	}
	res := make(chan result, 1)
	go func() {
		var (
			a   *sctp.Association
			err error
		)
		if role == RoleClient {
			copts := make([]sctp.ClientOption, len(opts))
			for i, o := range opts {
				copts[i] = o
			}
			a, err = sctp.ClientContext(ctx, copts...)
		} else {
			sopts := make([]sctp.ServerOption, len(opts))
			for i, o := range opts {
				sopts[i] = o
			}
			a, err = sctp.ServerWithOptions(sopts...)
		}
		res <- result{a, err}
	}()
	var r result
	select {
	case r = <-res:
	case <-ctx.Done():
		// Closing the connection stops the association's read loop, which
		// makes the server handshake return.
		_ = conn.Close()
		r = <-res
		if r.a != nil {
			_ = r.a.Close()
		}
		return nil, fmt.Errorf("tunnel: sctp handshake: %w", ctx.Err())
	}
	if r.err != nil {
		return nil, fmt.Errorf("tunnel: sctp handshake: %w", r.err)
	}
	sctx, cancel := context.WithCancel(context.Background())
	s := &sctpSession{
		assoc:    r.a,
		conn:     conn,
		role:     role,
		cfg:      cfg,
		log:      log,
		ctx:      sctx,
		cancel:   cancel,
		accepted: make(chan *sctpStream, cfg.acceptBacklog()),
		openSem:  make(chan struct{}, sctpOpenWindow),
		streams:  make(map[uint16]*sctpStream),
		nextID:   1,
		done:     make(chan struct{}),
		room:     make(chan struct{}),
	}
	s.lastHeard.Store(time.Now().UnixNano())
	if role == RoleGateway {
		s.wg.Add(1)
		go s.silenceLoop()
	}
	if role == RoleClient {
		ctl, err := r.a.OpenStream(sctpControlID, sctp.PayloadTypeWebRTCBinary)
		if err != nil {
			s.die(fmt.Errorf("tunnel: open control stream: %w", err))
			return nil, err
		}
		s.wg.Add(2)
		go s.pingLoop(ctl)
		go s.controlReadLoop(ctl)
	}
	s.wg.Add(1)
	go s.acceptLoop()
	return s, nil
}

// acceptLoop drains pion's small accept queue into ours, routing the control
// stream to the keepalive responder.
func (s *sctpSession) acceptLoop() {
	defer s.wg.Done()
	for {
		st, err := s.assoc.AcceptStream()
		if err != nil {
			s.die(fmt.Errorf("%w: association ended: %w", ErrSessionClosed, err))
			return
		}
		if st.StreamIdentifier() == sctpControlID {
			if s.role == RoleGateway {
				s.wg.Add(1)
				go s.controlEcho(st)
			}
			continue
		}
		ss := s.newStream(st, false)
		select {
		case s.accepted <- ss:
		case <-s.ctx.Done():
			_ = st.Close()
			return
		}
	}
}

// pingLoop sends the client's keepalives and kills the session when the
// gateway has been silent for longer than the keepalive timeout.
//
// The silence is checked keepaliveChecks times per interval, not only when
// a ping is due: checked at the pings alone, a session whose gateway fell
// silent just after an answer died a whole interval after its timeout.
func (s *sctpSession) pingLoop(ctl *sctp.Stream) {
	defer s.wg.Done()
	interval := s.cfg.keepAliveInterval()
	t := time.NewTicker(interval / keepaliveChecks)
	defer t.Stop()
	var seq, lastRx uint64
	nextPing := time.Now().Add(interval)
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		// Any data from the peer proves it alive, not only answers to pings,
		// which may queue behind bulk data.
		if rx := s.assoc.BytesReceived(); rx != lastRx {
			lastRx = rx
			s.lastHeard.Store(time.Now().UnixNano())
		}
		if silent := time.Since(time.Unix(0, s.lastHeard.Load())); silent > s.cfg.keepAliveTimeout() {
			s.die(fmt.Errorf("%w: no answer for %v", ErrKeepaliveTimeout, silent.Round(time.Millisecond)))
			return
		}
		if time.Now().Before(nextPing) {
			continue
		}
		nextPing = nextPing.Add(interval)
		if now := time.Now(); nextPing.Before(now) {
			nextPing = now.Add(interval) // late (a loaded machine): no burst of pings
		}
		seq++
		var b [8]byte
		binary.BigEndian.PutUint64(b[:], seq)
		// A dead peer stops acknowledging, the window fills and blocking
		// writes wait for room that never comes: bound the ping's write so
		// that this loop keeps its appointment with the silence check.
		_ = ctl.SetWriteDeadline(time.Now().Add(s.cfg.keepAliveInterval()))
		if _, err := ctl.Write(b[:]); err != nil && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, os.ErrDeadlineExceeded) {
			s.die(fmt.Errorf("%w: keepalive write: %w", ErrSessionClosed, err))
			return
		}
	}
}

// keepaliveChecks is how many times per keepalive interval the client
// checks the gateway's silence against the keepalive timeout.
const keepaliveChecks = 5

func (s *sctpSession) controlReadLoop(ctl *sctp.Stream) {
	defer s.wg.Done()
	buf := make([]byte, sctpReadBuffer)
	for {
		if _, err := ctl.Read(buf); err != nil {
			return
		}
		s.lastHeard.Store(time.Now().UnixNano())
	}
}

// silenceLoop ends a gateway's session once the client has sent nothing
// (no data, no keepalive) for longer than the keepalive timeout. Over UDP
// nothing else would tell: a client whose path died — a firewall that
// restarted and forgot the flow, a laptop that vanished — leaves the
// session and its flows open until the UDP mux's idle timeout. The
// client pings every KeepAliveInterval of its own, so the gateway's
// timeout must exceed the clients' interval (both default to 5 s, the
// timeout to 15 s).
func (s *sctpSession) silenceLoop() {
	defer s.wg.Done()
	t := time.NewTicker(s.cfg.keepAliveInterval())
	defer t.Stop()
	var lastRx uint64
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		if rx := s.assoc.BytesReceived(); rx != lastRx {
			lastRx = rx
			s.lastHeard.Store(time.Now().UnixNano())
		}
		if silent := time.Since(time.Unix(0, s.lastHeard.Load())); silent > s.cfg.keepAliveTimeout() {
			s.die(fmt.Errorf("%w: nothing from the client for %v", ErrKeepaliveTimeout, silent.Round(time.Millisecond)))
			return
		}
	}
}

// controlEcho answers the client's pings on the gateway.
func (s *sctpSession) controlEcho(ctl *sctp.Stream) {
	defer s.wg.Done()
	buf := make([]byte, sctpReadBuffer)
	for {
		n, err := ctl.Read(buf)
		if err != nil {
			return
		}
		s.lastHeard.Store(time.Now().UnixNano())
		if _, err := ctl.Write(buf[:n]); err != nil {
			return
		}
	}
}

func (s *sctpSession) newStream(st *sctp.Stream, opened bool) *sctpStream {
	ss := &sctpStream{st: st, sess: s, opened: opened, rbuf: make([]byte, 0, sctpReadBuffer), room: make(chan struct{}, 1)}
	st.SetBufferedAmountLowThreshold(sctpStreamAllowance / 2)
	st.OnBufferedAmountLow(ss.signalRoom)
	if opened {
		ss.holdsOpenSlot.Store(true)
	}
	s.mu.Lock()
	s.streams[st.StreamIdentifier()] = ss
	s.mu.Unlock()
	return ss
}

func (s *sctpSession) release(ss *sctpStream) {
	s.mu.Lock()
	if cur, ok := s.streams[ss.st.StreamIdentifier()]; ok && cur == ss {
		delete(s.streams, ss.st.StreamIdentifier())
		if s.err == nil && ss.st.State() != sctp.StreamStateClosed {
			if s.closing == nil {
				s.closing = map[*sctpStream]struct{}{}
			}
			s.closing[ss] = struct{}{}
		}
	}
	s.pruneClosingLocked()
	s.mu.Unlock()
}

// pruneClosingLocked forgets the closing streams the peer has closed too,
// so that closing holds only streams still waiting for the peer.
func (s *sctpSession) pruneClosingLocked() {
	for c := range s.closing {
		if c.st.State() == sctp.StreamStateClosed {
			delete(s.closing, c)
		}
	}
}

func (s *sctpSession) Open(ctx context.Context) (Stream, error) {
	select {
	case s.openSem <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-s.done:
		return nil, s.Err()
	}
	s.mu.Lock()
	if s.err != nil {
		s.mu.Unlock()
		<-s.openSem
		return nil, s.err
	}
	var id uint16
	for tries := 0; tries < 1<<16; tries++ {
		cand := s.nextID
		s.nextID++
		if s.nextID == 0 {
			s.nextID = 1
		}
		if _, busy := s.streams[cand]; !busy && cand != sctpControlID {
			id = cand
			break
		}
	}
	s.mu.Unlock()
	if id == 0 {
		<-s.openSem
		return nil, fmt.Errorf("tunnel: open stream: all stream identifiers in use")
	}
	st, err := s.assoc.OpenStream(id, sctp.PayloadTypeWebRTCBinary)
	if err != nil {
		<-s.openSem
		return nil, fmt.Errorf("tunnel: open stream: %w", err)
	}
	if st.State() != sctp.StreamStateOpen {
		// The identifier still belongs to a stream whose reset has not
		// completed; take the next one.
		<-s.openSem
		return s.Open(ctx)
	}
	return s.newStream(st, true), nil
}

func (s *sctpSession) Accept(ctx context.Context) (Stream, error) {
	select {
	case st := <-s.accepted:
		return st, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-s.done:
		return nil, s.Err()
	}
}

func (s *sctpSession) die(err error) {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.err = err
		s.mu.Unlock()
		s.cancel()
		_ = s.assoc.Close()
		_ = s.conn.Close()
		close(s.done)
	})
}

// Close ends the association and the DTLS connection and waits for the
// session's goroutines.
func (s *sctpSession) Close() error {
	s.die(ErrSessionClosed)
	s.wg.Wait()
	return nil
}

func (s *sctpSession) Done() <-chan struct{} { return s.done }

func (s *sctpSession) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

func (s *sctpSession) Transport() Transport { return TransportDTLS }

func (s *sctpSession) NumStreams() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.streams)
}

// Unsettled implements Session: a stream this side closed stays counted
// until pion reports it closed, that is until the peer's outgoing stream
// reset arrived (RFC 6525), after all the data the peer sent before it.
func (s *sctpSession) Unsettled() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		clear(s.closing)
		return 0
	}
	s.pruneClosingLocked()
	return len(s.streams) + len(s.closing)
}

func (s *sctpSession) LocalAddr() net.Addr  { return s.conn.LocalAddr() }
func (s *sctpSession) RemoteAddr() net.Addr { return s.conn.RemoteAddr() }

// sctpStream adapts an SCTP stream (message-oriented) to a byte stream.
type sctpStream struct {
	st   *sctp.Stream
	sess *sctpSession
	// opened: this side opened the stream (the client's flows).
	opened bool

	rmu  sync.Mutex
	rbuf []byte
	roff int
	rerr error

	wmu           sync.Mutex
	room          chan struct{} // signalled when the stream's queue went low
	wdeadline     atomic.Int64  // unix nanos; zero means none
	holdsOpenSlot atomic.Bool
	readEOF       atomic.Bool
	writeClosed   atomic.Bool
	closeOnce     sync.Once
}

func (c *sctpStream) releaseOpenSlot() {
	if c.holdsOpenSlot.CompareAndSwap(true, false) {
		<-c.sess.openSem
	}
}

func (c *sctpStream) Read(p []byte) (int, error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	if c.roff < len(c.rbuf) {
		n := copy(p, c.rbuf[c.roff:])
		c.roff += n
		return n, nil
	}
	if c.rerr != nil {
		return 0, c.rerr
	}
	var (
		n   int
		err error
	)
	if len(p) >= sctpReadBuffer {
		n, err = c.st.Read(p)
	} else {
		n, err = c.st.Read(c.rbuf[:cap(c.rbuf)])
		if err == nil {
			c.rbuf = c.rbuf[:n]
			c.roff = copy(p, c.rbuf)
			n = c.roff
		}
	}
	if err != nil {
		c.releaseOpenSlot()
		c.rerr = c.mapErr(err)
		if errors.Is(err, io.EOF) {
			c.readEOF.Store(true)
			c.maybeRelease()
		}
		return 0, c.rerr
	}
	c.releaseOpenSlot()
	return n, nil
}

func (c *sctpStream) mapErr(err error) error {
	switch {
	case errors.Is(err, errTransportEnded) && c.opened:
		// Checked before io.EOF, which it may wrap: the tunnel ended under
		// the flow.
		return sessionLost(c.sess.Err(), err)
	case errors.Is(err, io.EOF), errors.Is(err, errTransportEnded):
		// The accepting side (the gateway) cannot tell a cut flow from one
		// its client closed in order just before ending the tunnel, whose
		// stream reset the tunnel's end overtook; as over yamux, EOF.
		return io.EOF
	case errors.Is(err, context.DeadlineExceeded):
		return os.ErrDeadlineExceeded
	}
	if errors.Is(err, sctp.ErrStreamClosed) && c.writeClosed.Load() {
		return err // our own CloseWrite
	}
	// Any other stream error comes from the association: the tunnel is
	// going down under the flow.
	return sessionLost(c.sess.Err(), err)
}

func (c *sctpStream) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	written := 0
	for len(p) > 0 {
		chunk := p
		if len(chunk) > sctpWriteChunk {
			chunk = chunk[:sctpWriteChunk]
		}
		if err := c.waitRoom(); err != nil {
			return written, err
		}
		n, err := c.st.Write(chunk)
		written += n
		if err != nil {
			return written, c.mapErr(err)
		}
		p = p[n:]
	}
	return written, nil
}

func (c *sctpStream) signalRoom() {
	select {
	case c.room <- struct{}{}:
	default:
	}
	c.sess.signalRoom()
}

// full reports whether the stream or the session has used its allowance.
func (c *sctpStream) full() bool {
	return c.st.BufferedAmount() >= sctpStreamAllowance || c.sess.assoc.BufferedAmount() >= sctpSessionAllowance
}

// waitRoom waits until the stream may queue another chunk, the write
// deadline passes or the session ends.
func (c *sctpStream) waitRoom() error {
	if !c.full() {
		return nil
	}
	var expired <-chan time.Time
	if d := c.wdeadline.Load(); d != 0 {
		t := time.NewTimer(time.Until(time.Unix(0, d)))
		defer t.Stop()
		expired = t.C
	}
	recheck := time.NewTicker(sctpAllowanceRecheck)
	defer recheck.Stop()
	for {
		sessionRoom := c.sess.roomSignal() // before the check: no signal lost
		if !c.full() {
			return nil
		}
		if c.st.State() != sctp.StreamStateOpen {
			return c.mapErr(sctp.ErrStreamClosed)
		}
		select {
		case <-c.room:
		case <-sessionRoom:
		case <-recheck.C:
		case <-expired:
			return os.ErrDeadlineExceeded
		case <-c.sess.done:
			return sessionLost(c.sess.Err(), ErrSessionClosed)
		}
	}
}

// CloseWrite resets the outgoing stream: the peer reads EOF once all data
// written before it has been delivered (RFC 6525).
func (c *sctpStream) CloseWrite() error {
	if c.writeClosed.Swap(true) {
		return nil
	}
	err := c.st.Close()
	c.maybeRelease()
	return err
}

// Close half-closes and stops reading; the stream identifier is released
// once the peer has closed its side too.
func (c *sctpStream) Close() error {
	c.closeOnce.Do(func() {
		_ = c.CloseWrite()
		c.releaseOpenSlot()
		_ = c.st.SetReadDeadline(time.Now())
		c.sess.release(c)
	})
	return nil
}

func (c *sctpStream) maybeRelease() {
	if c.readEOF.Load() && c.writeClosed.Load() {
		c.sess.release(c)
	}
}

func (c *sctpStream) ID() uint32           { return uint32(c.st.StreamIdentifier()) }
func (c *sctpStream) LocalAddr() net.Addr  { return c.sess.LocalAddr() }
func (c *sctpStream) RemoteAddr() net.Addr { return c.sess.RemoteAddr() }

func (c *sctpStream) SetDeadline(t time.Time) error {
	if err := c.SetReadDeadline(t); err != nil {
		return err
	}
	return c.SetWriteDeadline(t)
}

func (c *sctpStream) SetReadDeadline(t time.Time) error { return c.st.SetReadDeadline(t) }

// SetWriteDeadline bounds the wait for room in the stream's send allowance
// (pion's writes do not block).
func (c *sctpStream) SetWriteDeadline(t time.Time) error {
	var d int64
	if !t.IsZero() {
		d = t.UnixNano()
	}
	c.wdeadline.Store(d)
	return nil
}
