package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/pinwall/pinwall/client"
	"github.com/pinwall/pinwall/hostnet"
	"github.com/pinwall/pinwall/pki"
	"github.com/pinwall/pinwall/tunnel"
)

// Goals the report prints pass or miss against. None of them fails a test.
const (
	// GoalTLSTunnelVsRaw: one flow over the TLS tunnel reaches this share
	// of a raw TLS 1.3 connection.
	GoalTLSTunnelVsRaw = 0.80
	// GoalDTLSMiBps: one flow over the DTLS tunnel reaches this rate
	// (issue 15)...
	GoalDTLSMiBps = 150
	// GoalDTLSVsTLS: ...and this share of one flow over the TLS tunnel.
	GoalDTLSVsTLS = 0.3
	// GoalParallelVsOne: 16 flows together move at least this multiple of
	// one flow alone on the same transport.
	GoalParallelVsOne = 1.0
	// GoalFirstByte: median time from opening a flow on an established
	// tunnel to the first byte of the origin's answer.
	GoalFirstByte = time.Millisecond
	// GoalDecryptVsDirect: warm-cache decrypted connections per second
	// reach this share of direct ones, sequential and 8-way.
	GoalDecryptVsDirect = 0.55
	// GoalDecryptBulkVsDirect: bulk through the decrypt path reaches this
	// share of a direct connection's.
	GoalDecryptBulkVsDirect = 0.7
	// GoalDecryptVsMitmproxy: ...and this multiple of mitmproxy's.
	GoalDecryptVsMitmproxy = 2.0
	// GoalAddedLatencyVsDirect: median latency pinwall's decrypt path adds
	// to a fresh connection, as a share of a direct connection's median.
	GoalAddedLatencyVsDirect = 0.75
)

// Reference is a path's figures measured earlier on this machine (RSA-2048,
// client, proxy and origin sharing 2 cores).
type Reference struct {
	// Seq and Par are new connections per second, sequential and 8-way.
	Seq, Par float64
	// Bulk is MiB/s of one connection.
	Bulk float64
	// AddedP50 is the median latency added to a fresh connection, in ms
	// (zero: not recorded).
	AddedP50 float64
}

// References by path name.
var References = map[string]Reference{
	"direct":    {Seq: 753, Par: 1521, Bulk: 1185},
	"go relay":  {Seq: 583, Par: 1125, Bulk: 924},
	"mitmproxy": {Seq: 176, Par: 236, Bulk: 446, AddedP50: 4.3},
	"sslsplit":  {Seq: 23, Par: 173, Bulk: 594, AddedP50: 42.7},
}

// Sizes of the transfers.
const (
	// TunnelFlowSize is one request of the one-flow tunnel figures.
	TunnelFlowSize = 16 << 20
	// TunnelParallelSize is each flow's request of the 16-flow figures.
	TunnelParallelSize = 4 << 20
	// TunnelParallelFlows is the number of flows of the parallel figures.
	TunnelParallelFlows = 16
	// FirewallBulkSize is the response of a firewall bulk connection.
	FirewallBulkSize = 64 << 20
	// FirewallConcurrency is the "8-way" of the firewall figures.
	FirewallConcurrency = 8
)

// SectionFunc measures a section of its own, appended after the built-in
// ones: the hook for figures taken elsewhere, such as the scenario
// catalogue's wall time (in-process, containers cold and warm; see
// WallTime).
type SectionFunc func(ctx context.Context, log io.Writer) (Section, error)

// Config says what Report measures.
type Config struct {
	// Log receives progress lines; nil discards.
	Log io.Writer
	// Duration is how long each figure runs; zero means DefaultDuration.
	Duration time.Duration
	// SkipTunnel and SkipFirewall leave a section out.
	SkipTunnel, SkipFirewall bool
	// SkipTools leaves sslsplit and mitmproxy out.
	SkipTools bool
	// NoInstall does not apt-get install a missing tool.
	NoInstall bool
	// Extra sections are measured after the built-in ones.
	Extra []SectionFunc
	// Quick runs every figure a few times at small sizes with ECDSA keys:
	// for checking the report itself, its figures mean nothing.
	Quick bool
}

func (c Config) duration() time.Duration {
	if c.Duration > 0 {
		return c.Duration
	}
	return DefaultDuration
}

// DefaultDuration is how long each figure runs by default: with it the
// whole report takes about two minutes on the reference machine.
const DefaultDuration = 3 * time.Second

// measurer runs figures and logs them.
type measurer struct {
	cfg Config
	log io.Writer
	d   time.Duration

	// Sizes, scaled down in quick mode.
	flowSize, parSize, bulkSize int64

	// Other processes' CPU during each figure.
	figures    int
	otherSum   float64
	otherMax   float64
	otherMaxAt string
	busy       []string
}

func newMeasurer(cfg Config) *measurer {
	m := &measurer{cfg: cfg, log: cfg.Log, d: cfg.duration(),
		flowSize: TunnelFlowSize, parSize: TunnelParallelSize, bulkSize: FirewallBulkSize}
	if m.log == nil {
		m.log = io.Discard
	}
	if cfg.Quick {
		m.d = time.Millisecond
		m.flowSize, m.parSize, m.bulkSize = 1<<20, 64<<10, 1<<20
	}
	return m
}

