package bench

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pinwall/pinwall/client"
	"github.com/pinwall/pinwall/failure"
	"github.com/pinwall/pinwall/harness"
	"github.com/pinwall/pinwall/mitm/fwlog"
	"github.com/pinwall/pinwall/pki"
	"github.com/pinwall/pinwall/scenarios"
	"github.com/pinwall/pinwall/tunnel"
)

// A fleet: N laptops, each with a device certificate of its own and a
// tunnel of its own, brought up against one gateway (in a process of its
// own, so that its resident set is its own) and held up together; and N
// decrypted TLS sessions held open through pinwall's firewall, beside the
// same N held directly, so that the firewall's share of the memory shows.
// Everything runs on loopback, bounded in count and time.

// Fleet sizes and bounds (issue 15 sets no goals in figures for a fleet:
// the report prints its figures without pass or miss).
const (
	// FleetDefault is the number of laptops of the report's fleet.
	FleetDefault = 1000
	// FleetSetupTimeout bounds one laptop's tunnel setup.
	FleetSetupTimeout = 30 * time.Second
	// FleetWindow bounds the whole fleet's setup.
	FleetWindow = 3 * time.Minute
)

// FleetConfig sizes a fleet. Zero values take the documented defaults.
type FleetConfig struct {
	// N is the number of laptops; zero means FleetDefault.
	N int
	// Concurrency bounds setups in progress at once; zero means 32 (a
	// site's laptops do not all wake in the same millisecond).
	Concurrency int
	// Child runs the gateway in a process of its own (see FloodConfig).
	Child bool
	// Containers adds fleets of laptop containers (FleetContainerSizes)
	// when a Docker engine answers.
	Containers bool
}

func (c FleetConfig) withDefaults() FleetConfig {
	if c.N <= 0 {
		c.N = FleetDefault
	}
	if c.Concurrency <= 0 {
		c.Concurrency = 32
	}
	return c
}

// FleetResult is what bringing a fleet's tunnels up measured.
type FleetResult struct {
	N, Up int
	// AllUp is the time from the first setup to the last tunnel up.
	AllUp time.Duration
	// Setup is each tunnel's setup time, sorted.
	Setup []time.Duration
	// BaseRSS and UpRSS are the gateway's resident set before and with
	// every tunnel up; RSSAlone says whether its process holds it alone.
	BaseRSS, UpRSS int64
	RSSAlone       bool
	// Verified counts flows whose SHA-256 came back right, one per
	// tunnel, carried once all were up.
	Verified int
	Errors   []string
}

// SetupsPerSecond is the fleet's rate of tunnel setups.
func (r FleetResult) SetupsPerSecond() float64 {
	if r.AllUp <= 0 {
		return 0
	}
	return float64(r.Up) / r.AllUp.Seconds()
}

// RSSPerThousand is the gateway's added resident set per 1,000 tunnels, in MiB.
func (r FleetResult) RSSPerThousand() float64 {
	if r.Up == 0 {
		return 0
	}
	return float64(r.UpRSS-r.BaseRSS) / (1 << 20) * 1000 / float64(r.Up)
}

