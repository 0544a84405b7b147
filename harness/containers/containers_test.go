package containers_test

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	mnet "github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/testcontainers/testcontainers-go"
	"github.com/testcontainers/testcontainers-go/network"
	"go.uber.org/goleak"

	"github.com/pinwall/pinwall/fault"
	"github.com/pinwall/pinwall/harness"
	"github.com/pinwall/pinwall/harness/containers"
	"github.com/pinwall/pinwall/scenarios"
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// The static pinwall binary the tests put in the image and run as a
// subprocess, built once per test process (or handed down by the parent
// of a re-exec'd helper process).
var (
	binOnce sync.Once
	binDir  string
	binPath string
	binErr  error
)

const envBinary = "PINWALL_TEST_BINARY"

func testBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		if p := os.Getenv(envBinary); p != "" {
			binPath = p
			return
		}
		if binDir, binErr = os.MkdirTemp("", "pinwall-containers-test-"); binErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "pinwall")
		cmd := exec.Command("go", "build", "-trimpath", "-o", binPath, "github.com/pinwall/pinwall/cmd/pinwall")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
		if out, err := cmd.CombinedOutput(); err != nil {
			binErr = fmt.Errorf("go build: %v: %s", err, out)
		}
	})
	require.NoError(t, binErr)
	return binPath
}

// containerRunner returns a container runner of the test's own, or skips
// with a one-line reason where no Docker engine answers. At the end it
// requires that none of THIS runner's containers and networks is left —
// other runs sharing the engine are none of its business.
func containerRunner(t *testing.T) *containers.Runner {
	t.Helper()
	if testing.Short() {
		t.Skip("containers: skipped with -short")
	}
	if err := containers.DockerAvailable(context.Background()); err != nil {
		t.Skipf("containers: no Docker engine answers (%v); the container suite needs one", err)
	}
	r := &containers.Runner{Binary: testBinary(t)}
	t.Cleanup(func() {
		// A network the engine refused to remove although no container
		// was attached to it any more (containers.ErrEngineStale) is
		// the engine's, and said so; anything else left is a leak.
		stale := r.EngineStale()
		if len(stale) > 0 {
			t.Logf("left on the engine, which keeps counting an endpoint on them with no container attached: %v", stale)
		}
		requireNoLeftovers(t, containers.Filter{Runner: r.ID()}, stale...)
	})
	// Registered after the leftover check, so it runs first.
	t.Cleanup(func() { assert.NoError(t, r.Close(), "the runner's networks are removed") })
	return r
}

// requireNoLeftovers requires that nothing f selects is left on the engine
// but the networks named in stale.
func requireNoLeftovers(t *testing.T, f containers.Filter, stale ...string) {
	t.Helper()
	left, err := containers.Leftovers(context.Background(), f)
	require.NoError(t, err)
	left = slices.DeleteFunc(left, func(s string) bool {
		name, isNet := strings.CutPrefix(s, "network ")
		return isNet && slices.Contains(stale, name)
	})
	assert.Empty(t, left, "every container and network of the runs (%+v) is removed", f)
}

