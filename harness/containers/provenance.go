package containers

import (
	"context"
	"fmt"
	"strings"

	"github.com/moby/moby/client"
	"github.com/testcontainers/testcontainers-go"
)

// EngineVersion returns the Docker engine's version for a report's
// provenance: "Docker Engine - Community 28.1.1 (API 1.49, linux/amd64)".
func EngineVersion(ctx context.Context) (string, error) {
	cli, err := testcontainers.NewDockerClientWithOpts(ctx)
	if err != nil {
		return "", err
	}
	defer cli.Close()
	v, err := cli.ServerVersion(ctx, client.ServerVersionOptions{})
	if err != nil {
		return "", err
	}
	s := strings.TrimSpace(v.Platform.Name + " " + v.Version)
	return fmt.Sprintf("%s (API %s, %s/%s)", s, v.APIVersion, v.Os, v.Arch), nil
}

// ImageTag returns the node image's tag once Image has built it, "" before.
func (c *Runner) ImageTag() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.image
}
