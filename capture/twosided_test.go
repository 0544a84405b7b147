package capture_test

import (
	"bytes"
	"encoding/hex"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pinwall/pinwall/capture"
	"github.com/pinwall/pinwall/capture/capturetest"
)

// TestTwoSided records both ends of a connection, each what it sends: the
// listener's bytes the dialler never reads are on the wire all the same,
// and so is its reset. The listener's end may be attached first.
func TestTwoSided(t *testing.T) {
	rec := capture.New(capture.Config{Seed: 11})
	leg := rec.Leg("leg", "both ends")
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	raw, err := net.Dial("tcp4", ln.Addr().String())
	require.NoError(t, err)
	sraw, err := ln.Accept()
	require.NoError(t, err)

	s := leg.Accepted(sraw) // before the dialler's end: its events wait
	_, err = s.Write([]byte("early"))
	require.NoError(t, err)
	c := leg.Dialled(raw)
	got := make([]byte, 5)
	_, err = io.ReadFull(c, got)
	require.NoError(t, err)
	_, err = c.Write([]byte("hello"))
	require.NoError(t, err)
	_, err = io.ReadFull(s, got)
	require.NoError(t, err)
	_, err = s.Write([]byte("never read"))
	require.NoError(t, err)
	require.NoError(t, s.(interface{ SetLinger(int) error }).SetLinger(0))
	require.NoError(t, s.Close())
	require.NoError(t, c.Close())

	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	require.NoError(t, err)
	defer pc.Close()
	spc := rec.PacketConn(pc)
	uraw, err := net.Dial("udp4", pc.LocalAddr().String())
	require.NoError(t, err)
	u := leg.Dialled(uraw)
	_, err = u.Write([]byte("q"))
	require.NoError(t, err)
	require.NoError(t, pc.SetReadDeadline(time.Now().Add(5*time.Second)))
	buf := make([]byte, 16)
	_, from, err := pc.ReadFrom(buf)
	require.NoError(t, err)
	_, err = spc.WriteTo([]byte("answer"), from)
	require.NoError(t, err)
	require.NoError(t, u.Close())
	_, err = spc.WriteTo([]byte("to nobody recorded"), from)
	require.NoError(t, err)

	var out bytes.Buffer
	_, err = rec.WriteTo(&out)
	require.NoError(t, err)
	capturetest.RequireTshark(t)
	file := filepath.Join(t.TempDir(), "two.pcapng")
	require.NoError(t, os.WriteFile(file, out.Bytes(), 0o644))
	assert.Empty(t, capturetest.AnalysisFlags(t, file))
	assert.Empty(t, capturetest.BadChecksums(t, file))
	cport := raw.LocalAddr().(*net.TCPAddr).Port
	lines := capturetest.Lines(capturetest.Tshark(t, "-r", file, "-Y", "tcp.len > 0 || tcp.flags.reset == 1 || udp", "-T", "fields",
		"-e", "tcp.srcport", "-e", "tcp.flags.reset", "-e", "tcp.payload", "-e", "udp.payload"))
	sport := ln.Addr().(*net.TCPAddr).Port
	h := func(s string) string { return hex.EncodeToString([]byte(s)) }
	assert.Equal(t, []string{
		itoa(sport) + "\t0\t" + h("early") + "\t",
		itoa(cport) + "\t0\t" + h("hello") + "\t",
		itoa(sport) + "\t0\t" + h("never read") + "\t",
		itoa(sport) + "\t1\t\t",
		"\t\t\t" + h("q"),
		"\t\t\t" + h("answer"),
	}, lines)
}

func itoa(n int) string { return strconv.Itoa(n) }
