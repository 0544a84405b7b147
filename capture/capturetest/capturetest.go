// Package capturetest runs Wireshark's tshark on captures in tests: a test
// that needs it skips with a one-line reason when tshark is not installed
// (Debian package tshark; .ci/run installs it, so CI runs these tests).
package capturetest

import (
	"bytes"
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// RequireTshark skips the test when tshark is not on the PATH.
func RequireTshark(t testing.TB) {
	t.Helper()
	if _, err := exec.LookPath("tshark"); err != nil {
		t.Skip("tshark not installed (Debian package tshark; .ci/run installs it)")
	}
}

// Tshark runs tshark with args (and -n: no name resolution) and returns its
// standard output. The test fails when tshark fails.
func Tshark(t testing.TB, args ...string) string {
	t.Helper()
	RequireTshark(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "tshark", append([]string{"-n"}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("tshark %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return string(out)
}

// Lines splits tshark's output into its non-empty lines.
func Lines(out string) []string {
	var lines []string
	for _, l := range strings.Split(out, "\n") {
		if strings.TrimSpace(l) != "" {
			lines = append(lines, l)
		}
	}
	return lines
}

// AnalysisFlags returns one line per packet that Wireshark's TCP analysis
// flags (retransmission, lost or unseen segment, duplicate ACK, window
// full, port reuse, …) in file: a faithful capture has none.
func AnalysisFlags(t testing.TB, file string) []string {
	t.Helper()
	return Lines(Tshark(t, "-r", file, "-Y", "tcp.analysis.flags", "-T", "fields",
		"-e", "frame.number", "-e", "frame.interface_name", "-e", "tcp.stream", "-e", "_ws.expert.message"))
}

// BadChecksums returns one line per packet whose IP, TCP or UDP checksum
// tshark finds wrong when it checks them (it does not by default).
func BadChecksums(t testing.TB, file string) []string {
	t.Helper()
	return Lines(Tshark(t, "-r", file,
		"-o", "ip.check_checksum:TRUE", "-o", "tcp.check_checksum:TRUE", "-o", "udp.check_checksum:TRUE",
		"-Y", `ip.checksum.status == "Bad" || tcp.checksum.status == "Bad" || udp.checksum.status == "Bad"`,
		"-T", "fields", "-e", "frame.number"))
}
