package tunnel

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/pinwall/pinwall/internal/syncbuf"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestRecordPathExchange sends records of every size both ways between a
// client and a gateway on record paths, over the in-process network.
func TestRecordPathExchange(t *testing.T) {
	dp := dialDTLS(t, Config{}, nil, true)
	defer func() { dp.client.Close(); dp.gateway.Close(); dp.mux.Close() }()
	require.IsType(t, &pathConn{}, dp.client, "AES-GCM: the record path carries the records")
	require.IsType(t, &pathConn{}, dp.gateway)

	buf := make([]byte, maxRecordPlaintext)
	for _, size := range []int{1, 1200, maxMTU, maxRecordPlaintext} {
		for _, dir := range []struct {
			name     string
			from, to net.Conn
		}{{"client to gateway", dp.client, dp.gateway}, {"gateway to client", dp.gateway, dp.client}} {
			msg := bytes.Repeat([]byte{byte(size)}, size)
			msg[0] = 0x5a
			n, err := dir.from.Write(msg)
			require.NoError(t, err, "%s, %d bytes", dir.name, size)
			require.Equal(t, size, n)
			require.NoError(t, dir.to.SetReadDeadline(time.Now().Add(5*time.Second)))
			n, err = dir.to.Read(buf)
			require.NoError(t, err, "%s, %d bytes", dir.name, size)
			assert.Equal(t, msg, buf[:n], "%s, %d bytes", dir.name, size)
		}
	}
	_, err := dp.client.Write(make([]byte, maxRecordPlaintext+1))
	assert.ErrorIs(t, err, ErrRecordTooLarge)

	// A read past its deadline is a timeout.
	require.NoError(t, dp.client.SetReadDeadline(time.Now().Add(20*time.Millisecond)))
	_, err = dp.client.Read(buf)
	var ne net.Error
	require.ErrorAs(t, err, &ne)
	assert.True(t, ne.Timeout())

	// The gateway's Close reaches the client as pion/dtls's close_notify:
	// its reads end, then its writes.
	require.NoError(t, dp.gateway.Close())
	require.NoError(t, dp.client.SetReadDeadline(time.Now().Add(5*time.Second)))
	_, err = dp.client.Read(buf)
	assert.ErrorIs(t, err, io.EOF)
	_, err = dp.client.Write([]byte("late"))
	assert.ErrorIs(t, err, net.ErrClosed)
	assert.NoError(t, dp.client.Close())
	assert.NoError(t, dp.client.Close(), "Close is idempotent")
}

// TestRecordPathLogsDrops: the records a record path dropped are named in
// a warning when it closes, never dropped silently.
func TestRecordPathLogsDrops(t *testing.T) {
	var logged syncbuf.Buffer
	dp := dialDTLS(t, Config{Logger: slog.New(slog.NewTextHandler(&logged, nil))}, nil, true)
	defer dp.mux.Close()
	defer dp.gateway.Close()
	cl := dp.client.(*pathConn)
	forged := make([]byte, recordHeaderLen+8+32+16)
	forged[0], forged[1], forged[2] = contentAppData, 0xfe, 0xfd
	binary.BigEndian.PutUint16(forged[3:5], cl.rEpoch)
	putSeq48(forged[5:11], RecordSeqBase+7)
	binary.BigEndian.PutUint16(forged[11:13], uint16(len(forged)-recordHeaderLen))
	require.True(t, cl.take(forged), "taken, and dropped")
	assert.Empty(t, logged.String(), "nothing logged before Close")
	require.NoError(t, cl.Close())
	assert.Contains(t, logged.String(), "record path dropped records")
	assert.Contains(t, logged.String(), "forged_or_replayed=1")
	assert.Contains(t, logged.String(), "left_to_pion=0")
}

