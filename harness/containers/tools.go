package containers

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/moby/moby/client"
	"github.com/testcontainers/testcontainers-go"

	"github.com/pinwall/pinwall/interceptors"
)

// ToolsImageRepo is the repository of the Debian root filesystems holding
// the third-party interceptors (mitmproxy, squid-openssl, sslsplit).
const ToolsImageRepo = "pinwall-tools"

// ToolsSuite is the Debian release the tools' image is made from.
const ToolsSuite = "bookworm"

// ToolsLabel marks the tools' images (LABEL pinwall=tools).
const ToolsLabel = "tools"

// mmdebstrapArgs are the arguments that make the tools' root filesystem
// (before the output file): Debian's apt variant with the interceptors'
// packages, from the machine's configured Debian sources.
func mmdebstrapArgs() []string {
	pkgs := slices.Clone(interceptors.Packages)
	slices.Sort(pkgs)
	return []string{"--variant=apt", "--include=" + strings.Join(pkgs, ","), ToolsSuite}
}

// ToolsImageTag is the tools' image tag: ToolsImageRepo and the start of
// the SHA-256 of the mmdebstrap arguments (the package list among them),
// so that the image is made again only when the package list changes.
func ToolsImageTag() string {
	sum := sha256.Sum256([]byte("mmdebstrap " + strings.Join(mmdebstrapArgs(), " ")))
	return ToolsImageRepo + ":" + hex.EncodeToString(sum[:6])
}

// ToolsImageConfig says how EnsureToolsImage builds.
type ToolsImageConfig struct {
	// CacheDir keeps the root filesystem tarball between builds; empty
	// means $XDG_CACHE_HOME/pinwall, else ~/.cache/pinwall.
	CacheDir string
	// Rebuild makes the root filesystem and the image again (a cold build,
	// for measuring).
	Rebuild bool
	// Logger receives progress; nil discards.
	Logger *slog.Logger
}

// ToolsImageResult is what EnsureToolsImage did.
type ToolsImageResult struct {
	Tag string
	// Rootfs is the cached tarball; RootfsBuilt whether mmdebstrap made
	// it now, and how long it took.
	Rootfs       string
	RootfsBuilt  bool
	RootfsTook   time.Duration
	ImageCreated bool
	Took         time.Duration
}

