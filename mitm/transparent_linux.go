//go:build linux

package mitm

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/pinwall/pinwall/hostnet"
)

// Transparent interception on Linux, with the rules netsetup installs:
//
//   - TCP is REDIRECTed to a plain listener; the original destination of
//     an accepted connection is getsockopt(SOL_IP, SO_ORIGINAL_DST), which
//     conntrack answers.
//   - UDP is diverted by TPROXY to a socket with IP_TRANSPARENT; with
//     IP_RECVORIGDSTADDR every datagram carries its original destination in
//     a control message. Each allowed flow answers its client through a
//     socket of its own bound, with IP_TRANSPARENT, to the flow's original
//     destination, so the client sees the answers come from the server it
//     addressed. That socket stays unconnected: a connected one would match
//     TPROXY's established-socket lookup and steal the flow's next
//     datagrams from the intercept socket.
//
// Both are IPv4, like netsetup's rules.

// soOriginalDst is SO_ORIGINAL_DST from linux/netfilter_ipv4.h.
const soOriginalDst = 80

// ListenTransparentTCP opens the listener nftables REDIRECTs TCP to
// (netsetup.Intercept.TCPTo), for ServeTransparent. A REDIRECTed connection
// needs no special socket option, so this is a plain IPv4 listener;
// address is "IP:port" or ":port".
func ListenTransparentTCP(ctx context.Context, address string) (net.Listener, error) {
	ap, err := transparentAddr(address)
	if err != nil {
		return nil, err
	}
	var lc net.ListenConfig
	l, err := lc.Listen(ctx, "tcp4", ap.String())
	if err != nil {
		return nil, fmt.Errorf("mitm: transparent TCP listener: %w", err)
	}
	return l, nil
}

// ListenTransparentUDP opens the socket TPROXY diverts UDP to
// (netsetup.Intercept.UDPTo), for ServeUDPTransparent. It sets
// IP_TRANSPARENT, so the kernel may hand it datagrams addressed to other
// hosts (this needs CAP_NET_ADMIN or CAP_NET_RAW), IP_RECVORIGDSTADDR, so each datagram
// arrives with its original destination, and hostnet.UDPBufferSize socket
// buffers. address is "IP:port" or ":port" (IPv4).
func ListenTransparentUDP(ctx context.Context, address string) (*net.UDPConn, error) {
	ap, err := transparentAddr(address)
	if err != nil {
		return nil, err
	}
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		return setsockopts(rc,
			sockopt{unix.SOL_IP, unix.IP_TRANSPARENT, 1, "IP_TRANSPARENT"},
			sockopt{unix.SOL_IP, unix.IP_RECVORIGDSTADDR, 1, "IP_RECVORIGDSTADDR"},
			sockopt{unix.SOL_SOCKET, unix.SO_RCVBUF, hostnet.UDPBufferSize, "SO_RCVBUF"},
			sockopt{unix.SOL_SOCKET, unix.SO_SNDBUF, hostnet.UDPBufferSize, "SO_SNDBUF"},
		)
	}}
	pc, err := lc.ListenPacket(ctx, "udp4", ap.String())
	if err != nil {
		return nil, fmt.Errorf("mitm: transparent UDP socket: %w%s", err, permissionHint(err))
	}
	return pc.(*net.UDPConn), nil
}

// transparentAddr parses "IP:port" or ":port" as an IPv4 socket address.
func transparentAddr(address string) (netip.AddrPort, error) {
	host, port, err := net.SplitHostPort(address)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("mitm: transparent listener address %q: %w", address, err)
	}
	if host == "" {
		host = "0.0.0.0"
	}
	ap, err := hostnet.ParseAddrPort(net.JoinHostPort(host, port))
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("mitm: transparent listener address: %w", err)
	}
	if !ap.Addr().Is4() {
		return netip.AddrPort{}, fmt.Errorf("mitm: transparent listener address %q: interception is IPv4 only", address)
	}
	return ap, nil
}

func permissionHint(err error) string {
	if errors.Is(err, unix.EPERM) {
		return " (IP_TRANSPARENT needs CAP_NET_ADMIN or CAP_NET_RAW)"
	}
	return ""
}

type sockopt struct {
	level, opt, value int
	name              string
}

func setsockopts(rc syscall.RawConn, opts ...sockopt) error {
	var serr error
	err := rc.Control(func(fd uintptr) {
		for _, o := range opts {
			if e := unix.SetsockoptInt(int(fd), o.level, o.opt, o.value); e != nil {
				serr = fmt.Errorf("setsockopt %s: %w", o.name, e)
				return
			}
		}
	})
	return errors.Join(err, serr)
}

