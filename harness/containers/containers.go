package containers

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types/container"
	mnet "github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"
	"github.com/testcontainers/testcontainers-go"
	tclog "github.com/testcontainers/testcontainers-go/log"
	"github.com/testcontainers/testcontainers-go/network"

	"github.com/pinwall/pinwall/docker"
	"github.com/pinwall/pinwall/failure"
	"github.com/pinwall/pinwall/fault"
	"github.com/pinwall/pinwall/gateway"
	"github.com/pinwall/pinwall/harness"
	"github.com/pinwall/pinwall/interceptors"
	"github.com/pinwall/pinwall/internal/node"
	"github.com/pinwall/pinwall/mitm/fwlog"
	"github.com/pinwall/pinwall/mitm/policy"
	"github.com/pinwall/pinwall/netsetup"
	"github.com/pinwall/pinwall/pki"
	"github.com/pinwall/pinwall/resolve"
)

// Container topology addresses. The two Docker networks are internal
// underlays on the benchmarking range 198.18.0.0/15 (never routed on the
// internet); each carries a VXLAN segment holding the topology's real
// addresses: the LAN (10.10.10.0/24) and the internet side
// (198.51.100.0/24, plus the gateway pools and origin addresses added by
// netsetup and reached by routes). The topology's addresses live only
// inside the containers, so runs at once differ only in their underlays:
// run slot k uses 198.18.(10+k).0/24 and 198.18.(100+k).0/24.
var (
	internetNet       = netip.MustParsePrefix("198.51.100.0/24")
	originsOnNet      = netip.MustParseAddr("198.51.100.30")
	firstGatewayOnNet = netip.MustParseAddr("198.51.100.20")
)

// Overlay interfaces and identifiers.
const (
	lanOverlay  = "pw-lan"
	inetOverlay = "pw-inet"
	lanVNI      = 10
	inetVNI     = 100
)

// underlays is one run slot's pair of Docker subnets.
type underlays struct {
	lan, inet             netip.Prefix
	lanBridge, inetBridge netip.Addr
}

// MaxParallelRuns bounds Runner.Parallel: slots beyond it would make the
// LAN underlays run into the internet ones.
const MaxParallelRuns = 32

// underlayClaims are the underlay slots the runs of this process hold, so
// that two Runner values never pick the same subnets.
var underlayClaims struct {
	sync.Mutex
	held [MaxParallelRuns]bool
}

// claimUnderlay takes the lowest underlay slot neither held in this process
// nor in tried.
func claimUnderlay(tried map[int]bool) (int, bool) {
	underlayClaims.Lock()
	defer underlayClaims.Unlock()
	for k := range underlayClaims.held {
		if !underlayClaims.held[k] && !tried[k] {
			underlayClaims.held[k] = true
			return k, true
		}
	}
	return 0, false
}

func releaseUnderlay(k int) {
	underlayClaims.Lock()
	underlayClaims.held[k] = false
	underlayClaims.Unlock()
}

// poolOverlaps reports the Docker engine refusing a subnet another network
// (another process's run, or anything else on the engine) already has. The
// engine says so only in words.
func poolOverlaps(err error) bool {
	return err != nil && strings.Contains(err.Error(), "Pool overlaps")
}

// underlaySlot is run slot k's underlays (k < MaxParallelRuns).
func underlaySlot(k int) underlays {
	lan := netip.AddrFrom4([4]byte{198, 18, byte(10 + k), 0})
	inet := netip.AddrFrom4([4]byte{198, 18, byte(100 + k), 0})
	return underlays{
		lan:        netip.PrefixFrom(lan, 24),
		inet:       netip.PrefixFrom(inet, 24),
		lanBridge:  netip.AddrFrom4([4]byte{198, 18, byte(10 + k), 1}),
		inetBridge: netip.AddrFrom4([4]byte{198, 18, byte(100 + k), 254}),
	}
}

// underlayOf maps an overlay address to the node's address on the Docker
// network under it (same host part).
func underlayOf(overlay netip.Addr, under netip.Prefix) netip.Addr {
	o := overlay.As4()
	u := under.Addr().As4()
	return netip.AddrFrom4([4]byte{u[0], u[1], u[2], o[3]})
}

// Interception ports inside the firewall container.
const (
	fwTCPPort = 15001
	fwUDPPort = 15002
)

// Runner runs plans on real Docker networks with testcontainers-go:
// the laptop on lan with the firewall as its default route, the firewall
// on lan and internet with forwarding on and nftables interception, the
// gateways and origins on internet with their service addresses. One
// image FROM scratch holds the static pinwall binary; it is built once per
// runner and reused. Up to Parallel runs go at once, each on its own pair
// of underlay subnets; more wait for a free slot. A slot's two networks
// are made by its first run and kept for the slot's next runs (each run
// removes its containers first), until Close removes them.
type Runner struct {
	// Binary is a static (CGO_ENABLED=0) pinwall binary to put in the
	// image; empty builds ./cmd/pinwall from this module's source.
	Binary string
	// PKI, if set, is shared by every run.
	PKI *pki.Set
	// Logger receives progress; nil discards.
	Logger *slog.Logger
	// Keep leaves containers and networks behind for debugging.
	Keep bool
	// Rebuild removes an existing image of the same binary first (a cold
	// start, for measuring).
	Rebuild bool
	// Parallel is how many runs may hold containers at once, each on its
	// own underlay subnets; zero means 4, and it is capped at
	// MaxParallelRuns.
	Parallel int
	// NoSweep skips the sweep of dead runs' leftovers (Clean with its
	// defaults) that every run does before it starts.
	NoSweep bool
	// OnNetworks, if set, is called once a run's two underlay networks
	// exist, with the run's id and their subnets (for tests and progress).
	OnNetworks func(run string, lan, inet netip.Prefix)
	// Netem impairs the laptop's datagrams (udp-loss, impair events) with
	// netem qdiscs on the overlay (the laptop's egress, and the firewall's
	// egress towards the laptop) instead of on the laptop's sockets, as in
	// process. It needs a kernel with sch_netem and sch_prio; a run fails
	// at its first impairment where there is none (fault.ErrNetemUnavailable).
	Netem bool
	// Capture records each run's packets on the containers' interfaces
	// (AF_PACKET, in the nodes) and every component's session secrets,
	// merged into Observation.Capture.
	Capture bool
	// SnapLen bounds the payload a captured flow keeps in each direction;
	// zero means capture.DefaultSnapLen, negative no limit.
	SnapLen int

	// ToolsCache keeps the tools' root filesystem between builds (see
	// ToolsImageConfig.CacheDir); empty means the user's cache directory.
	ToolsCache string

	mu        sync.Mutex
	idOnce    sync.Once
	binOnce   sync.Once
	bin       []byte
	binErr    error
	toolsOnce sync.Once
	tools     string
	toolsErr  error
	toolsRes  ToolsImageResult
	id        string
	slotsOnce sync.Once
	slots     chan int // free run slots
	image     string
	imageErr  error
	buildOnce sync.Once
	built     time.Duration
	// nets are each run slot's underlay networks, kept between the slot's
	// runs until Close; closed says Close has run (a run ending after it
	// removes its networks).
	netsMu sync.Mutex
	nets   map[int]*underlayNets
	closed bool
	// stale are the networks the engine refused with ErrEngineStale.
	stale []string
}

// underlayNets is a run slot's pair of underlay networks.
type underlayNets struct {
	k         int // the underlay slot claimed for them (claimUnderlay)
	under     underlays
	lan, inet *testcontainers.DockerNetwork
}

