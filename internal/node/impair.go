package node

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/pinwall/pinwall/fault"
)

// ImpairPath is where the runner writes an ImpairControl before sending
// the node SIGUSR2.
const ImpairPath = "/etc/pinwall/impair.json"

// MarkerImpaired starts the line a node prints once it has applied an
// ImpairControl ("pinwall fault: impairment 3 applied: loss 5%"), or
// failed to ("pinwall fault: impairment 3 failed: ...").
const MarkerImpaired = "pinwall fault: impairment"

// ImpairControl is an impairment event for one node.
type ImpairControl struct {
	// Seq numbers the controls of a run, so the runner waits for the
	// answer to this one.
	Seq int `json:"seq"`
	// Socket replaces the impairment of the laptop's UDP sockets (the
	// default way, the same as in process).
	Socket *fault.Impairment `json:"socket,omitempty"`
	// Netem replaces the netem qdiscs on this node's interfaces (the
	// runner's Netem mode).
	Netem []fault.Netem `json:"netem,omitempty"`
}

// ImpairedMarker is the line a node prints for control seq.
func ImpairedMarker(seq int, err error) string {
	if err != nil {
		return fmt.Sprintf("%s %d failed: %v", MarkerImpaired, seq, err)
	}
	return fmt.Sprintf("%s %d applied", MarkerImpaired, seq)
}

// applyImpair reads ImpairPath and applies it: socket impairments to
// stack (nil when the node has none), netem to the interfaces. It prints
// the marker either way.
func applyImpair(path string, stack *fault.ImpairedStack, stdout io.Writer, log *slog.Logger) {
	var ic ImpairControl
	err := func() error {
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if err := json.Unmarshal(b, &ic); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		if ic.Socket != nil {
			if stack == nil {
				return errors.New("this node's sockets are not impairable")
			}
			if err := ic.Socket.Validate(); err != nil {
				return err
			}
			stack.Impair(*ic.Socket)
		}
		for _, n := range ic.Netem {
			if err := fault.ApplyNetem(n); err != nil {
				return err
			}
		}
		return nil
	}()
	if err != nil {
		log.Warn("fault: impairment failed", "seq", ic.Seq, "err", err)
	}
	fmt.Fprintln(stdout, ImpairedMarker(ic.Seq, err))
}

// applyNetems installs the netem qdiscs a node starts with.
func applyNetems(ns []fault.Netem) error {
	for _, n := range ns {
		if err := fault.ApplyNetem(n); err != nil {
			return err
		}
	}
	return nil
}