// TestContainersCatalogue runs every catalogue row on Docker networks and
// requires the same verdicts as in process.
func TestContainersCatalogue(t *testing.T) {
	r := containerRunner(t)
	all, err := scenarios.Catalogue()
	require.NoError(t, err)
	runs, err := scenarios.AllRuns(all)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	start := time.Now()
	results := scenarios.Execute(ctx, runs, scenarios.ExecOptions{Runner: r, Parallel: 2})
	t.Logf("container catalogue: %d runs in %v (image build %v)", len(results), time.Since(start).Round(time.Millisecond), r.ImageBuildTime().Round(time.Millisecond))
	logFailed := func(res scenarios.Result) {
		for _, c := range res.Checks {
			if !c.Pass {
				t.Logf("%s: FAILED %s: expected %s; observed %s", res.Key(), c.Name, c.Expected, c.Observed)
			}
		}
	}
	// A row whose events the engine carries out (a gateway container
	// killed) depends on how soon it does: with the engine busy with the
	// other runs' containers, a kill took about a second to take effect on
	// the 2-core machine (2026-12-07: backup-gateway's primary went down
	// after all 16 of without-fix's flows, 0.8 s of them, had finished, and
	// with-fix's 24 flows finished before it went down at all). Such a row
	// that misses runs once more, alone, and must be as expected then; its
	// first miss stays in the log.
	for i, res := range results {
		if res.Verdict == scenarios.Pass || len(runs[i].Plan.Events) == 0 {
			continue
		}
		t.Logf("%s: not as expected with %d runs at once (%s); running it again alone", res.Key(), 2, res.Error)
		logFailed(res)
		results[i] = scenarios.Execute(ctx, runs[i:i+1], scenarios.ExecOptions{Runner: r, Parallel: 1})[0]
	}
	for _, res := range results {
		logFailed(res)
		assert.Equal(t, scenarios.Pass, res.Verdict, "%s: %s", res.Key(), res.Error)
		assert.Equal(t, "containers", res.Mode)
		if fleet := res.Roles.Fleet; len(fleet) > 0 {
			// learned-exclusion/fleet: a container per laptop, each seen
			// by the firewall from its own address.
			seen := map[netip.Addr]bool{}
			for _, rec := range res.FirewallLog {
				if slices.Contains(fleet, rec.Src.Addr()) {
					seen[rec.Src.Addr()] = true
				}
			}
			assert.Len(t, seen, len(fleet), "%s: every laptop's sessions at the firewall", res.Key())
		}
		// The firewall logs carry the topology's real addresses.
		for _, rec := range res.FirewallLog {
			if rec.Src.Addr() == res.Roles.Laptop && res.Roles.IsGateway(rec.Dst.Addr()) && rec.NATSrc.IsValid() {
				assert.Equal(t, res.Roles.FirewallOut, rec.NATSrc.Addr(), "%s: NAT source", res.Key())
			}
		}
	}
}

