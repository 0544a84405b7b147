package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/pinwall/pinwall/capture"
	"github.com/pinwall/pinwall/harness"
	"github.com/pinwall/pinwall/outfile"
)

// labEvidence is what the lab records: a capture (--capture) and the
// session secrets for SSLKEYLOGFILE, when the environment names one (as
// curl and browsers honour it, so one file decrypts everyone's sessions).
type labEvidence struct {
	rec     *capture.Recorder
	keyFile *os.File
	keyLog  io.Writer
}

// newLabEvidence opens what the lab records. keylogFile is SSLKEYLOGFILE's
// value ("" for none), appended to.
func newLabEvidence(capturing bool, snapLen int, keylogFile string) (*labEvidence, error) {
	e := &labEvidence{}
	if keylogFile != "" {
		f, err := outfile.Append(keylogFile, outfile.Private)
		if err != nil {
			return nil, usageError("lab: SSLKEYLOGFILE %s: %v", keylogFile, err)
		}
		e.keyFile = f
		e.keyLog = capture.NewKeyLog(f) // each secret once, though both ends log it
	}
	if capturing {
		e.rec = capture.New(capture.Config{SnapLen: snapLen, Comment: "pinwall lab (in process): packets synthesized from the data path"})
	}
	return e, nil
}

// options adds the recording to a topology's options.
func (e *labEvidence) options(o harness.Options) harness.Options {
	o.Capture, o.KeyLogWriter = e.rec, e.keyLog
	return o
}

// close closes the key log file; it is idempotent.
func (e *labEvidence) close() {
	if e.keyFile != nil {
		_ = e.keyFile.Close()
		e.keyFile = nil
	}
}

// write saves the capture and its key log into dir; it says where on stdout.
func (e *labEvidence) write(dir string, stdout io.Writer) error {
	if e.keyFile != nil {
		fmt.Fprintf(stdout, "  session secrets appended to %s (SSLKEYLOGFILE)\n", e.keyFile.Name())
	}
	if e.rec == nil {
		return nil
	}
	c, err := harness.CaptureOf(e.rec, harness.CaptureSynthesized)
	if err != nil {
		return err
	}
	pc, kl := filepath.Join(dir, "capture.pcapng"), filepath.Join(dir, "keys.log")
	if err := outfile.WriteFile(pc, c.PCAPNG, outfile.Public); err != nil {
		return err
	}
	if err := outfile.WriteFile(kl, c.KeyLog, outfile.Private); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "  capture: %s (%d packets on %d legs, %d session secrets inside; also in %s)\n", pc, c.Packets, len(c.Legs), c.KeyLines, kl)
	fmt.Fprintf(stdout, "  read it: tshark -r %s   (tunnel streams: add -X lua_script:wireshark/pinwall.lua)\n", pc)
	return nil
}
