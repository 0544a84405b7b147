package tunnel

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xtaci/kcp-go/v5"
)

// BenchmarkDTLSMux is issue 15's spike: reliable multiplexers over the
// same pion DTLS 1.2 connection pair (rawDTLSPair: the in-process network
// and the gateway's UDP mux), side by side, bulk one way (gateway to
// client), 1 and 16 flows, at the default MTU and the largest one:
//
//   - sctp: today's tunnel, NewDTLSSession (pion/sctp) on the pair;
//   - kcp: KCP (xtaci/kcp-go, no KCP encryption, no FEC) writing each KCP
//     packet as one DTLS record, with the TLS tunnel's yamux session
//     (NewTLSSession) on the KCP stream. KCP with its congestion window
//     (nc0) and without (nc1, kcp-go's "turbo" setting).
//
// kcp-go caps its packets at 1,472 bytes (maxPacketSize), so in the
// largest-MTU cells it runs at 1,472. Every flow's bytes are checked at
// the client against the pattern the gateway sent. Only a test depends on
// kcp-go: nothing in the tunnel uses it.
//
//	go test ./tunnel -run '^$' -bench DTLSMux -benchtime 2x
func BenchmarkDTLSMux(b *testing.B) {
	for _, mtu := range []int{1200, maxMTU} {
		for _, flows := range []int{1, 16} {
			for _, m := range []string{"sctp", "kcp-nc0", "kcp-nc1"} {
				b.Run(fmt.Sprintf("mtu%d/%d/%s", mtu, flows, m), func(b *testing.B) {
					benchDTLSMux(b, m, mtu, flows)
				})
			}
		}
	}
}

// recordConn is a DTLS connection as a net.PacketConn: one datagram, one
// DTLS record, to and from the connection's peer only.
type recordConn struct{ net.Conn }

func (c recordConn) ReadFrom(p []byte) (int, net.Addr, error) {
	n, err := c.Read(p)
	return n, c.RemoteAddr(), err
}

func (c recordConn) WriteTo(p []byte, _ net.Addr) (int, error) { return c.Write(p) }

// countConn counts the DTLS records written on a connection.
type countConn struct {
	net.Conn
	n *atomic.Int64
}

func (c countConn) Write(p []byte) (int, error) {
	c.n.Add(1)
	return c.Conn.Write(p)
}

// kcpMaxPacket is kcp-go's maxPacketSize: it reads and writes no larger
// datagram.
const kcpMaxPacket = 1472

// kcpWindow is KCP's send and receive window in packets. A window of
// SCTP's 8 MiB receive buffer (~7,000 packets at MTU 1,200) measured
// 9 MB/s with KCP's congestion control on, one flow (bursts over the 4 MiB
// socket buffers, then KCP's cwnd of one packet); 256 and 1,024 did not
// collapse, 1,024 was the better of the two with 16 flows.
const kcpWindow = 1024

func tuneKCP(s *kcp.UDPSession, mtu int, nc int) {
	s.SetMtu(min(mtu, kcpMaxPacket))
	s.SetWindowSize(kcpWindow, kcpWindow)
	s.SetNoDelay(1, 10, 2, nc)
	// Stream mode packs small writes into full segments, as a byte stream
	// under yamux wants; kcp-go deprecates the setter but has no other way
	// to it (its default is message mode).
	//lint:ignore SA1019 the only way to stream mode in kcp-go v5.7
	s.SetStreamMode(true)
	s.SetWriteDelay(false)
}

// muxPair builds the client and gateway sessions of mux m over a fresh
// DTLS connection pair.
func muxPair(b *testing.B, m string, mtu int, down, up *atomic.Int64) (client, gateway Session, cleanup func()) {
	b.Helper()
	rc, rg, dtlsCleanup := rawDTLSPair(b, false)
	cc, gc := countConn{rc, up}, countConn{rg, down}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	type res struct {
		s   Session
		err error
	}
	srv := make(chan res, 1)
	switch m {
	case "sctp":
		cfg := Config{MTU: uint32(mtu)}
		go func() {
			s, err := NewDTLSSession(ctx, gc, RoleGateway, cfg)
			srv <- res{s, err}
		}()
		cs, err := NewDTLSSession(ctx, cc, RoleClient, cfg)
		if err != nil {
			b.Fatal(err)
		}
		r := <-srv
		if r.err != nil {
			b.Fatal(r.err)
		}
		return cs, r.s, func() { cs.Close(); r.s.Close(); dtlsCleanup() }
	default:
		nc := 0
		if m == "kcp-nc1" {
			nc = 1
		}
		l, err := kcp.ServeConn(nil, 0, 0, recordConn{gc})
		if err != nil {
			b.Fatal(err)
		}
		var gks *kcp.UDPSession
		go func() {
			ks, err := l.AcceptKCP()
			if err != nil {
				srv <- res{nil, err}
				return
			}
			gks = ks
			tuneKCP(ks, mtu, nc)
			s, err := NewTLSSession(ctx, ks, RoleGateway, Config{})
			srv <- res{s, err}
		}()
		cks, err := kcp.NewConn3(rand.Uint32(), cc.RemoteAddr(), nil, 0, 0, recordConn{cc})
		if err != nil {
			b.Fatal(err)
		}
		tuneKCP(cks, mtu, nc)
		cs, err := NewTLSSession(ctx, cks, RoleClient, Config{})
		if err != nil {
			b.Fatal(err)
		}
		// KCP's listener learns of the client with its first packet: yamux
		// sends nothing until a stream opens, so say hello.
		st, err := cs.Open(ctx)
		if err != nil {
			b.Fatal(err)
		}
		r := <-srv
		if r.err != nil {
			b.Fatal(r.err)
		}
		_ = st.Close()
		return cs, r.s, func() {
			cs.Close()
			r.s.Close()
			_ = cks.Close()
			if gks != nil {
				_ = gks.Close()
			}
			_ = l.Close()
			dtlsCleanup()
		}
	}
}

