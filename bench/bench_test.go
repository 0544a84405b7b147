package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"math"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/pinwall/pinwall/client"
	"github.com/pinwall/pinwall/pki"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func testCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func TestRunStopRules(t *testing.T) {
	var calls atomic.Int64
	op := func(context.Context) (Sample, error) {
		calls.Add(1)
		return Sample{Bytes: 10, Latency: time.Duration(calls.Load()) * time.Millisecond}, nil
	}
	tests := []struct {
		name string
		cfg  RunConfig
		want int
	}{
		{"one op by default", RunConfig{}, 1},
		{"max ops", RunConfig{MaxOps: 7}, 7},
		{"max ops concurrent", RunConfig{MaxOps: 9, Concurrency: 4}, 9},
		{"min ops past the duration", RunConfig{Duration: time.Nanosecond, MinOps: 5}, 5},
		{"warmup is not counted", RunConfig{MaxOps: 3, Warmup: 2}, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			calls.Store(0)
			res, err := Run(testCtx(t, 10*time.Second), tt.cfg, op)
			require.NoError(t, err)
			assert.Equal(t, tt.want, res.Ops)
			assert.Equal(t, int64(10*tt.want), res.Bytes)
			assert.Len(t, res.Latencies, tt.want)
			assert.True(t, res.Elapsed > 0)
			assert.Equal(t, int64(tt.want+tt.cfg.Warmup), calls.Load())
		})
	}
}

func TestRunDuration(t *testing.T) {
	op := func(context.Context) (Sample, error) { time.Sleep(time.Millisecond); return Sample{}, nil }
	res, err := Run(testCtx(t, 10*time.Second), RunConfig{Duration: 50 * time.Millisecond, Concurrency: 2}, op)
	require.NoError(t, err)
	assert.Greater(t, res.Ops, 2)
	assert.GreaterOrEqual(t, res.Elapsed, 50*time.Millisecond)
}

func TestRunErrors(t *testing.T) {
	boom := errors.New("boom")
	var n atomic.Int64
	flaky := func(context.Context) (Sample, error) {
		if n.Add(1)%3 == 0 {
			return Sample{}, boom
		}
		return Sample{}, nil
	}
	res, err := Run(testCtx(t, 10*time.Second), RunConfig{MaxOps: 9, MaxErrors: 5}, flaky)
	require.NoError(t, err, "three failures are tolerated")
	assert.Equal(t, 6, res.Ops)
	assert.Equal(t, 3, res.Errors)
	assert.ErrorIs(t, res.FirstErr, boom)

	n.Store(0)
	res, err = Run(testCtx(t, 10*time.Second), RunConfig{MaxOps: 9}, flaky)
	require.ErrorIs(t, err, ErrTooManyErrors)
	require.ErrorIs(t, err, boom)
	assert.Equal(t, 1, res.Errors)
	assert.Equal(t, 2, res.Ops, "the run stops at the first failure")
}

func TestPercentile(t *testing.T) {
	var lat []time.Duration
	for i := 1; i <= 100; i++ {
		lat = append(lat, time.Duration(i))
	}
	r := Result{Latencies: lat}
	assert.Equal(t, time.Duration(50), r.Percentile(50))
	assert.Equal(t, time.Duration(99), r.Percentile(99))
	assert.Equal(t, time.Duration(100), r.Percentile(100))
	assert.Equal(t, time.Duration(1), r.Percentile(0.1))
	assert.Zero(t, Result{}.Percentile(50))
}

func TestBlobKeepAliveAndClose(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	s := ServeBlob(ln, nil)
	t.Cleanup(func() { s.Close() })
	c, err := net.Dial("tcp", s.Addr().String())
	require.NoError(t, err)
	defer c.Close()
	for _, n := range []int64{1 << 20, 0, 1, 20000} {
		start := time.Now()
		first, err := FetchBlob(c, "blob.test", n, false)
		require.NoError(t, err, "%d bytes", n)
		assert.False(t, first.Before(start))
	}
	_, err = FetchBlob(c, "blob.test", 5, true)
	require.NoError(t, err)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	k, err := c.Read(make([]byte, 1))
	assert.Zero(t, k)
	assert.Error(t, err, "the server closes after Connection: close")
}

