//go:build linux

package mitm

import (
	"net"

	"golang.org/x/sys/unix"
)

// tcpSegmentsIn returns the segments the socket received (tcpi_segs_in).
func tcpSegmentsIn(c *net.TCPConn) (uint64, bool) {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0, false
	}
	var (
		info *unix.TCPInfo
		gerr error
	)
	if err := rc.Control(func(fd uintptr) {
		info, gerr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
	}); err != nil || gerr != nil {
		return 0, false
	}
	return uint64(info.Segs_in), true
}
