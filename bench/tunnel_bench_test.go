package bench

import (
	"context"
	"testing"
	"time"
)

// The tunnel benchmarks run on an in-process topology (harness) with the
// repo's real client and gateway and a blob origin behind the gateway. The
// report (bench/cmd/report, `make bench`) runs the same ops and prints them
// against their goals:
//
//	go test ./bench -run '^$' -bench 'Tunnel' -benchtime 2s

func startTunnelEnv(b *testing.B) *TunnelEnv {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	env, err := StartTunnelEnv(ctx)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { env.Close() })
	return env
}

// runB runs op b.N times under cfg (its MaxOps set to b.N) with the timer
// on, fails the benchmark on error and returns the result.
func runB(b *testing.B, cfg RunConfig, op Op) Result {
	b.Helper()
	cfg.MaxOps = b.N
	b.ResetTimer()
	res, err := Run(context.Background(), cfg, op)
	b.StopTimer()
	if err != nil {
		b.Fatal(err)
	}
	return res
}

// reportLatency adds the median and p99 of the ops' latencies.
func reportLatency(b *testing.B, res Result) {
	b.ReportMetric(float64(res.Percentile(50))/float64(time.Microsecond), "p50-µs")
	b.ReportMetric(float64(res.Percentile(99))/float64(time.Microsecond), "p99-µs")
}

// BenchmarkTunnelOneFlow is the bulk throughput of one inner flow over each
// transport, and of one raw TLS 1.3 connection on loopback with a
// certificate of the gateway's type. Each op fetches 16 MiB on a flow
// opened before the timer starts.
func BenchmarkTunnelOneFlow(b *testing.B) {
	env := startTunnelEnv(b)
	ctx := context.Background()
	b.Run("raw-tls", func(b *testing.B) {
		f, err := env.OpenRawTLS(ctx)
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		b.SetBytes(TunnelFlowSize)
		runB(b, RunConfig{}, f.Fetch(TunnelFlowSize))
	})
	for _, tr := range Transports {
		b.Run(string(tr), func(b *testing.B) {
			f, err := env.OpenFlow(ctx, tr)
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			b.SetBytes(TunnelFlowSize)
			runB(b, RunConfig{}, f.Fetch(TunnelFlowSize))
		})
	}
}

// BenchmarkTunnelParallelFlows is the aggregate throughput of 16 inner
// flows at once over one tunnel; each op fetches 4 MiB on every flow.
func BenchmarkTunnelParallelFlows(b *testing.B) {
	env := startTunnelEnv(b)
	ctx := context.Background()
	for _, tr := range Transports {
		b.Run(string(tr), func(b *testing.B) {
			flows, err := env.OpenFlows(ctx, tr, TunnelParallelFlows)
			if err != nil {
				b.Fatal(err)
			}
			defer func() {
				for _, f := range flows {
					f.Close()
				}
			}()
			b.SetBytes(TunnelParallelFlows * TunnelParallelSize)
			runB(b, RunConfig{}, FetchAll(flows, TunnelParallelSize))
		})
	}
}

// BenchmarkTunnelFirstByte is the time from opening a new flow on an
// established tunnel to the first byte of the origin's answer (p50-µs,
// p99-µs).
func BenchmarkTunnelFirstByte(b *testing.B) {
	env := startTunnelEnv(b)
	for _, tr := range Transports {
		b.Run(string(tr), func(b *testing.B) {
			if _, err := env.Client(context.Background(), tr); err != nil {
				b.Fatal(err)
			}
			reportLatency(b, runB(b, RunConfig{}, env.FirstByteOp(tr)))
		})
	}
}

// BenchmarkTunnelSetup is the time a new client takes to bring its tunnel
// up on each transport (p50-µs, p99-µs).
func BenchmarkTunnelSetup(b *testing.B) {
	env := startTunnelEnv(b)
	for _, tr := range Transports {
		b.Run(string(tr), func(b *testing.B) {
			reportLatency(b, runB(b, RunConfig{}, env.SetupOp(tr)))
		})
	}
}