// ServeTransparent serves TCP connections REDIRECTed by nftables: the
// original destination of each comes from SO_ORIGINAL_DST, and the session
// takes the same path as ServeIntercept's. A connection made to the
// listener itself (not redirected) is dropped. It returns when ctx is
// done, l closes or the firewall does.
func (f *Firewall) ServeTransparent(ctx context.Context, l net.Listener) error {
	return f.serve(ctx, l, "transparent", func(c net.Conn) (net.Conn, origin, error) {
		dst, err := originalDst(c)
		if err != nil {
			return nil, origin{}, err
		}
		if dst == addrPortOf(c.LocalAddr()) {
			return nil, origin{}, fmt.Errorf("connection to %s itself, not redirected", dst)
		}
		return c, origin{src: unmapped(addrPortOf(c.RemoteAddr())), dst: dst}, nil
	})
}

func unmapped(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// originalDst asks conntrack where a REDIRECTed connection was going.
func originalDst(c net.Conn) (netip.AddrPort, error) {
	for {
		if _, ok := c.(syscall.Conn); ok {
			break
		}
		u, ok := c.(interface{ Unwrap() net.Conn })
		if !ok {
			return netip.AddrPort{}, fmt.Errorf("SO_ORIGINAL_DST: %T is not a socket", c)
		}
		c = u.Unwrap()
	}
	rc, err := c.(syscall.Conn).SyscallConn()
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("SO_ORIGINAL_DST: %w", err)
	}
	var (
		dst  netip.AddrPort
		gerr error
	)
	err = rc.Control(func(fd uintptr) {
		// The kernel writes a struct sockaddr_in (16 bytes); IPv6Mreq is
		// the x/sys/unix getter of the right size (20 bytes).
		m, e := unix.GetsockoptIPv6Mreq(int(fd), unix.SOL_IP, soOriginalDst)
		if e != nil {
			gerr = e
			return
		}
		sa := m.Multiaddr // family (2), port (2, big endian), address (4)
		dst = netip.AddrPortFrom(netip.AddrFrom4([4]byte(sa[4:8])), binary.BigEndian.Uint16(sa[2:4]))
	})
	if err = errors.Join(err, gerr); err != nil {
		return netip.AddrPort{}, fmt.Errorf("SO_ORIGINAL_DST: %w", err)
	}
	return dst, nil
}

// ServeUDPTransparent serves datagrams diverted by TPROXY to pc, a socket
// from ListenTransparentUDP: the original destination of each comes with
// it (IP_RECVORIGDSTADDR), and the flows run through the same engine as
// ServeUDPIntercept's (policy per flow, DTLS/QUIC classification, a deny
// logged once, idle ageing, one record per flow). Answers reach the client
// from the flow's original destination through a transparent socket bound
// to it, opened in pc's network namespace whichever thread opens it.
// Datagrams sent to pc's own port without diversion are dropped. It
// returns when ctx is done, pc closes or the firewall does, and at once,
// with an error, when pc lacks IP_TRANSPARENT or IP_RECVORIGDSTADDR.
func (f *Firewall) ServeUDPTransparent(ctx context.Context, pc *net.UDPConn) error {
	rc, err := pc.SyscallConn()
	if err != nil {
		return fmt.Errorf("mitm: ServeUDPTransparent: %w", err)
	}
	if err := checkTransparent(rc); err != nil {
		return fmt.Errorf("mitm: ServeUDPTransparent: %w (open the socket with ListenTransparentUDP)", err)
	}
	local := unmapped(addrPortOf(pc.LocalAddr()))
	ts := &transparentSocket{conn: pc, local: local, netns: -1, oob: make([]byte, unix.CmsgSpace(unix.SizeofSockaddrInet6))}
	_ = rc.Control(func(fd uintptr) {
		// SIOCGSKNS: the socket's network namespace, where the answering
		// sockets must be opened too.
		if ns, err := unix.IoctlRetInt(int(fd), unix.SIOCGSKNS); err == nil {
			ts.netns = ns
		}
	})
	if ts.netns < 0 {
		f.cfg.Logger.Debug("mitm: SIOCGSKNS failed, answering sockets open in the caller's namespace")
	} else {
		defer unix.Close(ts.netns)
	}
	return f.serveUDP(ctx, pc, ts)
}

func checkTransparent(rc syscall.RawConn) error {
	var missing []string
	err := rc.Control(func(fd uintptr) {
		for _, o := range []sockopt{
			{unix.SOL_IP, unix.IP_TRANSPARENT, 1, "IP_TRANSPARENT"},
			{unix.SOL_IP, unix.IP_RECVORIGDSTADDR, 1, "IP_RECVORIGDSTADDR"},
		} {
			if v, e := unix.GetsockoptInt(int(fd), o.level, o.opt); e != nil || v == 0 {
				missing = append(missing, o.name)
			}
		}
	})
	if err != nil {
		return err
	}
	if len(missing) > 0 {
		return fmt.Errorf("socket lacks %v", missing)
	}
	return nil
}

