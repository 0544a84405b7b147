package policy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pinwall/pinwall/resolve"
)

// emptyResolver knows no names.
type emptyResolver struct{}

func (emptyResolver) Lookup(_ context.Context, host string) (resolve.Answer, error) {
	return resolve.Answer{}, fmt.Errorf("no such host %s", host)
}

// clock is a settable time source.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// pool returns n gateway addresses 203.0.113.1...
func pool(n int) []netip.Addr {
	out := make([]netip.Addr, n)
	for i := range out {
		out[i] = netip.AddrFrom4([4]byte{203, 0, 113, byte(i + 1)})
	}
	return out
}

const gwName = "gateway-acme.sse.test"

func fqdnPolicy(t *testing.T, object string) *Policy {
	t.Helper()
	p, err := Parse("fqdn.yaml", []byte(lines(
		"rules:",
		"  - name: no-decrypt-gw",
		"    match: {dst-fqdn: gw, proto: tcp, port: 443}",
		"    action: no-decrypt",
		"  - name: decrypt-rest",
		"    match: {proto: tcp, port: 443}",
		"    action: decrypt",
		"objects:",
		"  fqdn:",
		"    gw: "+object,
	)))
	require.NoError(t, err)
	return p
}

// TestFQDNDrift reproduces bypass-fqdn: the gateway name rotates over 64
// addresses, 8 per answer. The client resolves it on its own before every
// tunnel; the firewall's object only holds what its own lookups returned,
// so a share of tunnels goes to addresses the bypass rule does not cover.
func TestFQDNDrift(t *testing.T) {
	record := resolve.Record{Name: gwName, Addrs: pool(64), Answer: 8, Rotate: true, TTL: 60 * time.Second}
	firewallDNS, err := resolve.NewZone(record)
	require.NoError(t, err)
	clientDNS, err := resolve.NewZone(record)
	require.NoError(t, err)
	clk := newClock()
	e, err := NewEngine(fqdnPolicy(t, "{fqdn: gateway-acme.sse.test, max-ips: 32, min-refresh: 30s}"),
		EngineConfig{Resolver: firewallDNS, Now: clk.Now})
	require.NoError(t, err)

	ctx := context.Background()
	const attempts = 200
	missed := 0
	for i := 0; i < attempts; i++ {
		ans, err := clientDNS.Lookup(ctx, gwName)
		require.NoError(t, err)
		dst := netip.AddrPortFrom(ans.Addrs[0], 443)
		d := e.Decide(ctx, Session{Src: netip.MustParseAddrPort("10.10.10.100:40000"), Dst: dst, Proto: ProtoTCP, SNI: gwName, HasSNI: true})
		if d.RuleName != "no-decrypt-gw" {
			assert.Equal(t, "decrypt-rest", d.RuleName)
			missed++
		}
		clk.Advance(7 * time.Second)
	}
	frac := float64(missed) / attempts
	t.Logf("firewall object missed %d of %d tunnel attempts (%.0f%%)", missed, attempts, 100*frac)
	assert.Greater(t, frac, 0.0, "some tunnels must miss the FQDN object")
	assert.Less(t, frac, 1.0, "some tunnels must hit the FQDN object")

	st := e.FQDNSnapshot()["gw"]
	assert.Equal(t, gwName, st.FQDN)
	assert.Len(t, st.Addrs, 8, "an object holds the latest answer, not the union")
	assert.Equal(t, firewallDNS.Queries(gwName), st.Lookups)
	// Decides come every 7s and the TTL is 60s, so lookups happen at 0s,
	// 63s, 126s, ... up to the last Decide at 1393s: 23 of them.
	assert.Equal(t, 23, st.Lookups)
	assert.Zero(t, st.Failures)
}

// TestFQDNCap shows max-ips: a 64-address answer is cut to its first 32.
func TestFQDNCap(t *testing.T) {
	zone, err := resolve.NewZone(resolve.Record{Name: gwName, Addrs: pool(64)})
	require.NoError(t, err)
	e, err := NewEngine(fqdnPolicy(t, "{fqdn: gateway-acme.sse.test}"), EngineConfig{Resolver: zone})
	require.NoError(t, err)
	ctx := context.Background()
	held, missed := 0, 0
	for _, a := range pool(64) {
		d := e.Decide(ctx, Session{Dst: netip.AddrPortFrom(a, 443), Proto: ProtoTCP})
		if d.RuleName == "no-decrypt-gw" {
			held++
		} else {
			missed++
		}
	}
	assert.Equal(t, DefaultMaxIPs, held)
	assert.Equal(t, 32, missed)
	st := e.FQDNSnapshot()["gw"]
	assert.Equal(t, pool(32), st.Addrs)
	assert.Equal(t, 1, st.Lookups)

	e2, err := NewEngine(fqdnPolicy(t, "{fqdn: gateway-acme.sse.test, max-ips: 4}"), EngineConfig{Resolver: zone})
	require.NoError(t, err)
	e2.Decide(ctx, Session{Dst: netip.MustParseAddrPort("203.0.113.1:443"), Proto: ProtoTCP})
	assert.Equal(t, pool(4), e2.FQDNSnapshot()["gw"].Addrs)
}