// Close removes the underlay networks the runner keeps between runs. Call
// it once the runs have returned; it is idempotent, and a run ending
// after it removes its own networks.
func (c *Runner) Close() error {
	c.netsMu.Lock()
	nets := c.nets
	c.nets, c.closed = nil, true
	c.netsMu.Unlock()
	if len(nets) == 0 {
		return nil
	}
	cli, err := testcontainers.NewDockerClientWithOpts(context.Background())
	if err != nil {
		return fmt.Errorf("containers: close: %w", err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for _, n := range nets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := c.sortStale(removeNets(ctx, cli, n.lan, n.inet)); err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("containers: close: %w", err))
				mu.Unlock()
			}
			releaseUnderlay(n.k)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// ErrEngineStale is the engine refusing, for as long as staleGrace, to
// remove a network that no container is attached to any more: Docker
// 20.10 can keep counting an endpoint of a container it has removed (seen
// after many containers were removed at once on a loaded engine; moby's
// "has active endpoints" with an empty network). Only restarting the
// daemon frees such a network; pinwall leaves it, labelled, and says so.
var ErrEngineStale = errors.New("the engine counts an endpoint on a network no container is attached to (a stale endpoint count; only a daemon restart frees it)")

// StaleNetworkError names a network the engine refused to remove with
// ErrEngineStale.
type StaleNetworkError struct {
	Name string
	Err  error
}

func (e *StaleNetworkError) Error() string { return "network " + e.Name + ": " + e.Err.Error() }

func (e *StaleNetworkError) Unwrap() error { return e.Err }

// staleGrace is how long the engine may refuse to remove a network with no
// container attached before the refusal counts as its stale endpoint
// count (ErrEngineStale) rather than a removal still in progress.
const staleGrace = 10 * time.Second

// EngineStale lists the networks of this runner the engine refused to
// remove with ErrEngineStale; they are left on the engine, labelled.
func (c *Runner) EngineStale() []string {
	c.netsMu.Lock()
	defer c.netsMu.Unlock()
	return slices.Clone(c.stale)
}

// sortStale records and logs the networks err (from removeNets) names as
// stale on the engine, and returns the rest of it.
func (c *Runner) sortStale(err error) error {
	if err == nil {
		return nil
	}
	var rest []error
	for _, e := range unjoin(err) {
		var se *StaleNetworkError
		if errors.As(e, &se) {
			c.netsMu.Lock()
			c.stale = append(c.stale, se.Name)
			c.netsMu.Unlock()
			c.log().Warn("containers: a network is left on the engine", "network", se.Name, "err", se.Err)
			continue
		}
		rest = append(rest, e)
	}
	return errors.Join(rest...)
}

// unjoin lists the errors errors.Join put together in err, or err alone.
func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// removeNets removes networks (nil ones skipped), all at once; one
// already gone is not an error. A network the engine keeps as stale is a
// *StaleNetworkError among the joined errors.
func removeNets(ctx context.Context, cli *testcontainers.DockerClient, nets ...*testcontainers.DockerNetwork) error {
	var (
		wg   sync.WaitGroup
		errs = make([]error, len(nets))
	)
	for i, nw := range nets {
		if nw == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := removeNet(ctx, cli, nw.ID); err != nil {
				if errors.Is(err, ErrEngineStale) {
					errs[i] = &StaleNetworkError{Name: nw.Name, Err: err}
					return
				}
				errs[i] = fmt.Errorf("remove network %s: %w", nw.Name, err)
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// removeNet removes one network; one already gone is not an error. The
// engine can still count an endpoint of a container it has just removed
// (seen with Docker 20.10 after a fleet's 20 containers were force-removed
// at once: "has active endpoints"), so that answer is retried, backing off,
// until ctx ends; once it has lasted staleGrace with no container attached
// to the network, it is ErrEngineStale.
func removeNet(ctx context.Context, cli *testcontainers.DockerClient, id string) error {
	wait := 100 * time.Millisecond
	var emptySince time.Time
	for {
		_, err := cli.NetworkRemove(ctx, id, client.NetworkRemoveOptions{})
		if err == nil || cerrdefs.IsNotFound(err) {
			return nil
		}
		if !activeEndpoints(err) {
			return err
		}
		if in, ierr := cli.NetworkInspect(ctx, id, client.NetworkInspectOptions{}); ierr == nil && len(in.Network.Containers) == 0 {
			if emptySince.IsZero() {
				emptySince = time.Now()
			} else if time.Since(emptySince) >= staleGrace {
				return fmt.Errorf("%w: %w", ErrEngineStale, err)
			}
		} else {
			emptySince = time.Time{}
		}
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return fmt.Errorf("%w (still in use when %w)", err, ctx.Err())
		}
		wait = min(2*wait, 2*time.Second)
	}
}

// activeEndpoints reports whether err is the engine refusing to remove a
// network a container is still attached to.
func activeEndpoints(err error) bool {
	return err != nil && strings.Contains(err.Error(), "active endpoints")
}

// keptNets is the networks run slot s kept from its previous run, if any.
func (c *Runner) keptNets(s int) *underlayNets {
	c.netsMu.Lock()
	defer c.netsMu.Unlock()
	return c.nets[s]
}

// keepNets keeps a run's networks for run slot s's next run; false when
// the runner is closed (the run removes them).
func (c *Runner) keepNets(s int, n *underlayNets) bool {
	c.netsMu.Lock()
	defer c.netsMu.Unlock()
	if c.closed {
		return false
	}
	if c.nets == nil {
		c.nets = map[int]*underlayNets{}
	}
	c.nets[s] = n
	return true
}

// dropNets forgets run slot s's networks (its run removes them).
func (c *Runner) dropNets(s int) {
	c.netsMu.Lock()
	defer c.netsMu.Unlock()
	delete(c.nets, s)
}

// Name implements harness.Runner.
func (c *Runner) Name() string { return "containers" }

// ID is this Runner's id, the LabelRunner value of its runs' resources.
func (c *Runner) ID() string {
	c.idOnce.Do(func() { c.id = randomID() })
	return c.id
}

func randomID() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// self is this process as the owner of its runs.
var self = sync.OnceValue(Self)

// sweep removes what dead runs left on the engine before a run starts.
// A failure is logged, not fatal: the run picks subnets around whatever is
// left.
func (c *Runner) sweep(ctx context.Context) {
	if c.NoSweep {
		return
	}
	rep, err := Clean(ctx, CleanConfig{Logger: c.log()})
	if err != nil {
		c.log().Warn("containers: sweeping dead runs' leftovers", "err", err)
	}
	if len(rep.Removed) > 0 {
		c.log().Info("containers: swept dead runs' leftovers", "removed", len(rep.Removed))
	}
}

// ImageBuildTime reports how long building the image took (zero when reused).
func (c *Runner) ImageBuildTime() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.built
}

func init() {
	// Ryuk (the reaper container) would need an image pull; pinwall removes
	// its containers itself.
	if os.Getenv("TESTCONTAINERS_RYUK_DISABLED") == "" {
		os.Setenv("TESTCONTAINERS_RYUK_DISABLED", "true")
	}
	// testcontainers' logger is package state it reads on every call: set
	// once here, before any goroutine can use it (setting it per run raced).
	tclog.SetDefault(tclog.NewNoopLogger())
}

// DockerAvailable reports whether a Docker engine answers.
func DockerAvailable(ctx context.Context) error {
	os.Setenv("TESTCONTAINERS_RYUK_DISABLED", "true")
	cli, err := testcontainers.NewDockerClientWithOpts(ctx)
	if err != nil {
		return err
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, err = cli.Ping(ctx, client.PingOptions{})
	return err
}

func (c *Runner) log() *slog.Logger {
	if c.Logger != nil {
		return c.Logger
	}
	return slog.New(slog.DiscardHandler)
}

// Image builds (once) and returns the node image's tag.
func (c *Runner) Image(ctx context.Context) (string, error) {
	c.buildOnce.Do(func() {
		start := time.Now()
		var image string
		bin, err := c.binary(ctx)
		if err == nil {
			image = imageTag(bin)
			err = buildDockerImage(ctx, docker.Dockerfile, bin, image, c.Rebuild, c.log())
		}
		c.mu.Lock()
		c.image, c.imageErr = image, err
		c.built = time.Since(start)
		c.mu.Unlock()
	})
	return c.image, c.imageErr
}

// binary is the static pinwall binary the images hold (built once).
func (c *Runner) binary(ctx context.Context) ([]byte, error) {
	c.binOnce.Do(func() { c.bin, c.binErr = nodeBinary(ctx, c.Binary) })
	return c.bin, c.binErr
}

// ToolsImage makes sure (once) the tools' image exists (EnsureToolsImage:
// mmdebstrap and docker import the first time) and builds the firewall
// image for third-party interceptors on it: the tools and the pinwall
// binary as their supervisor. It returns that image's tag.
func (c *Runner) ToolsImage(ctx context.Context) (string, error) {
	c.toolsOnce.Do(func() {
		bin, err := c.binary(ctx)
		if err != nil {
			c.toolsErr = err
			return
		}
		res, err := EnsureToolsImage(ctx, ToolsImageConfig{CacheDir: c.ToolsCache, Rebuild: c.Rebuild, Logger: c.log()})
		c.mu.Lock()
		c.toolsRes = res
		c.mu.Unlock()
		if err != nil {
			c.toolsErr = err
			return
		}
		c.tools = toolsNodeTag(res.Tag, bin)
		c.toolsErr = buildDockerImage(ctx, toolsDockerfile(res.Tag), bin, c.tools, c.Rebuild, c.log())
	})
	return c.tools, c.toolsErr
}

// ToolsImageBuild reports what ToolsImage did (zero before it ran).
func (c *Runner) ToolsImageBuild() ToolsImageResult {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.toolsRes
}

// moduleRoot finds this module's source, for building the binary.
func moduleRoot() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", errors.New("cannot locate the module source")
	}
	root := filepath.Dir(filepath.Dir(filepath.Dir(file))) // harness/containers/containers.go
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		return "", fmt.Errorf("module source not found at %s (pass a static pinwall binary instead)", root)
	}
	return root, nil
}

// ImageTag is the tag of the node image holding a static pinwall binary:
// NodeImageRepo and the start of the binary's SHA-256.
func ImageTag(binary string) (string, error) {
	bin, err := os.ReadFile(binary)
	if err != nil {
		return "", err
	}
	return imageTag(bin), nil
}

func imageTag(bin []byte) string {
	sum := sha256.Sum256(bin)
	return NodeImageRepo + ":" + hex.EncodeToString(sum[:6])
}

// nodeBinary is the static pinwall binary's content: binary, or one
// built from this module's source when binary is empty.
func nodeBinary(ctx context.Context, binary string) ([]byte, error) {
	if binary == "" {
		root, err := moduleRoot()
		if err != nil {
			return nil, err
		}
		dir, err := os.MkdirTemp("", "pinwall-image-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(dir)
		out := filepath.Join(dir, "pinwall")
		cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", out, "./cmd/pinwall")
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
		if b, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("building the static pinwall binary: %v: %s", err, b)
		}
		binary = out
	}
	return os.ReadFile(binary)
}

// buildDockerImage builds tag from a Dockerfile and the pinwall binary
// (the build context), labelled pinwall=node; an existing tag is reused
// unless rebuild.
func buildDockerImage(ctx context.Context, dockerfile, bin []byte, tag string, rebuild bool, log *slog.Logger) error {
	cli, err := testcontainers.NewDockerClientWithOpts(ctx)
	if err != nil {
		return err
	}
	defer cli.Close()
	if _, err := cli.ImageInspect(ctx, tag); err == nil {
		if !rebuild {
			log.Info("containers: reusing image", "tag", tag)
			return nil
		}
		if _, err := cli.ImageRemove(ctx, tag, client.ImageRemoveOptions{Force: true, PruneChildren: true}); err != nil {
			return fmt.Errorf("remove image %s: %w", tag, err)
		}
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range []struct {
		name string
		data []byte
		mode int64
	}{{"Dockerfile", dockerfile, 0o644}, {"pinwall", bin, 0o755}} {
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Mode: f.mode, Size: int64(len(f.data))}); err != nil {
			return err
		}
		if _, err := tw.Write(f.data); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	res, err := cli.ImageBuild(ctx, &buf, client.ImageBuildOptions{Tags: []string{tag}, Remove: true, ForceRemove: true, Labels: map[string]string{"pinwall": "node"}})
	if err != nil {
		return fmt.Errorf("docker build: %w", err)
	}
	defer res.Body.Close()
	out, _ := io.ReadAll(res.Body)
	if bytes.Contains(out, []byte(`"error"`)) {
		return fmt.Errorf("docker build: %s", out)
	}
	log.Info("containers: built image", "tag", tag)
	return nil
}