// minOps scales a figure's minimum op count down in quick mode.
func (m *measurer) minOps(n int) int {
	if m.cfg.Quick {
		return min(n, 2)
	}
	return n
}

// busyThreshold is the load from other processes above which a figure is
// flagged as taken on a shared machine.
const busyThreshold = 0.25

// run takes one figure, after a GC so that garbage of the last one is not
// collected during this one.
func (m *measurer) run(ctx context.Context, label string, rc RunConfig, op Op) (Result, error) {
	runtime.GC()
	t0 := time.Now()
	res, err := Run(ctx, rc, op)
	status := "ok"
	if err != nil {
		status = "error: " + err.Error()
	}
	if res.OtherCores >= 0 {
		m.figures++
		m.otherSum += res.OtherCores
		if res.OtherCores > m.otherMax {
			m.otherMax, m.otherMaxAt = res.OtherCores, label
		}
		if res.OtherCores >= busyThreshold {
			m.busy = append(m.busy, label)
		}
	}
	fmt.Fprintf(m.log, "bench: %-52s %6d ops %8.1f/s %8.1f MiB/s p50 %-10v others %.2f cores (%v) %s\n", label, res.Ops, res.PerSecond(), res.MiBPerSecond(),
		res.Percentile(50).Round(time.Microsecond), res.OtherCores, time.Since(t0).Round(time.Millisecond), status)
	return res, err
}

// conditions is the section saying how busy the machine was.
func (m *measurer) conditions() Section {
	s := Section{Title: "Run conditions"}
	if m.figures == 0 {
		s.Notes = append(s.Notes, "other processes' CPU use unknown (no /proc)")
		return s
	}
	s.Notes = append(s.Notes, fmt.Sprintf("other processes kept %.2f cores busy on average during the %d figures (most: %.2f, during %q)",
		m.otherSum/float64(m.figures), m.figures, m.otherMax, m.otherMaxAt))
	if len(m.busy) > 0 {
		s.Notes = append(s.Notes, fmt.Sprintf("%d figures ran while others used ≥ %.2f cores, and are marked \"shared machine\" in their notes; rerun on a quiet machine before trusting them",
			len(m.busy), busyThreshold))
	}
	return s
}

// Report measures every section cfg asks for and returns them, ready for
// WriteTable. A figure that cannot be taken becomes a row saying why; only
// a cancelled ctx ends the report early.
func Report(ctx context.Context, cfg Config) ([]Section, error) {
	m := newMeasurer(cfg)
	var out []Section
	if !cfg.SkipTunnel {
		out = append(out, m.tunnel(ctx))
	}
	if err := ctx.Err(); err != nil {
		return out, err
	}
	if !cfg.SkipFirewall {
		out = append(out, m.firewall(ctx)...)
		if err := ctx.Err(); err != nil {
			return out, err
		}
		out = append(out, m.originKeys(ctx))
	}
	for _, f := range cfg.Extra {
		if err := ctx.Err(); err != nil {
			return out, err
		}
		s, err := f(ctx, m.log)
		if err != nil {
			s.Notes = append(s.Notes, "not measured: "+err.Error())
		}
		out = append(out, s)
	}
	out = append(out, m.conditions())
	return out, ctx.Err()
}

// Environment describes the machine and the run, one fact a line.
func Environment(cfg Config) []string {
	cpu := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if name, ok := strings.CutPrefix(l, "model name"); ok {
				cpu = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(name), ":"))
				break
			}
		}
	}
	return []string{
		fmt.Sprintf("%s, GOMAXPROCS=%d, %s, %s/%s", time.Now().Format(time.RFC3339), runtime.GOMAXPROCS(0), runtime.Version(), runtime.GOOS, runtime.GOARCH),
		fmt.Sprintf("CPU: %s × %d", cpu, runtime.NumCPU()),
		fmt.Sprintf("each figure runs %v; client, proxies and origins share the machine", cfg.duration()),
	}
}

func resultNote(res Result) string {
	n := plural(res.Ops, "op")
	if res.Errors > 0 {
		n += fmt.Sprintf(", %s (first: %v)", plural(res.Errors, "error"), res.FirstErr)
	}
	if res.OtherCores >= busyThreshold {
		n += fmt.Sprintf("; shared machine: others used %.1f cores", res.OtherCores)
	}
	return n
}

// rate returns the run's figure in unit, or NaN when the run failed.
func rate(res Result, err error, unit string) float64 {
	if err != nil || res.Ops == 0 {
		return math.NaN()
	}
	if unit == UnitMiBps {
		return res.MiBPerSecond()
	}
	return res.PerSecond()
}

// cpuNote compares the CPU time per MiB of two bulk figures taken in the
// same run and derives the ceiling it puts on the first: with every core
// of the machine busy on that path alone, its rate could not pass
// cores ÷ CPU per MiB, and that ceiling over the second's measured rate is
// the best ratio the first could reach here. "" when either CPU time is
// unknown.
func cpuNote(name string, res Result, base string, baseRes Result) string {
	c, cb := res.CPUPerMiB(), baseRes.CPUPerMiB()
	if c <= 0 || cb <= 0 || baseRes.Elapsed <= 0 {
		return ""
	}
	cores := runtime.NumCPU()
	ceiling := float64(cores) / c.Seconds()
	ms := func(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond)) }
	return fmt.Sprintf("CPU per MiB (this process, every side of the path): %s %s, %s %s (%.2f×); at %d cores busy on it alone %s could carry at most %.0f MiB/s = %.2f× %s's measured %.0f MiB/s",
		name, ms(c), base, ms(cb), c.Seconds()/cb.Seconds(), cores, name, ceiling, ceiling/baseRes.MiBPerSecond(), base, baseRes.MiBPerSecond())
}