// Fleet brings cfg.N tunnels over tr up against one gateway, each from a
// laptop address and with a device certificate of its own, holds them all,
// then carries one checked flow on each and closes them.
func Fleet(ctx context.Context, cfg FleetConfig, tr tunnel.Transport) (FleetResult, error) {
	cfg = cfg.withDefaults()
	res := FleetResult{N: cfg.N}
	e, err := startFloodEnv(ctx, FloodConfig{}, cfg.Child)
	if err != nil {
		return res, fmt.Errorf("bench: fleet: %w", err)
	}
	defer e.Close()
	devices, err := fleetDevices(e.pki, cfg.N)
	if err != nil {
		return res, fmt.Errorf("bench: fleet: %w", err)
	}
	runtime.GC()
	res.BaseRSS, _, res.RSSAlone = e.gw.RSS()

	wctx, cancel := context.WithTimeout(ctx, FleetWindow)
	defer cancel()
	sessions := make([]tunnel.Session, cfg.N)
	setup := make([]time.Duration, cfg.N)
	var (
		mu   sync.Mutex
		wg   sync.WaitGroup
		next atomic.Int64
	)
	fail := func(err error) {
		mu.Lock()
		if len(res.Errors) < 5 {
			res.Errors = append(res.Errors, err.Error())
		}
		mu.Unlock()
	}
	start := time.Now()
	for range cfg.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= cfg.N || wctx.Err() != nil {
					return
				}
				sctx, scancel := context.WithTimeout(wctx, FleetSetupTimeout)
				t0 := time.Now()
				s, err := e.bringUp(sctx, nthAddr(floodLaptops, i), devices[i], tr)
				scancel()
				if err != nil {
					fail(fmt.Errorf("laptop %d: %w", i, err))
					continue
				}
				sessions[i], setup[i] = s, time.Since(t0)
			}
		}()
	}
	wg.Wait()
	res.AllUp = time.Since(start)
	defer func() {
		for _, s := range sessions {
			if s != nil {
				s.Close()
			}
		}
	}()
	for i, s := range sessions {
		if s != nil {
			res.Up++
			res.Setup = append(res.Setup, setup[i])
		}
	}
	slices.Sort(res.Setup)
	runtime.GC()
	res.UpRSS, _, _ = e.gw.RSS()

	// Every tunnel still carries a flow once all are up.
	var verified atomic.Int64
	next.Store(0)
	for range cfg.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= cfg.N {
					return
				}
				if sessions[i] == nil {
					continue
				}
				fctx, fcancel := context.WithTimeout(ctx, FleetSetupTimeout)
				err := e.checkFlow(fctx, sessions[i])
				fcancel()
				if err != nil {
					fail(fmt.Errorf("laptop %d flow: %w", i, err))
					continue
				}
				verified.Add(1)
			}
		}()
	}
	wg.Wait()
	res.Verified = int(verified.Load())
	return res, ctx.Err()
}

// fleetDevices issues n device certificates from the tenant CA, one per
// laptop, in parallel.
func fleetDevices(set *pki.Set, n int) ([]*tls.Certificate, error) {
	out := make([]*tls.Certificate, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	var next atomic.Int64
	for range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				out[i], errs[i] = set.DeviceCert("acme", fmt.Sprintf("user%04d@acme.test", i), fmt.Sprintf("LAPTOP-%04d", i))
			}
		}()
	}
	wg.Wait()
	return out, errors.Join(errs...)
}

// FleetDecryptResult is the process's added memory in use (Go heap and
// stacks) with n TLS
// sessions held open directly and, side by side, through pinwall's
// decrypting firewall (client, firewall and origin share the process).
type FleetDecryptResult struct {
	N                     int
	DirectRSS, DecryptRSS int64 // added resident set, bytes
	Errors                []string
}

// FirewallPerThousand is the firewall's share per 1,000 decrypted
// sessions, in MiB: the decrypt path's added memory minus the direct one's.
func (r FleetDecryptResult) FirewallPerThousand() float64 {
	if r.N == 0 {
		return 0
	}
	return float64(r.DecryptRSS-r.DirectRSS) / (1 << 20) * 1000 / float64(r.N)
}

// FleetDecrypt holds n decrypted sessions open through pinwall's firewall,
// each after a 1 KiB response, and n direct ones the same way, and measures
// the process's resident set with each set held.
func FleetDecrypt(ctx context.Context, n int) (FleetDecryptResult, error) {
	res := FleetDecryptResult{N: n}
	env, err := StartFirewallEnv(FirewallEnvConfig{Algorithm: pki.ECDSAP256})
	if err != nil {
		return res, err
	}
	defer env.Close()
	fw, err := env.StartPinwall(true)
	if err != nil {
		return res, err
	}
	hold := func(p *Path) (int64, error) {
		// The Go runtime's memory in use (heap and goroutine stacks) after
		// a GC: the process's RSS keeps freed pages for a while, which
		// made an RSS difference meaningless after the fleet above.
		base := settledInUse()
		conns := make([]net.Conn, 0, n)
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for i := range n {
			cctx, cancel := context.WithTimeout(ctx, FleetSetupTimeout)
			tc, err := env.dial(cctx, p, WarmName)
			if err == nil {
				stop := context.AfterFunc(cctx, func() { _ = tc.SetDeadline(time.Now()) })
				_, err = FetchBlob(tc, WarmName, ConnSize, false)
				stop()
				if err != nil {
					tc.Close()
				}
			}
			cancel()
			if err != nil {
				return 0, fmt.Errorf("%s: session %d: %w", p.Name, i, err)
			}
			conns = append(conns, tc)
		}
		return inUse() - base, nil
	}
	if res.DirectRSS, err = hold(env.Direct()); err != nil {
		return res, err
	}
	if res.DecryptRSS, err = hold(fw); err != nil {
		return res, err
	}
	return res, nil
}

