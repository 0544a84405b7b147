package containers

import (
	"context"
	"net/netip"

	"github.com/testcontainers/testcontainers-go"
)

// UnderlaySlot is slot k's pair of underlay subnets, for the external tests.
func UnderlaySlot(k int) (lan, inet netip.Prefix) {
	u := underlaySlot(k)
	return u.lan, u.inet
}

// SlotsTaken lists the slots overlapping a network on the engine.
func SlotsTaken(ctx context.Context) (map[int]bool, error) {
	cli, err := testcontainers.NewDockerClientWithOpts(ctx)
	if err != nil {
		return nil, err
	}
	defer cli.Close()
	return slotsTaken(ctx, cli)
}
