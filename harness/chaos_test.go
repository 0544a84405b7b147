package harness_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/pinwall/pinwall/failure"
	"github.com/pinwall/pinwall/harness"
	"github.com/pinwall/pinwall/hostnet"
	"github.com/pinwall/pinwall/mitm"
	"github.com/pinwall/pinwall/mitm/policy"
)

// The chaos soak: a topology with a firewall and two gateways carries
// normal tunnels while it is flooded (idle TCP connections, DTLS
// ClientHellos, garbage on TCP and UDP, at the gateway and through the
// firewall) and faulted (the primary gateway closed mid-flow, the firewall
// restarted in process with its sessions lost). Bounded: four rounds of a
// few seconds, loopback only.

const chaosPolicy = `rules:
  - name: allow-dtls-to-sse
    match: { proto: udp, port: [443], dst: [203.0.113.0/24] }
    action: allow
  - name: no-decrypt-sse
    match: { proto: tcp, port: [443], dst: [203.0.113.0/24] }
    action: no-decrypt
  - name: decrypt-rest
    match: { proto: tcp, port: [443] }
    action: decrypt
`

var (
	chaosAttacker = netip.MustParseAddr("198.51.100.66")
	chaosLANProbe = netip.MustParseAddr("10.10.10.150")
	chaosOrigin   = netip.MustParseAddrPort("192.0.2.10:443")
)

// openFDs counts this process's open descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	require.NoError(t, err)
	return len(ents)
}

// fdTargets lists what the open descriptors point at, for a failure
// message.
func fdTargets() string {
	ents, _ := os.ReadDir("/proc/self/fd")
	var out []string
	for _, e := range ents {
		target, err := os.Readlink("/proc/self/fd/" + e.Name())
		if err == nil {
			out = append(out, e.Name()+" -> "+target)
		}
	}
	return strings.Join(out, ", ")
}

// residentSet returns VmRSS after returning freed memory to the system.
func residentSet(t *testing.T) int64 {
	t.Helper()
	runtime.GC()
	debug.FreeOSMemory()
	b, err := os.ReadFile("/proc/self/status")
	require.NoError(t, err)
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.Fields(rest)[0], 10, 64)
			require.NoError(t, err)
			return kb << 10
		}
	}
	t.Fatal("no VmRSS")
	return 0
}

// dtlsClientHello is a DTLS 1.2 ClientHello record without a cookie.
func dtlsClientHello() []byte {
	body := []byte{0xfe, 0xfd}
	body = append(body, bytes.Repeat([]byte{7}, 32)...)
	body = append(body, 0, 0, 0, 2, 0xc0, 0x2b, 1, 0, 0, 0)
	n := len(body)
	hs := append([]byte{1, byte(n >> 16), byte(n >> 8), byte(n), 0, 0, 0, 0, 0, byte(n >> 16), byte(n >> 8), byte(n)}, body...)
	return append([]byte{22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, byte(len(hs) >> 8), byte(len(hs))}, hs...)
}

// firewalls is every firewall instance of the soak: the topology's, then
// each one started by a restart. Their records are read at the end.
type firewalls struct {
	mu   sync.Mutex
	runs []*mitm.Firewall
	wg   sync.WaitGroup
}

func (f *firewalls) add(fw *mitm.Firewall) {
	f.mu.Lock()
	f.runs = append(f.runs, fw)
	f.mu.Unlock()
}

// restartFirewall stops the topology's current firewall (its session table
// is lost; every session it had is logged as it ends) and starts a fresh
// one with the same policy on new intercept sockets, routing the LAN
// through it.
func (f *firewalls) restart(ctx context.Context, topo *harness.Topology) error {
	f.mu.Lock()
	cur := f.runs[len(f.runs)-1]
	f.mu.Unlock()
	if err := cur.Close(); err != nil {
		return err
	}
	pol, err := policy.Parse("chaos-policy.yaml", []byte(chaosPolicy))
	if err != nil {
		return err
	}
	fw, err := mitm.New(mitm.Config{
		Outside: topo.Hosts["fw-outside"], Policy: pol, CA: topo.PKI.Enterprise,
		Roots: topo.PKI.Internet.Pool(), Resolver: topo.Zone, Name: fmt.Sprintf("restarted-%d", len(f.runs)),
	})
	if err != nil {
		return err
	}
	f.add(fw) // closed by close, whatever happens next
	inside := topo.Hosts["fw-inside"]
	tcpL, err := inside.Listen(ctx, "tcp", netip.AddrPortFrom(topo.Spec.Firewall.Inside, 0).String())
	if err != nil {
		return err
	}
	udpL, err := inside.ListenPacket(ctx, "udp", netip.AddrPortFrom(topo.Spec.Firewall.Inside, 0).String())
	if err != nil {
		tcpL.Close()
		return err
	}
	f.wg.Add(2)
	go func() { defer f.wg.Done(); _ = fw.ServeIntercept(ctx, tcpL) }()
	go func() { defer f.wg.Done(); _ = fw.ServeUDPIntercept(ctx, udpL) }()
	topo.Sim.Route(topo.Spec.LAN, hostnet.Router{
		TCP: tcpL.Addr().(*net.TCPAddr).AddrPort(),
		UDP: udpL.LocalAddr().(*net.UDPAddr).AddrPort(),
	})
	return nil
}