// TestRecordPathBeforeAttach: the peer's record path's records that reach
// a side before it attaches are held, not read by pion/dtls, and read in
// order once it attaches.
func TestRecordPathBeforeAttach(t *testing.T) {
	hp := handshakeDTLS(t, Config{}, nil, false)
	defer hp.mux.Close()
	gw, err := hp.gatewayPath.Attach(hp.gateway, nil)
	require.NoError(t, err)
	defer gw.Close()
	for _, m := range []string{"greeting", "early"} {
		_, err = gw.Write([]byte(m))
		require.NoError(t, err)
	}
	require.Eventually(t, func() bool {
		hp.clientPath.mu.Lock()
		defer hp.clientPath.mu.Unlock()
		return len(hp.clientPath.early) == 2
	}, 5*time.Second, time.Millisecond, "the record path's records are held")

	cl, err := hp.clientPath.Attach(hp.client, nil)
	require.NoError(t, err)
	defer cl.Close()
	_, err = gw.Write([]byte("late"))
	require.NoError(t, err)
	var got []string
	buf := make([]byte, 64)
	require.NoError(t, cl.SetReadDeadline(time.Now().Add(5*time.Second)))
	for range 3 {
		n, err := cl.Read(buf)
		require.NoError(t, err)
		got = append(got, string(buf[:n]))
	}
	assert.Equal(t, []string{"greeting", "early", "late"}, got)
	assert.Zero(t, cl.(*pathConn).Rejected())

	// A read buffer smaller than the record is an error, as pion/dtls's.
	_, err = gw.Write([]byte("too long for the buffer"))
	require.NoError(t, err)
	n, err := cl.Read(buf[:4])
	assert.Equal(t, 4, n)
	assert.ErrorIs(t, err, errShortRead)

	// The client's Close reaches the gateway as pion/dtls's close_notify.
	require.NoError(t, cl.Close())
	require.NoError(t, gw.SetReadDeadline(time.Now().Add(5*time.Second)))
	_, err = gw.Read(buf)
	assert.ErrorIs(t, err, io.EOF)
	_, err = cl.Read(buf)
	assert.ErrorIs(t, err, net.ErrClosed, "read after its own Close")
}

// TestRecordPathPlainPeer: a DTLS peer without a record path (pion/dtls
// alone, numbering its records from the handshake's) and a record path
// understand each other, records and SCTP session alike.
func TestRecordPathPlainPeer(t *testing.T) {
	hp := handshakeDTLS(t, Config{}, nil, true)
	defer hp.mux.Close()
	gw, err := hp.gatewayPath.Attach(hp.gateway, nil)
	require.NoError(t, err)
	cs, gs := dtlsSessions(t, hp.client, gw, Config{})
	defer cs.Close()
	defer gs.Close()
	// No application data went to pion/dtls, where nothing reads it.
	assert.Zero(t, hp.gatewayPath.toPion.Load())

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(1)
	go echoServer(ctx, gs, &wg)
	defer wg.Wait()
	defer cancel()
	st, err := cs.Open(ctx)
	require.NoError(t, err)
	msg := bytes.Repeat([]byte("both ways "), 10000)
	_, err = st.Write(msg)
	require.NoError(t, err)
	require.NoError(t, st.CloseWrite())
	sum, err := io.ReadAll(st)
	require.NoError(t, err)
	want := sha256.Sum256(msg)
	assert.Equal(t, want[:], sum)
	assert.Zero(t, gw.(*pathConn).Rejected())
	assert.Zero(t, hp.gatewayPath.toPion.Load())
}

// testPathPair is a pair of record path connections with each other's
// keys, over a socket that keeps what is written, for the record layer
// alone: no pion/dtls connection, no forwarder.
func testPathPair(t testing.TB) (w, r *pathConn, sent *sink) {
	t.Helper()
	kA, ivA := bytes.Repeat([]byte{1}, 16), []byte{2, 2, 2, 2}
	kB, ivB := bytes.Repeat([]byte{3}, 16), []byte{4, 4, 4, 4}
	sent = &sink{}
	raddr := net.UDPAddrFromAddrPort(netip.MustParseAddrPort("203.0.113.10:443"))
	w, err := newPathConn(NewRecordPath(sent), nil, raddr, kA, ivA, kB, ivB, 1, 1)
	require.NoError(t, err)
	r, err = newPathConn(NewRecordPath(&sink{}), nil, raddr, kB, ivB, kA, ivA, 1, 1)
	require.NoError(t, err)
	return w, r, sent
}

// sink is a net.PacketConn that keeps the datagrams written to it.
type sink struct {
	net.PacketConn
	got [][]byte
}

func (s *sink) WriteTo(b []byte, _ net.Addr) (int, error) {
	s.got = append(s.got, append([]byte(nil), b...))
	return len(b), nil
}

