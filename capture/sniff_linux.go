//go:build linux

package capture

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pinwall/pinwall/pcapng"
)

// Sniffer captures an interface's frames with an AF_PACKET socket (pure
// Go: no libpcap, no cgo; it needs CAP_NET_RAW) and writes the frames
// each Tap matches into a LiveFile.
type Sniffer struct {
	f      *os.File
	rc     syscall.RawConn
	cls    classifier
	ifaces []uint32
	out    *LiveFile

	done chan struct{} // closed when the socket is
	once sync.Once
	wg   sync.WaitGroup

	mu                sync.Mutex
	received, dropped uint64
}

// rcvBuf is the socket's receive buffer: bursts wait there while the
// reader writes.
const rcvBuf = 8 << 20

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// StartSniffer opens the socket on cfg.Iface (in the caller's network
// namespace: the socket stays there whichever thread reads it) and
// captures until ctx ends or Close.
func StartSniffer(ctx context.Context, cfg SnifferConfig, out *LiveFile) (*Sniffer, error) {
	ifi, err := net.InterfaceByName(cfg.Iface)
	if err != nil {
		return nil, fmt.Errorf("capture: %w", err)
	}
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, int(htons(unix.ETH_P_ALL)))
	if err != nil {
		return nil, fmt.Errorf("capture: AF_PACKET socket on %s: %w", cfg.Iface, err)
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("capture: bind to %s: %w", cfg.Iface, err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, rcvBuf); err != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, rcvBuf)
	}
	s := &Sniffer{f: os.NewFile(uintptr(fd), "packet:"+cfg.Iface), cls: classifier{own: ifi.HardwareAddr, taps: cfg.Taps}, out: out, done: make(chan struct{})}
	for _, t := range cfg.Taps {
		i, err := out.Leg(t.Leg, t.Description, pcapng.LinkEthernet)
		if err != nil {
			s.f.Close()
			return nil, err
		}
		s.ifaces = append(s.ifaces, i)
	}
	if s.rc, err = s.f.SyscallConn(); err != nil {
		s.f.Close()
		return nil, err
	}
	s.wg.Add(2)
	go s.read()
	go func() {
		defer s.wg.Done()
		select {
		case <-ctx.Done():
			s.shut()
		case <-s.done:
		}
	}()
	return s, nil
}

// shut records the kernel's counters and closes the socket, once.
func (s *Sniffer) shut() {
	s.once.Do(func() {
		_ = s.rc.Control(func(fd uintptr) {
			if st, err := unix.GetsockoptTpacketStats(int(fd), unix.SOL_PACKET, unix.PACKET_STATISTICS); err == nil {
				s.mu.Lock()
				s.received, s.dropped = uint64(st.Packets), uint64(st.Drops)
				s.mu.Unlock()
			}
		})
		close(s.done)
		_ = s.f.Close()
	})
}

// Close stops the capture and waits for its goroutines. It is idempotent.
func (s *Sniffer) Close() error {
	s.shut()
	s.wg.Wait()
	return nil
}

// Stats returns what the kernel counted for the socket: frames received
// and dropped for want of buffer space. Valid after Close.
func (s *Sniffer) Stats() (received, dropped uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.received, s.dropped
}

// read loops over the socket through Go's poller until it is closed.
func (s *Sniffer) read() {
	defer s.wg.Done()
	buf := make([]byte, 256<<10) // offloaded (GSO/GRO) frames reach 64 KiB
	for {
		var (
			n    int
			from unix.Sockaddr
			rerr error
		)
		err := s.rc.Read(func(fd uintptr) bool {
			n, from, rerr = unix.Recvfrom(int(fd), buf, 0)
			return !errors.Is(rerr, unix.EAGAIN)
		})
		if err != nil {
			return // closed
		}
		if rerr != nil || n <= 0 {
			continue
		}
		t := time.Now()
		frame := buf[:n]
		i := s.cls.tap(frame)
		if i < 0 {
			continue
		}
		dir := pcapng.DirInbound
		if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Pkttype == unix.PACKET_OUTGOING {
			dir = pcapng.DirOutbound
		}
		s.out.Frame(s.ifaces[i], t, frame, dir)
	}
}
