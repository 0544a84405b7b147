//go:build !linux

package accepttest

import (
	"errors"
	"testing"
)

// InChild skips t: lowering and counting descriptors needs Linux.
func InChild(t *testing.T, headroom int) bool {
	t.Skip("accepttest: descriptor exhaustion tests run on Linux only")
	return false
}

// OpenFDs is not implemented outside Linux.
func OpenFDs() (int, error) { return 0, errors.New("accepttest: OpenFDs needs /proc (Linux)") }

// Filler holds descriptors taken by Exhaust.
type Filler struct{}

// Exhaust skips t outside Linux.
func Exhaust(t testing.TB) *Filler { t.Skip("accepttest: Linux only"); return nil }

// Len counts the descriptors held.
func (f *Filler) Len() int { return 0 }

// Release closes n of the descriptors held.
func (f *Filler) Release(int) {}

// ReleaseAll closes every descriptor held.
func (f *Filler) ReleaseAll() {}
