package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/pinwall/pinwall/harness/containers"
	"github.com/pinwall/pinwall/interceptors"
)

// cmdImage makes the container images ahead of a run: the node image of
// this binary and, with --tools, the third-party interceptors' image
// (Debian packages through mmdebstrap, once per package list). CI runs it
// before the tests so that they find the images made.
func cmdImage(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("image", flag.ContinueOnError)
	fs.SetOutput(stderr)
	tools := fs.Bool("tools", false, "also make the interceptors' image (mitmproxy, squid-openssl, sslsplit from Debian "+containers.ToolsSuite+")")
	rebuild := fs.Bool("rebuild", false, "make the images again even when present (and the tools' root filesystem: a cold build)")
	cache := fs.String("cache", "", "where the tools' root filesystem is kept (default $XDG_CACHE_HOME/pinwall or ~/.cache/pinwall)")
	verbose := fs.Bool("v", false, "progress on stderr")
	if err := fs.Parse(args); err != nil {
		return &exitError{code: 2, err: err}
	}
	if fs.NArg() > 0 {
		return usageError("image takes no arguments")
	}
	if err := containers.DockerAvailable(ctx); err != nil {
		return &exitError{code: 2, err: fmt.Errorf("image: no Docker engine answers: %w", err)}
	}
	r := &containers.Runner{Rebuild: *rebuild, ToolsCache: *cache}
	if *verbose {
		r.Logger = slog.New(slog.NewTextHandler(stderr, nil))
	}
	if exe, err := os.Executable(); err == nil && isStatic(exe) {
		r.Binary = exe
	}
	start := time.Now()
	tag, err := r.Image(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s (%.1fs)\n", tag, time.Since(start).Seconds())
	if !*tools {
		return nil
	}
	start = time.Now()
	fw, err := r.ToolsImage(ctx)
	if err != nil {
		return err
	}
	res := r.ToolsImageBuild()
	how := "present"
	switch {
	case res.RootfsBuilt:
		how = fmt.Sprintf("made: mmdebstrap %.1fs, then docker import", res.RootfsTook.Seconds())
	case res.ImageCreated:
		how = "made from the cached root filesystem " + res.Rootfs
	}
	fmt.Fprintf(stdout, "%s: %s (%s; %.1fs)\n%s: the firewall image for %s (%.1fs in all)\n", res.Tag, strings.Join(interceptors.Packages, ", "), how, res.Took.Seconds(),
		fw, "mitmproxy, squid and sslsplit", time.Since(start).Seconds())
	return nil
}
