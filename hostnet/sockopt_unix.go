//go:build unix

package hostnet

import "syscall"

func setUDPBuffers(c syscall.RawConn, size int) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		if e := syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, size); e != nil {
			serr = e
			return
		}
		serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_SNDBUF, size)
	})
	if err != nil {
		return err
	}
	return serr
}

func setNoDelayHint(syscall.RawConn) error { return nil }