// settledInUse is inUse once it stops falling (goroutines of connections
// closed before still ending), read at most 20 times 50 ms apart.
func settledInUse() int64 {
	last := inUse()
	for range 20 {
		time.Sleep(50 * time.Millisecond)
		now := inUse()
		if now >= last-last/100 {
			return now
		}
		last = now
	}
	return last
}

// inUse is the runtime's heap and stack memory in use after a GC.
func inUse() int64 {
	debug.FreeOSMemory()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapInuse + m.StackInuse)
}

// FleetSection measures a fleet of cfg.N laptops over each transport and
// the firewall's memory for as many decrypted sessions.
func FleetSection(cfg FleetConfig) SectionFunc {
	return func(ctx context.Context, log io.Writer) (Section, error) {
		c := cfg.withDefaults()
		sec := Section{Title: fmt.Sprintf("A fleet: %s laptops, each with its own device certificate and tunnel, one gateway (loopback)", thousands(c.N))}
		if log != nil {
			fmt.Fprintf(log, "bench: fleet: %d decrypted sessions held ...\n", c.N)
		}
		dr, err := FleetDecrypt(ctx, c.N)
		if err != nil {
			sec.Add(Missing("firewall memory per 1,000 decrypted sessions", UnitMiB, err.Error()))
		} else {
			sec.Add(Figure("firewall memory (Go heap and stacks) per 1,000 decrypted sessions", dr.FirewallPerThousand(), UnitMiB).
				WithNote(fmt.Sprintf("heap and stacks grew %.1f MiB holding %s decrypted sessions, %.1f MiB holding as many direct ones (client and origin); the difference is the firewall's",
					float64(dr.DecryptRSS)/(1<<20), thousands(dr.N), float64(dr.DirectRSS)/(1<<20))))
		}
		for _, tr := range []tunnel.Transport{tunnel.TransportTLS, tunnel.TransportDTLS} {
			if log != nil {
				fmt.Fprintf(log, "bench: fleet of %d over %s ...\n", c.N, tr)
			}
			label := fmt.Sprintf("%s tunnels", tr)
			res, err := Fleet(ctx, c, tr)
			if err != nil {
				sec.Add(Missing(label+": all up", UnitSeconds, err.Error()))
				continue
			}
			up := Figure(fmt.Sprintf("%s: time until %s of %s up", label, thousands(res.Up), thousands(res.N)), res.AllUp.Seconds(), UnitSeconds).
				WithNote(fmt.Sprintf("%d at once; setup p50 %v, p99 %v; then %d/%d flows SHA-256 checked",
					c.Concurrency, pct(res.Setup, 50), pct(res.Setup, 99), res.Verified, res.Up))
			if len(res.Errors) > 0 {
				up = up.WithNote("first errors: " + strings.Join(res.Errors, " | "))
			}
			whose := "gateway process"
			if !res.RSSAlone {
				whose = "process (gateway and laptops)"
			}
			sec.Add(up,
				Figure(label+": setups per second", res.SetupsPerSecond(), "setups/s"),
				Figure(fmt.Sprintf("%s: %s RSS per 1,000 tunnels", label, whose), res.RSSPerThousand(), UnitMiB).
					WithNote(fmt.Sprintf("%.1f MiB before, %.1f MiB with all up", float64(res.BaseRSS)/(1<<20), float64(res.UpRSS)/(1<<20))))
		}
		if log != nil {
			fmt.Fprintf(log, "bench: fleet: %d laptops behind a firewall that learns exclusions ...\n", c.N)
		}
		ex, err := FleetExclusion(ctx, c.N)
		if err != nil {
			sec.Add(Missing("learned exclusion under a fleet", UnitSeconds, err.Error()))
		} else {
			sec.Add(Figure(fmt.Sprintf("learned exclusion: time until %s of %s laptops up through the firewall", thousands(ex.Up), thousands(ex.N)), float64(ex.AllUpMS)/1000, UnitSeconds).
				WithNote(fmt.Sprintf("%s sessions to the gateways started before the first excluded one; %s failed at a client refusing the forged certificate (teaching the cache), %s failed otherwise, %s passed excluded; %s failed tunnel attempts in all",
					thousands(ex.BeforeCovered), thousands(ex.Taught), thousands(ex.OtherFailed), thousands(ex.Excluded), thousands(ex.FailedAttempts))))
		}
		if c.Containers {
			sec.Add(fleetContainerRows(ctx, func(f string, a ...any) {
				if log != nil {
					fmt.Fprintf(log, f, a...)
				}
			})...)
			sec.Notes = append(sec.Notes, fmt.Sprintf("containers: the visibility row (DTLS to the gateway, logged but not decrypted) with a fleet of laptop containers, each with its own device certificate, started at once behind the firewall's one NAT address; sizes %v in turn, up to the first the machine does not hold", FleetContainerSizes))
		}
		sec.Notes = append(sec.Notes,
			"learned exclusion: the catalogue's learned-exclusion/fleet at this size on a /16 LAN, in process: every laptop behind the firewall's one NAT address",
			"laptops on 127.0.10.x and up, one address each; the gateway with its default pre-authentication limits",
			"decrypted sessions: ECDSA P-256 keys, one SNI (warm forged-certificate cache), held open after a 1 KiB response",
			"gateway RSS after a forced GC (its own process); decrypted sessions: the Go runtime's heap and stacks in use, client, firewall and origin sharing this process; setup = dial + handshake with device certificate + greeting + multiplexer")
		return sec, nil
	}
}

