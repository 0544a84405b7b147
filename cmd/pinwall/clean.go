package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/pinwall/pinwall/harness/containers"
)

// cmdClean removes what dead container runs left on the Docker engine.
func cmdClean(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("clean", flag.ContinueOnError)
	fs.SetOutput(stderr)
	images := fs.Bool("images", false, "also remove pinwall node images older than this binary's (or than the newest) that no container uses")
	ttl := fs.Duration("ttl", containers.DefaultTTL, "remove runs owned by another host, or with no owner label, once older than this")
	kept := fs.Bool("kept", false, "also remove dead runs kept for debugging (PINWALL_KEEP_CONTAINERS)")
	dry := fs.Bool("dry-run", false, "print what would be removed, remove nothing")
	verbose := fs.Bool("v", false, "also list what is left and why")
	if err := fs.Parse(args); err != nil {
		return &exitError{code: 2, err: err}
	}
	if fs.NArg() > 0 {
		return usageError("clean takes no arguments")
	}
	if *ttl <= 0 {
		return usageError("--ttl must be positive")
	}
	if err := containers.DockerAvailable(ctx); err != nil {
		return &exitError{code: 2, err: fmt.Errorf("clean: no Docker engine answers: %w", err)}
	}
	cfg := containers.CleanConfig{TTL: *ttl, Kept: *kept, Images: *images, DryRun: *dry,
		Logger: slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))}
	if exe, err := os.Executable(); err == nil && isStatic(exe) {
		cfg.CurrentImage, _ = containers.ImageTag(exe)
	}
	start := time.Now()
	rep, err := containers.Clean(ctx, cfg)
	verb := "removed"
	if *dry {
		verb = "would remove"
	}
	for _, r := range rep.Removed {
		fmt.Fprintf(stdout, "%s %s (%s)\n", verb, r.Resource, r.Why)
	}
	if *verbose {
		for _, r := range rep.Left {
			fmt.Fprintf(stdout, "left %s (%s)\n", r.Resource, r.Why)
		}
	}
	fmt.Fprintf(stdout, "%s %d, left %d pinwall resources of live or recent runs (%.1fs)\n", verb, len(rep.Removed), len(rep.Left), time.Since(start).Seconds())
	return err
}