// rateRow is a throughput figure, or the reason it is missing.
func rateRow(name string, res Result, err error, unit string) Row {
	if err != nil {
		return Missing(name, unit, err.Error())
	}
	return Figure(name, rate(res, err, unit), unit).WithNote(resultNote(res))
}

// latencyRow is a median latency figure noting the p99.
func latencyRow(name string, res Result, err error) Row {
	if err != nil || res.Ops == 0 {
		why := "no sample"
		if err != nil {
			why = err.Error()
		}
		return Missing(name, UnitMs, why)
	}
	return Figure(name, ms(res.Percentile(50)), UnitMs).
		WithNote(fmt.Sprintf("p99 %s; %s", FormatValue(ms(res.Percentile(99)), UnitMs), resultNote(res)))
}

func (m *measurer) tunnel(ctx context.Context) Section {
	s := Section{Title: "Tunnel: in-process topology, no firewall (this repo's client and gateway; ECDSA P-256 certificates)"}
	env, err := StartTunnelEnv(ctx)
	if err != nil {
		s.Notes = append(s.Notes, "not measured: "+err.Error())
		return s
	}
	defer env.Close()
	d := m.d
	bulkCfg := RunConfig{Duration: d, MinOps: m.minOps(3), Warmup: 1}

	// One flow: the raw baseline and each transport, in rounds, so that the
	// ratio compares figures taken under the same conditions.
	rawName := "raw TLS 1.3 on loopback, one connection (" + FormatSize(m.flowSize) + " requests)"
	type oneFlow struct {
		name, label string
		flow        *Flow
		fig         figure
	}
	var ones []*oneFlow
	if f, err := env.OpenRawTLS(ctx); err != nil {
		ones = append(ones, &oneFlow{name: rawName, fig: figure{err: err}})
	} else {
		ones = append(ones, &oneFlow{name: rawName, label: "raw TLS, one connection", flow: f})
	}
	for _, tr := range Transports {
		o := &oneFlow{name: fmt.Sprintf("%s tunnel (%s), one inner flow", strings.ToUpper(string(tr)), muxName(tr)), label: string(tr) + ", one flow"}
		if o.flow, o.fig.err = env.OpenFlow(ctx, tr); o.fig.err != nil {
			o.fig.err = fmt.Errorf("open %s flow: %w", tr, o.fig.err)
		}
		ones = append(ones, o)
	}
	// The parallel flows of each transport, opened now so that every
	// round takes them beside the one-flow figures they are compared with.
	type parFlows struct {
		name  string
		tr    client.TransportMode
		flows []*Flow
		fig   figure
	}
	var pars []*parFlows
	for _, tr := range Transports {
		p := &parFlows{name: fmt.Sprintf("%s tunnel, %d parallel flows (aggregate; %s each)", strings.ToUpper(string(tr)), TunnelParallelFlows, FormatSize(m.parSize)), tr: tr}
		p.flows, p.fig.err = env.OpenFlows(ctx, tr, TunnelParallelFlows)
		pars = append(pars, p)
	}
	rounds := m.rounds()
	for round := 1; round <= rounds; round++ {
		for _, o := range ones {
			if o.flow == nil {
				continue
			}
			cfg := bulkCfg
			cfg.Duration = d / time.Duration(rounds)
			cfg.MinOps = (cfg.MinOps + rounds - 1) / rounds
			o.fig.add(m.run(ctx, fmt.Sprintf("tunnel: %s (round %d/%d)", o.label, round, rounds), cfg, o.flow.Fetch(m.flowSize)))
		}
		for _, p := range pars {
			if p.fig.err != nil {
				continue
			}
			cfg := RunConfig{Duration: d / time.Duration(rounds), MinOps: (2 + rounds - 1) / rounds}
			if round == 1 {
				cfg.Warmup = 1
			}
			p.fig.add(m.run(ctx, fmt.Sprintf("tunnel: %s, %d flows (round %d/%d)", p.tr, TunnelParallelFlows, round, rounds), cfg, FetchAll(p.flows, m.parSize)))
		}
	}
	for _, o := range ones {
		if o.flow != nil {
			o.flow.Close()
		}
	}
	for _, p := range pars {
		for _, f := range p.flows {
			f.Close()
		}
	}
	raw := rateRow(ones[0].name, ones[0].fig.res, ones[0].fig.err, UnitMiBps).Versus(math.NaN(), "baseline of the TLS tunnel")
	s.Add(raw)
	one := map[client.TransportMode]float64{}
	for i, tr := range Transports {
		o := ones[i+1]
		r := rateRow(o.name, o.fig.res, o.fig.err, UnitMiBps)
		one[tr] = r.Value
		if tr == client.TransportTLS {
			r = r.RatioAtLeast(raw.Value, GoalTLSTunnelVsRaw, fmt.Sprintf("goal ≥ %.2f× raw TLS (%s)", GoalTLSTunnelVsRaw, FormatValue(raw.Value, UnitMiBps)))
		} else {
			r = r.AtLeast(GoalDTLSMiBps, fmt.Sprintf("goal ≥ %d MiB/s", GoalDTLSMiBps))
		}
		s.Add(r)
	}
	if n := cpuNote("TLS tunnel", ones[1].fig.res, "raw TLS", ones[0].fig.res); n != "" {
		s.Notes = append(s.Notes, n)
	}
	if n := cpuNote("DTLS tunnel", ones[2].fig.res, "TLS tunnel", ones[1].fig.res); n != "" {
		s.Notes = append(s.Notes, n)
	}
	s.Notes = append(s.Notes, dtlsPacketNote())
	if tls, dtls := one[client.TransportTLS], one[client.TransportDTLS]; tls > 0 && dtls > 0 {
		s.Add(Row{Figure: "DTLS tunnel vs TLS tunnel, one inner flow", Value: dtls, Unit: UnitMiBps}.
			RatioAtLeast(tls, GoalDTLSVsTLS, fmt.Sprintf("goal ≥ %.1f× the TLS tunnel (%s)", GoalDTLSVsTLS, FormatValue(tls, UnitMiBps))))
	}

	// Parallel flows.
	for _, p := range pars {
		s.Add(rateRow(p.name, p.fig.res, p.fig.err, UnitMiBps).RatioAtLeast(one[p.tr], GoalParallelVsOne, fmt.Sprintf("goal ≥ one %s flow (%s)", p.tr, FormatValue(one[p.tr], UnitMiBps))))
	}

	// A new flow on an established tunnel.
	for _, tr := range Transports {
		name := fmt.Sprintf("%s tunnel: new flow to first byte, median", strings.ToUpper(string(tr)))
		res, err := m.run(ctx, "tunnel: "+string(tr)+", new flow to first byte", RunConfig{Duration: d, MinOps: m.minOps(50), Warmup: 5}, env.FirstByteOp(tr))
		s.Add(latencyRow(name, res, err).AtMost(ms(GoalFirstByte), "goal ≤ "+FormatValue(ms(GoalFirstByte), UnitMs)))
	}

	// Tunnel setup.
	for _, tr := range Transports {
		name := fmt.Sprintf("%s tunnel setup (%s), median", strings.ToUpper(string(tr)), setupName(tr))
		res, err := m.run(ctx, "tunnel: "+string(tr)+", setup", RunConfig{Duration: d, MinOps: m.minOps(10), MaxOps: 2000, Warmup: 1}, env.SetupOp(tr))
		s.Add(latencyRow(name, res, err))
	}
	s.Notes = append(s.Notes,
		"one flow and parallel flows reuse established flows (HTTP/1.1 keep-alive to a blob origin behind the gateway); the raw baseline reuses one connection the same way",
		fmt.Sprintf("the raw baseline, the two one-flow figures and the two parallel figures are taken in %d alternating rounds and added up", rounds),
		"new flow: stream open + request + the gateway's resolve and dial to the origin + reply + a 1-byte blob request, timed to the first response byte",
		"setup: a new client from Start to WaitUp (resolve the gateway, handshake with pin check and device certificate, greeting, multiplexer)")
	return s
}

