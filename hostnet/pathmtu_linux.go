package hostnet

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// socketMTU reads IP_MTU (IPV6_MTU) from a connected socket.
func socketMTU(raw syscall.RawConn, v6 bool) (int, error) {
	var mtu int
	var serr error
	err := raw.Control(func(fd uintptr) {
		if v6 {
			mtu, serr = unix.GetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_MTU)
			return
		}
		mtu, serr = unix.GetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_MTU)
	})
	if err != nil {
		return 0, err
	}
	return mtu, serr
}
