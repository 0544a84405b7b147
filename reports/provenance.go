package reports

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"github.com/pinwall/pinwall/scenarios"
)

// Provenance records everything that produced a bundle's evidence: the
// pinwall build, the Go toolchain, the platform, the container engine and
// the third-party tools a command used, so that a reader can tell exactly
// what made each figure. GatherProvenance fills it; a command adds its
// own tools through ProvenanceOptions.
type Provenance struct {
	Pinwall Build `json:"pinwall"`
	// Go is the toolchain that built pinwall (runtime.Version).
	Go   string `json:"go"`
	OS   string `json:"os"`
	Arch string `json:"arch"`
	// Kernel is the running kernel's release, where the platform says
	// (Linux: /proc/sys/kernel/osrelease): containers share it, and its
	// netfilter and AF_PACKET carry the container runs.
	Kernel string `json:"kernel,omitempty"`
	// Docker is the container engine's version (container runs only).
	Docker string `json:"docker_engine,omitempty"`
	// Image is the node image the container runs used.
	Image string `json:"image,omitempty"`
	// Modules are the libraries built into pinwall that speak its
	// protocols (pion/dtls, pion/sctp, yamux, ...), with their versions.
	Modules []Module `json:"modules,omitempty"`
	// Tools are the third-party programs the command ran.
	Tools []Tool `json:"tools,omitempty"`
}

// Build identifies the pinwall binary.
type Build struct {
	// Module is the main module's path.
	Module string `json:"module,omitempty"`
	// Version is the module version or "devel".
	Version string `json:"version"`
	// Commit is the VCS revision the binary was built from, UnknownCommit
	// when it was built without VCS information (go run, go test).
	Commit string `json:"commit"`
	// Modified is true when the working tree had uncommitted changes.
	Modified bool `json:"modified"`
	// CommitTime is the revision's commit time, when known.
	CommitTime string `json:"commit_time,omitempty"`
}

// Module is one library and its version.
type Module struct {
	Path    string `json:"path"`
	Version string `json:"version"`
}

// Tool is one third-party program and its version.
type Tool struct {
	Name string `json:"name"`
	// Version is the first line the tool printed when asked.
	Version string `json:"version,omitempty"`
	Path    string `json:"path,omitempty"`
	// Error says why the version could not be had (not installed, ...).
	Error string `json:"error,omitempty"`
}

// ToolQuery asks a program for its version: Name run with Args.
type ToolQuery struct {
	Name string
	Args []string
}

// ProvenanceOptions says what GatherProvenance looks up beyond the build
// and the runtime.
type ProvenanceOptions struct {
	// Version and Commit, when set, override the build's own (a binary
	// built with -ldflags, as the Makefile does). The build information
	// (runtime/debug.ReadBuildInfo: vcs.revision, vcs.modified) is used
	// otherwise, which a plain `go build` in a git checkout records.
	Version, Commit string
	// DockerVersion, when set, returns the container engine's version;
	// an error is recorded in its place.
	DockerVersion func(context.Context) (string, error)
	// Image names the container image the runs used.
	Image string
	// Tools are the third-party programs to record.
	Tools []ToolQuery
}

// protocolModules are the libraries whose versions a report names.
var protocolModules = []string{
	"github.com/pion/dtls/v3", "github.com/pion/sctp", "github.com/hashicorp/yamux",
	"golang.org/x/crypto", "github.com/testcontainers/testcontainers-go", "github.com/moby/moby/client",
}

// GatherProvenance records the running binary's provenance.
func GatherProvenance(ctx context.Context, o ProvenanceOptions) Provenance {
	bi, ok := debug.ReadBuildInfo()
	p := provenanceOf(bi, ok)
	if o.Version != "" {
		p.Pinwall.Version = o.Version
	}
	if o.Commit != "" {
		p.Pinwall.Commit = o.Commit
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		p.Kernel = strings.TrimSpace(string(b))
	}
	if o.DockerVersion != nil {
		v, err := o.DockerVersion(ctx)
		if err != nil {
			v = "unknown (" + err.Error() + ")"
		}
		p.Docker = v
	}
	p.Image = o.Image
	for _, q := range o.Tools {
		p.Tools = append(p.Tools, toolVersion(ctx, q))
	}
	return p
}

