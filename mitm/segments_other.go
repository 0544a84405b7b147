//go:build !linux

package mitm

import "net"

// tcpSegmentsIn is not available: TCP sessions are logged without packet
// counts.
func tcpSegmentsIn(*net.TCPConn) (uint64, bool) { return 0, false }
