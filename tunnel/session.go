package tunnel

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/pinwall/pinwall/failure"
)

// Role says which end of a tunnel a Session is.
type Role int

// Roles.
const (
	RoleClient Role = iota
	RoleGateway
)

func (r Role) String() string {
	if r == RoleGateway {
		return "gateway"
	}
	return "client"
}

// Session is one tunnel: a secure connection carrying many streams.
type Session interface {
	// Open starts a new stream (client side).
	Open(ctx context.Context) (Stream, error)
	// Accept waits for the peer's next stream (gateway side).
	Accept(ctx context.Context) (Stream, error)
	// Close tears the session down; it is idempotent.
	Close() error
	// Done is closed when the session has died or been closed.
	Done() <-chan struct{}
	// Err says why the session died (nil while it lives).
	Err() error
	// Transport says how the session is carried.
	Transport() Transport
	// NumStreams counts open streams.
	NumStreams() int
	// Unsettled counts the streams not yet closed by both sides: the open
	// ones, and those this side closed whose peer has not closed its side
	// yet (its last bytes, an origin's close_notify say, may still be on
	// their way). Zero once the session has ended.
	Unsettled() int
	LocalAddr() net.Addr
	RemoteAddr() net.Addr
}

// Stream is one inner flow.
type Stream interface {
	net.Conn
	// CloseWrite half-closes: the peer reads EOF, this side can still read.
	CloseWrite() error
	// ID is the stream's number within its session.
	ID() uint32
}

// ErrSessionClosed is returned by operations on a closed session.
var ErrSessionClosed = errors.New("tunnel: session closed")

// sessionLost attributes a stream error caused by its session dying: the
// flow was reset by the loss of the tunnel under it.
func sessionLost(sessErr, err error) error {
	if sessErr == nil {
		sessErr = ErrSessionClosed
	}
	return failure.New(failure.LegClientGateway, failure.CauseConnectionReset, "tunnel stream", "", fmt.Errorf("%w (%w)", sessErr, err))
}

// ErrKeepaliveTimeout is a session's Err when the peer stopped answering pings.
var ErrKeepaliveTimeout = errors.New("tunnel: keepalive timeout")

// Config tunes a Session. The zero value is usable: defaults are given per field.
type Config struct {
	// Logger receives debug output of the session and its libraries; nil discards.
	Logger *slog.Logger
	// KeepAliveInterval is the ping period; zero means 5s.
	KeepAliveInterval time.Duration
	// KeepAliveTimeout is how long without an answer kills the session;
	// zero means 3 × KeepAliveInterval.
	KeepAliveTimeout time.Duration
	// StreamWindow is yamux's per-stream receive window; zero means 4 MiB.
	StreamWindow uint32
	// ReceiveBuffer is SCTP's association receive buffer; zero means 8 MiB.
	ReceiveBuffer uint32
	// MTU is the SCTP packet size over DTLS, 576 to 8144; zero means 1200
	// (a DTLS datagram that crosses a 1280-byte path unfragmented). The
	// client and the gateway set it from the path MTU (PathMTUPacket)
	// when their network can tell it and their configuration leaves it
	// zero.
	MTU uint32
	// AcceptBacklog bounds streams waiting for Accept; zero means 256.
	AcceptBacklog int
}

func (c Config) logger() *slog.Logger {
	if c.Logger != nil {
		return c.Logger
	}
	return slog.New(slog.DiscardHandler)
}

func (c Config) keepAliveInterval() time.Duration {
	if c.KeepAliveInterval > 0 {
		return c.KeepAliveInterval
	}
	return 5 * time.Second
}

func (c Config) keepAliveTimeout() time.Duration {
	if c.KeepAliveTimeout > 0 {
		return c.KeepAliveTimeout
	}
	return 3 * c.keepAliveInterval()
}

func (c Config) streamWindow() uint32 {
	if c.StreamWindow > 0 {
		return c.StreamWindow
	}
	return 4 << 20
}

func (c Config) receiveBuffer() uint32 {
	if c.ReceiveBuffer > 0 {
		return c.ReceiveBuffer
	}
	return 8 << 20
}

func (c Config) mtu() uint32 {
	if c.MTU > 0 {
		return c.MTU
	}
	return 1200
}

func (c Config) acceptBacklog() int {
	if c.AcceptBacklog > 0 {
		return c.AcceptBacklog
	}
	return 256
}

// maxMTU is the largest SCTP packet that fits one datagram pion/dtls reads:
// its receive buffer is 8192 bytes, and a DTLS 1.2 AES-GCM record adds 37
// (DTLSOverhead). A larger MTU made every full packet vanish on the
// receiving side. The record path (RecordPath) reads into pion/dtls's
// buffer, and pion/sctp too reads a packet into 8,192 bytes.
const maxMTU = 8192 - DTLSOverhead - 11

// DTLSOverhead is what a DTLS 1.2 AES-GCM record adds to its payload: 13
// bytes of header, 8 of explicit nonce, 16 of tag (RFC 6347 §4.1, RFC 5288).
const DTLSOverhead = 13 + 8 + 16

// PathMTUPacket is the SCTP packet size that fills, with the DTLS record
// and the UDP and IP headers around it, one datagram of a path whose MTU is
// pathMTU: SCTP over DTLS (RFC 8261) sizes its packets to the path MTU
// less what DTLS adds, as OpenSSL's DTLS does with the kernel's IP_MTU
// (DTLS_get_data_mtu). The result is bounded to 576..8144:
// a path below 1,280 bytes gets 576, a loopback or jumbo path gets the
// largest packet pion/dtls reads in one datagram.
func PathMTUPacket(pathMTU int, ipv6 bool) uint32 {
	ipHeader := 20
	if ipv6 {
		ipHeader = 40
	}
	n := pathMTU - ipHeader - 8 - DTLSOverhead
	switch {
	case n < 576:
		return 576
	case n > maxMTU:
		return maxMTU
	}
	return uint32(n)
}

// WithPathMTU is c with its MTU set for a path of pathMTU bytes
// (PathMTUPacket), unless c already sets one.
func (c Config) WithPathMTU(pathMTU int, ipv6 bool) Config {
	if c.MTU == 0 && pathMTU > 0 {
		c.MTU = PathMTUPacket(pathMTU, ipv6)
	}
	return c
}

// Validate rejects contradictory settings.
func (c Config) Validate() error {
	if c.KeepAliveTimeout > 0 && c.KeepAliveTimeout < c.keepAliveInterval() {
		return fmt.Errorf("tunnel: keepalive timeout %v shorter than interval %v", c.KeepAliveTimeout, c.keepAliveInterval())
	}
	if c.MTU > 0 && (c.MTU < 576 || c.MTU > maxMTU) {
		return fmt.Errorf("tunnel: MTU %d out of range 576..%d", c.MTU, maxMTU)
	}
	if c.StreamWindow > 0 && c.StreamWindow < 256<<10 {
		return fmt.Errorf("tunnel: stream window %d below yamux's minimum 256 KiB", c.StreamWindow)
	}
	return nil
}