func muxName(tr client.TransportMode) string {
	if tr == client.TransportDTLS {
		return "SCTP"
	}
	return "yamux"
}

func setupName(tr client.TransportMode) string {
	if tr == client.TransportDTLS {
		return "DTLS 1.2 handshake + greeting + SCTP association"
	}
	return "TCP + TLS 1.3 handshake + greeting + yamux"
}

// Kinds of firewall figures, in the order each round takes them.
const (
	kindSeq     = "sequential, warm"
	kindPar     = "8-way, warm"
	kindSeqCold = "sequential, cold"
	kindParCold = "8-way, cold"
	kindBulk    = "bulk"
)

// figure accumulates one figure over the rounds.
type figure struct {
	res Result
	err error
}

func (f *figure) add(res Result, err error) {
	if f.err != nil {
		return
	}
	if err != nil {
		f.err = err
		return
	}
	f.res = mergeResults(f.res, res)
}

// rate is the figure in unit, NaN when it failed.
func (f *figure) rate(unit string) float64 {
	if f == nil {
		return math.NaN()
	}
	return rate(f.res, f.err, unit)
}

// mergeResults adds the ops of two runs of the same figure.
func mergeResults(a, b Result) Result {
	if a.Ops == 0 && a.Errors == 0 && a.Elapsed == 0 {
		return b
	}
	out := Result{
		Ops: a.Ops + b.Ops, Errors: a.Errors + b.Errors, FirstErr: a.FirstErr,
		Bytes: a.Bytes + b.Bytes, Elapsed: a.Elapsed + b.Elapsed,
		Latencies:  append(append([]time.Duration(nil), a.Latencies...), b.Latencies...),
		OtherCores: -1,
	}
	if a.CPU > 0 && b.CPU > 0 {
		out.CPU = a.CPU + b.CPU
	}
	if out.FirstErr == nil {
		out.FirstErr = b.FirstErr
	}
	if a.OtherCores >= 0 && b.OtherCores >= 0 && out.Elapsed > 0 {
		out.OtherCores = (a.OtherCores*a.Elapsed.Seconds() + b.OtherCores*b.Elapsed.Seconds()) / out.Elapsed.Seconds()
	}
	slices.Sort(out.Latencies)
	return out
}

