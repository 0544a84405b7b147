//go:build race

package harness_test

// raceEnabled: the race detector keeps shadow memory it never returns.
const raceEnabled = true
