package pcapng

import (
	"bytes"
	"errors"
	"flag"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// udpPacket is a fixed IPv4/UDP datagram 192.0.2.1:5000 → 192.0.2.2:53 with
// valid checksums, 4 bytes of payload.
var udpPacket = []byte{
	0x45, 0x00, 0x00, 0x20, 0x00, 0x01, 0x00, 0x00, 0x40, 0x11, 0xf7, 0x6d, 0xc0, 0x00, 0x02, 0x01,
	0xc0, 0x00, 0x02, 0x02, 0x13, 0x88, 0x00, 0x35, 0x00, 0x0c, 0x00, 0x00, 'p', 'i', 'n', 'g',
}

// goldenFile writes the blocks the golden file holds.
func goldenFile(t *testing.T) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := NewWriter(&buf, Section{Application: "pinwall pcapng test", OS: "linux"})
	require.NoError(t, err)
	raw, err := w.AddInterface(Interface{LinkType: LinkRaw, Name: "laptop-firewall", Description: "laptop 10.10.10.100 and the firewall's inside"})
	require.NoError(t, err)
	eth, err := w.AddInterface(Interface{LinkType: LinkEthernet, SnapLen: 65535, Name: "pw-inet"})
	require.NoError(t, err)
	require.NoError(t, w.WriteSecrets(Secrets{Type: SecretsTLSKeyLog, Data: []byte("CLIENT_RANDOM 00 11\n")}))
	t0 := time.Date(2025, 1, 2, 3, 4, 5, 123456789, time.UTC)
	require.NoError(t, w.WritePacket(Packet{Interface: raw, Time: t0, Data: udpPacket, Direction: DirOutbound, Comment: "first"}))
	frame := append([]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 0x08, 0x00}, udpPacket...)
	require.NoError(t, w.WritePacket(Packet{Interface: eth, Time: t0.Add(time.Millisecond), Data: frame[:20], OrigLen: uint32(len(frame))}))
	return buf.Bytes()
}

func TestGolden(t *testing.T) {
	got := goldenFile(t)
	path := filepath.Join("testdata", "golden.pcapng")
	if *update {
		require.NoError(t, os.WriteFile(path, got, 0o644))
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.Equal(t, want, got, "run go test ./pcapng -update to rewrite")
}

func TestReadGolden(t *testing.T) {
	r, err := NewReader(bytes.NewReader(goldenFile(t)))
	require.NoError(t, err)
	assert.Equal(t, "pinwall pcapng test", r.Section().Application)
	var got []any
	for {
		b, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err)
		switch v := b.(type) {
		case *Interface:
			got = append(got, *v)
		case *Packet:
			c := *v
			c.Data = append([]byte(nil), v.Data...)
			got = append(got, c)
		case *Secrets:
			got = append(got, Secrets{Type: v.Type, Data: append([]byte(nil), v.Data...)})
		}
	}
	t0 := time.Date(2025, 1, 2, 3, 4, 5, 123456789, time.UTC)
	frame := append([]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 0x08, 0x00}, udpPacket...)
	want := []any{
		Interface{LinkType: LinkRaw, Name: "laptop-firewall", Description: "laptop 10.10.10.100 and the firewall's inside", TSResol: 9},
		Interface{LinkType: LinkEthernet, SnapLen: 65535, Name: "pw-inet", TSResol: 9},
		Secrets{Type: SecretsTLSKeyLog, Data: []byte("CLIENT_RANDOM 00 11\n")},
		Packet{Interface: 0, Time: t0, Data: udpPacket, OrigLen: uint32(len(udpPacket)), Direction: DirOutbound, Comment: "first"},
		Packet{Interface: 1, Time: t0.Add(time.Millisecond), Data: frame[:20], OrigLen: uint32(len(frame))},
	}
	assert.Equal(t, want, got)
	assert.Len(t, r.Interfaces(), 2)
}

// TestRoundTrip writes random blocks and reads them back unchanged.
func TestRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for iter := range 50 {
		var buf bytes.Buffer
		w, err := NewWriter(&buf, Section{Comment: strings.Repeat("c", rng.IntN(9))})
		require.NoError(t, err)
		var want []any
		nIf := 1 + rng.IntN(4)
		for i := range nIf {
			ifc := Interface{LinkType: uint16(rng.IntN(300)), SnapLen: rng.Uint32(), Name: strings.Repeat("n", i+rng.IntN(7)), Description: strings.Repeat("d", rng.IntN(5)), TSResol: 9}
			_, err := w.AddInterface(ifc)
			require.NoError(t, err)
			want = append(want, ifc)
		}
		for range rng.IntN(40) {
			if rng.IntN(10) == 0 {
				s := Secrets{Type: rng.Uint32(), Data: randBytes(rng, rng.IntN(300))}
				require.NoError(t, w.WriteSecrets(s))
				want = append(want, s)
				continue
			}
			data := randBytes(rng, rng.IntN(3000))
			p := Packet{
				Interface: uint32(rng.IntN(nIf)),
				Time:      time.Unix(int64(rng.IntN(2e9)), int64(rng.IntN(1e9))).UTC(),
				Data:      data, OrigLen: uint32(len(data) + rng.IntN(3)),
				Direction: Direction(rng.IntN(3)),
			}
			if rng.IntN(3) == 0 {
				p.Comment = "comment"
			}
			require.NoError(t, w.WritePacket(p))
			want = append(want, p)
		}
		r, err := NewReader(bytes.NewReader(buf.Bytes()))
		require.NoError(t, err, "iteration %d", iter)
		var got []any
		for {
			b, err := r.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			require.NoError(t, err)
			switch v := b.(type) {
			case *Interface:
				got = append(got, *v)
			case *Packet:
				c := *v
				c.Data = append([]byte{}, v.Data...)
				got = append(got, c)
			case *Secrets:
				got = append(got, Secrets{Type: v.Type, Data: append([]byte{}, v.Data...)})
			}
		}
		require.Equal(t, want, got, "iteration %d", iter)
	}
}