// pathFigures are one path's firewall figures.
type pathFigures struct {
	path    *Path
	figs    map[string]*figure
	missing string // why the path was not measured at all
}

func (f *pathFigures) fig(kind string) *figure {
	if f.figs[kind] == nil {
		f.figs[kind] = &figure{}
	}
	return f.figs[kind]
}

// Rounds is how many times each compared figure is taken (for
// Duration/Rounds each), every path in turn within a round, so that the
// figures compared with each other were taken close together in time and a
// slow spell of the machine falls on all of them.
const Rounds = 2

func (m *measurer) firewall(ctx context.Context) []Section {
	envCfg := FirewallEnvConfig{Algorithm: pki.RSA2048}
	if m.cfg.Quick {
		envCfg.Algorithm = pki.ECDSAP256
	}
	conns := Section{Title: fmt.Sprintf("Firewall: new connections per second (connect + full TLS handshake + %s response; %s keys; explicit-destination mode)", FormatSize(ConnSize), envCfg.Algorithm)}
	lat := Section{Title: "Firewall: latency of a fresh connection (connect → first response byte), sequential, warm cache"}
	bulk := Section{Title: fmt.Sprintf("Firewall: bulk, one connection (%s response)", FormatSize(m.bulkSize))}

	env, err := StartFirewallEnv(envCfg)
	if err != nil {
		conns.Notes = append(conns.Notes, "not measured: "+err.Error())
		return []Section{conns}
	}
	defer env.Close()

	order, figs := m.startFirewallPaths(ctx, env)
	m.measureFirewall(ctx, env, order, figs)

	base := newFirewallBaseline(figs)
	for _, name := range order {
		f := figs[name]
		if f.missing != "" {
			why := "not measured: " + f.missing
			conns.Add(Missing(name+": sequential", UnitPerSec, why), Missing(name+": 8-way", UnitPerSec, why))
			lat.Add(Missing(name+": added median", UnitMs, why))
			bulk.Add(Missing(name, UnitMiBps, why))
			continue
		}
		conns.Add(base.connRows(name, f)...)
		lat.Add(base.latencyRows(name, f)...)
		bulk.Add(base.bulkRow(name, f))
		if r := figs["go relay"]; name == "pinwall splice" && r != nil && r.missing == "" {
			if n := cpuNote(name, f.fig(kindBulk).res, "go relay", r.fig(kindBulk).res); n != "" {
				bulk.Notes = append(bulk.Notes, n)
			}
		}
		if name == "pinwall decrypt" {
			if d := figs["direct"]; d != nil && d.missing == "" {
				if n := cpuNote(name, f.fig(kindBulk).res, "direct", d.fig(kindBulk).res); n != "" {
					bulk.Notes = append(bulk.Notes, n)
				}
				db := d.fig(kindBulk).rate(UnitMiBps)
				v := f.fig(kindBulk).rate(UnitMiBps)
				bulk.Add(Row{Figure: "pinwall decrypt vs direct", Value: v, Unit: UnitMiBps}.
					RatioAtLeast(db, GoalDecryptBulkVsDirect, fmt.Sprintf("goal ≥ %.1f× direct (%s)", GoalDecryptBulkVsDirect, FormatValue(db, UnitMiBps))))
			}
		}
		if f.path.Note != "" {
			conns.Notes = append(conns.Notes, name+": "+f.path.Note)
		}
	}
	conns.Notes = append(conns.Notes,
		"client: Go crypto/tls, TCP_NODELAY, ECDHE X25519 (P-256 for sslsplit), no session resumption; origin: Go crypto/tls with one RSA-2048 leaf key, certificates from an RSA-2048 CA; every path on 127.0.0.1",
		"warm cache: every connection asks for the same SNI; cold cache: every connection a new SNI, for which the origin serves a certificate of its own (signed before the run)",
		fmt.Sprintf("every figure is taken in %d rounds, all paths in turn in each round, and the rounds added up", m.rounds()),
		"references: figures measured earlier on this machine; ratios against them show drift, not goals")
	lat.Notes = append(lat.Notes, "added = the path's latency percentile minus direct's, from the sequential warm-cache runs above")
	return []Section{conns, lat, bulk}
}

// startFirewallPaths starts every path, in the order the report lists
// them; the ones that cannot start are reported missing.
func (m *measurer) startFirewallPaths(ctx context.Context, env *FirewallEnv) ([]string, map[string]*pathFigures) {
	var tools []ToolStatus
	if !m.cfg.SkipTools {
		tools = EnsureTools(ctx, !m.cfg.NoInstall, m.log, SSLsplit, Mitmproxy)
	}
	figs := map[string]*pathFigures{}
	var order []string
	add := func(name string, p *Path, err error) {
		f := &pathFigures{path: p, figs: map[string]*figure{}}
		if err != nil {
			f.path, f.missing = &Path{Name: name}, err.Error()
		}
		figs[name] = f
		order = append(order, name)
	}
	add("direct", env.Direct(), nil)
	p, err := env.StartRelay()
	add("go relay", p, err)
	p, err = env.StartPinwall(false)
	add("pinwall splice", p, err)
	p, err = env.StartPinwall(true)
	add("pinwall decrypt", p, err)
	p, err = env.StartPinwallNoResumption()
	add(NoResumptionPath, p, err)
	for _, t := range []Tool{Mitmproxy, SSLsplit} {
		if m.cfg.SkipTools {
			add(t.Name, nil, errors.New("skipped"))
			continue
		}
		st := ToolStatus{Tool: t, Problem: "not looked for"}
		for _, s := range tools {
			if s.Name == t.Name {
				st = s
			}
		}
		p, err := env.StartTool(st)
		if err != nil && st.Available() {
			err = fmt.Errorf("%s %s installed but would not run: %w", t.Package, st.Version, err)
		} else if err != nil {
			err = errors.New(st.Problem)
		}
		add(t.Name, p, err)
	}
	return order, figs
}