// TestContainersFirewallPause freezes the firewall container for longer
// than the client's timeouts: no flow may be lost silently — each completes
// verified or fails with a named cause.
func TestContainersFirewallPause(t *testing.T) {
	r := containerRunner(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	plan := harness.Plan{
		Spec: harness.Spec{
			Firewall: &harness.FirewallSpec{PolicyYAML: "rules: [{name: allow-all, action: allow}]"},
			Client:   harness.ClientSpec{Keepalive: 300 * time.Millisecond, FallbackTimeout: 300 * time.Millisecond, HandshakeTimeout: time.Second, TunnelWait: time.Second},
		},
		Workload: harness.Workload{Flows: 20, Concurrency: 2, Spacing: 150 * time.Millisecond, Retries: -1, Timeout: 2 * time.Second},
		Events:   []harness.Event{{At: 500 * time.Millisecond, Do: harness.EventFirewallPause, Duration: 3 * time.Second}},
		Hold:     6 * time.Second,
	}
	obs, err := r.Run(ctx, plan)
	require.NoError(t, err)
	require.Len(t, obs.Events, 1)
	assert.Empty(t, obs.Events[0].Error)
	failed := 0
	for _, f := range obs.Flows {
		if !f.Verified {
			failed++
			assert.NotEmpty(t, f.Cause, "flow %d failed without a named cause: %s", f.Index, f.Error)
			assert.NotEmpty(t, f.Leg, "flow %d failed without a leg", f.Index)
		}
	}
	assert.Positive(t, failed, "a frozen firewall for 3s beyond every timeout fails some flows")
	assert.Less(t, failed, len(obs.Flows), "flows before and after the pause complete")
	var downs int
	for _, h := range obs.History {
		if h.Event == "down" {
			downs++
		}
	}
	assert.Positive(t, downs, "the client noticed the tunnel die under the pause")
	assert.True(t, obs.Tunnel.Up, "and rebuilt it afterwards")
}

// smallPlan is a short run: a firewall allowing everything, a few flows.
func smallPlan(flows int, hold time.Duration) harness.Plan {
	return harness.Plan{
		Spec:     harness.Spec{Firewall: &harness.FirewallSpec{PolicyYAML: "rules: [{name: allow-all, action: allow}]"}},
		Workload: harness.Workload{Flows: flows},
		Hold:     hold,
	}
}

// TestContainersUnderlayTaken: a network already on the engine over the
// underlay slot a run would take next (another user's run, say) moves the
// run to another slot instead of failing it, and the squatter is left alone.
func TestContainersUnderlayTaken(t *testing.T) {
	r := containerRunner(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	// Squat on the first slot that is free now; another process may take
	// it first, then try the next.
	var squatter *testcontainers.DockerNetwork
	var squatted netip.Prefix
	for attempt := 0; squatter == nil; attempt++ {
		require.Less(t, attempt, 5, "no free underlay slot to squat on")
		taken, err := containers.SlotsTaken(ctx)
		require.NoError(t, err)
		k := 0
		for taken[k] {
			k++
		}
		require.Less(t, k, containers.MaxParallelRuns)
		squatted, _ = containers.UnderlaySlot(k)
		squatter, err = network.New(ctx, network.WithInternal(),
			network.WithLabels(map[string]string{containers.LabelRun: "squatter", containers.LabelRunner: r.ID(), containers.LabelOwner: containers.Self().String()}),
			network.WithIPAM(&mnet.IPAM{Config: []mnet.IPAMConfig{{Subnet: squatted}}}))
		if err != nil {
			squatter = nil
			t.Logf("squatting %s: %v", squatted, err)
		}
	}
	// Registered after containerRunner's leftover check, so it runs first.
	t.Cleanup(func() { require.NoError(t, squatter.Remove(context.Background())) })

	var lan netip.Prefix
	r.OnNetworks = func(_ string, l, _ netip.Prefix) { lan = l }
	obs, err := r.Run(ctx, smallPlan(2, 0))
	require.NoError(t, err, "the run moves to a free underlay")
	assert.Equal(t, 2, obs.Summary.Verified)
	require.True(t, lan.IsValid())
	assert.False(t, lan.Overlaps(squatted), "the run's LAN underlay %s avoids the squatted %s", lan, squatted)
	left, err := containers.Leftovers(ctx, containers.Filter{Run: "squatter"})
	require.NoError(t, err)
	assert.Len(t, left, 1, "the run's sweep left the live squatter alone")
}

const envHelper = "PINWALL_CONTAINERS_HELPER"

// TestContainersHelperProcess is the second process of
// TestContainersRunsAtOnce (the test binary re-exec'd); it does nothing
// when run directly.
func TestContainersHelperProcess(t *testing.T) {
	if os.Getenv(envHelper) == "" {
		t.Skip("the helper of TestContainersRunsAtOnce")
	}
	r := containerRunner(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	start := time.Now()
	obs, err := r.Run(ctx, smallPlan(4, 0))
	require.NoError(t, err)
	assert.Equal(t, 4, obs.Summary.Verified)
	t.Logf("helper process run: %v", time.Since(start).Round(time.Millisecond))
}

// TestContainersRunsAtOnce: runs sharing one Docker engine do not disturb
// each other — two Runner values in this process and a second process
// (this test binary re-exec'd) run at once, each on its own underlays,
// each sweeping dead runs first, each removing only what it made.
func TestContainersRunsAtOnce(t *testing.T) {
	a, b := containerRunner(t), containerRunner(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	// One run alone first, as the yardstick (and to have the image).
	start := time.Now()
	obs, err := a.Run(ctx, smallPlan(4, 0))
	require.NoError(t, err)
	require.Equal(t, 4, obs.Summary.Verified)
	alone := time.Since(start)

	helper := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestContainersHelperProcess$", "-test.v", "-test.count=1")
	helper.Env = append(os.Environ(), envHelper+"=1", envBinary+"="+testBinary(t))
	var helperOut strings.Builder
	helper.Stdout, helper.Stderr = &helperOut, &helperOut
	start = time.Now()
	require.NoError(t, helper.Start())
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		subnets = map[string]netip.Prefix{}
		obsA    *harness.Observation
		obsB    *harness.Observation
		errA    error
		errB    error
		took    [2]time.Duration
		onNets  = func(run string, lan, _ netip.Prefix) { mu.Lock(); subnets[run] = lan; mu.Unlock() }
		runOne  = func(r *containers.Runner, obs **harness.Observation, err *error, d *time.Duration) {
			defer wg.Done()
			s := time.Now()
			*obs, *err = r.Run(ctx, smallPlan(4, 0))
			*d = time.Since(s)
		}
	)
	a.OnNetworks, b.OnNetworks = onNets, onNets
	wg.Add(2)
	go runOne(a, &obsA, &errA, &took[0])
	go runOne(b, &obsB, &errB, &took[1])
	wg.Wait()
	herr := helper.Wait()
	all := time.Since(start)
	require.NoError(t, herr, "the second process's run:\n%s", helperOut.String())
	require.NoError(t, errA)
	require.NoError(t, errB)
	assert.Equal(t, 4, obsA.Summary.Verified)
	assert.Equal(t, 4, obsB.Summary.Verified)
	require.Len(t, subnets, 2)
	var lans []netip.Prefix
	for _, p := range subnets {
		lans = append(lans, p)
	}
	assert.NotEqual(t, lans[0], lans[1], "runs at once hold different underlays")
	t.Logf("one run alone: %v; three at once (two runners here, one in a second process): %v (here: %v, %v)",
		alone.Round(time.Millisecond), all.Round(time.Millisecond), took[0].Round(time.Millisecond), took[1].Round(time.Millisecond))
	for _, line := range strings.Split(helperOut.String(), "\n") {
		if strings.Contains(line, "helper process run:") {
			t.Log(strings.TrimSpace(line))
		}
	}
}

// TestContainersCleanAfterKill: a `pinwall run --mode containers` killed
// with SIGKILL mid-run leaves its containers and networks behind; `pinwall
// clean` removes every one of them (its owner is gone) and leaves a
// concurrently live run's resources alone, and that run still passes.
func TestContainersCleanAfterKill(t *testing.T) {
	r := containerRunner(t)
	bin := testBinary(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	// The live run: holds its containers until told to finish.
	liveRun := make(chan string, 1)
	r.OnNetworks = func(run string, _, _ netip.Prefix) { liveRun <- run }
	type result struct {
		obs *harness.Observation
		err error
	}
	done := make(chan result, 1)
	go func() {
		obs, err := r.Run(ctx, smallPlan(4, 30*time.Second))
		done <- result{obs, err}
	}()
	var live string
	select {
	case live = <-liveRun:
	case res := <-done:
		t.Fatalf("the live run ended before its networks existed: %v", res.err)
	}

	// The victim: a pinwall run in a process of its own.
	victim := exec.CommandContext(ctx, bin, "run", "visibility", "--mode", "containers", "--parallel", "1", "--out", t.TempDir())
	var victimOut strings.Builder
	victim.Stdout, victim.Stderr = &victimOut, &victimOut
	require.NoError(t, victim.Start())
	pid := victim.Process.Pid
	ofVictim := func() []containers.Resource {
		rs, err := containers.Inventory(ctx, containers.Filter{})
		require.NoError(t, err)
		var out []containers.Resource
		for _, res := range rs {
			if o, err := containers.ParseOwner(res.Owner); err == nil && o.PID == pid && o.Host == containers.Self().Host {
				out = append(out, res)
			}
		}
		return out
	}
	// Kill it once its servers are up (the firewall, gateways and origins).
	require.Eventually(t, func() bool {
		n := 0
		for _, res := range ofVictim() {
			if res.Kind == "container" && res.State == "running" {
				n++
			}
		}
		return n >= 3
	}, 2*time.Minute, 200*time.Millisecond, "the victim's containers never ran:\n%s", &victimOut)
	require.NoError(t, victim.Process.Signal(syscall.SIGKILL))
	_ = victim.Wait()
	left := ofVictim()
	require.NotEmpty(t, left, "SIGKILL leaves the run's resources behind")
	t.Logf("the killed run left %d resources", len(left))
	liveBefore, err := containers.Inventory(ctx, containers.Filter{Run: live})
	require.NoError(t, err)
	require.NotEmpty(t, liveBefore)

	out, err := exec.CommandContext(ctx, bin, "clean").CombinedOutput()
	require.NoError(t, err, "pinwall clean:\n%s", out)
	t.Logf("pinwall clean:\n%s", out)
	assert.Empty(t, ofVictim(), "nothing of the killed run is left")
	liveAfter, err := containers.Inventory(ctx, containers.Filter{Run: live})
	require.NoError(t, err)
	// The live run may have started more containers since (its laptop):
	// whatever it had before is still there.
	assert.Subset(t, ids(liveAfter), ids(liveBefore), "the live run's resources are untouched")

	res := <-done
	require.NoError(t, res.err, "the live run")
	assert.Equal(t, 4, res.obs.Summary.Verified, "and it still passes")
}

func ids(rs []containers.Resource) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.Kind+" "+r.ID)
	}
	return out
}

// TestContainersCleanImages: with Images, clean removes the node images
// older than the current one, unless a container uses them, and keeps the
// current one and newer ones. The images live in a repository of the
// test's own, so other users' node images are never touched.
func TestContainersCleanImages(t *testing.T) {
	containerRunner(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cli, err := testcontainers.NewDockerClientWithOpts(ctx)
	require.NoError(t, err)
	t.Cleanup(func() { cli.Close() }) // after the cleanups below, which use it
	// A repository name takes [a-z0-9] and separators: the owner's host
	// (hostname@boot id) is cut down to that.
	host := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			return r
		}
		return '-'
	}, strings.ToLower(containers.Self().Host))
	repo := "pinwall-clean-test-" + host + "-" + fmt.Sprint(os.Getpid())
	build := func(tag string) string {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		// Two steps: the legacy builder keeps the first as an untagged
		// parent image, which removing the image must take with it.
		df := []byte("FROM scratch\nLABEL pinwall.test=" + tag + "\nLABEL pinwall.step=2\n")
		require.NoError(t, tw.WriteHeader(&tar.Header{Name: "Dockerfile", Mode: 0o644, Size: int64(len(df))}))
		_, err := tw.Write(df)
		require.NoError(t, err)
		require.NoError(t, tw.Close())
		res, err := cli.ImageBuild(ctx, &buf, client.ImageBuildOptions{Tags: []string{repo + ":" + tag}, Remove: true})
		require.NoError(t, err)
		out, _ := io.ReadAll(res.Body)
		res.Body.Close()
		require.NotContains(t, string(out), `"error"`)
		t.Cleanup(func() {
			_, _ = cli.ImageRemove(context.Background(), repo+":"+tag, client.ImageRemoveOptions{Force: true, PruneChildren: true})
		})
		return repo + ":" + tag
	}
	// Image creation times have a resolution of one second.
	oldest := build("a")
	time.Sleep(1100 * time.Millisecond)
	older := build("b")
	time.Sleep(1100 * time.Millisecond)
	current := build("c")
	time.Sleep(1100 * time.Millisecond)
	newer := build("d")
	user, err := cli.ContainerCreate(ctx, client.ContainerCreateOptions{Config: &container.Config{Image: older, Cmd: []string{"none"},
		Labels: map[string]string{"pinwall.test": "image-user"}}})
	require.NoError(t, err)
	t.Cleanup(func() {
		_, _ = cli.ContainerRemove(context.Background(), user.ID, client.ContainerRemoveOptions{Force: true})
	})

	all, err := cli.ImageList(ctx, client.ImageListOptions{All: true})
	require.NoError(t, err)
	var oldParent string
	for _, it := range all.Items {
		if slices.Contains(it.RepoTags, oldest) {
			oldParent = it.ParentID
		}
	}
	rep, err := containers.Clean(ctx, containers.CleanConfig{Images: true, ImageRepo: repo, CurrentImage: current})
	require.NoError(t, err)
	removed, left := map[string]string{}, map[string]string{}
	for _, r := range rep.Removed {
		if r.Kind == "image" {
			removed[r.Name] = r.Why
		}
	}
	for _, r := range rep.Left {
		if r.Kind == "image" {
			left[r.Name] = r.Why
		}
	}
	assert.Equal(t, []string{oldest}, keys(removed), "only the unused image older than the current one goes")
	assert.Contains(t, left[older], "in use")
	assert.Contains(t, left[current], "current")
	assert.Contains(t, left[newer], "not older")
	_, err = cli.ImageInspect(ctx, oldest)
	assert.Error(t, err, "the oldest image is gone from the engine")
	if oldParent != "" {
		_, err = cli.ImageInspect(ctx, oldParent)
		assert.Error(t, err, "its untagged parent (the build's first step) went with it, not left dangling")
	}
}