func randBytes(rng *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

func TestWriterRejects(t *testing.T) {
	w, err := NewWriter(io.Discard, Section{})
	require.NoError(t, err)
	assert.ErrorContains(t, w.WritePacket(Packet{Data: []byte{1}}), "interface 0, only 0 written")
	_, err = w.AddInterface(Interface{LinkType: LinkRaw})
	require.NoError(t, err)
	assert.ErrorContains(t, w.WritePacket(Packet{Data: make([]byte, MaxSnapLen+1)}), "exceeds")
	assert.ErrorContains(t, w.WritePacket(Packet{Data: []byte{1, 2}, OrigLen: 1}), "below")
}

func TestTruncated(t *testing.T) {
	file := goldenFile(t)
	// Cut inside the last packet: every whole block reads, then ErrTruncated.
	r, err := NewReader(bytes.NewReader(file[:len(file)-10]))
	require.NoError(t, err)
	n := 0
	for {
		_, err = r.Next()
		if err != nil {
			break
		}
		n++
	}
	assert.ErrorIs(t, err, ErrTruncated)
	assert.Equal(t, 4, n, "two interfaces, the secrets and the first packet")

	_, err = NewReader(bytes.NewReader(nil))
	assert.ErrorIs(t, err, ErrFormat)
	_, err = NewReader(bytes.NewReader(file[28:]))
	assert.ErrorIs(t, err, ErrFormat, "an interface block first")
}

// TestBigEndian reads a big-endian section (written by hand: Writer only
// writes little-endian).
func TestBigEndian(t *testing.T) {
	be := []byte{
		0x0a, 0x0d, 0x0d, 0x0a, 0, 0, 0, 28, 0x1a, 0x2b, 0x3c, 0x4d, 0, 1, 0, 0,
		0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 28,
		// IDB: raw, snaplen 0, no options.
		0, 0, 0, 1, 0, 0, 0, 20, 0, 101, 0, 0, 0, 0, 0, 0, 0, 0, 0, 20,
		// EPB: interface 0, ts 1 second in µs, 4 bytes.
		0, 0, 0, 6, 0, 0, 0, 36, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x0f, 0x42, 0x40, 0, 0, 0, 4, 0, 0, 0, 4, 1, 2, 3, 4, 0, 0, 0, 36,
	}
	r, err := NewReader(bytes.NewReader(be))
	require.NoError(t, err)
	b, err := r.Next()
	require.NoError(t, err)
	assert.Equal(t, &Interface{LinkType: LinkRaw, TSResol: 6}, b)
	b, err = r.Next()
	require.NoError(t, err)
	p := b.(*Packet)
	assert.Equal(t, time.Unix(1, 0).UTC(), p.Time)
	assert.Equal(t, []byte{1, 2, 3, 4}, p.Data)
	_, err = r.Next()
	assert.ErrorIs(t, err, io.EOF)
}

func TestTimestampResolutions(t *testing.T) {
	assert.Equal(t, time.Unix(1, 500_000_000).UTC(), toTime(3, 0x81), "2^-1 s units")
	assert.Equal(t, time.Unix(2, 0).UTC(), toTime(2, 0), "seconds")
	assert.Equal(t, time.Unix(1, 1).UTC(), toTime(1_000_000_001, 9))
	assert.Equal(t, time.Unix(1, 1).UTC(), toTime(1_000_000_001_000, 12))
}

// TestThirdPartyReaders checks the golden file with Wireshark's capinfos and
// tshark: it is a valid pcapng, the interfaces are named, the secrets block
// is seen and the packets decode.
func TestThirdPartyReaders(t *testing.T) {
	for _, tool := range []string{"capinfos", "tshark"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (Debian package tshark); .ci/run installs it", tool)
		}
	}
	path := filepath.Join(t.TempDir(), "golden.pcapng")
	require.NoError(t, os.WriteFile(path, goldenFile(t), 0o644))
	out, err := exec.Command("capinfos", "-M", path).CombinedOutput()
	require.NoError(t, err, "%s", out)
	s := string(out)
	assert.Contains(t, s, "File type:           pcapng")
	assert.Contains(t, s, "Number of packets:   2")
	assert.Contains(t, s, "File timestamp precision:  nanoseconds (9)")
	assert.Contains(t, s, "Capture application: pinwall pcapng test")
	assert.Contains(t, s, "Name = laptop-firewall")
	assert.Contains(t, s, "Encapsulation = Raw IP")
	assert.Contains(t, s, "Name = pw-inet")
	assert.Contains(t, s, "Number of decryption secrets in file: 1", "the DSB is read")

	cmd := exec.Command("tshark", "-r", path, "-T", "fields", "-e", "frame.interface_name", "-e", "ip.src", "-e", "udp.dstport", "-e", "frame.comment")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err = cmd.Output()
	require.NoError(t, err, "%s", stderr.String())
	lines := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
	require.Len(t, lines, 2, "%s", out)
	assert.Equal(t, "laptop-firewall\t192.0.2.1\t53\tfirst", lines[0])
	assert.True(t, strings.HasPrefix(lines[1], "pw-inet\t"), lines[1])
}
