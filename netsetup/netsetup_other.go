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