func TestBlobRejectsBadRequests(t *testing.T) {
	for _, req := range []string{"POST /blob/1 HTTP/1.1\r\n\r\n", "GET /x HTTP/1.1\r\n\r\n", "GET /blob/-1 HTTP/1.1\r\n\r\n"} {
		_, _, err := readBlobRequest(bufioReader(req))
		assert.Error(t, err, "%q", req)
	}
	n, keep, err := readBlobRequest(bufioReader("GET /blob/42 HTTP/1.1\r\nHost: x\r\nConnection: Close\r\n\r\n"))
	require.NoError(t, err)
	assert.Equal(t, int64(42), n)
	assert.False(t, keep)
	_, err = parseBlobResponse([]byte("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"))
	assert.Error(t, err)
}

// TestFirewallPaths takes every in-process path once with small transfers:
// a warm and a cold connection and a 1 MiB bulk transfer, and checks who
// signed the certificate the client saw.
func TestFirewallPaths(t *testing.T) {
	ctx := testCtx(t, time.Minute)
	env, err := StartFirewallEnv(FirewallEnvConfig{Algorithm: pki.ECDSAP256})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, env.Close()) })
	relay, err := env.StartRelay()
	require.NoError(t, err)
	splice, err := env.StartPinwall(false)
	require.NoError(t, err)
	decrypt, err := env.StartPinwall(true)
	require.NoError(t, err)
	for _, p := range []*Path{env.Direct(), relay, splice, decrypt} {
		t.Run(p.Name, func(t *testing.T) {
			names, err := env.ColdNames(2)
			require.NoError(t, err)
			for _, op := range []Op{env.ConnOp(p, WarmNames), env.ConnOp(p, names), env.BulkOp(p, 1<<20)} {
				res, err := Run(ctx, RunConfig{MaxOps: 2}, op)
				require.NoError(t, err)
				assert.Equal(t, 2, res.Ops)
			}
			tc, err := env.dial(ctx, p, WarmName)
			require.NoError(t, err)
			defer tc.Close()
			issuer := tc.ConnectionState().PeerCertificates[0].Issuer.CommonName
			want := env.Internet.Cert.Subject.CommonName
			if p.Decrypts {
				want = env.Enterprise.Cert.Subject.CommonName
			}
			assert.Equal(t, want, issuer)
		})
	}
}

// TestTunnelOps takes every tunnel figure once with small transfers.
func TestTunnelOps(t *testing.T) {
	ctx := testCtx(t, time.Minute)
	env, err := StartTunnelEnv(ctx)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, env.Close()) })
	raw, err := env.OpenRawTLS(ctx)
	require.NoError(t, err)
	_, err = Run(ctx, RunConfig{MaxOps: 2}, raw.Fetch(1<<20))
	require.NoError(t, err)
	require.NoError(t, raw.Close())
	for _, tr := range Transports {
		t.Run(string(tr), func(t *testing.T) {
			f, err := env.OpenFlow(ctx, tr)
			require.NoError(t, err)
			res, err := Run(ctx, RunConfig{MaxOps: 2}, f.Fetch(1<<20))
			require.NoError(t, err)
			assert.Equal(t, int64(2<<20), res.Bytes)
			require.NoError(t, f.Close())

			flows, err := env.OpenFlows(ctx, tr, 3)
			require.NoError(t, err)
			res, err = Run(ctx, RunConfig{MaxOps: 1}, FetchAll(flows, 64<<10))
			require.NoError(t, err)
			assert.Equal(t, int64(3*64<<10), res.Bytes)
			for _, f := range flows {
				f.Close()
			}

			res, err = Run(ctx, RunConfig{MaxOps: 3}, env.FirstByteOp(tr))
			require.NoError(t, err)
			assert.Positive(t, res.Percentile(50))

			res, err = Run(ctx, RunConfig{MaxOps: 2}, env.SetupOp(tr))
			require.NoError(t, err)
			assert.Positive(t, res.Percentile(50))
		})
	}
	c, err := env.Client(ctx, client.TransportTLS)
	require.NoError(t, err)
	assert.Equal(t, "tls", string(c.State().Transport))
}

