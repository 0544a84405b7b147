package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"

	"github.com/pinwall/pinwall/internal/syncbuf"

	"github.com/pinwall/pinwall/capture"
	"github.com/pinwall/pinwall/outfile"
)

// Files a capturing node writes into Config.Out.
const (
	// CaptureFile holds the frames of the node's taps (pcapng, Ethernet).
	CaptureFile = "capture.pcapng"
	// KeyLogFile holds the session secrets of the node's components (NSS format).
	KeyLogFile = "keys.log"
	// CaptureStatsFile holds the kernel's counters (CaptureStats).
	CaptureStatsFile = "capture.json"
)

// Capture asks a node to record evidence: the frames of its interfaces
// (AF_PACKET) sorted into legs, and the secrets of every TLS and DTLS
// session its components terminate. With no Ifaces only the key log is
// written.
type Capture struct {
	Ifaces []CaptureIface `json:"ifaces,omitempty"`
	// SnapLen is capture.Config's: payload bytes kept per flow and direction.
	SnapLen int `json:"snaplen,omitempty"`
}

// CaptureIface is one interface to capture and the legs its frames belong to.
type CaptureIface struct {
	Iface string        `json:"iface"`
	Taps  []capture.Tap `json:"taps"`
}

// CaptureStats is what the kernel counted for a node's capture sockets.
type CaptureStats struct {
	Received uint64 `json:"received"`
	Dropped  uint64 `json:"dropped"`
}

// startCapture starts nc's capture, if any: it returns the writer the
// components log their secrets to (nil without a capture) and a stop
// function that ends the capture and writes its files.
func startCapture(ctx context.Context, nc Config) (io.Writer, func() error, error) {
	if nc.Capture == nil {
		return nil, func() error { return nil }, nil
	}
	kf, err := outfile.Create(filepath.Join(nc.Out, KeyLogFile), outfile.Private)
	if err != nil {
		return nil, nil, err
	}
	keys := syncbuf.NewWriter(kf)
	if len(nc.Capture.Ifaces) == 0 {
		return keys, kf.Close, nil
	}
	lf, err := capture.CreateLiveFile(filepath.Join(nc.Out, CaptureFile), nc.Capture.SnapLen,
		fmt.Sprintf("pinwall %s %s: captured with AF_PACKET", nc.Role, nc.Name))
	if err != nil {
		kf.Close()
		return nil, nil, err
	}
	var sniffers []*capture.Sniffer
	stop := func() error {
		var st CaptureStats
		for _, s := range sniffers {
			_ = s.Close()
			r, d := s.Stats()
			st.Received += r
			st.Dropped += d
		}
		errs := []error{lf.Close(), kf.Close()}
		errs = append(errs, writeJSON(filepath.Join(nc.Out, CaptureStatsFile), st))
		return errors.Join(errs...)
	}
	for _, ci := range nc.Capture.Ifaces {
		s, err := capture.StartSniffer(ctx, capture.SnifferConfig{Iface: ci.Iface, Taps: ci.Taps}, lf)
		if err != nil {
			_ = stop()
			return nil, nil, fmt.Errorf("capture on %s: %w", ci.Iface, err)
		}
		sniffers = append(sniffers, s)
	}
	return keys, stop, nil
}
