package main

import (
	"context"
	"flag"
	"time"

	"github.com/pinwall/pinwall/capture"
	"github.com/pinwall/pinwall/harness"
	"github.com/pinwall/pinwall/harness/containers"
	"github.com/pinwall/pinwall/reports"
)

// captureDefault is whether a mode captures when --capture is not given:
// in containers the capture costs little beside the runs' wall time (see
// bench: "Scenario catalogue"), in process it doubles the memory a run
// holds and is left to the user.
var captureDefault = map[string]bool{"inproc": false, "containers": true}

// evidenceFlags are the flags about the evidence itself: captures and the
// signature.
type evidenceFlags struct {
	fs      *flag.FlagSet
	capture *bool
	snap    *int
	sign    *string
}

func addEvidenceFlags(fs *flag.FlagSet) *evidenceFlags {
	return &evidenceFlags{
		fs:      fs,
		capture: fs.Bool("capture", false, "write each run's packet capture (every leg, TLS/DTLS keys inside) into the bundle; default: on in containers, off in process"),
		snap:    fs.Int("snaplen", capture.DefaultSnapLen, "payload bytes a captured flow keeps in each direction (0: all)"),
		sign:    fs.String("sign", "", "sign the bundle's manifest with this private key (Ed25519 or ECDSA, PEM or OpenSSH)"),
	}
}

// captureOn says whether to capture in mode: --capture as given, else the
// mode's default.
func (e *evidenceFlags) captureOn(mode string) bool {
	set := false
	e.fs.Visit(func(f *flag.Flag) { set = set || f.Name == "capture" })
	if set {
		return *e.capture
	}
	return captureDefault[mode]
}

// snapLen is --snaplen as capture.Config wants it.
func (e *evidenceFlags) snapLen() int {
	if *e.snap <= 0 {
		return -1
	}
	return *e.snap
}

// signer loads --sign's key, or returns nil without one.
func (e *evidenceFlags) signer() (*reports.Signer, error) {
	if *e.sign == "" {
		return nil, nil
	}
	s, err := reports.LoadSigner(*e.sign)
	if err != nil {
		return nil, &exitError{code: 2, err: err}
	}
	return s, nil
}

// withCapture returns runner capturing, or not, with a snap length.
func withCapture(runner harness.Runner, on bool, snap int) harness.Runner {
	switch r := runner.(type) {
	case harness.InProcess:
		r.Capture, r.SnapLen = on, snap
		return r
	case *containers.Runner:
		r.Capture, r.SnapLen = on, snap
	}
	return runner
}

// provenanceOf records what produced a run's evidence: the build (with the
// Makefile's -ldflags when present), Go, the platform, and in containers
// the Docker engine and the node image.
func provenanceOf(ctx context.Context, runner harness.Runner) *reports.Provenance {
	// The runs may have been interrupted: the engine is asked all the same.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	o := reports.ProvenanceOptions{Version: version, Commit: commit}
	if cr, ok := runner.(*containers.Runner); ok {
		o.DockerVersion = containers.EngineVersion
		o.Image = cr.ImageTag()
	}
	p := reports.GatherProvenance(ctx, o)
	return &p
}