// transparentSocket is ServeUDPTransparent's udpSocket.
type transparentSocket struct {
	conn  *net.UDPConn
	local netip.AddrPort
	netns int    // fd of conn's network namespace, -1 if unknown
	oob   []byte // control messages; used by the read loop only
}

func (t *transparentSocket) readFlow(buf []byte) (flowKey, []byte, net.Addr, error) {
	n, oobn, _, from, err := t.conn.ReadMsgUDPAddrPort(buf, t.oob)
	if err != nil {
		return flowKey{}, nil, nil, err
	}
	src := unmapped(from)
	fromAddr := net.UDPAddrFromAddrPort(src)
	dst, err := origDstAddr(t.oob[:oobn])
	if err != nil {
		return flowKey{}, nil, fromAddr, fmt.Errorf("%w: %w", errBadDatagram, err)
	}
	if dst.Port() == t.local.Port() && (t.local.Addr().IsUnspecified() || dst.Addr() == t.local.Addr()) {
		return flowKey{}, nil, fromAddr, fmt.Errorf("%w: sent to %s itself, not diverted", errBadDatagram, dst)
	}
	return flowKey{src: src, dst: dst}, buf[:n], fromAddr, nil
}

// origDstAddr finds IP_ORIGDSTADDR among a datagram's control messages.
func origDstAddr(oob []byte) (netip.AddrPort, error) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("control messages: %w", err)
	}
	for i := range msgs {
		if msgs[i].Header.Level != unix.SOL_IP || msgs[i].Header.Type != unix.IP_ORIGDSTADDR {
			continue
		}
		sa, err := unix.ParseOrigDstAddr(&msgs[i])
		if err != nil {
			return netip.AddrPort{}, fmt.Errorf("IP_ORIGDSTADDR: %w", err)
		}
		if sa4, ok := sa.(*unix.SockaddrInet4); ok {
			return netip.AddrPortFrom(netip.AddrFrom4(sa4.Addr), uint16(sa4.Port)), nil
		}
	}
	return netip.AddrPort{}, errors.New("no IP_ORIGDSTADDR (not diverted by TPROXY?)")
}

func (t *transparentSocket) answerer(key flowKey, _ net.Addr) (udpAnswerer, error) {
	var c *net.UDPConn
	err := inNetns(t.netns, func() error {
		var err error
		c, err = listenReply(key.dst)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("answering socket on %s: %w%s", key.dst, err, permissionHint(err))
	}
	return &transparentReply{c: c, to: key.src}, nil
}

// listenReply opens an unconnected socket bound to src, an address of
// another host, to send a flow's answers from. SO_REUSEADDR lets flows of
// several clients to one destination each have theirs.
func listenReply(src netip.AddrPort) (*net.UDPConn, error) {
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		return setsockopts(rc,
			sockopt{unix.SOL_IP, unix.IP_TRANSPARENT, 1, "IP_TRANSPARENT"},
			sockopt{unix.SOL_SOCKET, unix.SO_REUSEADDR, 1, "SO_REUSEADDR"},
			sockopt{unix.SOL_SOCKET, unix.SO_SNDBUF, hostnet.UDPBufferSize, "SO_SNDBUF"},
		)
	}}
	pc, err := lc.ListenPacket(context.Background(), "udp4", src.String())
	if err != nil {
		return nil, err
	}
	return pc.(*net.UDPConn), nil
}

// transparentReply answers one flow's client.
type transparentReply struct {
	c  *net.UDPConn
	to netip.AddrPort
}

func (r *transparentReply) send(b []byte) error {
	_, err := r.c.WriteToUDPAddrPort(b, r.to)
	return err
}

func (r *transparentReply) close() { r.c.Close() }

// inNetns runs fn on an OS thread inside the network namespace ns (an fd;
// -1 means the caller's). When the thread is already there, as in a
// container, nothing changes namespace; otherwise (a test that put the
// firewall's sockets in a namespace of their own) the thread enters ns,
// which needs CAP_SYS_ADMIN, and returns, or is discarded if it cannot.
func inNetns(ns int, fn func() error) error {
	if ns < 0 {
		return fn()
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		var cur, want unix.Stat_t
		if err := errors.Join(unix.Stat("/proc/thread-self/ns/net", &cur), unix.Fstat(ns, &want)); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("network namespace: %w", err)
			return
		}
		if cur.Dev == want.Dev && cur.Ino == want.Ino {
			err := fn()
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("network namespace: %w", err)
			return
		}
		defer unix.Close(orig)
		if err := unix.Setns(ns, unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("enter the intercept socket's network namespace: %w", err)
			return
		}
		ferr := fn()
		if err := unix.Setns(orig, unix.CLONE_NEWNET); err != nil {
			// Stay locked: the thread ends with this goroutine.
			errc <- errors.Join(ferr, fmt.Errorf("leave the intercept socket's network namespace: %w", err))
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}
