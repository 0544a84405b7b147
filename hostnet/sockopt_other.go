//go:build !unix

package hostnet

import "syscall"

// setUDPBuffers leaves the system's buffer sizes alone where the socket
// options are not portable.
func setUDPBuffers(syscall.RawConn, int) error { return nil }

func setNoDelayHint(syscall.RawConn) error { return nil }