// started is one started container.
type started struct {
	name string
	cfg  node.Config
	c    testcontainers.Container
}

// containerRun is one plan's containers and networks.
type containerRun struct {
	r     *Runner
	id    string
	plan  harness.Plan
	set   *pki.Set
	image string
	tools string // the firewall's image when a third-party tool stands in for it
	// ownGateways gives every gateway a container of its own even where
	// they could share one (sharedGateways): the compose export's.
	ownGateways bool
	cli         *testcontainers.DockerClient
	lan         *testcontainers.DockerNetwork
	inet        *testcontainers.DockerNetwork
	under       underlays
	slot        int // the underlay slot claimed for under
	// runSlot is the runner's slot the run holds (acquire); its networks
	// may be the ones the slot's previous run kept.
	runSlot int
	mu      sync.Mutex // guards nodes and order while servers start together
	nodes   map[string]*started
	order   []string
	seq     int // impairment controls sent
	// interceptor is the policy as translated for a third-party firewall.
	interceptor *interceptors.Config
	// field, if set, runs the field probe's gateways and the probe on the
	// laptop (RunFieldProbe) instead of the gateways and the client.
	field *fieldRun
	// fleet is a fleet's laptops (plan.Fleet), in order, in place of the
	// one laptop; fleetAddr their LAN addresses.
	fleet     []string
	fleetAddr map[string]netip.Addr
	// outs is each node's output directory (file name → content) as
	// readOutputs read it, guarded by mu.
	outs map[string]map[string][]byte
	// watch times the run's steps for the Debug log.
	watch *stopwatch
}

// stopwatch times a run's steps (laps) for the runner's Debug log: where a
// run's time goes, the engine's work or the runner's waits.
type stopwatch struct {
	mu    sync.Mutex
	start time.Time
	last  time.Time
	laps  []any // name, duration, ...
}

func newStopwatch() *stopwatch {
	now := time.Now()
	return &stopwatch{start: now, last: now}
}

// lap records the time since the previous lap as step name.
func (s *stopwatch) lap(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	s.laps = append(s.laps, name, now.Sub(s.last).Round(time.Millisecond))
	s.last = now
}

// attrs is every lap so far and the total, for a log record.
func (s *stopwatch) attrs() []any {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append(append([]any{}, s.laps...), "total", time.Since(s.start).Round(time.Millisecond))
}

// Run implements harness.Runner.
func (c *Runner) Run(ctx context.Context, p harness.Plan) (*harness.Observation, error) {
	p.Spec = p.Spec.WithDefaults()
	if err := p.Validate(); err != nil {
		return nil, err
	}
	if p.Spec.Firewall == nil {
		return nil, errors.New("containers: the topology needs a firewall (it is the laptop's route to the internet)")
	}
	if p.Fleet > 0 && len(p.Events) > 0 {
		return nil, fmt.Errorf("containers: a fleet of %d laptops with events: events act on the one laptop, and a fleet has none", p.Fleet)
	}
	run, end, err := c.newRun(ctx, p)
	if err != nil {
		return nil, err
	}
	defer end()
	watch := run.watch
	obs := &harness.Observation{Mode: c.Name(), Started: time.Now(), Roles: harness.RolesOf(p.Spec)}
	if err := run.start(ctx); err != nil {
		return nil, err
	}
	if err := run.exercise(ctx, obs); err != nil {
		return nil, err
	}
	if err := run.collect(ctx, obs); err != nil {
		return nil, err
	}
	watch.lap("collect")
	if c.Capture {
		if err := run.collectCapture(ctx, obs); err != nil {
			return nil, err
		}
		watch.lap("capture")
	}
	obs.Duration = time.Since(obs.Started)
	return obs, ctx.Err()
}

// newRun prepares a run of plan p: the images, a sweep of dead runs'
// leftovers, one of the runner's slots, the PKI and a Docker client. end
// tears the run down (unless the runner keeps it) and gives all of it back.
func (c *Runner) newRun(ctx context.Context, p harness.Plan) (run *containerRun, end func(), err error) {
	watch := newStopwatch()
	image, err := c.Image(ctx)
	if err != nil {
		return nil, nil, err
	}
	var tools string
	if p.Spec.Firewall.Kind.IsThirdParty() {
		if tools, err = c.ToolsImage(ctx); err != nil {
			return nil, nil, err
		}
	}
	c.sweep(ctx)
	slot, err := c.acquire(ctx)
	if err != nil {
		return nil, nil, err
	}
	set := c.PKI
	if set == nil {
		if set, err = pki.NewSet(pki.Config{}, p.Spec.Tenant); err != nil {
			c.release(slot)
			return nil, nil, err
		}
	}
	cli, err := testcontainers.NewDockerClientWithOpts(ctx)
	if err != nil {
		c.release(slot)
		return nil, nil, err
	}
	run = &containerRun{r: c, id: randomID(), plan: p, set: set, image: image, tools: tools, cli: cli, slot: -1, runSlot: slot, nodes: map[string]*started{}, watch: watch}
	watch.lap("prepare") // the images, the sweep, the wait for a slot
	end = func() {
		kept := false
		if !c.Keep {
			kept = run.teardown(context.WithoutCancel(ctx))
		}
		c.log().Debug("containers: run timing", append([]any{"run", run.id}, run.watch.attrs()...)...)
		if run.slot >= 0 && !kept {
			releaseUnderlay(run.slot)
		}
		cli.Close()
		c.release(slot)
	}
	return run, end, nil
}

