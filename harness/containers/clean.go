package containers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sort"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"
	"github.com/testcontainers/testcontainers-go"
)

// Resource is one container, network or image of pinwall's on the Docker
// engine.
type Resource struct {
	// Kind is "container", "network" or "image".
	Kind string
	ID   string
	// Name is the container's or network's name, or the image's tag.
	Name string
	// Run, Runner and Owner are the resource's labels (empty when absent:
	// a resource made by a pinwall from before owners were labelled).
	Run, Runner, Owner string
	// Keep is set on the resources of a Runner with Keep.
	Keep    bool
	Created time.Time
	// Subnets are a network's IPv4 subnets.
	Subnets []netip.Prefix
	// State is a container's state ("running", "exited", ...).
	State string
}

func (r Resource) String() string { return r.Kind + " " + r.Name }

// Filter selects the resources of runs; zero fields match any.
type Filter struct {
	Run, Runner, Owner string
}

func (f Filter) match(labels map[string]string) bool {
	return (f.Run == "" || labels[LabelRun] == f.Run) &&
		(f.Runner == "" || labels[LabelRunner] == f.Runner) &&
		(f.Owner == "" || labels[LabelOwner] == f.Owner)
}

func resourceOf(kind, id, name string, labels map[string]string, created time.Time) Resource {
	return Resource{Kind: kind, ID: id, Name: name, Run: labels[LabelRun], Runner: labels[LabelRunner], Owner: labels[LabelOwner],
		Keep: labels[LabelKeep] != "", Created: created}
}

// Inventory lists the containers and networks of the pinwall runs on the
// engine that f selects (containers first).
func Inventory(ctx context.Context, f Filter) ([]Resource, error) {
	cli, err := testcontainers.NewDockerClientWithOpts(ctx)
	if err != nil {
		return nil, err
	}
	defer cli.Close()
	return inventory(ctx, cli, f)
}

func inventory(ctx context.Context, cli *testcontainers.DockerClient, f Filter) ([]Resource, error) {
	filters := client.Filters{}.Add("label", LabelRun)
	cs, err := cli.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: filters})
	if err != nil {
		return nil, fmt.Errorf("containers: list containers: %w", err)
	}
	var out []Resource
	for _, c := range cs.Items {
		if !f.match(c.Labels) {
			continue
		}
		r := resourceOf("container", c.ID, strings.TrimPrefix(strings.Join(c.Names, ","), "/"), c.Labels, time.Unix(c.Created, 0))
		r.State = string(c.State)
		out = append(out, r)
	}
	ns, err := cli.NetworkList(ctx, client.NetworkListOptions{Filters: filters})
	if err != nil {
		return nil, fmt.Errorf("containers: list networks: %w", err)
	}
	for _, n := range ns.Items {
		if !f.match(n.Labels) {
			continue
		}
		r := resourceOf("network", n.ID, n.Name, n.Labels, n.Created)
		for _, c := range n.IPAM.Config {
			if c.Subnet.IsValid() {
				r.Subnets = append(r.Subnets, c.Subnet)
			}
		}
		out = append(out, r)
	}
	return out, nil
}

// Leftovers names the containers and networks f selects that are still on
// the engine ("container NAME", "network NAME").
func Leftovers(ctx context.Context, f Filter) ([]string, error) {
	rs, err := Inventory(ctx, f)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, r := range rs {
		out = append(out, r.String())
	}
	return out, nil
}

// DefaultTTL is how old the resources of a run whose owner cannot be
// checked from here (another host, or no owner label) must be before a
// clean removes them.
const DefaultTTL = 2 * time.Hour

// NodeImageRepo is the repository of the node images the runner builds.
const NodeImageRepo = "pinwall-node"