// patternLen is prime so that no write or read size lines up with it: a
// lost, repeated or misplaced chunk shows as a mismatch.
const patternLen = 65521

var benchPattern = func() []byte {
	r := rand.New(rand.NewPCG(15, 15))
	p := make([]byte, 2*patternLen)
	for i := range patternLen {
		p[i] = byte(r.Uint32())
	}
	copy(p[patternLen:], p[:patternLen])
	return p
}()

// patternAt returns up to n bytes of flow's pattern from offset off.
func patternAt(flow, off, n int) []byte {
	start := (off + flow*7919) % patternLen
	return benchPattern[start : start+min(n, patternLen)]
}

// patternServer answers each accepted stream's requests: a request names
// the flow (one byte), the answer is size bytes of that flow's pattern.
func patternServer(ctx context.Context, s Session, size int, wg *sync.WaitGroup) {
	serveRequests(ctx, s, wg, func(st Stream, flow byte) error {
		for off := 0; off < size; {
			p := patternAt(int(flow), off, min(size-off, 32<<10))
			if _, err := st.Write(p); err != nil {
				return err
			}
			off += len(p)
		}
		return nil
	})
}

func benchDTLSMux(b *testing.B, m string, mtu, flows int) {
	var down, up atomic.Int64
	client, gateway, cleanup := muxPair(b, m, mtu, &down, &up)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	size := benchBulk / flows
	wg.Add(1)
	go patternServer(ctx, gateway, size, &wg)
	defer func() { cancel(); cleanup(); wg.Wait() }()
	fetch := func(st Stream, flow int, buf []byte) error {
		if _, err := st.Write([]byte{byte(flow)}); err != nil {
			return err
		}
		for off := 0; off < size; {
			n, err := st.Read(buf[:min(size-off, len(buf))])
			if err != nil {
				return fmt.Errorf("flow %d at %d: %w", flow, off, err)
			}
			for got := buf[:n]; len(got) > 0; {
				want := patternAt(flow, off, len(got))
				if !bytes.Equal(got[:len(want)], want) {
					return fmt.Errorf("flow %d: bytes %d..%d differ from what was sent", flow, off, off+len(want))
				}
				got, off = got[len(want):], off+len(want)
			}
		}
		return nil
	}
	streams := make([]Stream, flows)
	for i := range streams {
		st, err := client.Open(ctx)
		if err != nil {
			b.Fatal(err)
		}
		defer st.Close()
		streams[i] = st
		if err := fetch(st, i, make([]byte, 32<<10)); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(benchBulk)
	cpu0, drops0 := cpuTime(), udpRcvbufErrors()
	down0, up0 := down.Load(), up.Load()
	b.ResetTimer()
	for range b.N {
		errs := make(chan error, flows)
		for i, st := range streams {
			go func() {
				errs <- fetch(st, i, make([]byte, 32<<10))
			}()
		}
		for range flows {
			if err := <-errs; err != nil {
				b.Fatal(err)
			}
		}
	}
	b.StopTimer()
	// Both ends run in this process: CPU time of the whole process (user
	// and system) per MiB carried.
	b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N*(benchBulk>>20)), "cpu-µs/MiB")
	mib := float64(b.N * (benchBulk >> 20))
	b.ReportMetric(float64(down.Load()-down0)/mib, "records-down/MiB")
	b.ReportMetric(float64(up.Load()-up0)/mib, "records-up/MiB")
	// Datagrams the kernel dropped for a full socket receive buffer, on
	// the whole machine (another program's count too) during the run.
	b.ReportMetric(float64(udpRcvbufErrors()-drops0)/float64(b.N), "rcvbuf-drops/op")
}
