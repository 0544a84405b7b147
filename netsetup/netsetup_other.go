//go:build !linux

package netsetup

import (
	"context"
	"fmt"
	"runtime"
)

// Apply is Linux only: elsewhere it validates cfg and returns an error
// wrapping ErrUnsupported.
func Apply(ctx context.Context, cfg Config) (undo func() error, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return nil, fmt.Errorf("%w (GOOS=%s)", ErrUnsupported, runtime.GOOS)
}

// RuleCount is one counted rule of the pinwall table and what it matched.
type RuleCount struct {
	Chain   string `json:"chain"`
	Comment string `json:"comment,omitempty"`
	Packets uint64 `json:"packets"`
	Bytes   uint64 `json:"bytes"`
}

// Counters is Linux only.
func Counters() ([]RuleCount, error) { return nil, ErrUnsupported }