func provenanceOf(bi *debug.BuildInfo, ok bool) Provenance {
	p := Provenance{Go: runtime.Version(), OS: runtime.GOOS, Arch: runtime.GOARCH}
	p.Pinwall.Version, p.Pinwall.Commit = buildInfo(bi, ok)
	p.Pinwall.Commit = strings.TrimSuffix(p.Pinwall.Commit, "-dirty")
	if !ok || bi == nil {
		return p
	}
	p.Pinwall.Module = bi.Main.Path
	if bi.GoVersion != "" {
		p.Go = bi.GoVersion
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.modified":
			p.Pinwall.Modified = s.Value == "true"
		case "vcs.time":
			p.Pinwall.CommitTime = s.Value
		}
	}
	for _, d := range bi.Deps {
		if !slices.Contains(protocolModules, d.Path) {
			continue
		}
		v := d.Version
		if d.Replace != nil {
			v += " => " + d.Replace.Path + " " + d.Replace.Version
		}
		p.Modules = append(p.Modules, Module{Path: d.Path, Version: v})
	}
	return p
}

// toolVersion runs a tool for its version, bounded to 10 s.
func toolVersion(ctx context.Context, q ToolQuery) Tool {
	t := Tool{Name: q.Name}
	path, err := exec.LookPath(q.Name)
	if err != nil {
		t.Error = "not installed"
		return t
	}
	t.Path = path
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, path, q.Args...).CombinedOutput()
	for _, line := range strings.Split(string(bytes.TrimSpace(out)), "\n") {
		line = strings.TrimSpace(line)
		// tshark run as root warns first; the version is the next line.
		if line != "" && !strings.HasPrefix(line, "Running as user") {
			t.Version = line
			break
		}
	}
	if t.Version == "" && err != nil {
		t.Error = err.Error()
	}
	return t
}

// Describe returns the provenance as rows of a two-column table, for
// reports: what, and which version.
func (p Provenance) Describe() [][2]string {
	build := p.Pinwall.Version + ", commit " + p.Pinwall.Commit
	if p.Pinwall.Modified {
		build += " with uncommitted changes"
	}
	if p.Pinwall.CommitTime != "" {
		build += " (committed " + p.Pinwall.CommitTime + ")"
	}
	rows := [][2]string{{"pinwall", build}, {"Go", p.Go}, {"platform", p.OS + "/" + p.Arch}}
	if p.Kernel != "" {
		rows = append(rows, [2]string{"kernel", p.Kernel})
	}
	if p.Docker != "" {
		rows = append(rows, [2]string{"Docker engine", p.Docker})
	}
	if p.Image != "" {
		rows = append(rows, [2]string{"node image", p.Image})
	}
	for _, m := range p.Modules {
		rows = append(rows, [2]string{m.Path, m.Version})
	}
	if len(p.Tools) == 0 {
		rows = append(rows, [2]string{"third-party tools", "none used"})
	}
	for _, t := range p.Tools {
		v := t.Version
		if v == "" {
			v = t.Error
		}
		rows = append(rows, [2]string{t.Name, v})
	}
	return rows
}

// withRunTools adds to p the third-party tools the results ran (the
// version each printed in its run), once per tool and version, unless p
// already names the tool.
func (p *Provenance) withRunTools(results []scenarios.Result) {
	seen := map[string]bool{}
	for _, t := range p.Tools {
		seen[t.Name] = true
	}
	for _, r := range results {
		ic := r.Interceptor
		if ic == nil || ic.Version == "" {
			continue
		}
		key := string(ic.Kind) + "\x00" + ic.Version
		if seen[string(ic.Kind)] || seen[key] {
			continue
		}
		seen[key] = true
		p.Tools = append(p.Tools, Tool{Name: string(ic.Kind), Version: ic.Version})
	}
}
