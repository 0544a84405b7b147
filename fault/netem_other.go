//go:build !linux

package fault

import "errors"

var errNotLinux = errors.New("netem: only on Linux")

// ApplyNetem is Linux only.
func ApplyNetem(Netem) error { return errNotLinux }

// ClearNetem is Linux only.
func ClearNetem(string) error { return errNotLinux }

// NetemOn is Linux only.
func NetemOn(string) (Impairment, bool, error) { return Impairment{}, false, errNotLinux }
