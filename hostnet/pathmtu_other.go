//go:build !linux

package hostnet

import (
	"errors"
	"syscall"
)

// socketMTU is Linux's IP_MTU only: elsewhere the path MTU is unknown and
// the tunnel keeps its default packet size.
func socketMTU(syscall.RawConn, bool) (int, error) {
	return 0, errors.New("IP_MTU is not available on this system")
}