// acquire waits for a free run slot.
func (c *Runner) acquire(ctx context.Context) (int, error) {
	c.slotsOnce.Do(func() {
		n := c.Parallel
		if n <= 0 {
			n = 4
		}
		n = min(n, MaxParallelRuns)
		c.slots = make(chan int, n)
		for k := range n {
			c.slots <- k
		}
	})
	select {
	case k := <-c.slots:
		return k, nil
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

func (c *Runner) release(k int) { c.slots <- k }

func (run *containerRun) labels() map[string]string {
	l := map[string]string{LabelRun: run.id, LabelRunner: run.r.ID(), LabelOwner: self().String()}
	if run.r.Keep {
		l[LabelKeep] = "true"
	}
	return l
}

// networks creates the run's two underlay networks on a free underlay
// slot: one no other run of this process holds and whose subnets overlap
// no network on the engine (other users' runs, leftovers, anything else).
// Another process may take the same slot between the look and the
// creation; the engine then refuses the subnet and the run moves on.
func (run *containerRun) networks(ctx context.Context) error {
	if n := run.r.keptNets(run.runSlot); n != nil {
		if run.netsExist(ctx, n) {
			run.slot, run.under, run.lan, run.inet = n.k, n.under, n.lan, n.inet
			if f := run.r.OnNetworks; f != nil {
				f(run.id, run.under.lan, run.under.inet)
			}
			return nil
		}
		// Removed behind the runner's back: made again.
		run.r.dropNets(run.runSlot)
		_ = removeNets(ctx, run.cli, n.lan, n.inet)
		releaseUnderlay(n.k)
	}
	tried := map[int]bool{}
	for {
		taken, err := slotsTaken(ctx, run.cli)
		if err != nil {
			return err
		}
		for k := range taken {
			tried[k] = true
		}
		k, ok := claimUnderlay(tried)
		if !ok {
			return fmt.Errorf("containers: every one of the %d underlay slots (198.18.10-%d.0/24 and 198.18.100-%d.0/24) is held by another run or overlaps a network on the Docker engine",
				MaxParallelRuns, 10+MaxParallelRuns-1, 100+MaxParallelRuns-1)
		}
		run.slot, run.under = k, underlaySlot(k)
		err = run.createNetworks(ctx)
		if err == nil {
			if f := run.r.OnNetworks; f != nil {
				f(run.id, run.under.lan, run.under.inet)
			}
			return nil
		}
		if !poolOverlaps(err) {
			return err
		}
		run.r.log().Info("containers: underlay taken meanwhile, moving on", "slot", k, "err", err)
		tried[k] = true
		releaseUnderlay(k)
		run.slot = -1
	}
}

// netsExist says whether both of a slot's kept networks are still on the
// engine.
func (run *containerRun) netsExist(ctx context.Context, n *underlayNets) bool {
	for _, nw := range []*testcontainers.DockerNetwork{n.lan, n.inet} {
		if _, err := run.cli.NetworkInspect(ctx, nw.ID, client.NetworkInspectOptions{}); err != nil {
			return false
		}
	}
	return true
}

// slotsTaken lists the underlay slots whose subnets overlap a network
// already on the engine.
func slotsTaken(ctx context.Context, cli *testcontainers.DockerClient) (map[int]bool, error) {
	ns, err := cli.NetworkList(ctx, client.NetworkListOptions{})
	if err != nil {
		return nil, fmt.Errorf("containers: list the engine's networks: %w", err)
	}
	var subnets []netip.Prefix
	for _, n := range ns.Items {
		for _, c := range n.IPAM.Config {
			if c.Subnet.IsValid() {
				subnets = append(subnets, c.Subnet)
			}
		}
	}
	return overlappingSlots(subnets), nil
}

// overlappingSlots is the slots whose subnets overlap any of subnets.
func overlappingSlots(subnets []netip.Prefix) map[int]bool {
	out := map[int]bool{}
	for k := range MaxParallelRuns {
		u := underlaySlot(k)
		for _, p := range subnets {
			if p.Overlaps(u.lan) || p.Overlaps(u.inet) {
				out[k] = true
			}
		}
	}
	return out
}

// createNetworks creates both underlays, or neither; both at once.
func (run *containerRun) createNetworks(ctx context.Context) error {
	create := func(p netip.Prefix, bridge netip.Addr) (*testcontainers.DockerNetwork, error) {
		nw, err := network.New(ctx, network.WithInternal(), network.WithLabels(run.labels()),
			network.WithIPAM(&mnet.IPAM{Config: []mnet.IPAMConfig{{Subnet: p, Gateway: bridge}}}))
		if err != nil {
			return nil, err
		}
		return nw, nil
	}
	var (
		wg              sync.WaitGroup
		lanErr, inetErr error
	)
	wg.Add(2)
	go func() {
		defer wg.Done()
		run.lan, lanErr = create(run.under.lan, run.under.lanBridge)
	}()
	go func() {
		defer wg.Done()
		run.inet, inetErr = create(run.under.inet, run.under.inetBridge)
	}()
	wg.Wait()
	if lanErr == nil && inetErr == nil {
		return nil
	}
	for _, nw := range []**testcontainers.DockerNetwork{&run.lan, &run.inet} {
		if *nw != nil {
			_ = (*nw).Remove(context.WithoutCancel(ctx))
		}
		*nw = nil
	}
	if lanErr != nil {
		return fmt.Errorf("containers: lan network %s: %w", run.under.lan, lanErr)
	}
	return fmt.Errorf("containers: internet network %s: %w", run.under.inet, inetErr)
}

func (run *containerRun) start(ctx context.Context) error {
	if err := run.networks(ctx); err != nil {
		return err
	}
	run.watch.lap("networks")
	cfgs, err := run.configs()
	if err != nil {
		return err
	}
	// Servers (origins, gateways, the firewall) start together; clients
	// and probes are started by exercise.
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	// The laptop's container starts meanwhile too, its client waiting for
	// exercise's SIGCONT (node.Client.WaitStart; with events, exercise
	// also tells it when they are applied): a container's start costs the
	// engine a quarter to half a second, then off the critical path.
	// Other clients (a fleet's, a field probe) are only created here, and
	// started by exercise once the servers are ready.
	for _, nc := range cfgs {
		if c := nc.Client; c != nil && !c.Fleet {
			c.WaitStart, c.EventsSignalled = true, len(run.plan.Events) > 0
		}
	}
	for _, nc := range cfgs {
		if nc.Role == node.RoleProbe {
			continue
		}
		start := nc.Role != node.RoleClient || (nc.Client != nil && nc.Client.WaitStart)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := run.newNode(ctx, nc, start); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	run.watch.lap("servers")
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	for _, nc := range cfgs {
		if nc.Role == node.RoleProbe {
			run.nodes[nc.Name] = &started{name: nc.Name, cfg: nc}
		}
	}
	return nil
}

// overlayAddrs is each node's address on the two segments.
func (run *containerRun) overlayAddrs(nc node.Config) (lan, inet netip.Addr) {
	s := run.plan.Spec
	switch nc.Role {
	case node.RoleFirewall:
		return s.Firewall.Inside, s.Firewall.Outside
	case node.RoleClient:
		if a, ok := run.fleetAddr[nc.Name]; ok {
			return a, netip.Addr{}
		}
		return s.Laptop, netip.Addr{}
	case node.RoleProbe:
		for _, h := range s.ExtraHosts {
			if h.Name == nc.Name {
				return h.Addr, netip.Addr{}
			}
		}
	case node.RoleOrigin:
		return netip.Addr{}, originsOnNet
	case node.RoleGateway:
		if nc.Name == sharedGatewaysNode {
			return netip.Addr{}, firstGatewayOnNet
		}
		for i, g := range s.Gateways {
			if g.Name == nc.Name {
				return netip.Addr{}, nthAddr(firstGatewayOnNet, i)
			}
		}
	}
	return netip.Addr{}, netip.Addr{}
}

// attach is which Docker networks a node joins, at which underlay address.
func (run *containerRun) attach(nc node.Config) map[*testcontainers.DockerNetwork]netip.Addr {
	lan, inet := run.overlayAddrs(nc)
	out := map[*testcontainers.DockerNetwork]netip.Addr{}
	if lan.IsValid() {
		out[run.lan] = underlayOf(lan, run.under.lan)
	}
	if inet.IsValid() {
		out[run.inet] = underlayOf(inet, run.under.inet)
	}
	return out
}

// overlays lists a node's VXLAN memberships, flooding to every other member.
func (run *containerRun) overlays(nc node.Config, all []node.Config) []node.Overlay {
	lan, inet := run.overlayAddrs(nc)
	var out []node.Overlay
	member := func(name string, vni uint32, addr netip.Addr, net netip.Prefix, under netip.Prefix, pick func(node.Config) netip.Addr) {
		if !addr.IsValid() {
			return
		}
		o := node.Overlay{Name: name, VNI: vni, Addr: netip.PrefixFrom(addr, net.Bits()), Underlay: underlayOf(addr, under)}
		_, fleetLaptop := run.fleetAddr[nc.Name]
		for _, other := range all {
			if other.Name == nc.Name {
				continue
			}
			if fleetLaptop && other.Role != node.RoleFirewall {
				// A fleet's laptop talks to its gateway through the
				// firewall only: flooding its broadcasts to every other
				// laptop would cost N² copies.
				continue
			}
			if a := pick(other); a.IsValid() {
				o.Peers = append(o.Peers, underlayOf(a, under))
			}
		}
		out = append(out, o)
	}
	member(lanOverlay, lanVNI, lan, run.plan.Spec.LAN, run.under.lan, func(o node.Config) netip.Addr { a, _ := run.overlayAddrs(o); return a })
	member(inetOverlay, inetVNI, inet, internetNet, run.under.inet, func(o node.Config) netip.Addr { _, a := run.overlayAddrs(o); return a })
	return out
}

func nthAddr(a netip.Addr, n int) netip.Addr {
	for ; n > 0; n-- {
		a = a.Next()
	}
	return a
}

// startNode creates a node's container, starts it and waits until the
// node says it is ready.
func (run *containerRun) startNode(ctx context.Context, nc node.Config) error {
	return run.newNode(ctx, nc, true)
}

// startCreated starts a node newNode created without starting, and waits
// until it says it is ready.
func (run *containerRun) startCreated(ctx context.Context, name string) error {
	run.mu.Lock()
	n := run.nodes[name]
	run.mu.Unlock()
	if n == nil || n.c == nil {
		return fmt.Errorf("containers: no node %q created", name)
	}
	return run.startContainer(ctx, n)
}

// signal sends a node's container signal sig (a name as docker kill
// takes it) without waiting for anything.
func (run *containerRun) signal(ctx context.Context, n *started, sig string) error {
	if _, err := run.cli.ContainerKill(ctx, n.c.GetContainerID(), client.ContainerKillOptions{Signal: sig}); err != nil {
		return fmt.Errorf("containers: signal %s to %s %s: %w", sig, n.cfg.Role, n.name, err)
	}
	return nil
}

// startContainer starts a created node's container and waits until the
// node says it is ready.
func (run *containerRun) startContainer(ctx context.Context, n *started) error {
	t0 := time.Now()
	if err := n.c.Start(ctx); err != nil {
		return fmt.Errorf("containers: start %s %s: %w\n%s", n.cfg.Role, n.name, err, containerLogs(ctx, n.c))
	}
	t1 := time.Now()
	err := run.waitReady(ctx, n)
	run.r.log().Debug("containers: node started", "run", run.id, "node", n.name,
		"start", t1.Sub(t0).Round(time.Millisecond), "ready", time.Since(t1).Round(time.Millisecond))
	return err
}

// newNode creates a node's container and, if start is set, starts it and
// waits until the node says it is ready.
func (run *containerRun) newNode(ctx context.Context, nc node.Config, start bool) error {
	cfgJSON, err := json.Marshal(nc)
	if err != nil {
		return err
	}
	// The configuration goes in the container's environment: a file
	// copied in before the start costs the engine a mount of the
	// container's root filesystem (on fuse-overlayfs, about as much as the
	// start). The firewall starts with the policy its configuration holds;
	// node.PolicyPath is written only by a policy event.
	cmd := []string{"serve", nc.Role, "--config-env"}
	env := map[string]string{}
	var files []testcontainers.ContainerFile
	if len(cfgJSON) <= node.MaxConfigEnv {
		env[node.ConfigEnv] = string(cfgJSON)
	} else {
		cmd = cmd[:2]
		files = append(files, testcontainers.ContainerFile{Reader: bytes.NewReader(cfgJSON), ContainerFilePath: node.ConfigPath, FileMode: 0o600})
		cmd = append(cmd, "--config", node.ConfigPath)
	}
	// testcontainers attaches extra networks without addresses, so only the
	// first goes through it; the others are connected, with their static
	// address, before the container starts.
	nets := run.attach(nc)
	var first *testcontainers.DockerNetwork
	for _, nw := range []*testcontainers.DockerNetwork{run.lan, run.inet} {
		if _, ok := nets[nw]; ok && first == nil {
			first = nw
		}
	}
	opts := []testcontainers.ContainerCustomizer{
		testcontainers.WithCmd(cmd...),
		testcontainers.WithEnv(env),
		testcontainers.WithLabels(run.labels()),
		testcontainers.WithName(fmt.Sprintf("pinwall-%s-%s", run.id, sanitize(nc.Name))),
		testcontainers.WithFiles(files...),
		testcontainers.WithHostConfigModifier(func(hc *container.HostConfig) {
			hc.CapAdd = []string{"NET_ADMIN"}
			if nc.Role == node.RoleFirewall {
				hc.Sysctls = map[string]string{"net.ipv4.ip_forward": "1"}
			}
		}),
		network.WithNetwork([]string{sanitize(nc.Name)}, first),
		testcontainers.WithEndpointSettingsModifier(func(m map[string]*mnet.EndpointSettings) {
			if es, ok := m[first.Name]; ok {
				es.IPAMConfig = &mnet.EndpointIPAMConfig{IPv4Address: nets[first]}
			}
		}),
		testcontainers.WithAdditionalLifecycleHooks(testcontainers.ContainerLifecycleHooks{
			PreStarts: []testcontainers.ContainerHook{func(ctx context.Context, c testcontainers.Container) error {
				for nw, addr := range nets {
					if nw == first {
						continue
					}
					_, err := run.cli.NetworkConnect(ctx, nw.ID, client.NetworkConnectOptions{
						Container:      c.GetContainerID(),
						EndpointConfig: &mnet.EndpointSettings{Aliases: []string{sanitize(nc.Name)}, IPAMConfig: &mnet.EndpointIPAMConfig{IPv4Address: addr}},
					})
					if err != nil {
						return fmt.Errorf("connect %s to %s: %w", nc.Name, nw.Name, err)
					}
				}
				return nil
			}},
		}),
		testcontainers.CustomizeRequestOption(func(req *testcontainers.GenericContainerRequest) error {
			req.Started = false // startCreated starts it, timed apart
			return nil
		}),
	}
	image := run.image
	if nc.Role == node.RoleFirewall && nc.Firewall.Interceptor != nil {
		image = run.tools
	}
	t0 := time.Now()
	c, err := testcontainers.Run(ctx, image, opts...)
	run.r.log().Debug("containers: node created", "run", run.id, "node", nc.Name, "took", time.Since(t0).Round(time.Millisecond))
	n := &started{name: nc.Name, cfg: nc, c: c}
	run.mu.Lock()
	run.nodes[nc.Name] = n
	run.order = append(run.order, nc.Name)
	run.mu.Unlock()
	if err != nil {
		logs := ""
		if c != nil {
			logs = containerLogs(ctx, c)
		}
		return fmt.Errorf("containers: start %s %s: %w\n%s", nc.Role, nc.Name, err, logs)
	}
	if start {
		return run.startContainer(ctx, n)
	}
	return nil
}

// waitReady waits until a started node says it is ready.
func (run *containerRun) waitReady(ctx context.Context, n *started) error {
	if err := run.waitLog(ctx, n.c, node.MarkerReady, startupTimeout(n.cfg)); err != nil {
		return fmt.Errorf("containers: start %s %s: %w\n%s", n.cfg.Role, n.name, err, containerLogs(ctx, n.c))
	}
	return nil
}

// startupTimeout bounds how long a node may take to say it is ready: a
// third-party interceptor starts slower (mitmproxy loads Python, squid
// its helpers).
func startupTimeout(nc node.Config) time.Duration {
	if nc.Firewall != nil && nc.Firewall.Interceptor != nil {
		return node.ToolReadyTimeout + 30*time.Second
	}
	return 60 * time.Second
}

func sanitize(s string) string {
	return strings.NewReplacer(".", "-", "_", "-").Replace(s)
}

func containerLogs(ctx context.Context, c testcontainers.Container) string {
	rc, err := c.Logs(ctx)
	if err != nil {
		return ""
	}
	defer rc.Close()
	b, _ := io.ReadAll(io.LimitReader(rc, 64<<10))
	return string(b)
}

// waitLog follows a container's output until it holds marker.
func (run *containerRun) waitLog(ctx context.Context, c testcontainers.Container, marker string, timeout time.Duration) error {
	err := run.waitLogFunc(ctx, c, timeout, func(logs string) bool { return strings.Contains(logs, marker) })
	if errors.Is(err, errNotYet) {
		return fmt.Errorf("containers: no %q: %w", marker, err)
	}
	return err
}

var errNotYet = errors.New("containers: the expected output did not come")

// waitLogFunc follows a container's output (one streaming request; the
// engine is what bounds a container run, so it is not asked again and
// again) until done says so of all the output so far, the output ends
// (the container stopped) or timeout passes.
func (run *containerRun) waitLogFunc(ctx context.Context, c testcontainers.Container, timeout time.Duration, done func(logs string) bool) error {
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	rc, err := run.cli.ContainerLogs(wctx, c.GetContainerID(), client.ContainerLogsOptions{ShowStdout: true, ShowStderr: true, Follow: true})
	if err != nil {
		return fmt.Errorf("containers: follow %s's output: %w", c.GetContainerID(), err)
	}
	pr, pw := io.Pipe()
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		_, err := stdcopy.StdCopy(pw, pw, rc)
		pw.CloseWithError(err)
	}()
	defer func() {
		rc.Close()
		pr.Close()
		<-copied
	}()
	var out strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := pr.Read(buf)
		out.Write(buf[:n])
		if n > 0 && done(out.String()) {
			return nil
		}
		if err != nil {
			switch {
			case ctx.Err() != nil:
				return ctx.Err()
			case wctx.Err() != nil:
				return fmt.Errorf("%w after %v", errNotYet, timeout)
			case errors.Is(err, io.EOF):
				return fmt.Errorf("%w: the container's output ended", errNotYet)
			}
			return fmt.Errorf("containers: follow %s's output: %w", c.GetContainerID(), err)
		}
	}
}

// exercise starts the laptop, runs the events beside its workload, then
// the probes.
func (run *containerRun) exercise(ctx context.Context, obs *harness.Observation) error {
	if len(run.fleet) > 0 {
		return run.exerciseFleet(ctx, obs)
	}
	laptop := run.nodes["laptop"]
	if laptop != nil && laptop.cfg.Client != nil && laptop.cfg.Client.WaitStart {
		if err := run.signal(ctx, laptop, "CONT"); err != nil {
			return err
		}
	} else if err := run.startCreated(ctx, "laptop"); err != nil {
		return err
	}
	run.watch.lap("laptop")
	if err := run.waitLog(ctx, laptop.c, node.MarkerTunnelSettled, 2*time.Minute); err != nil {
		return err
	}
	run.watch.lap("settle")
	evCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		obs.Events = harness.RunEvents(evCtx, run.plan.Events, run.apply, run.r.log())
		if laptop.cfg.Client != nil && laptop.cfg.Client.EventsSignalled && len(obs.Events) == len(run.plan.Events) {
			// The laptop's hold may end now (HoldForReconnection); it
			// may also have finished already, so a failure is not one.
			if err := run.signal(evCtx, laptop, "WINCH"); err != nil {
				run.r.log().Debug("containers: events applied, laptop not told", "run", run.id, "err", err)
			}
		}
	}()
	err := run.waitLog(ctx, laptop.c, node.MarkerDone, 10*time.Minute)
	stop()
	wg.Wait()
	run.watch.lap("workload")
	if err != nil {
		return fmt.Errorf("%w\n%s", err, containerLogs(ctx, laptop.c))
	}
	for _, h := range run.plan.Spec.ExtraHosts {
		n := run.nodes[h.Name]
		if len(n.cfg.Probes) == 0 {
			continue
		}
		if err := run.startNode(ctx, n.cfg); err != nil {
			return err
		}
		if err := run.waitLog(ctx, run.nodes[h.Name].c, node.MarkerDone, time.Minute); err != nil {
			return err
		}
		run.watch.lap("probes " + h.Name)
	}
	return nil
}

