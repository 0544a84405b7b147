//go:build !linux

package capture

import "context"

// Sniffer captures an interface's frames (Linux only).
type Sniffer struct{}

// StartSniffer is not supported off Linux.
func StartSniffer(context.Context, SnifferConfig, *LiveFile) (*Sniffer, error) {
	return nil, ErrNotSupported
}

// Close does nothing.
func (*Sniffer) Close() error { return nil }

// Stats returns zeros.
func (*Sniffer) Stats() (received, dropped uint64) { return 0, 0 }
