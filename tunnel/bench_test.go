package tunnel

import (
	"context"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"
)

// The session benchmarks measure one session's bulk throughput, client to
// gateway and back, with one stream and with 16 at once, over both
// transports on loopback (the DTLS one through the in-process network and
// the gateway's UDP mux), so a profile shows the multiplexer's own costs:
//
//	go test ./tunnel -run '^$' -bench Session -cpuprofile cpu.out

const benchBulk = 16 << 20

// sinkServer answers every accepted stream by reading its one-byte
// request and writing size bytes back.
func sinkServer(ctx context.Context, s Session, size int, wg *sync.WaitGroup) {
	buf := make([]byte, 32<<10)
	serveRequests(ctx, s, wg, func(st Stream, _ byte) error {
		for left := size; left > 0; {
			n := min(left, len(buf))
			if _, err := st.Write(buf[:n]); err != nil {
				return err
			}
			left -= n
		}
		return nil
	})
}

// serveRequests answers every stream s accepts, one goroutine each, until
// Accept fails: for every one-byte request read, answer writes its reply.
// It calls wg.Done when it and every stream's goroutine have ended.
func serveRequests(ctx context.Context, s Session, wg *sync.WaitGroup, answer func(st Stream, req byte) error) {
	defer wg.Done()
	var inner sync.WaitGroup
	defer inner.Wait()
	for {
		st, err := s.Accept(ctx)
		if err != nil {
			return
		}
		inner.Add(1)
		go func() {
			defer inner.Done()
			defer st.Close()
			var req [1]byte
			for {
				if _, err := io.ReadFull(st, req[:]); err != nil {
					return
				}
				if answer(st, req[0]) != nil {
					return
				}
			}
		}()
	}
}

func benchSession(b *testing.B, tr Transport, flows int, mtu uint32) {
	var p pair
	if tr == TransportTLS {
		p = tlsPair(b, Config{})
	} else {
		p = dtlsPair(b, Config{MTU: mtu}, nil)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	size := benchBulk / flows
	wg.Add(1)
	go sinkServer(ctx, p.gateway, size, &wg)
	defer func() { cancel(); p.cleanup(); wg.Wait() }()
	fetch := func(st Stream, buf []byte) error {
		if _, err := st.Write([]byte{'>'}); err != nil {
			return err
		}
		for left := size; left > 0; {
			n, err := st.Read(buf[:min(left, len(buf))])
			if err != nil {
				return err
			}
			left -= n
		}
		return nil
	}
	streams := make([]Stream, flows)
	for i := range streams {
		st, err := p.client.Open(ctx)
		if err != nil {
			b.Fatal(err)
		}
		defer st.Close()
		streams[i] = st
		// A stream counts against the open window until it has been
		// answered: warm each up before opening the next.
		if err := fetch(st, make([]byte, 32<<10)); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(benchBulk)
	b.ResetTimer()
	for range b.N {
		errs := make(chan error, flows)
		for _, st := range streams {
			go func() {
				buf := make([]byte, 32<<10)
				errs <- fetch(st, buf)
			}()
		}
		for range flows {
			if err := <-errs; err != nil {
				b.Fatal(err)
			}
		}
	}
}

func BenchmarkSession(b *testing.B) {
	for _, tr := range []Transport{TransportTLS, TransportDTLS} {
		for _, flows := range []int{1, 16} {
			b.Run(fmt.Sprintf("%s/%d", tr, flows), func(b *testing.B) { benchSession(b, tr, flows, 0) })
		}
	}
	// The DTLS tunnel's cost is per packet: the same with the largest MTU
	// pion/dtls reads, for comparison (not a default: a real path would
	// fragment such datagrams).
	for _, flows := range []int{1, 16} {
		b.Run(fmt.Sprintf("dtls-mtu%d/%d", maxMTU, flows), func(b *testing.B) { benchSession(b, TransportDTLS, flows, maxMTU) })
	}
}

// BenchmarkDTLSRecords is the floor under any multiplexer over the DTLS
// connection: one-way bulk of bare DTLS records of the SCTP packet size
// (MTU), gateway to client, through the same in-process network and UDP
// mux, with no SCTP (records lost to a full socket are not resent, so
// the rate is an upper bound). Side by side with BenchmarkSession/dtls it
// shows how much of the tunnel's cost is the record layer's: pion/dtls's
// own records (pion) against the record path's (path), which the tunnel
// uses.
func BenchmarkDTLSRecords(b *testing.B) {
	for _, mtu := range []int{1200, maxMTU} {
		for _, layer := range []string{"pion", "path"} {
			b.Run(fmt.Sprintf("mtu%d/%s", mtu, layer), func(b *testing.B) { benchDTLSRecords(b, mtu, layer == "path") })
		}
	}
}

func benchDTLSRecords(b *testing.B, mtu int, records bool) {
	{
		{
			cc, gc, cleanup := rawDTLSPair(b, records)
			defer cleanup()
			rec := make([]byte, mtu)
			done := make(chan int64, 1)
			go func() {
				var got int64
				buf := make([]byte, 16<<10)
				for {
					_ = cc.SetReadDeadline(time.Now().Add(time.Second))
					n, err := cc.Read(buf)
					if err != nil {
						done <- got
						return
					}
					got += int64(n)
				}
			}()
			b.SetBytes(int64(mtu))
			cpu0 := cpuTime()
			b.ResetTimer()
			for range b.N {
				if _, err := gc.Write(rec); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			cpu := cpuTime() - cpu0
			got := <-done
			b.ReportMetric(float64(got)/float64(int64(b.N)*int64(mtu))*100, "%delivered")
			// Both ends: CPU time of the whole process per MiB sent, as
			// BenchmarkDTLSMux reports it.
			b.ReportMetric(float64(cpu.Microseconds())/(float64(b.N)*float64(mtu)/(1<<20)), "cpu-µs/MiB")
		}
	}
}