// exerciseFleet starts every laptop of the fleet at once and waits until
// each has reported; obs gets the fleet's outcome.
func (run *containerRun) exerciseFleet(ctx context.Context, obs *harness.Observation) error {
	start := time.Now()
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	members := make([]harness.FleetMember, len(run.fleet))
	for i, name := range run.fleet {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := run.startCreated(ctx, name)
			if err == nil {
				err = run.waitLog(ctx, run.nodes[name].c, node.MarkerDone, run.plan.UpWait()+time.Minute)
			}
			var rep node.ClientReport
			if err == nil {
				err = run.readJSON(ctx, name, "client.json", &rep)
			}
			if err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("%s: %w", name, err))
				mu.Unlock()
				return
			}
			m := harness.FleetMember{State: rep.Tunnel, UpAt: rep.SettledAt, History: rep.History}
			if rep.ErrorText != "" {
				m.Err = failure.New(rep.Leg, rep.Cause, "tunnel", name, errors.New(rep.ErrorText))
			}
			members[i] = m
		}()
	}
	wg.Wait()
	// Every laptop has reported and holds its tunnel: all of them end
	// theirs now, before the firewall stops and logs their sessions.
	for _, name := range run.fleet {
		if n := run.nodes[name]; n != nil && n.c != nil {
			wg.Add(1)
			go func() {
				defer wg.Done()
				grace := 5 * time.Second
				_ = n.c.Stop(ctx, &grace)
			}()
		}
	}
	wg.Wait()
	run.watch.lap("fleet")
	if err := errors.Join(errs...); err != nil {
		return err
	}
	harness.SummarizeFleet(obs, start, members)
	obs.Roles.Fleet = make([]netip.Addr, len(run.fleet))
	for i, name := range run.fleet {
		obs.Roles.Fleet[i] = run.fleetAddr[name]
	}
	if obs.ClientError != nil {
		obs.ClientErrorText = obs.ClientError.Error()
		obs.ClientLeg, obs.ClientCause = failure.LegOf(obs.ClientError), failure.CauseOf(obs.ClientError)
	}
	return nil
}