// firewallBaseline holds the figures the paths are compared with: direct
// and the go relay of this run; mitmproxy and sslsplit of this run, or
// their reference figures when they could not be measured.
type firewallBaseline struct {
	relay                                   *pathFigures
	directSeq, directPar                    float64
	directP50, directP99                    float64
	mitmSeq, mitmPar, splitBulk             float64
	mitmSeqFrom, mitmParFrom, splitBulkFrom string
}

func newFirewallBaseline(figs map[string]*pathFigures) firewallBaseline {
	direct := figs["direct"]
	b := firewallBaseline{relay: figs["go relay"], directP50: math.NaN(), directP99: math.NaN()}
	b.directSeq, b.directPar = direct.fig(kindSeq).rate(UnitPerSec), direct.fig(kindPar).rate(UnitPerSec)
	if ds := direct.fig(kindSeq); ds.err == nil && ds.res.Ops > 0 {
		b.directP50, b.directP99 = ms(ds.res.Percentile(50)), ms(ds.res.Percentile(99))
	}
	against := func(name, kind, unit string, ref float64) (float64, string) {
		if f := figs[name]; f != nil && f.missing == "" {
			if v := f.fig(kind).rate(unit); !math.IsNaN(v) {
				return v, name + " in this run"
			}
		}
		return ref, name + "'s reference (not measured in this run)"
	}
	b.mitmSeq, b.mitmSeqFrom = against(Mitmproxy.Name, kindSeq, UnitPerSec, References[Mitmproxy.Name].Seq)
	b.mitmPar, b.mitmParFrom = against(Mitmproxy.Name, kindPar, UnitPerSec, References[Mitmproxy.Name].Par)
	b.splitBulk, b.splitBulkFrom = against(SSLsplit.Name, kindBulk, UnitMiBps, References[SSLsplit.Name].Bulk)
	return b
}

// connRows are a measured path's connection rates, warm and (for a path
// that decrypts) cold cache, with their goals or references.
func (b firewallBaseline) connRows(name string, f *pathFigures) []Row {
	ref, hasRef := References[name]
	cache := ""
	if f.path.Decrypts {
		cache = ", warm cache"
	}
	fs, fp := f.fig(kindSeq), f.fig(kindPar)
	seq := rateRow(name+": sequential"+cache, fs.res, fs.err, UnitPerSec)
	par := rateRow(fmt.Sprintf("%s: %d-way%s", name, FirewallConcurrency, cache), fp.res, fp.err, UnitPerSec)
	var rows []Row
	switch {
	case name == "pinwall decrypt":
		seq = seq.RatioAtLeast(b.directSeq, GoalDecryptVsDirect, fmt.Sprintf("goal ≥ %.2f× direct (%s)", GoalDecryptVsDirect, FormatValue(b.directSeq, UnitPerSec)))
		par = par.RatioAtLeast(b.directPar, GoalDecryptVsDirect, fmt.Sprintf("goal ≥ %.2f× direct (%s)", GoalDecryptVsDirect, FormatValue(b.directPar, UnitPerSec)))
		rows = append(rows, seq,
			seq.RatioAtLeast(b.mitmSeq, GoalDecryptVsMitmproxy, fmt.Sprintf("goal ≥ %.0f× mitmproxy (%s)", GoalDecryptVsMitmproxy, FormatValue(b.mitmSeq, UnitPerSec))).WithNote("vs "+b.mitmSeqFrom),
			par,
			par.RatioAtLeast(b.mitmPar, GoalDecryptVsMitmproxy, fmt.Sprintf("goal ≥ %.0f× mitmproxy (%s)", GoalDecryptVsMitmproxy, FormatValue(b.mitmPar, UnitPerSec))).WithNote("vs "+b.mitmParFrom))
	case name == "pinwall splice" && b.relay.missing == "":
		rs, rp := b.relay.fig(kindSeq).rate(UnitPerSec), b.relay.fig(kindPar).rate(UnitPerSec)
		rows = append(rows, seq.AtLeast(rs, "goal ≥ go relay ("+FormatValue(rs, UnitPerSec)+")"),
			par.AtLeast(rp, "goal ≥ go relay ("+FormatValue(rp, UnitPerSec)+")"))
	case hasRef:
		rows = append(rows, seq.Versus(ref.Seq, fmt.Sprintf("reference %.0f/s", ref.Seq)), par.Versus(ref.Par, fmt.Sprintf("reference %.0f/s", ref.Par)))
	default:
		rows = append(rows, seq, par)
	}
	if f.path.Decrypts {
		sc, pc := f.fig(kindSeqCold), f.fig(kindParCold)
		rows = append(rows,
			rateRow(name+": sequential, cold cache", sc.res, sc.err, UnitPerSec).Versus(seq.Value, "warm cache ("+FormatValue(seq.Value, UnitPerSec)+")"),
			rateRow(fmt.Sprintf("%s: %d-way, cold cache", name, FirewallConcurrency), pc.res, pc.err, UnitPerSec).Versus(par.Value, "warm cache ("+FormatValue(par.Value, UnitPerSec)+")"))
	}
	return rows
}