// CleanConfig says what Clean removes. The zero value removes the
// containers and networks of every run whose owning process is gone, and
// nothing else.
type CleanConfig struct {
	// TTL: the runs of an owner on another host sharing the engine, or
	// without an owner label, are removed once their newest resource is
	// older than TTL. Zero means DefaultTTL.
	TTL time.Duration
	// Kept also removes the resources of dead runs made with Runner.Keep
	// (by default they are left for whoever is debugging).
	Kept bool
	// Images also removes the node images (NodeImageRepo, or ImageRepo)
	// built before CurrentImage that no container uses. When CurrentImage
	// is empty or absent, the newest image is the current one.
	Images       bool
	CurrentImage string
	// ImageRepo replaces NodeImageRepo (tests use a repository of their own).
	ImageRepo string
	// DryRun reports what would be removed and removes nothing.
	DryRun bool
	// Logger receives one line per removal; nil discards.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Validate rejects a negative TTL.
func (c CleanConfig) Validate() error {
	if c.TTL < 0 {
		return fmt.Errorf("containers: clean: ttl %v is negative", c.TTL)
	}
	return nil
}

// Cleaned is one resource Clean removed (or left), and why.
type Cleaned struct {
	Resource
	Why string
}

// CleanReport is what Clean did.
type CleanReport struct {
	// Removed are the resources removed (with DryRun: to be removed).
	Removed []Cleaned
	// Left are the pinwall resources left in place, with the reason
	// (owner alive, too young to judge, kept, image in use).
	Left []Cleaned
}

// Clean removes the containers and networks that dead runs left behind on
// the engine — runs whose owning process (LabelOwner) no longer runs on
// this host, or, for an owner elsewhere or unknown, whose resources are
// older than the TTL — and, with Images, old node images. It never
// touches a run whose owner is alive. A resource that vanishes meanwhile
// (another sweep got there first) is not an error.
func Clean(ctx context.Context, cfg CleanConfig) (CleanReport, error) {
	var rep CleanReport
	if err := cfg.Validate(); err != nil {
		return rep, err
	}
	if cfg.TTL == 0 {
		cfg.TTL = DefaultTTL
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cli, err := testcontainers.NewDockerClientWithOpts(ctx)
	if err != nil {
		return rep, err
	}
	defer cli.Close()
	all, err := inventory(ctx, cli, Filter{})
	if err != nil {
		return rep, err
	}
	// Judge each run once, by its owner and its newest resource.
	type runState struct {
		owner  string
		newest time.Time
		keep   bool
	}
	runs := map[string]*runState{}
	for _, r := range all {
		st := runs[r.Run]
		if st == nil {
			st = &runState{owner: r.Owner}
			runs[r.Run] = st
		}
		if r.Created.After(st.newest) {
			st.newest = r.Created
		}
		st.keep = st.keep || r.Keep
	}
	verdict := map[string]string{} // run -> why removed, "" when left
	leftWhy := map[string]string{}
	for id, st := range runs {
		why, left := judge(st.owner, st.newest, cfg)
		if !left && st.keep && !cfg.Kept {
			left, why = true, "kept for debugging (Runner.Keep); `pinwall clean` removes it"
		}
		if left {
			leftWhy[id] = why
		} else {
			verdict[id] = why
		}
	}
	var errs []error
	// Containers first: a network with endpoints cannot be removed.
	for _, kind := range []string{"container", "network"} {
		for _, r := range all {
			if r.Kind != kind {
				continue
			}
			why, remove := verdict[r.Run]
			if !remove {
				rep.Left = append(rep.Left, Cleaned{r, leftWhy[r.Run]})
				continue
			}
			if !cfg.DryRun {
				var err error
				if kind == "container" {
					_, err = cli.ContainerRemove(ctx, r.ID, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true})
				} else {
					_, err = cli.NetworkRemove(ctx, r.ID, client.NetworkRemoveOptions{})
				}
				if kind == "network" && activeEndpoints(err) {
					// A container this clean did not remove is still
					// attached (the engine's answer, seen with Docker 28):
					// the network is in use, so it stays.
					rep.Left = append(rep.Left, Cleaned{r, "still in use by a container: " + err.Error()})
					continue
				}
				if err != nil && !cerrdefs.IsNotFound(err) {
					errs = append(errs, fmt.Errorf("containers: clean: remove %s: %w", r, err))
					continue
				}
			}
			log.Info("containers: removed a dead run's "+kind, "name", r.Name, "run", r.Run, "why", why)
			rep.Removed = append(rep.Removed, Cleaned{r, why})
		}
	}
	if cfg.Images {
		if err := cleanImages(ctx, cli, cfg, log, &rep); err != nil {
			errs = append(errs, err)
		}
	}
	return rep, errors.Join(errs...)
}

// judge decides about one run: left (with why), or removed (with why).
func judge(ownerLabel string, newest time.Time, cfg CleanConfig) (why string, left bool) {
	age := cfg.Now().Sub(newest).Round(time.Second)
	o, err := ParseOwner(ownerLabel)
	if err != nil {
		if age > cfg.TTL {
			return fmt.Sprintf("no owner label, %v old (ttl %v)", age, cfg.TTL), false
		}
		return fmt.Sprintf("no owner label and only %v old (ttl %v)", age, cfg.TTL), true
	}
	switch o.Check() {
	case Alive:
		return fmt.Sprintf("owner %s is alive", o), true
	case Dead:
		return fmt.Sprintf("owner %s is gone", o), false
	}
	if age > cfg.TTL {
		return fmt.Sprintf("owner %s is on another host, %v old (ttl %v)", o, age, cfg.TTL), false
	}
	return fmt.Sprintf("owner %s is on another host and only %v old (ttl %v)", o, age, cfg.TTL), true
}

// cleanImages removes the node images older than the current one that
// no container uses (the engine refuses those; they are reported left).
func cleanImages(ctx context.Context, cli *testcontainers.DockerClient, cfg CleanConfig, log *slog.Logger, rep *CleanReport) error {
	repo := cfg.ImageRepo
	if repo == "" {
		repo = NodeImageRepo
	}
	res, err := cli.ImageList(ctx, client.ImageListOptions{Filters: client.Filters{}.Add("reference", repo)})
	if err != nil {
		return fmt.Errorf("containers: clean: list images: %w", err)
	}
	type img struct {
		Resource
		tags []string
	}
	var imgs []img
	for _, it := range res.Items {
		name := it.ID
		if len(it.RepoTags) > 0 {
			name = strings.Join(it.RepoTags, ",")
		}
		imgs = append(imgs, img{Resource{Kind: "image", ID: it.ID, Name: name, Created: time.Unix(it.Created, 0)}, it.RepoTags})
	}
	if len(imgs) == 0 {
		return nil
	}
	sort.Slice(imgs, func(i, j int) bool { return imgs[i].Created.After(imgs[j].Created) })
	current := imgs[0]
	for _, im := range imgs {
		for _, t := range im.tags {
			if cfg.CurrentImage != "" && t == cfg.CurrentImage {
				current = im
			}
		}
	}
	var errs []error
	for _, im := range imgs {
		switch {
		case im.ID == current.ID:
			rep.Left = append(rep.Left, Cleaned{im.Resource, "the current image"})
			continue
		case !im.Created.Before(current.Created):
			rep.Left = append(rep.Left, Cleaned{im.Resource, "not older than the current image " + current.Name})
			continue
		}
		why := "older than the current image " + current.Name
		if !cfg.DryRun {
			// By tag, so that an image also tagged otherwise keeps its other names.
			refs := im.tags
			if len(refs) == 0 {
				refs = []string{im.ID}
			}
			var inUse bool
			for _, ref := range refs {
				if !strings.HasPrefix(ref, repo+":") && ref != im.ID {
					continue
				}
				// PruneChildren, as docker rmi: the build's untagged
				// intermediate images go with it (the client's zero
				// value sends noprune and left them dangling).
				_, err := cli.ImageRemove(ctx, ref, client.ImageRemoveOptions{PruneChildren: true})
				switch {
				case err == nil, cerrdefs.IsNotFound(err):
				case cerrdefs.IsConflict(err):
					inUse = true
				default:
					errs = append(errs, fmt.Errorf("containers: clean: remove image %s: %w", ref, err))
				}
			}
			if inUse {
				rep.Left = append(rep.Left, Cleaned{im.Resource, "in use by a container"})
				continue
			}
		}
		log.Info("containers: removed an old node image", "image", im.Name, "why", why)
		rep.Removed = append(rep.Removed, Cleaned{im.Resource, why})
	}
	return errors.Join(errs...)
}