func pct(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return percentile(sorted, p).Round(time.Microsecond)
}

// FleetExclusionResult is a fleet behind a firewall that decrypts
// everything and learns exclusions (catalogue row learned-exclusion,
// variant fleet, at the fleet's size).
type FleetExclusionResult struct {
	N, Up   int
	AllUpMS int64
	// Taught counts sessions that failed at a client refusing the forged
	// certificate (what teaches the cache); OtherFailed the sessions that
	// failed otherwise; BeforeCovered the gateway sessions logged before
	// the first excluded one started.
	Taught, OtherFailed, Excluded, BeforeCovered int
	// FailedAttempts counts the clients' failed tunnel attempts in all.
	FailedAttempts int
}

// FleetExclusion runs the catalogue's learned-exclusion/fleet variant with
// n laptops on a /16 LAN, in process.
func FleetExclusion(ctx context.Context, n int) (FleetExclusionResult, error) {
	res := FleetExclusionResult{N: n}
	plan, err := cataloguePlan("learned-exclusion", "fleet")
	if err != nil {
		return res, err
	}
	plan.Fleet = n
	plan.Spec.LAN = netip.MustParsePrefix("10.10.0.0/16")
	plan.WaitUp = FleetWindow
	obs, err := harness.InProcess{}.Run(ctx, plan)
	if err != nil {
		return res, err
	}
	if a := obs.Attempts; a != nil {
		res.Up, res.AllUpMS = a.Total-a.Failed, a.AllUpMS
	}
	// Records are logged as sessions end: order them by their start.
	var firstExcluded time.Time
	for _, r := range obs.Firewall {
		if r.Proto == fwlog.ProtoTCP && obs.Roles.IsGateway(r.Dst.Addr()) && r.Outcome() == fwlog.OutcomeExcluded &&
			(firstExcluded.IsZero() || r.Start.Before(firstExcluded)) {
			firstExcluded = r.Start
		}
	}
	for _, r := range obs.Firewall {
		if r.Proto != fwlog.ProtoTCP || !obs.Roles.IsGateway(r.Dst.Addr()) {
			continue
		}
		switch {
		case r.Outcome() == fwlog.OutcomeExcluded:
			res.Excluded++
		case r.Outcome() == fwlog.OutcomeFailed && r.Decryption.Cause == failure.CauseForgedCertRejected:
			res.Taught++
		case r.Outcome() == fwlog.OutcomeFailed:
			res.OtherFailed++
		}
		if !firstExcluded.IsZero() && r.Start.Before(firstExcluded) {
			res.BeforeCovered++
		}
	}
	for _, h := range obs.History {
		if h.Event == client.EventAttemptFailed {
			res.FailedAttempts++
		}
	}
	return res, nil
}

// cataloguePlan is the plan of the catalogue's row id, variant variant.
func cataloguePlan(id, variant string) (harness.Plan, error) {
	all, err := scenarios.Catalogue()
	if err != nil {
		return harness.Plan{}, err
	}
	runs, err := scenarios.AllRuns(all)
	if err != nil {
		return harness.Plan{}, err
	}
	for _, r := range runs {
		if r.Scenario.ID == id && r.Variant == variant {
			return r.Plan, nil
		}
	}
	return harness.Plan{}, fmt.Errorf("bench: no %s/%s in the catalogue", id, variant)
}