// TestFQDNRefreshTiming checks TTL expiry and the min-refresh floor with an
// injected clock.
func TestFQDNRefreshTiming(t *testing.T) {
	tests := []struct {
		name       string
		ttl        time.Duration
		minRefresh string
		// steps advance the clock then Decide, expecting a lookup count.
		steps []struct {
			advance time.Duration
			lookups int
		}
	}{
		{
			name: "TTL above the floor: refresh when the TTL expires",
			ttl:  60 * time.Second, minRefresh: "30s",
			steps: []struct {
				advance time.Duration
				lookups int
			}{{0, 1}, {30 * time.Second, 1}, {29 * time.Second, 1}, {time.Second, 2}, {59 * time.Second, 2}, {time.Second, 3}},
		},
		{
			name: "TTL below the floor: refresh at min-refresh",
			ttl:  10 * time.Second, minRefresh: "30s",
			steps: []struct {
				advance time.Duration
				lookups int
			}{{0, 1}, {10 * time.Second, 1}, {19 * time.Second, 1}, {time.Second, 2}, {10 * time.Second, 2}, {20 * time.Second, 3}},
		},
		{
			name: "zero TTL",
			ttl:  0, minRefresh: "5s",
			steps: []struct {
				advance time.Duration
				lookups int
			}{{0, 1}, {0, 1}, {4 * time.Second, 1}, {time.Second, 2}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var queries atomic.Int32
			r := resolve.Func(func(ctx context.Context, host string) (resolve.Answer, error) {
				queries.Add(1)
				return resolve.Answer{Addrs: pool(2), TTL: tt.ttl}, nil
			})
			clk := newClock()
			start := clk.Now()
			e, err := NewEngine(fqdnPolicy(t, "{fqdn: gateway-acme.sse.test, min-refresh: "+tt.minRefresh+"}"),
				EngineConfig{Resolver: r, Now: clk.Now})
			require.NoError(t, err)
			assert.Zero(t, e.FQDNSnapshot()["gw"].Lookups, "objects resolve lazily")
			for i, step := range tt.steps {
				clk.Advance(step.advance)
				e.Decide(context.Background(), Session{Dst: netip.MustParseAddrPort("203.0.113.1:443"), Proto: ProtoTCP})
				assert.Equal(t, step.lookups, e.FQDNSnapshot()["gw"].Lookups, "step %d at +%s", i, clk.Now().Sub(start))
			}
			assert.Equal(t, int32(tt.steps[len(tt.steps)-1].lookups), queries.Load())
		})
	}

	t.Run("snapshot times", func(t *testing.T) {
		clk := newClock()
		r := resolve.Func(func(context.Context, string) (resolve.Answer, error) {
			return resolve.Answer{Addrs: pool(1), TTL: 45 * time.Second}, nil
		})
		e, err := NewEngine(fqdnPolicy(t, "{fqdn: gateway-acme.sse.test, min-refresh: 1m}"), EngineConfig{Resolver: r, Now: clk.Now})
		require.NoError(t, err)
		e.Decide(context.Background(), tls("203.0.113.1:443", ""))
		st := e.FQDNSnapshot()["gw"]
		assert.Equal(t, clk.Now(), st.ResolvedAt)
		assert.Equal(t, clk.Now().Add(45*time.Second), st.Expires)
		assert.Equal(t, clk.Now().Add(time.Minute), st.NextRefresh, "the floor is later than the TTL")
	})
}