// Apply carries out an event on the containers.
func (run *containerRun) apply(ctx context.Context, e harness.Event) error {
	switch e.Do {
	case harness.EventGatewayDown:
		name := e.Target
		if name == "" {
			name = run.plan.Spec.Client.Gateways[0]
		}
		n := run.nodes[name]
		if n == nil || n.c == nil {
			return fmt.Errorf("no gateway %q", name)
		}
		zero := time.Duration(0)
		return n.c.Stop(ctx, &zero) // docker kill: the gateway's host vanishes
	case harness.EventFirewallPause:
		id := run.nodes["firewall"].c.GetContainerID()
		if _, err := run.cli.ContainerPause(ctx, id, client.ContainerPauseOptions{}); err != nil {
			return err
		}
		select {
		case <-time.After(e.Duration):
		case <-ctx.Done():
		}
		_, err := run.cli.ContainerUnpause(context.WithoutCancel(ctx), id, client.ContainerUnpauseOptions{})
		return err
	case harness.EventPolicy:
		fw := run.nodes["firewall"]
		if err := fw.c.CopyToContainer(ctx, []byte(e.Policy), node.PolicyPath, 0o644); err != nil {
			return err
		}
		return run.signal(ctx, fw, "HUP")
	case harness.EventNetworkChange:
		return run.signal(ctx, run.nodes["laptop"], "USR1")
	case harness.EventImpair:
		if e.Impair == nil {
			return errors.New("an impair event needs an impair section")
		}
		if err := run.impair(ctx, *e.Impair); err != nil {
			return err
		}
		if e.Duration > 0 {
			select {
			case <-time.After(e.Duration):
			case <-ctx.Done():
			}
			return run.impair(context.WithoutCancel(ctx), fault.Impairment{})
		}
		return nil
	case harness.EventFirewallRestart:
		return run.restartFirewall(ctx)
	}
	return fmt.Errorf("unknown event %q", e.Do)
}

// laptopNetems are the netem qdiscs that impair the laptop's datagrams
// in Netem mode: its own egress on the LAN overlay, and the firewall's
// egress on it towards the laptop.
func (run *containerRun) laptopNetems(im fault.Impairment) (laptop, firewall []fault.Netem) {
	return []fault.Netem{{Iface: lanOverlay, Impairment: im}},
		[]fault.Netem{{Iface: lanOverlay, Impairment: im, Dst: netip.PrefixFrom(run.plan.Spec.Laptop, 32)}}
}

// impair replaces the impairment of the laptop's datagrams: on its
// sockets, or (Netem) as qdiscs on the laptop and the firewall. Each node
// gets a control file and SIGUSR2, and answers with a marker.
func (run *containerRun) impair(ctx context.Context, im fault.Impairment) error {
	if err := im.Validate(); err != nil {
		return err
	}
	run.seq++
	controls := map[string]node.ImpairControl{"laptop": {Seq: run.seq, Socket: &im}}
	if run.r.Netem {
		l, f := run.laptopNetems(im)
		controls = map[string]node.ImpairControl{"laptop": {Seq: run.seq, Netem: l}, "firewall": {Seq: run.seq, Netem: f}}
	}
	for name, ic := range controls {
		n := run.nodes[name]
		if n == nil || n.c == nil {
			return fmt.Errorf("containers: impair: no %s container", name)
		}
		b, err := json.Marshal(ic)
		if err != nil {
			return err
		}
		if err := n.c.CopyToContainer(ctx, b, node.ImpairPath, 0o644); err != nil {
			return fmt.Errorf("containers: impair %s: %w", name, err)
		}
		if err := run.signal(ctx, n, "USR2"); err != nil {
			return fmt.Errorf("containers: impair: %w", err)
		}
	}
	for name := range controls {
		n := run.nodes[name]
		ok, failed := node.ImpairedMarker(run.seq, nil), fmt.Sprintf("%s %d failed: ", node.MarkerImpaired, run.seq)
		var answer string
		err := run.waitLogFunc(ctx, n.c, 30*time.Second, func(logs string) bool {
			if strings.Contains(logs, ok) {
				return true
			}
			if i := strings.Index(logs, failed); i >= 0 {
				answer, _, _ = strings.Cut(logs[i+len(failed):], "\n")
				return true
			}
			return false
		})
		if err != nil {
			return fmt.Errorf("containers: impair %s: %w", name, err)
		}
		if answer != "" {
			return fmt.Errorf("containers: impair %s: %s", name, answer)
		}
	}
	return nil
}

// restartFirewall restarts the firewall container: SIGTERM (the firewall
// ends and logs every session, as in process), then a new process in a
// new network namespace — nftables rules, conntrack entries, the UDP
// flows' state all gone — set up again from its node configuration with
// the policy in force (node.PolicyPath). It returns once the firewall
// says it is ready again.
func (run *containerRun) restartFirewall(ctx context.Context) error {
	fw := run.nodes["firewall"]
	if fw == nil || fw.c == nil {
		return errors.New("containers: no firewall container")
	}
	before := strings.Count(containerLogs(ctx, fw.c), node.MarkerReady)
	timeout := 10
	if _, err := run.cli.ContainerRestart(ctx, fw.c.GetContainerID(), client.ContainerRestartOptions{Timeout: &timeout}); err != nil {
		return fmt.Errorf("containers: restart the firewall: %w", err)
	}
	err := run.waitLogFunc(ctx, fw.c, time.Minute, func(logs string) bool { return strings.Count(logs, node.MarkerReady) > before })
	if err != nil {
		return fmt.Errorf("containers: the restarted firewall: %w\n%s", err, containerLogs(ctx, fw.c))
	}
	return nil
}

// collect stops the servers (the firewall gracefully, so its UDP flows are
// logged; with Capture then the other capturing nodes, so their captures
// are complete) and reads every log out of the containers: one archive of
// each node's output directory, all nodes at once.
func (run *containerRun) collect(ctx context.Context, obs *harness.Observation) error {
	grace := 10 * time.Second
	if run.interceptor != nil {
		grace = 25 * time.Second // the node stops the tool (up to 10 s) first
	}
	if fw := run.nodes["firewall"]; fw != nil && fw.c != nil {
		_ = fw.c.Stop(ctx, &grace)
		run.watch.lap("stop firewall")
	}
	if err := run.readOutputs(ctx); err != nil {
		return err
	}
	run.watch.lap("read outputs")
	var rep node.ClientReport
	if len(run.fleet) == 0 {
		if err := run.readJSON(ctx, "laptop", "client.json", &rep); err != nil {
			return err
		}
	}
	if len(run.fleet) == 0 {
		obs.Tunnel, obs.History, obs.Flows, obs.Summary, obs.Attempts = rep.Tunnel, rep.History, rep.Flows, rep.Summary, rep.Attempts
		obs.ClientErrorText, obs.ClientLeg, obs.ClientCause, obs.UpAfter = rep.ErrorText, rep.Leg, rep.Cause, rep.UpAfter
		obs.LaptopDatagrams = rep.Datagrams
		obs.FirstUp = harness.FirstUp(obs.Tunnel, obs.History)
		obs.Recovery = harness.Recovery(obs.History)
		harness.ExplainLost(obs.Flows, obs.History)
	}
	if run.interceptor != nil {
		if err := run.collectInterceptor(ctx, obs); err != nil {
			return err
		}
	} else {
		recs, err := run.read(ctx, "firewall", "firewall.jsonl")
		if err != nil {
			return err
		}
		if obs.Firewall, err = fwlog.ReadJSONL(bytes.NewReader(recs)); err != nil {
			return err
		}
	}
	var state struct {
		FQDN       map[string]policy.FQDNState `json:"fqdn_objects"`
		Exclusions json.RawMessage             `json:"exclusions"`
	}
	if err := run.readJSON(ctx, "firewall", "firewall-state.json", &state); err == nil {
		obs.FQDN = state.FQDN
		if len(state.Exclusions) > 0 {
			obs.Exclusions = state.Exclusions
		}
	}
	for _, g := range run.plan.Spec.Gateways {
		nodeName, file := g.Name, "gateway.jsonl"
		if run.sharedGateways() {
			nodeName, file = sharedGatewaysNode, node.GatewayLog(g.Name)
		}
		b, err := run.read(ctx, nodeName, file)
		if err != nil {
			return err
		}
		evs, err := gateway.ReadEvents(bytes.NewReader(b))
		if err != nil {
			return err
		}
		obs.Gateway = append(obs.Gateway, evs...)
	}
	for _, h := range run.plan.Spec.ExtraHosts {
		var pr []harness.ProbeResult
		if n := run.nodes[h.Name]; n != nil && n.c != nil {
			if err := run.readJSON(ctx, h.Name, "probes.json", &pr); err == nil {
				obs.Probes = append(obs.Probes, pr...)
			}
		}
	}
	return nil
}

// maxToolLog bounds each log of a third-party tool kept in the evidence.
const maxToolLog = 4 << 20

// collectInterceptor reads what a third-party firewall left: its report
// (version, counters, whether it died), its logs and its configuration.
func (run *containerRun) collectInterceptor(ctx context.Context, obs *harness.Observation) error {
	ic := run.interceptor
	ev := &harness.InterceptorEvidence{Kind: ic.Kind, Translation: ic.Describe()}
	var rep node.InterceptorReport
	if err := run.readJSON(ctx, "firewall", node.InterceptorReportFile, &rep); err != nil {
		return err
	}
	ev.VersionText, ev.Exited = rep.Version, rep.Exited
	ev.Version, _, _ = strings.Cut(strings.TrimSpace(rep.Version), "\n")
	for _, c := range rep.Counters {
		ev.Counters = append(ev.Counters, harness.RuleCount{Chain: c.Chain, Rule: c.Comment, Packets: c.Packets, Bytes: c.Bytes})
	}
	for _, f := range ic.Files {
		ev.Files = append(ev.Files, harness.NamedText{Name: path.Base(f.Path), What: "generated " + f.Path, Text: f.Content})
	}
	logs := append([]interceptors.Log{{Name: string(ic.Kind) + "-setup.log", Path: node.OutDir + "/" + string(ic.Kind) + "-setup.log", What: "the setup commands pinwall ran before the tool, with their output"}}, ic.Logs...)
	for _, l := range logs {
		var b []byte
		var err error
		if path.Dir(l.Path) == node.OutDir {
			b, err = run.read(ctx, "firewall", path.Base(l.Path))
		} else {
			b, err = run.readPath(ctx, "firewall", l.Path)
		}
		if err != nil {
			ev.Logs = append(ev.Logs, harness.NamedText{Name: l.Name, What: l.What, Text: "(not written: " + err.Error() + ")"})
			continue
		}
		nt := harness.NamedText{Name: l.Name, What: l.What, Text: string(b)}
		if len(b) > maxToolLog {
			nt.Text, nt.Truncated = string(b[:maxToolLog]), int64(len(b)-maxToolLog)
		}
		ev.Logs = append(ev.Logs, nt)
	}
	obs.Interceptor = ev
	obs.Firewall = []fwlog.Record{}
	return nil
}