// latencyRows are a measured path's latency added to direct's, from the
// sequential warm runs.
func (b firewallBaseline) latencyRows(name string, f *pathFigures) []Row {
	ref, hasRef := References[name]
	fs := f.fig(kindSeq)
	switch {
	case name == "direct":
		return []Row{latencyRow("direct: median", fs.res, fs.err).WithNote("the baseline of the added latencies")}
	case fs.err != nil || fs.res.Ops == 0:
		return []Row{Missing(name+": added median", UnitMs, fmt.Sprint(fs.err))}
	}
	added50 := Figure(name+": added median", ms(fs.res.Percentile(50))-b.directP50, UnitMs).
		WithNote("median " + FormatValue(ms(fs.res.Percentile(50)), UnitMs))
	added99 := Figure(name+": added p99", ms(fs.res.Percentile(99))-b.directP99, UnitMs).
		WithNote(fmt.Sprintf("p99 %s; %s", FormatValue(ms(fs.res.Percentile(99)), UnitMs), plural(fs.res.Ops, "sample")))
	switch {
	case name == "pinwall decrypt":
		added50 = added50.RatioAtMost(b.directP50, GoalAddedLatencyVsDirect, fmt.Sprintf("goal ≤ %.2f× direct's median (%s)", GoalAddedLatencyVsDirect, FormatValue(b.directP50, UnitMs)))
	case hasRef && ref.AddedP50 > 0:
		added50 = added50.Versus(ref.AddedP50, "reference +"+FormatValue(ref.AddedP50, UnitMs))
	}
	return []Row{added50, added99}
}

// bulkRow is a measured path's bulk throughput with its goal or reference.
func (b firewallBaseline) bulkRow(name string, f *pathFigures) Row {
	ref, hasRef := References[name]
	fb := f.fig(kindBulk)
	r := rateRow(name, fb.res, fb.err, UnitMiBps)
	switch {
	case name == "pinwall decrypt":
		r = r.AtLeast(b.splitBulk, "goal ≥ sslsplit ("+FormatValue(b.splitBulk, UnitMiBps)+")").WithNote("vs " + b.splitBulkFrom)
	case name == "pinwall splice" && b.relay.missing == "":
		rb := b.relay.fig(kindBulk).rate(UnitMiBps)
		r = r.AtLeast(rb, "goal ≥ go relay ("+FormatValue(rb, UnitMiBps)+")")
	case hasRef:
		r = r.Versus(ref.Bulk, fmt.Sprintf("reference %.0f MiB/s", ref.Bulk))
	}
	return r
}

// originKeys measures pinwall decrypt in front of an RSA-2048 and an ECDSA
// P-256 origin, side by side with direct connections to the same origin:
// the forged leaf's key follows the origin's, as the vendors forge, so the
// client-facing handshake costs what the origin's does.
func (m *measurer) originKeys(ctx context.Context) Section {
	s := Section{Title: fmt.Sprintf("Firewall: pinwall decrypt by the origin's key (forged key follows it; RSA-2048 enterprise CA; %s responses)", FormatSize(ConnSize))}
	type env struct {
		alg             pki.KeyAlgorithm
		e               *FirewallEnv
		direct, pinwall *Path
		err             error
	}
	var envs []*env
	for _, alg := range []pki.KeyAlgorithm{pki.RSA2048, pki.ECDSAP256} {
		x := &env{alg: alg}
		envs = append(envs, x)
		x.e, x.err = StartFirewallEnv(FirewallEnvConfig{Algorithm: pki.RSA2048, OriginAlgorithm: alg})
		if x.err != nil {
			continue
		}
		defer x.e.Close()
		x.direct = x.e.Direct()
		x.pinwall, x.err = x.e.StartPinwall(true)
	}
	rounds := m.rounds()
	d := m.d / time.Duration(rounds)
	per := func(n int) int { return m.minOps((n + rounds - 1) / rounds) }
	type figs struct{ seq, par, seqDirect figure }
	got := make([]figs, len(envs))
	// Every path in turn within a round, so the figures compared were
	// taken close together in time.
	for round := 1; round <= rounds && ctx.Err() == nil; round++ {
		for i, x := range envs {
			if x.err != nil {
				continue
			}
			lbl := func(what string) string {
				return fmt.Sprintf("%s origin: %s (round %d/%d)", x.alg, what, round, rounds)
			}
			got[i].seqDirect.add(m.run(ctx, lbl("direct sequential"), RunConfig{Duration: d, MinOps: per(20), Warmup: 3}, x.e.ConnOp(x.direct, WarmNames)))
			got[i].seq.add(m.run(ctx, lbl("pinwall decrypt sequential"), RunConfig{Duration: d, MinOps: per(20), Warmup: 3}, x.e.ConnOp(x.pinwall, WarmNames)))
			got[i].par.add(m.run(ctx, lbl(fmt.Sprintf("pinwall decrypt %d-way", FirewallConcurrency)), RunConfig{Duration: d, MinOps: per(4 * FirewallConcurrency), Concurrency: FirewallConcurrency}, x.e.ConnOp(x.pinwall, WarmNames)))
		}
	}
	for i, x := range envs {
		if x.err != nil {
			why := "not measured: " + x.err.Error()
			s.Add(Missing(string(x.alg)+" origin: pinwall decrypt sequential", UnitPerSec, why))
			continue
		}
		f := got[i]
		direct := rateRow(string(x.alg)+" origin: direct sequential", f.seqDirect.res, f.seqDirect.err, UnitPerSec)
		seq := rateRow(string(x.alg)+" origin: pinwall decrypt sequential, warm cache", f.seq.res, f.seq.err, UnitPerSec)
		par := rateRow(fmt.Sprintf("%s origin: pinwall decrypt %d-way, warm cache", x.alg, FirewallConcurrency), f.par.res, f.par.err, UnitPerSec)
		s.Add(direct, seq.RatioAtLeast(direct.Value, GoalDecryptVsDirect, fmt.Sprintf("goal ≥ %.2f× direct (%s)", GoalDecryptVsDirect, FormatValue(direct.Value, UnitPerSec))), par)
	}
	s.Notes = append(s.Notes,
		"each origin serves one leaf key of its own type from an RSA-2048 internet CA; pinwall's enterprise CA is RSA-2048 in both; the client offers X25519",
		"the forged leaf's key follows the origin's (forge.KeyFollowUpstream): an RSA-2048 leaf for the RSA origin, an ECDSA P-256 leaf for the ECDSA one",
		fmt.Sprintf("every figure is taken in %d rounds, both origins in turn in each round", rounds))
	return s
}