// TestFQDNFailedRefreshKeepsLastGoodSet: a failing lookup leaves the object
// as it was, and is retried no sooner than min-refresh.
func TestFQDNFailedRefreshKeepsLastGoodSet(t *testing.T) {
	var fail atomic.Bool
	r := resolve.Func(func(ctx context.Context, host string) (resolve.Answer, error) {
		if fail.Load() {
			return resolve.Answer{}, errors.New("SERVFAIL")
		}
		return resolve.Answer{Addrs: pool(2), TTL: 30 * time.Second}, nil
	})
	clk := newClock()
	var logs bytes.Buffer
	e, err := NewEngine(fqdnPolicy(t, "{fqdn: gateway-acme.sse.test}"), EngineConfig{
		Resolver: r, Now: clk.Now, Logger: slog.New(slog.NewTextHandler(&logs, nil)),
	})
	require.NoError(t, err)
	ctx := context.Background()
	s := Session{Dst: netip.MustParseAddrPort("203.0.113.2:443"), Proto: ProtoTCP}

	assert.Equal(t, "no-decrypt-gw", e.Decide(ctx, s).RuleName)
	fail.Store(true)
	clk.Advance(31 * time.Second)
	assert.Equal(t, "no-decrypt-gw", e.Decide(ctx, s).RuleName, "the last good set is kept")
	st := e.FQDNSnapshot()["gw"]
	assert.Equal(t, 2, st.Lookups)
	assert.Equal(t, 1, st.Failures)
	assert.Equal(t, "SERVFAIL", st.LastError)
	assert.Equal(t, pool(2), st.Addrs)
	assert.Contains(t, logs.String(), "refresh failed")

	clk.Advance(29 * time.Second)
	e.Decide(ctx, s)
	assert.Equal(t, 2, e.FQDNSnapshot()["gw"].Lookups, "no retry before min-refresh")
	clk.Advance(time.Second)
	fail.Store(false)
	e.Decide(ctx, s)
	st = e.FQDNSnapshot()["gw"]
	assert.Equal(t, 3, st.Lookups)
	assert.Equal(t, "", st.LastError)
}

func TestFQDNNeverResolved(t *testing.T) {
	clk := newClock()
	e, err := NewEngine(fqdnPolicy(t, "{fqdn: gateway-acme.sse.test}"), EngineConfig{Resolver: emptyResolver{}, Now: clk.Now})
	require.NoError(t, err)
	d := e.Decide(context.Background(), tls("203.0.113.1:443", gwName))
	assert.Equal(t, "decrypt-rest", d.RuleName, "an empty object matches nothing")
	st := e.FQDNSnapshot()["gw"]
	assert.Equal(t, 1, st.Failures)
	assert.True(t, st.ResolvedAt.IsZero())
	assert.Equal(t, clk.Now().Add(DefaultMinRefresh), st.NextRefresh)
}

// TestFQDNCancelledLookupIsNotAnAttempt: a caller that gives up does not
// push the next lookup back by min-refresh.
func TestFQDNCancelledLookupIsNotAnAttempt(t *testing.T) {
	zone, err := resolve.NewZone(resolve.Record{Name: gwName, Addrs: pool(4)})
	require.NoError(t, err)
	e, err := NewEngine(fqdnPolicy(t, "{fqdn: gateway-acme.sse.test}"), EngineConfig{Resolver: zone, Now: newClock().Now})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	s := tls("203.0.113.1:443", gwName)
	assert.Equal(t, "decrypt-rest", e.Decide(ctx, s).RuleName)
	st := e.FQDNSnapshot()["gw"]
	assert.Zero(t, st.Lookups)
	assert.Zero(t, st.Failures)
	assert.Equal(t, "no-decrypt-gw", e.Decide(context.Background(), s).RuleName)
	assert.Equal(t, 1, e.FQDNSnapshot()["gw"].Lookups)
}

// TestFQDNSingleflight: concurrent sessions needing a refresh share one
// lookup.
func TestFQDNSingleflight(t *testing.T) {
	var calls atomic.Int32
	entered := make(chan struct{})
	release := make(chan struct{})
	r := resolve.Func(func(ctx context.Context, host string) (resolve.Answer, error) {
		if calls.Add(1) == 1 {
			close(entered)
		}
		<-release
		return resolve.Answer{Addrs: pool(8), TTL: time.Minute}, nil
	})
	e, err := NewEngine(fqdnPolicy(t, "{fqdn: gateway-acme.sse.test}"), EngineConfig{Resolver: r, Now: newClock().Now})
	require.NoError(t, err)

	const n = 32
	results := make(chan string, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results <- e.Decide(context.Background(), tls("203.0.113.3:443", gwName)).RuleName
		}()
	}
	<-entered
	close(release)
	wg.Wait()
	close(results)
	for name := range results {
		assert.Equal(t, "no-decrypt-gw", name)
	}
	assert.Equal(t, int32(1), calls.Load())
	assert.Equal(t, 1, e.FQDNSnapshot()["gw"].Lookups)
}

func TestFQDNOnlyWhenNeeded(t *testing.T) {
	zone, err := resolve.NewZone(resolve.Record{Name: gwName, Addrs: pool(4)})
	require.NoError(t, err)
	e, err := NewEngine(fqdnPolicy(t, "{fqdn: gateway-acme.sse.test}"), EngineConfig{Resolver: zone})
	require.NoError(t, err)
	e.Decide(context.Background(), udp("203.0.113.1:443"))
	e.Decide(context.Background(), tls("203.0.113.1:80", ""))
	assert.Zero(t, zone.Queries(gwName), "cheaper fields rule the session out before the lookup")
}