func (f *firewalls) close() {
	f.mu.Lock()
	runs := f.runs
	f.mu.Unlock()
	for _, fw := range runs[1:] { // the first is the topology's
		fw.Close()
	}
	f.wg.Wait()
}

// attack runs the floods of one round until ctx ends and returns the
// source ports of the sessions it opened through the firewall.
func attack(ctx context.Context, attacker, probe *hostnet.Host, gw netip.AddrPort) []uint16 {
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		ports []uint16
		held  []net.Conn
	)
	hold := func(c net.Conn) {
		mu.Lock()
		held = append(held, c)
		mu.Unlock()
	}
	run := func(f func()) { wg.Add(1); go func() { defer wg.Done(); f() }() }
	// Idle TCP connections to the gateway.
	run(func() {
		for range 300 {
			if c, err := attacker.DialContext(ctx, "tcp", gw.String()); err == nil {
				hold(c)
			}
		}
	})
	// DTLS ClientHellos from new source ports, and garbage datagrams.
	run(func() {
		hello := dtlsClientHello()
		for i := range 2000 {
			c, err := attacker.DialContext(ctx, "udp", gw.String())
			if err != nil {
				return
			}
			payload := hello
			if i%4 == 0 {
				payload = []byte("\x17garbage that is no DTLS at all")
			}
			_, _ = c.Write(payload)
			c.Close()
		}
	})
	// Garbage TCP to the gateway.
	run(func() {
		for range 50 {
			c, err := attacker.DialContext(ctx, "tcp", gw.String())
			if err != nil {
				continue
			}
			_, _ = c.Write([]byte("GET / HTTP/1.1\r\nHost: gateway\r\n\r\n"))
			hold(c)
		}
	})
	// Sessions through the firewall from another LAN host: idle ones and
	// garbage ones, each to be logged.
	run(func() {
		for i := range 40 {
			c, err := probe.DialContext(ctx, "tcp", chaosOrigin.String())
			if err != nil {
				continue
			}
			mu.Lock()
			ports = append(ports, uint16(c.LocalAddr().(*net.TCPAddr).Port))
			mu.Unlock()
			if i%2 == 0 {
				_, _ = c.Write([]byte("\x16\x03\x01\x00\x05\x01\x00\x00\x01\xee")) // a hello cut short
			}
			hold(c)
		}
	})
	wg.Wait()
	<-ctx.Done()
	for _, c := range held {
		c.Close()
	}
	return ports
}