// read is a file of a node's output directory: as readOutputs read it,
// else copied out of the container now.
func (run *containerRun) read(ctx context.Context, nodeName, file string) ([]byte, error) {
	run.mu.Lock()
	files, ok := run.outs[nodeName]
	run.mu.Unlock()
	if !ok {
		return run.readPath(ctx, nodeName, node.OutDir+"/"+file)
	}
	b, ok := files[file]
	if !ok {
		n := run.nodes[nodeName]
		return nil, fmt.Errorf("containers: %s wrote no %s/%s\n%s", nodeName, node.OutDir, file, containerLogs(ctx, n.c))
	}
	return b, nil
}

// readOutputs reads the output directory of every node collect (and, with
// Capture, collectCapture) reads from: one archive per node, all at once,
// a Docker API round trip each rather than one per file. With Capture, a
// capturing node still running is stopped first (SIGTERM: it flushes its
// capture).
func (run *containerRun) readOutputs(ctx context.Context) error {
	var names []string
	for _, name := range run.order {
		n := run.nodes[name]
		if n == nil || n.c == nil {
			continue
		}
		switch {
		case run.r.Capture, n.cfg.Role == node.RoleFirewall, n.cfg.Role == node.RoleGateway, n.cfg.Role == node.RoleProbe,
			n.cfg.Role == node.RoleClient && len(run.fleet) == 0:
			names = append(names, name)
		}
	}
	outs := make([]map[string][]byte, len(names))
	errs := make([]error, len(names))
	var wg sync.WaitGroup
	for i, name := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if n := run.nodes[name]; run.r.Capture && capturing(n.cfg) && n.cfg.Role != node.RoleFirewall {
				grace := 10 * time.Second
				_ = n.c.Stop(ctx, &grace)
			}
			outs[i], errs[i] = run.readOut(ctx, name)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	run.mu.Lock()
	defer run.mu.Unlock()
	run.outs = map[string]map[string][]byte{}
	for i, name := range names {
		run.outs[name] = outs[i]
	}
	return nil
}

func (run *containerRun) readPath(ctx context.Context, nodeName, file string) ([]byte, error) {
	n := run.nodes[nodeName]
	if n == nil || n.c == nil {
		return nil, fmt.Errorf("containers: no node %q", nodeName)
	}
	rc, err := n.c.CopyFileFromContainer(ctx, file)
	if err != nil {
		return nil, fmt.Errorf("containers: read %s from %s: %w\n%s", file, nodeName, err, containerLogs(ctx, n.c))
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

func (run *containerRun) readJSON(ctx context.Context, nodeName, file string, v any) error {
	b, err := run.read(ctx, nodeName, file)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// teardown removes every container of the run. A container still running
// is killed by its removal (one request: collect has read what the run
// needs, and nothing a node writes on SIGTERM is read after). The run's
// networks are kept for its slot's next run (kept reports it) when every
// container is gone and the runner keeps networks; otherwise they are
// removed.
func (run *containerRun) teardown(ctx context.Context) (kept bool) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		dirty bool // a container may be left on the networks
	)
	// Every container labelled with the run, not only those it knows of (a
	// creation that failed half-way may have left one on the networks).
	ids := map[string]string{}
	for _, name := range run.order {
		if n := run.nodes[name]; n != nil && n.c != nil {
			ids[n.c.GetContainerID()] = name
		}
	}
	list, err := run.cli.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: make(client.Filters).Add("label", LabelRun+"="+run.id)})
	if err != nil {
		dirty = true
	}
	for _, c := range list.Items {
		if _, ok := ids[c.ID]; !ok {
			ids[c.ID] = c.ID
			if len(c.Names) > 0 {
				ids[c.ID] = strings.TrimPrefix(c.Names[0], "/")
			}
		}
	}
	for id, name := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Stopped (killed at once) before it is removed: a forced
			// removal of a running container alone left the engine
			// (Docker 20.10) counting an endpoint of it on a network
			// that then could not be removed ("has active endpoints",
			// no container attached), after a fleet's laptops were
			// removed at once. The stop returns once the engine has
			// released the container's network.
			zero := 0
			_, _ = run.cli.ContainerStop(ctx, id, client.ContainerStopOptions{Timeout: &zero})
			_, err := run.cli.ContainerRemove(ctx, id, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true})
			if err != nil && !cerrdefs.IsNotFound(err) {
				run.r.log().Warn("containers: remove a container", "run", run.id, "node", name, "err", err)
				mu.Lock()
				dirty = true
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	run.watch.lap("remove containers")
	if run.lan == nil && run.inet == nil {
		return false
	}
	if !dirty && run.r.keepNets(run.runSlot, &underlayNets{k: run.slot, under: run.under, lan: run.lan, inet: run.inet}) {
		return true
	}
	run.r.dropNets(run.runSlot)
	if err := run.r.sortStale(removeNets(ctx, run.cli, run.lan, run.inet)); err != nil {
		run.r.log().Warn("containers: remove the run's networks", "run", run.id, "err", err)
	}
	run.watch.lap("remove networks")
	return false
}

// sharedGatewaysNode names the node that runs every gateway of a run
// whose plan has no event acting on a gateway (sharedGateways).
const sharedGatewaysNode = "gateways"

// sharedGateways says whether the run's gateways share one node: a
// container each costs the engine (its start runs dockerd's network
// hook, about as much CPU as the rest of the start, docs/fleet.md) and
// only a gateway-down event needs a gateway's container of its own, to
// kill it. Each gateway keeps its addresses, its sockets and its log; the
// field probe's gateway runs alone.
func (run *containerRun) sharedGateways() bool {
	if run.ownGateways || run.field != nil || len(run.plan.Spec.Gateways) < 2 {
		return false
	}
	for _, e := range run.plan.Events {
		if e.Do == harness.EventGatewayDown {
			return false
		}
	}
	return true
}

// gatewayNodes are the gateways' nodes (a node each, or all on one node
// when no event acts on one of them: sharedGateways) and the routes to
// their addresses.
func (run *containerRun) gatewayNodes(zone []resolve.Record, gwPair node.PEMPair, originRoutes []node.Route) (out []node.Config, gwRoutes []node.Route) {
	s, set := run.plan.Spec, run.set
	gn := node.Gateway{Cert: gwPair, ClientCA: string(set.Tenant.CertPEM()), AllowAnonymous: s.Gateway.AllowAnonymous, MaxStreams: s.Gateway.MaxStreams,
		Keepalive: s.Gateway.Keepalive}
	if run.field != nil {
		gn.FieldControlName = run.field.controlName(s)
	}
	share := run.sharedGateways()
	sharedGW := gn
	shared := node.Config{Role: node.RoleGateway, Name: sharedGatewaysNode, Tenant: s.Tenant, Zone: zone,
		Net: node.Net{Routes: originRoutes}, Gateway: &sharedGW}
	for i, g := range s.Gateways {
		via := nthAddr(firstGatewayOnNet, i)
		if share {
			via = firstGatewayOnNet
		}
		var addrs []netip.Prefix
		for _, a := range g.Addrs() {
			addrs = append(addrs, netip.PrefixFrom(a, 32))
			gwRoutes = append(gwRoutes, node.Route{Dst: netip.PrefixFrom(a, 32), Via: via})
		}
		if share {
			shared.Net.Addrs = append(shared.Net.Addrs, addrs...)
			shared.Gateway.Hosts = append(shared.Gateway.Hosts, node.GatewayHost{Name: g.Name, Addrs: g.Addrs()})
			continue
		}
		own := gn
		out = append(out, node.Config{Role: node.RoleGateway, Name: g.Name, Tenant: s.Tenant, Zone: zone,
			Net: node.Net{Addrs: addrs, Routes: originRoutes}, Gateway: &own})
	}
	if share {
		out = append(out, shared)
	}
	return out, gwRoutes
}

