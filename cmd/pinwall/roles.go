package main

import (
	"context"
	"io"

	"github.com/pinwall/pinwall/harness"
	"github.com/pinwall/pinwall/pki"
)

// serveRole runs one component of a container topology.
func serveRole(ctx context.Context, role string, args []string, stdout, stderr io.Writer) error {
	return usageError("serve %s: the container roles arrive with the containers runner", role)
}

func newContainerRunner(set *pki.Set, stderr io.Writer) (harness.Runner, error) {
	return nil, usageError("--mode containers: the containers runner is not available yet")
}