func TestChaosSoak(t *testing.T) {
	if testing.Short() {
		t.Skip("the chaos soak runs for about a minute")
	}
	ignore := goleak.IgnoreCurrent()
	baseFDs, baseRSS := openFDs(t), residentSet(t)

	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	spec := harness.Spec{
		Firewall:   &harness.FirewallSpec{PolicyYAML: chaosPolicy},
		ExtraHosts: []harness.HostSpec{{Name: "lan-probe", Addr: chaosLANProbe}},
	}
	topo, err := harness.StartInProcess(ctx, spec, harness.Options{})
	require.NoError(t, err)
	fws := &firewalls{}
	fws.add(topo.Firewall.Firewall)
	attacker, err := topo.Sim.AddHost("attacker", chaosAttacker)
	require.NoError(t, err)
	primary := netip.AddrPortFrom(topo.Spec.Gateways[0].Addrs()[0], 443)
	backup := netip.AddrPortFrom(topo.Spec.Gateways[1].Addrs()[0], 443)
	_, err = topo.Client.WaitUp(ctx)
	require.NoError(t, err)

	rounds := []struct {
		name  string
		fault func() error
		// allVerified: no fault breaks flows in flight this round.
		allVerified bool
	}{
		{"floods", nil, true},
		{"primary gateway closed mid-flow", func() error {
			return topo.Apply(ctx, harness.Event{Do: harness.EventGatewayDown})
		}, false},
		{"firewall restarted", func() error { return fws.restart(ctx, topo) }, false},
		{"after the faults", nil, true},
	}
	var (
		all        []harness.FlowOutcome
		probePorts []uint16
	)
	for i, r := range rounds {
		rctx, rcancel := context.WithTimeout(ctx, 8*time.Second)
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			target := primary
			if i >= 2 {
				target = backup
			}
			ports := attack(rctx, attacker, topo.Hosts["lan-probe"], target)
			probePorts = append(probePorts, ports...)
		}()
		faulted := make(chan error, 1)
		if r.fault != nil {
			wg.Add(1)
			go func() {
				defer wg.Done()
				select {
				case <-time.After(1500 * time.Millisecond): // mid-workload
					faulted <- r.fault()
				case <-rctx.Done():
					faulted <- rctx.Err()
				}
			}()
		} else {
			faulted <- nil
		}
		if i == len(rounds)-1 {
			// The client is back on a tunnel before the last round.
			_, err := topo.Client.WaitUp(ctx)
			require.NoError(t, err)
		}
		outs := topo.RunWorkload(ctx, harness.Workload{Flows: 30, Concurrency: 6, Spacing: 100 * time.Millisecond,
			Sizes: []harness.ByteSize{1 << 10, 64 << 10}, Timeout: 20 * time.Second})
		wg.Wait()
		rcancel()
		require.NoError(t, <-faulted, "round %q: the fault", r.name)
		verified := 0
		for _, o := range outs {
			if o.Verified {
				verified++
				continue
			}
			// A flow a fault broke fails with a typed failure naming its
			// leg and cause, never with bytes that differ.
			assert.NotEqual(t, failure.CausePayloadMismatch, o.Cause, "%s: %+v", r.name, o)
			assert.NotEmpty(t, o.Leg, "%s: untyped failure %+v", r.name, o)
			assert.NotEmpty(t, o.Cause, "%s: untyped failure %+v", r.name, o)
		}
		t.Logf("round %q: %d/%d flows verified (SHA-256 at both ends)", r.name, verified, len(outs))
		if r.allVerified {
			assert.Equal(t, len(outs), verified, "round %q", r.name)
		} else {
			assert.Positive(t, verified, "round %q", r.name)
		}
		all = append(all, outs...)
	}
	require.NoError(t, topo.Settle(ctx))
	require.NoError(t, topo.Close())
	fws.close()

	// No firewall record lost: every instance logged every session it
	// numbered (session IDs 1..N without a gap), and every session the
	// test opened through the firewall is in a log.
	logged := map[uint16]bool{}
	for _, fw := range fws.runs {
		recs := fw.Records()
		var ids []uint64
		for _, r := range recs {
			ids = append(ids, r.SessionID)
			require.NoError(t, r.Validate())
			if r.Src.Addr() == chaosLANProbe {
				logged[r.Src.Port()] = true
			}
		}
		slices.Sort(ids)
		for i, id := range ids {
			require.EqualValues(t, i+1, id, "session IDs of a firewall run without a gap: record %d missing", i+1)
		}
		t.Logf("firewall run: %d sessions logged", len(recs))
	}
	for _, p := range probePorts {
		assert.True(t, logged[p], "the session from %s:%d is in no firewall log", chaosLANProbe, p)
	}
	assert.NotEmpty(t, probePorts)
	var refused int
	for _, e := range topo.GatewayEvents() {
		if e.Event == "refusal-summary" {
			refused += e.Count
		}
	}
	t.Logf("%d flows, %d probe sessions through the firewall, %d refusals summarized by the gateways", len(all), len(probePorts), refused)

	// No leak: goroutines, descriptors and memory back to where they were.
	goleak.VerifyNone(t, ignore)
	// A descriptor whose owner let go of it without Close is closed by
	// its finalizer: collect before counting, so what is left is held.
	if !assert.Eventually(t, func() bool { runtime.GC(); return openFDs(t) <= baseFDs }, 10*time.Second, 50*time.Millisecond,
		"descriptors: %d open before the soak", baseFDs) {
		t.Fatalf("open descriptors: %s", fdTargets())
	}
	rss := residentSet(t)
	slack := int64(48 << 20)
	if raceEnabled {
		slack = 256 << 20 // the race detector's shadow memory is never returned
	}
	t.Logf("RSS %d MiB before, %d MiB after", baseRSS>>20, rss>>20)
	assert.Less(t, rss, baseRSS+slack, "RSS back near its baseline")
}