// take offers d to r as a received datagram.
func take(r *pathConn, d []byte) bool { return r.take(bytes.Clone(d)) }

// TestRecordPathRejects: the record path opens only its peer's genuine,
// fresh records, and leaves pion/dtls everything that is not one
// application data record of the epoch.
func TestRecordPathRejects(t *testing.T) {
	w, r, sent := testPathPair(t)
	for _, m := range []string{"one", "two", "three"} {
		_, err := w.Write([]byte(m))
		require.NoError(t, err)
	}
	require.Len(t, sent.got, 3)
	one, two, three := sent.got[0], sent.got[1], sent.got[2]
	assert.Equal(t, uint64(RecordSeqBase), seq48(one[5:11]))
	assert.Equal(t, one[3:11], one[13:21], "the explicit nonce is the epoch and sequence number")

	flipped := func(d []byte, i int) []byte { d = bytes.Clone(d); d[i] ^= 1; return d }
	withEpoch := func(d []byte, e byte) []byte { d = bytes.Clone(d); d[4] = e; return d }
	twoRecords := append(bytes.Clone(one), two...)
	for _, tc := range []struct {
		name   string
		d      []byte
		taken  bool
		queued string
	}{
		{"the second record", two, true, "two"},
		{"the same record again (replay)", two, true, ""},
		{"the first, older but within the window", one, true, "one"},
		{"a flipped ciphertext byte", flipped(three, 25), true, ""},
		{"a flipped header byte (authenticated)", flipped(three, 12), false, ""}, // the length no longer matches
		{"a flipped sequence number", flipped(three, 10), true, ""},
		{"another epoch: pion/dtls's", withEpoch(three, 2), false, ""},
		{"a handshake record: pion/dtls's", append([]byte{22}, three[1:]...), false, ""},
		{"two records in one datagram: pion/dtls's", twoRecords, false, ""},
		{"a runt", three[:20], false, ""},
		{"the third record", three, true, "three"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := r.Rejected()
			assert.Equal(t, tc.taken, take(r, tc.d))
			select {
			case rec := <-r.rx:
				got := make([]byte, 64)
				n, err := deliver(got, rec)
				require.NoError(t, err)
				assert.Equal(t, tc.queued, string(got[:n]))
			default:
				assert.Empty(t, tc.queued, "nothing queued")
				if tc.taken {
					assert.Equal(t, before+1, r.Rejected(), "counted as rejected")
				}
			}
		})
	}
}

func TestReplayWindow(t *testing.T) {
	var w replayWindow
	steps := []struct {
		seq   uint64
		fresh bool
	}{
		{100, true}, {100, false}, {99, true}, {99, false}, {164, true},
		{100, false}, {101, true}, {164, false}, {1000, true}, {936, false}, {937, true},
	}
	for i, s := range steps {
		assert.Equal(t, s.fresh, w.fresh(s.seq), "step %d: %d", i, s.seq)
		if s.fresh {
			w.mark(s.seq)
		}
	}
}

func TestSeq48(t *testing.T) {
	for _, v := range []uint64{0, 1, RecordSeqBase, maxSeq48} {
		b := make([]byte, 6)
		putSeq48(b, v)
		assert.Equal(t, v, seq48(b))
	}
}

// FuzzRecordPathTake offers any datagram to an attached record path: it
// never panics, and a datagram it takes is either queued (its peer
// sealed it) or counted as rejected.
func FuzzRecordPathTake(f *testing.F) {
	w, _, sent := testPathPair(f)
	for _, m := range []string{"", "x", string(make([]byte, 1200))} {
		_, err := w.Write([]byte(m))
		require.NoError(f, err)
	}
	for _, d := range sent.got {
		f.Add(d)
	}
	f.Add([]byte{22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1})
	f.Fuzz(func(t *testing.T, d []byte) {
		_, r, _ := testPathPair(t)
		taken := take(r, d)
		select {
		case rec := <-r.rx:
			require.True(t, taken)
			got := make([]byte, maxRecordPlaintext)
			_, err := deliver(got, rec)
			require.NoError(t, err)
		default:
			if taken {
				require.Equal(t, int64(1), r.Rejected())
			}
		}
	})
}