func (m *measurer) rounds() int {
	if m.cfg.Quick {
		return 1
	}
	return Rounds
}

// measureFirewall takes every figure of every path, round after round.
func (m *measurer) measureFirewall(ctx context.Context, env *FirewallEnv, order []string, figs map[string]*pathFigures) {
	rounds := m.rounds()
	d := m.d / time.Duration(rounds)
	per := func(n int) int { return m.minOps((n + rounds - 1) / rounds) }
	tolerate := 20 // an external tool may drop a connection under load
	for round := 1; round <= rounds && ctx.Err() == nil; round++ {
		for _, kind := range []string{kindSeq, kindPar, kindSeqCold, kindParCold, kindBulk} {
			for _, name := range order {
				f := figs[name]
				if f.missing != "" || ctx.Err() != nil {
					continue
				}
				p := f.path
				label := fmt.Sprintf("%s: %s (round %d/%d)", p.Name, kind, round, rounds)
				switch kind {
				case kindSeq:
					f.fig(kind).add(m.run(ctx, label, RunConfig{Duration: d, MinOps: per(20), Warmup: 3, MaxErrors: tolerate}, env.ConnOp(p, WarmNames)))
				case kindPar:
					f.fig(kind).add(m.run(ctx, label, RunConfig{Duration: d, MinOps: per(4 * FirewallConcurrency), Concurrency: FirewallConcurrency, MaxErrors: tolerate}, env.ConnOp(p, WarmNames)))
				case kindSeqCold, kindParCold:
					if !p.Decrypts {
						continue
					}
					conc, warm := 1, f.fig(kindSeq).res
					if kind == kindParCold {
						conc, warm = FirewallConcurrency, f.fig(kindPar).res
					}
					// Enough names for the run at the warm rate, and then some.
					n := min(int(warm.PerSecond()*d.Seconds()*1.25)+4*conc+8, 4000)
					names, err := env.ColdNames(n)
					if err != nil {
						f.fig(kind).add(Result{}, err)
						continue
					}
					f.fig(kind).add(m.run(ctx, fmt.Sprintf("%s (%d names)", label, n), RunConfig{Duration: d, MinOps: per(4 * conc), MaxOps: n, Concurrency: conc, MaxErrors: tolerate}, env.ConnOp(p, names)))
					env.ForgetNames()
				case kindBulk:
					f.fig(kind).add(m.run(ctx, label, RunConfig{Duration: d, MinOps: per(3), MaxErrors: 2}, env.BulkOp(p, m.bulkSize)))
				}
			}
		}
	}
}

// dtlsPacketNote says what size of SCTP packet the in-process DTLS tunnel
// sends: the loopback path's MTU less the headers, as the client and the
// gateway work it out (tunnel.PathMTUPacket).
func dtlsPacketNote() string {
	loop := netip.MustParseAddr("127.0.0.1")
	mtu, ok := hostnet.PathMTU(hostnet.OS{}, loop)
	if !ok {
		return "DTLS tunnel: the path MTU is unknown here, so its SCTP packets are 1,200 bytes"
	}
	return fmt.Sprintf("DTLS tunnel: SCTP packets of %d bytes, from loopback's path MTU (%d) less IP, UDP and the DTLS record (tunnel.PathMTUPacket); a 1,500-byte path gives %d", tunnel.PathMTUPacket(mtu, false), mtu, tunnel.PathMTUPacket(1500, false))
}