func cacheDir(dir string) (string, error) {
	if dir != "" {
		return dir, nil
	}
	if x := os.Getenv("XDG_CACHE_HOME"); x != "" {
		return filepath.Join(x, "pinwall"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("containers: no cache directory for the tools' root filesystem (set XDG_CACHE_HOME): %w", err)
	}
	return filepath.Join(home, ".cache", "pinwall"), nil
}

// ErrNoMmdebstrap is returned when the tools' image must be built and
// mmdebstrap is not installed.
var ErrNoMmdebstrap = errors.New("containers: the tools' image is missing and mmdebstrap is not installed (apt-get install mmdebstrap)")

// EnsureToolsImage makes sure the tools' image (ToolsImageTag) exists:
// nothing to do when the engine has it; otherwise the root filesystem is
// made with mmdebstrap from the machine's Debian sources (or taken from
// the cache) and imported, labelled pinwall=tools with its package list.
func EnsureToolsImage(ctx context.Context, cfg ToolsImageConfig) (ToolsImageResult, error) {
	start := time.Now()
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	res := ToolsImageResult{Tag: ToolsImageTag()}
	cli, err := testcontainers.NewDockerClientWithOpts(ctx)
	if err != nil {
		return res, err
	}
	defer cli.Close()
	if _, err := cli.ImageInspect(ctx, res.Tag); err == nil {
		if !cfg.Rebuild {
			res.Took = time.Since(start)
			return res, nil
		}
		if _, err := cli.ImageRemove(ctx, res.Tag, client.ImageRemoveOptions{Force: true, PruneChildren: true}); err != nil {
			return res, fmt.Errorf("containers: remove image %s: %w", res.Tag, err)
		}
	}
	dir, err := cacheDir(cfg.CacheDir)
	if err != nil {
		return res, err
	}
	res.Rootfs = filepath.Join(dir, "tools-"+strings.TrimPrefix(res.Tag, ToolsImageRepo+":")+"-rootfs.tar")
	if _, err := os.Stat(res.Rootfs); err != nil || cfg.Rebuild {
		if err := mmdebstrap(ctx, dir, res.Rootfs, log); err != nil {
			return res, err
		}
		res.RootfsBuilt, res.RootfsTook = true, time.Since(start)
	}
	f, err := os.Open(res.Rootfs)
	if err != nil {
		return res, err
	}
	defer f.Close()
	pkgs := slices.Clone(interceptors.Packages)
	slices.Sort(pkgs)
	changes := []string{
		"LABEL pinwall=" + ToolsLabel,
		fmt.Sprintf("LABEL pinwall.packages=%q", strings.Join(pkgs, ",")),
		fmt.Sprintf("LABEL pinwall.mmdebstrap=%q", strings.Join(mmdebstrapArgs(), " ")),
		`CMD ["/bin/sh"]`,
	}
	log.Info("containers: importing the tools' root filesystem", "tag", res.Tag, "rootfs", res.Rootfs)
	rc, err := cli.ImageImport(ctx, client.ImageImportSource{Source: f, SourceName: "-"}, res.Tag, client.ImageImportOptions{Changes: changes, Message: "pinwall tools: mmdebstrap " + strings.Join(mmdebstrapArgs(), " ")})
	if err != nil {
		return res, fmt.Errorf("containers: docker import %s: %w", res.Rootfs, err)
	}
	out, _ := io.ReadAll(rc)
	rc.Close()
	if strings.Contains(string(out), `"error"`) {
		return res, fmt.Errorf("containers: docker import %s: %s", res.Rootfs, out)
	}
	res.ImageCreated, res.Took = true, time.Since(start)
	log.Info("containers: tools' image ready", "tag", res.Tag, "took", res.Took)
	return res, nil
}

// mmdebstrap makes the tools' root filesystem into file (atomically).
func mmdebstrap(ctx context.Context, dir, file string, log *slog.Logger) error {
	bin, err := exec.LookPath("mmdebstrap")
	if err != nil {
		return ErrNoMmdebstrap
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	tmp := strings.TrimSuffix(file, ".tar") + ".part.tar"
	args := append([]string{"--format=tar"}, append(mmdebstrapArgs(), tmp)...)
	log.Info("containers: making the tools' root filesystem (once per package list)", "cmd", "mmdebstrap "+strings.Join(args, " "))
	cmd := exec.CommandContext(ctx, bin, args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		os.RemoveAll(tmp)
		return fmt.Errorf("containers: mmdebstrap %s: %w\n%s", strings.Join(args, " "), err, tailString(string(out), 4<<10))
	}
	return os.Rename(tmp, file)
}

func tailString(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// toolsDockerfile is the firewall image for a third-party interceptor:
// the tools' image with the static pinwall binary as its supervisor.
func toolsDockerfile(base string) []byte {
	return []byte("# The tools' image (Debian " + ToolsSuite + ": " + strings.Join(interceptors.Packages, ", ") + ")\n" +
		"# with pinwall as the firewall container's supervisor.\nFROM " + base + "\nCOPY pinwall /pinwall\nENTRYPOINT [\"/pinwall\"]\n")
}

// toolsNodeTag is the firewall image's tag for the tools' image base and
// a pinwall binary.
func toolsNodeTag(base string, bin []byte) string {
	h := sha256.New()
	h.Write([]byte(base + "\n"))
	h.Write(bin)
	return NodeImageRepo + ":tools-" + hex.EncodeToString(h.Sum(nil)[:6])
}
