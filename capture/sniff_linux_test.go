//go:build linux

package capture_test

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pinwall/pinwall/capture"
	"github.com/pinwall/pinwall/capture/capturetest"
	"github.com/pinwall/pinwall/netsetup/nstest"
	"github.com/pinwall/pinwall/pcapng"
)

// TestSniffer captures a veth interface with AF_PACKET while a TCP echo
// and a UDP datagram cross it: the frames land on the tap's leg, in both
// directions, cut after the snap length, and Wireshark's TCP analysis
// flags nothing.
func TestSniffer(t *testing.T) {
	env := nstest.Guard(t)
	a, b := env.NS("a"), env.NS("b")
	aAddr, bAddr := netip.MustParsePrefix("192.0.2.1/24"), netip.MustParsePrefix("192.0.2.2/24")
	env.Link(a, "pwcapa", aAddr, b, "pwcapb", bAddr)

	file := filepath.Join(t.TempDir(), "live.pcapng")
	lf, err := capture.CreateLiveFile(file, 100, "sniffer test")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var s *capture.Sniffer
	b.MustDo(func() error {
		var err error
		s, err = capture.StartSniffer(ctx, capture.SnifferConfig{Iface: "pwcapb", Taps: []capture.Tap{
			{Leg: "a-b", Description: "the veth pair", Peers: []netip.Prefix{netip.PrefixFrom(aAddr.Addr(), 32)}},
		}}, lf)
		return err
	})

	l, err := b.Stack().Listen(ctx, "tcp", "192.0.2.2:7000")
	require.NoError(t, err)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_, _ = io.Copy(c, c)
	}()
	c, err := a.Stack().DialContext(ctx, "tcp", "192.0.2.2:7000")
	require.NoError(t, err)
	msg := bytes.Repeat([]byte("x"), 300)
	_, err = c.Write(msg)
	require.NoError(t, err)
	got := make([]byte, len(msg))
	_, err = io.ReadFull(c, got)
	require.NoError(t, err)
	require.NoError(t, c.(*net.TCPConn).CloseWrite())
	_, _ = io.Copy(io.Discard, c)
	c.Close()
	wg.Wait()
	l.Close()

	pc, err := b.Stack().ListenPacket(ctx, "udp", "192.0.2.2:7001")
	require.NoError(t, err)
	defer pc.Close()
	uc, err := a.Stack().DialContext(ctx, "udp", "192.0.2.2:7001")
	require.NoError(t, err)
	_, err = uc.Write([]byte("datagram"))
	require.NoError(t, err)
	uc.Close()
	require.NoError(t, pc.SetReadDeadline(time.Now().Add(5*time.Second)))
	_, _, err = pc.ReadFrom(make([]byte, 64))
	require.NoError(t, err)
	time.Sleep(50 * time.Millisecond) // the last frames reach the socket

	require.NoError(t, s.Close())
	require.NoError(t, lf.Close())
	received, dropped := s.Stats()
	assert.Positive(t, received)
	assert.Zero(t, dropped)

	data, err := os.ReadFile(file)
	require.NoError(t, err)
	r, err := pcapng.NewReader(bytes.NewReader(data))
	require.NoError(t, err)
	dirs := map[pcapng.Direction]int{}
	for {
		blk, err := r.Next()
		if err != nil {
			require.ErrorIs(t, err, io.EOF)
			break
		}
		if p, ok := blk.(*pcapng.Packet); ok {
			dirs[p.Direction]++
		}
	}
	require.Len(t, r.Interfaces(), 1)
	assert.Equal(t, "a-b", r.Interfaces()[0].Name)
	assert.Equal(t, pcapng.LinkEthernet, r.Interfaces()[0].LinkType)
	assert.Positive(t, dirs[pcapng.DirInbound])
	assert.Positive(t, dirs[pcapng.DirOutbound])

	capturetest.RequireTshark(t)
	assert.Empty(t, capturetest.AnalysisFlags(t, file))
	lens := capturetest.Lines(capturetest.Tshark(t, "-r", file, "-Y", "tcp.len > 0", "-T", "fields", "-e", "tcp.len", "-e", "frame.cap_len"))
	assert.Equal(t, []string{"300\t166", "300\t166"}, lens, "100 of 300 payload bytes kept each way, after 66 bytes of headers")
	udp := capturetest.Lines(capturetest.Tshark(t, "-r", file, "-Y", "udp.dstport == 7001", "-T", "fields", "-e", "ip.src", "-e", "udp.length"))
	assert.Equal(t, []string{"192.0.2.1\t16"}, udp)
}
