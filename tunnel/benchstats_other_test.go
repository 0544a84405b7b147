//go:build !unix

package tunnel

import "time"

// cpuTime is zero where getrusage(2) is not there.
func cpuTime() time.Duration { return 0 }

// udpRcvbufErrors is zero where /proc/net/snmp is not there.
func udpRcvbufErrors() int64 { return 0 }