// configs writes every node's configuration from the plan.
func (run *containerRun) configs() ([]node.Config, error) {
	s := run.plan.Spec
	set := run.set
	var zone []resolve.Record
	for _, g := range s.Gateways {
		zone = append(zone, resolve.Record{Name: g.Name, Addrs: g.Addrs(), Answer: g.Answer, Rotate: g.Rotate, TTL: g.TTL})
	}
	for _, o := range s.Origins {
		zone = append(zone, resolve.Record{Name: o.Name, Addrs: []netip.Addr{o.Addr}})
	}
	var names []string
	for _, g := range s.Gateways {
		names = append(names, g.Name)
	}
	if run.field != nil {
		names = append(names, run.field.controlName(s))
	}
	gwCert, err := set.ServerCert(names...)
	if err != nil {
		return nil, err
	}
	gwPair, err := pemPair(gwCert)
	if err != nil {
		return nil, err
	}
	var out []node.Config
	// Origins.
	on := &node.Origin{Sites: s.Origins, Certs: map[string]node.PEMPair{}}
	var originRoutes []node.Route
	var originAddrs []netip.Prefix
	seen := map[netip.Addr]bool{}
	for _, o := range s.Origins {
		c, err := set.ServerCert(o.Name)
		if err != nil {
			return nil, err
		}
		if on.Certs[o.Name], err = pemPair(c); err != nil {
			return nil, err
		}
		if !seen[o.Addr] {
			seen[o.Addr] = true
			originAddrs = append(originAddrs, netip.PrefixFrom(o.Addr, 32))
			originRoutes = append(originRoutes, node.Route{Dst: netip.PrefixFrom(o.Addr, 32), Via: originsOnNet})
		}
	}
	out = append(out, node.Config{Role: node.RoleOrigin, Name: "origins", Tenant: s.Tenant, Net: node.Net{Addrs: originAddrs}, Zone: zone, Origin: on})
	gwNodes, gwRoutes := run.gatewayNodes(zone, gwPair, originRoutes)
	out = append(out, gwNodes...)
	// Firewall.
	fs := s.Firewall
	fwNode, err := run.firewallNode(zone, append(append([]node.Route{}, gwRoutes...), originRoutes...))
	if err != nil {
		return nil, err
	}
	out = append(out, fwNode)
	// Laptop.
	cn, err := run.clientNode(gwCert)
	if err != nil {
		return nil, err
	}
	laptop := node.Config{Role: node.RoleClient, Name: "laptop", Tenant: s.Tenant, Zone: zone, Net: node.Net{DefaultVia: fs.Inside}, Client: cn}
	if run.field != nil {
		if laptop.FieldProbe, err = run.field.probeNode(s, set, gwCert); err != nil {
			return nil, err
		}
		laptop.Client = nil
	}
	if run.plan.Fleet > 0 && run.field == nil {
		fleet, err := run.fleetNodes(laptop)
		if err != nil {
			return nil, err
		}
		for i := range fleet {
			run.impairLaptop(&fleet[i], out)
		}
		out = append(out, fleet...)
	} else {
		run.impairLaptop(&laptop, out)
		out = append(out, laptop)
	}
	// Extra hosts run probes.
	for _, h := range s.ExtraHosts {
		var probes []harness.Probe
		for _, p := range run.plan.Probes {
			if p.From == h.Name {
				probes = append(probes, p)
			}
		}
		out = append(out, node.Config{Role: node.RoleProbe, Name: h.Name, Tenant: s.Tenant, Zone: zone, Net: node.Net{DefaultVia: fs.Inside}, Probes: probes})
	}
	for i := range out {
		out[i].Net.Overlays = run.overlays(out[i], out)
		if len(out[i].Net.Addrs) > 0 {
			out[i].Net.AddrsOn = inetOverlay
		}
	}
	if run.r != nil && run.r.Capture { // ComposeFiles has no runner
		run.addCapture(out)
	}
	return out, nil
}

// fleetNodes are a fleet's laptops, built from the one laptop's node: each
// on a LAN address of its own (harness.FleetAddrs, as in process) with a
// device certificate of its own when the laptop has one, no workload, and
// up to the plan's wait for its tunnel.
func (run *containerRun) fleetNodes(laptop node.Config) ([]node.Config, error) {
	s := run.plan.Spec
	// A node's underlay address is its LAN address's last byte in the
	// run's /24 (underlayOf): laptops must differ there, from each other,
	// from the firewall's and the extra hosts' and from the bridge's.
	taken := map[byte]bool{run.under.lanBridge.As4()[3]: true, s.Firewall.Inside.As4()[3]: true}
	for _, h := range s.ExtraHosts {
		taken[h.Addr.As4()[3]] = true
	}
	var addrs []netip.Addr
	for _, a := range harness.FleetAddrs(s, run.plan.Fleet+256) {
		if b := a.As4()[3]; !taken[b] && len(addrs) < run.plan.Fleet {
			taken[b] = true
			addrs = append(addrs, a)
		}
	}
	if len(addrs) < run.plan.Fleet {
		return nil, fmt.Errorf("containers: fleet of %d: %d laptops fit (one /24 underlay per run; LAN %s)", run.plan.Fleet, len(addrs), s.LAN)
	}
	run.fleet, run.fleetAddr = nil, map[string]netip.Addr{}
	out := make([]node.Config, 0, len(addrs))
	for i, a := range addrs {
		nc := laptop
		nc.Name = fmt.Sprintf("laptop-%04d", i+1)
		cn := *laptop.Client
		cn.Fleet, cn.Workload, cn.WaitUp, cn.Hold = true, harness.Workload{}, run.plan.UpWait(), 0
		if cn.DeviceCert != nil {
			// Every laptop its own device, as in process.
			dc, err := run.set.DeviceCert(s.Tenant, fmt.Sprintf("user%04d@%s.test", i+1, s.Tenant), fmt.Sprintf("LAPTOP-%04d", i+2))
			if err != nil {
				return nil, fmt.Errorf("containers: fleet: %w", err)
			}
			p, err := pemPair(dc)
			if err != nil {
				return nil, err
			}
			cn.DeviceCert = &p
		}
		nc.Client = &cn
		run.fleet = append(run.fleet, nc.Name)
		run.fleetAddr[nc.Name] = a
		out = append(out, nc)
	}
	return out, nil
}

// firewallNode is the firewall's node configuration: pinwall's firewall,
// or a third-party tool with the policy translated for it.
func (run *containerRun) firewallNode(zone []resolve.Record, routes []node.Route) (node.Config, error) {
	s, set := run.plan.Spec, run.set
	fs := s.Firewall
	pol, err := fs.LoadPolicy()
	if err != nil {
		return node.Config{}, err
	}
	polYAML, err := pol.Marshal()
	if err != nil {
		return node.Config{}, err
	}
	caKey, err := set.Enterprise.KeyPEM()
	if err != nil {
		return node.Config{}, err
	}
	fwNode := node.Config{Role: node.RoleFirewall, Name: "firewall", Tenant: s.Tenant, Zone: zone,
		Net: node.Net{Routes: routes,
			Intercept: &node.Intercept{LAN: s.LAN, TCPPorts: []uint16{80, 443, 8443}, TCPTo: fwTCPPort, UDPPorts: []uint16{443}, UDPTo: fwUDPPort}},
		Firewall: &node.Firewall{Policy: string(polYAML), CA: node.PEMPair{Cert: string(set.Enterprise.CertPEM()), Key: string(caKey)},
			Roots: string(set.Internet.CertPEM()), Inside: fs.Inside, Outside: fs.Outside, ProxyPort: fs.ProxyPort, LAN: s.LAN}}
	if fs.Kind.IsThirdParty() {
		ic, err := interceptors.Translate(fs.Kind, pol, interceptors.DefaultParams())
		if err != nil {
			return node.Config{}, err
		}
		run.interceptor = ic
		fwNode.Firewall.Interceptor = ic
		fwNode.Net.Intercept = &node.Intercept{LAN: s.LAN, TCPTo: ic.Port, TCPRules: filters(ic.TCP), UDPRules: filters(ic.UDP)}
	}
	return fwNode, nil
}

// filters turns a translation's nftables rules into netsetup's.
func filters(rules []interceptors.Rule) []netsetup.Filter {
	out := make([]netsetup.Filter, len(rules))
	for i, r := range rules {
		f := netsetup.Filter{Src: r.Src, Dst: r.Dst, Comment: r.From}
		for _, p := range r.Ports {
			f.Ports = append(f.Ports, netsetup.PortRange{Lo: p.Lo, Hi: p.Hi})
		}
		switch r.Verdict {
		case interceptors.ToTool:
			f.Verdict = netsetup.FilterRedirect
		case interceptors.Drop:
			f.Verdict = netsetup.FilterDrop
		default:
			f.Verdict = netsetup.FilterAccept
		}
		out[i] = f
	}
	return out
}

// impairLaptop sets up the laptop's datagram impairment: as in process, on
// its sockets (the node's client), or, in Netem mode, by qdiscs on the
// laptop's and the firewall's overlay (the firewall's config is in nodes).
func (run *containerRun) impairLaptop(laptop *node.Config, nodes []node.Config) {
	s := run.plan.Spec
	if s.Client.UDPLoss <= 0 && !run.plan.Impairs() {
		return
	}
	base := fault.Impairment{Loss: s.Client.UDPLoss, Seed: 1}
	if run.r != nil && run.r.Netem {
		if s.Client.UDPLoss > 0 {
			l, f := run.laptopNetems(base)
			laptop.Net.Netem = l
			for i := range nodes {
				if nodes[i].Role == node.RoleFirewall {
					nodes[i].Net.Netem = f
				}
			}
		}
		return
	}
	laptop.Client.Impairable = true
	if s.Client.UDPLoss > 0 {
		laptop.Client.Impair = &base
	}
}

func pemPair(c *tls.Certificate) (node.PEMPair, error) {
	key, err := pki.KeyPEM(c.PrivateKey.(crypto.Signer))
	if err != nil {
		return node.PEMPair{}, err
	}
	return node.PEMPair{Cert: string(pki.ChainPEM(c)), Key: string(key)}, nil
}

// clientNode builds the laptop's settings as the in-process topology does.
func (run *containerRun) clientNode(gwCert *tls.Certificate) (*node.Client, error) {
	s := run.plan.Spec
	cfg, err := harness.ClientSettings(s, run.set, gwCert.Leaf)
	if err != nil {
		return nil, err
	}
	cn := &node.Client{Spec: s.Client, Workload: run.plan.Workload.WithDefaults(s), Reconnects: run.plan.Reconnects, WaitUp: run.plan.UpWait(), Hold: run.plan.Hold}
	for _, p := range cfg.Pins {
		cn.Pins = append(cn.Pins, string(p))
	}
	var roots, app bytes.Buffer
	for _, tr := range s.Client.Trust {
		switch tr {
		case harness.TrustInternet:
			roots.Write(run.set.Internet.CertPEM())
		case harness.TrustEnterprise:
			roots.Write(run.set.Enterprise.CertPEM())
		}
	}
	app.Write(roots.Bytes())
	cn.RootCAs, cn.AppTrust = roots.String(), app.String()
	if cfg.DeviceCert != nil {
		p, err := pemPair(cfg.DeviceCert)
		if err != nil {
			return nil, err
		}
		cn.DeviceCert = &p
	}
	if cfg.UpstreamProxy != nil {
		cn.UpstreamProxy = cfg.UpstreamProxy.String()
	}
	return cn, nil
}