func keys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// TestContainersFaults: the fault events of the in-process runner, on
// Docker networks — the spec's udp-loss and an impair event (loss,
// latency with jitter, reordering) degrade the laptop's datagrams, and a
// firewall restart loses its session table (a new process and network
// namespace); every flow is verified or failed with a named leg and
// cause, and the firewall's log holds the sessions of both its lives.
func TestContainersFaults(t *testing.T) {
	r := containerRunner(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	_, err := r.Run(ctx, harness.Plan{Spec: smallPlan(1, 0).Spec, Events: []harness.Event{{Do: "udp-loss"}}})
	require.ErrorContains(t, err, `unknown event "udp-loss"`, "unknown events are refused, not ignored")

	plan := harness.Plan{
		Spec: harness.Spec{
			Firewall: &harness.FirewallSpec{PolicyYAML: "rules: [{name: allow-all, action: allow}]"},
			Client: harness.ClientSpec{Transport: "dtls", UDPLoss: 0.02, Keepalive: 300 * time.Millisecond, HandshakeTimeout: 2 * time.Second,
				TunnelWait: 4 * time.Second},
			// The gateway notices the tunnel the restart orphaned within a second.
			Gateway: harness.GatewayConfigSpec{Keepalive: 300 * time.Millisecond},
		},
		Workload: harness.Workload{Flows: 30, Concurrency: 2, Spacing: 150 * time.Millisecond, Retries: -1, Timeout: 20 * time.Second,
			Sizes: []harness.ByteSize{16 << 10}},
		Events: []harness.Event{
			{At: 200 * time.Millisecond, Do: harness.EventImpair, Duration: 1500 * time.Millisecond,
				Impair: &fault.Impairment{Loss: 0.05, Latency: 20 * time.Millisecond, Jitter: 5 * time.Millisecond, Reorder: 0.2}},
			{At: 2500 * time.Millisecond, Do: harness.EventFirewallRestart},
		},
		Hold: 8 * time.Second,
	}
	obs, err := r.Run(ctx, plan)
	require.NoError(t, err)
	require.Len(t, obs.Events, 2)
	for _, e := range obs.Events {
		assert.Empty(t, e.Error, "%s", e.Do)
	}
	require.NotNil(t, obs.LaptopDatagrams, "udp-loss and impairments reach the laptop container")
	st := *obs.LaptopDatagrams
	t.Logf("laptop datagrams: %+v", st)
	assert.Positive(t, st.Dropped)
	assert.Positive(t, st.Delayed)
	assert.Positive(t, st.Reordered)

	restart := obs.Events[1].Time
	var before, after int
	for _, rec := range obs.Firewall {
		if rec.Start.Before(restart) {
			before++
		} else {
			after++
		}
	}
	assert.Positive(t, before, "the first firewall's sessions are logged")
	assert.Positive(t, after, "and the restarted one's")
	var downs int
	for _, h := range obs.History {
		if h.Event == "down" && h.Time.After(restart) {
			downs++
		}
	}
	assert.Positive(t, downs, "the client lost its tunnel with the firewall's state")
	assert.True(t, obs.Tunnel.Up, "and rebuilt it")
	for _, f := range obs.Flows {
		if !f.Verified {
			assert.NotEmpty(t, f.Leg, "flow %d: %s", f.Index, f.Error)
			assert.NotEmpty(t, f.Cause, "flow %d: %s", f.Index, f.Error)
		}
	}
	t.Logf("firewall restart: %d sessions before, %d after; %d of %d flows verified", before, after, obs.Summary.Verified, len(obs.Flows))
}