// TestReportQuick runs the whole report at toy sizes without the external
// tools and checks that every section came out with figures.
func TestReportQuick(t *testing.T) {
	if testing.Short() {
		t.Skip("starts both environments")
	}
	var log bytes.Buffer
	sections, err := Report(testCtx(t, 2*time.Minute), Config{Quick: true, SkipTools: true, Log: &log})
	require.NoError(t, err, log.String())
	titles := []string{}
	for _, s := range sections {
		titles = append(titles, s.Title)
	}
	require.Len(t, sections, 6, "%q", titles)
	for _, s := range sections[:5] {
		require.NotEmpty(t, s.Rows, s.Title)
		for _, r := range s.Rows {
			if strings.HasPrefix(r.Figure, "mitmproxy") || strings.HasPrefix(r.Figure, "sslsplit") {
				assert.True(t, math.IsNaN(r.Value), r.Figure)
				assert.Equal(t, "not measured: skipped", r.Note)
				continue
			}
			assert.False(t, math.IsNaN(r.Value), "%s: %s", r.Figure, r.Note)
		}
	}
	var out bytes.Buffer
	require.NoError(t, WriteTable(&out, sections...))
	assert.Contains(t, out.String(), "pinwall decrypt: added median")
	assert.Contains(t, out.String(), "rsa-2048 origin: pinwall decrypt sequential")
	assert.Contains(t, out.String(), "ecdsa-p256 origin: pinwall decrypt sequential")
	pass, miss := Tally(sections...)
	assert.Positive(t, pass+miss)
}

func TestWriteTable(t *testing.T) {
	s := Section{Title: "demo", Notes: []string{"a note"}}
	s.Add(
		Figure("fast thing", 750, UnitMiBps).AtLeast(500, "goal ≥ 500 MiB/s"),
		Figure("slow thing", 0.25, UnitMs).AtMost(0.2, "goal ≤ 200 µs").WithNote("p99 1 ms"),
		Figure("ratio thing", 30, UnitPerSec).RatioAtLeast(100, 0.4, "goal ≥ 0.4× other"),
		Missing("absent thing", UnitPerSec, "tool unavailable"),
		WallTime("catalogue, in-process", 95*time.Second, 2*time.Minute),
		Figure("check x", 4, UnitSeconds).RatioAtMost(10, 1, "≤ 1.0× run --all"),
	)
	var b bytes.Buffer
	require.NoError(t, WriteTable(&b, s))
	want := `== demo
figure                 value      reference / goal   ratio  result  note
------                 -----      ----------------   -----  ------  ----
fast thing             750 MiB/s  goal ≥ 500 MiB/s   1.50×  pass
slow thing             250 µs     goal ≤ 200 µs      1.25×  miss    p99 1 ms
ratio thing            30/s       goal ≥ 0.4× other  0.30×  miss
absent thing           n/a                                          tool unavailable
catalogue, in-process  95.0 s     goal ≤ 2m0s        0.79×  pass
check x                4.0 s      ≤ 1.0× run --all   0.40×  pass
  * a note
`
	assert.Equal(t, want, b.String())
	pass, miss := Tally(s)
	assert.Equal(t, 3, pass)
	assert.Equal(t, 2, miss)
}

func TestParseAptPolicy(t *testing.T) {
	out := `sslsplit:
  Installed: (none)
  Candidate: 0.5.5-2.1
  Version table:
     0.5.5-2.1 500
        500 http://deb.example/debian bookworm/main amd64 Packages
mitmproxy:
  Installed: (none)
  Candidate: (none)
`
	assert.Equal(t, map[string]string{"sslsplit": "0.5.5-2.1"}, parseAptPolicy(out))
}

func bufioReader(s string) *bufio.Reader { return bufio.NewReader(strings.NewReader(s)) }

func TestCPUPerMiB(t *testing.T) {
	a := cpuSnapshot{ok: true, ours: 100}
	b := cpuSnapshot{ok: true, ours: 150}
	require.Equal(t, 500*time.Millisecond, ownCPU(a, b))
	assert.Zero(t, ownCPU(cpuSnapshot{}, b), "unknown snapshot")
	assert.Zero(t, ownCPU(b, a), "ticks went back")

	r := Result{Ops: 1, Bytes: 4 << 20, CPU: 100 * time.Millisecond, Elapsed: time.Second}
	assert.Equal(t, 25*time.Millisecond, r.CPUPerMiB())
	assert.Zero(t, Result{Bytes: 1 << 20}.CPUPerMiB(), "CPU unknown")

	m := mergeResults(r, r)
	assert.Equal(t, 200*time.Millisecond, m.CPU)
	assert.Zero(t, mergeResults(r, Result{Ops: 1, Bytes: 1, Elapsed: time.Second}).CPU, "one round unknown")

	base := Result{Ops: 1, Bytes: 8 << 20, CPU: 80 * time.Millisecond, Elapsed: time.Second}
	n := cpuNote("path", r, "base", base)
	assert.Contains(t, n, "path 25.00 ms, base 10.00 ms (2.50×)")
	assert.Empty(t, cpuNote("path", Result{}, "base", base))
}
