package bench

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/pinwall/pinwall/harness/containers"
)

// FleetContainerSizes are the container fleets the report runs, smallest
// first; it stops at the first size the machine does not hold (a laptop
// whose tunnel is not up within FleetContainerWait).
var FleetContainerSizes = []int{16, 32, 64, 128, 240}

// FleetContainerWait bounds each laptop container's wait for its tunnel.
const FleetContainerWait = time.Minute

// FleetContainersResult is one container fleet: N laptop containers, Up of
// them with their tunnel up, AllUp the time from their start until the
// last tunnel came up, Wall the whole run (networks, every container
// created and started, torn down).
type FleetContainersResult struct {
	N, Up       int
	AllUp, Wall time.Duration
}

// FleetContainers runs the catalogue's visibility row (DTLS to the
// gateway, the firewall logging but not decrypting) with a fleet of n
// laptops, each a container of its own with its own device certificate,
// all started at once behind the firewall's one NAT address. It closes r
// after the run: Wall includes the removal of the run's networks.
func FleetContainers(ctx context.Context, r *containers.Runner, n int) (FleetContainersResult, error) {
	res := FleetContainersResult{N: n}
	plan, err := cataloguePlan("visibility", "baseline")
	if err != nil {
		return res, err
	}
	plan.Fleet, plan.WaitUp = n, FleetContainerWait
	start := time.Now()
	obs, err := r.Run(ctx, plan)
	err = errors.Join(err, r.Close())
	res.Wall = time.Since(start)
	if err != nil {
		return res, err
	}
	if a := obs.Attempts; a != nil {
		res.Up, res.AllUp = a.Total-a.Failed, time.Duration(a.AllUpMS)*time.Millisecond
	}
	return res, nil
}

// fleetContainerRows runs FleetContainerSizes in turn while the machine
// holds them.
func fleetContainerRows(ctx context.Context, log func(string, ...any)) []Row {
	if err := containers.DockerAvailable(ctx); err != nil {
		return []Row{Missing("container fleet", UnitSeconds, "no Docker engine answers: "+err.Error())}
	}
	var rows []Row
	for _, n := range FleetContainerSizes {
		log("bench: fleet of %d laptop containers ...\n", n)
		// A runner each: every size's run makes its networks.
		res, err := FleetContainers(ctx, &containers.Runner{Parallel: 1}, n)
		label := fmt.Sprintf("containers: %d laptop containers, time until all up", n)
		if err != nil {
			rows = append(rows, Missing(label, UnitSeconds, err.Error()))
			break
		}
		if res.Up < res.N {
			rows = append(rows, Missing(label, UnitSeconds, fmt.Sprintf("%d of %d tunnels up within %v: the machine holds fewer", res.Up, res.N, FleetContainerWait)))
			break
		}
		rows = append(rows, Figure(label, res.AllUp.Seconds(), UnitSeconds).
			WithNote(fmt.Sprintf("whole run %.1f s (two networks, %d containers created and started at once, torn down): %.0f ms of run per laptop",
				res.Wall.Seconds(), n+4, float64(res.Wall.Milliseconds())/float64(n))))
	}
	return rows
}