func TestNewEngineErrors(t *testing.T) {
	_, err := NewEngine(nil, EngineConfig{})
	assert.EqualError(t, err, "policy: nil policy")

	_, err = NewEngine(fqdnPolicy(t, "{fqdn: gateway-acme.sse.test}"), EngineConfig{})
	assert.EqualError(t, err, `policy: rule "no-decrypt-gw" uses dst-fqdn but EngineConfig.Resolver is nil`)

	_, err = NewEngine(&Policy{Rules: []Rule{{Name: "a", Action: ActionAllow}, {Name: "a", Action: ActionBlock}}}, EngineConfig{})
	assert.EqualError(t, err, `policy: rules[1].name: duplicate rule name "a" (first used by rules[0])`)
}

// TestSwap models "UDP blocked after t" and checks that FQDN state survives
// a swap when the object is unchanged.
func TestSwap(t *testing.T) {
	zone, err := resolve.NewZone(resolve.Record{Name: gwName, Addrs: pool(4)})
	require.NoError(t, err)
	before := fqdnPolicy(t, "{fqdn: gateway-acme.sse.test}")
	e, err := NewEngine(before, EngineConfig{Resolver: zone})
	require.NoError(t, err)
	ctx := context.Background()
	assert.Equal(t, ActionAllow, e.Decide(ctx, udp("203.0.113.1:443")).Action)
	e.Decide(ctx, tls("203.0.113.1:443", gwName))
	require.Equal(t, 1, e.FQDNSnapshot()["gw"].Lookups)

	after := *before
	after.Rules = append([]Rule{{Name: "block-udp", Match: Match{Proto: ProtoUDP, Port: []PortRange{Port(443)}}, Action: ActionBlock}}, before.Rules...)
	require.NoError(t, e.Swap(&after))
	assert.Same(t, &after, e.Policy())
	d := e.Decide(ctx, udp("203.0.113.1:443"))
	assert.Equal(t, "block-udp", d.RuleName)
	assert.Equal(t, ActionBlock, d.Action)
	assert.Equal(t, "no-decrypt-gw", e.Decide(ctx, tls("203.0.113.1:443", gwName)).RuleName)
	assert.Equal(t, 1, e.FQDNSnapshot()["gw"].Lookups, "an unchanged object keeps its state")

	changed := fqdnPolicy(t, "{fqdn: gateway-acme.sse.test, max-ips: 2}")
	require.NoError(t, e.Swap(changed))
	assert.Zero(t, e.FQDNSnapshot()["gw"].Lookups, "a changed object starts over")

	bad := &Policy{Rules: []Rule{{Name: "x"}}}
	require.Error(t, e.Swap(bad))
	assert.Same(t, changed, e.Policy(), "a bad policy is refused")
	require.Error(t, e.Swap(nil))

	st := e.Stats()
	assert.Equal(t, uint64(4), st.Total)
	assert.Equal(t, map[string]uint64{"default": 1, "no-decrypt-gw": 2, "block-udp": 1}, st.ByRule)
	assert.Equal(t, map[Action]uint64{ActionAllow: 1, ActionNoDecrypt: 2, ActionBlock: 1}, st.ByAction)
}

// TestConcurrentDecideAndSwap is for the race detector.
func TestConcurrentDecideAndSwap(t *testing.T) {
	zone, err := resolve.NewZone(resolve.Record{Name: gwName, Addrs: pool(64), Answer: 8, Rotate: true, TTL: time.Millisecond})
	require.NoError(t, err)
	clk := newClock()
	p1 := fqdnPolicy(t, "{fqdn: gateway-acme.sse.test, min-refresh: 1s}")
	p2 := fqdnPolicy(t, "{fqdn: gateway-acme.sse.test, min-refresh: 2s}")
	e, err := NewEngine(p1, EngineConfig{Resolver: zone, Now: clk.Now, Logger: slog.New(slog.NewTextHandler(&bytes.Buffer{}, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	require.NoError(t, err)
	ctx := context.Background()
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				e.Decide(ctx, tls(netip.AddrPortFrom(pool(64)[i%64], 443).String(), gwName))
				if i%50 == 0 {
					_ = e.FQDNSnapshot()
					_ = e.Stats()
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < 100; i++ {
			clk.Advance(time.Second)
			if i%2 == 0 {
				_ = e.Swap(p2)
			} else {
				_ = e.Swap(p1)
			}
		}
	}()
	wg.Wait()
	assert.Equal(t, uint64(8*200), e.Stats().Total)
}

func TestDecideLogsAtDebug(t *testing.T) {
	var logs bytes.Buffer
	p, err := Load("testdata/minimal.yaml")
	require.NoError(t, err)
	e, err := NewEngine(p, EngineConfig{Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	require.NoError(t, err)
	e.Decide(context.Background(), tls("203.0.113.1:443", gwName))
	assert.Contains(t, logs.String(), "rule=no-decrypt-sse action=no-decrypt")
}
