package main

import (
	"context"
	"debug/elf"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/pinwall/pinwall/harness"
	"github.com/pinwall/pinwall/harness/containers"
	"github.com/pinwall/pinwall/interceptors"
	"github.com/pinwall/pinwall/internal/node"
	"github.com/pinwall/pinwall/pki"
)

// serveRole runs one component of a container topology from its node
// configuration (written by the container runner). SIGHUP reloads the
// firewall's policy, SIGUSR1 tells the client the network changed,
// SIGUSR2 applies the impairment the runner wrote (node.ImpairPath),
// SIGCONT starts a laptop that waits for it (node.Client.WaitStart) and
// SIGWINCH tells the laptop the runner's events are applied
// (node.Client.EventsSignalled).
func serveRole(ctx context.Context, role string, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("serve "+role, "pinwall serve "+role+" [--config FILE | --config-env]", args, stdout, stderr)
	config := fs.String("config", node.ConfigPath, "node configuration (JSON, written by the container runner)")
	configEnv := fs.Bool("config-env", false, "read the node configuration from $"+node.ConfigEnv+" (the container runner's hand-over) instead of --config")
	inContainer := fs.Bool("i-am-in-a-container", false, "run although nothing shows this is a container: this role reconfigures the network of the machine it runs on")
	if err := fs.Parse(args); err != nil {
		return flagError(err)
	}
	if err := requireContainer(role, node.ContainerEvidence("/", os.Getenv, os.Getpid()), *inContainer); err != nil {
		return err
	}
	source := *config
	var nc node.Config
	var err error
	if *configEnv {
		// The tools a firewall supervises do not inherit it (it holds the
		// enterprise CA's key).
		source = "$" + node.ConfigEnv
		env := os.Getenv(node.ConfigEnv)
		os.Unsetenv(node.ConfigEnv)
		nc, err = node.ParseConfig(source, []byte(env))
	} else {
		nc, err = node.ReadConfig(*config)
	}
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	if nc.Role != role {
		return usageError("serve %s: %s configures role %q", role, source, nc.Role)
	}
	reload := make(chan struct{}, 1)
	netChange := make(chan struct{}, 1)
	impair := make(chan struct{}, 1)
	start := make(chan struct{}, 1)
	eventsDone := make(chan struct{}, 1)
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGCONT, syscall.SIGWINCH)
	defer signal.Stop(sigs)
	go func() {
		for s := range sigs {
			ch := reload
			switch s {
			case syscall.SIGUSR1:
				ch = netChange
			case syscall.SIGUSR2:
				ch = impair
			case syscall.SIGCONT:
				ch = start
			case syscall.SIGWINCH:
				ch = eventsDone
			}
			select {
			case ch <- struct{}{}:
			default:
			}
		}
	}()
	return node.Run(ctx, nc, node.Signals{Reload: reload, NetworkChange: netChange, Impair: impair, Start: start, EventsDone: eventsDone}, stdout, stderr)
}

// requireContainer refuses to run a container role where nothing shows a
// container (evidence is empty) unless the caller says it is one.
func requireContainer(role, evidence string, override bool) error {
	if evidence != "" || override {
		return nil
	}
	return usageError("serve %s: this role runs in pinwall's containers and reconfigures the network of the machine it runs on "+
		"(addresses, routes, VXLAN, nftables); nothing shows this is a container (no /.dockerenv, no /run/.containerenv, "+
		"no container= in the environment, not PID 1), so it will not run here; pass --i-am-in-a-container if it is one", role)
}

// newContainerRunner returns the Docker runner, putting this very binary
// in the image when it is static, else building one from the source.
func newContainerRunner(set *pki.Set, parallel int, stderr io.Writer) (harness.Runner, error) {
	if err := containers.DockerAvailable(context.Background()); err != nil {
		return nil, usageError("--mode containers: no Docker engine answers: %v", err)
	}
	if parallel > containers.MaxParallelRuns {
		return nil, usageError("--mode containers: --parallel %d: at most %d runs hold containers at once (each needs its own pair of subnets)", parallel, containers.MaxParallelRuns)
	}
	r := &containers.Runner{PKI: set, Parallel: parallel, Keep: os.Getenv("PINWALL_KEEP_CONTAINERS") != ""}
	if os.Getenv("PINWALL_CONTAINERS_DEBUG") != "" {
		// Every run's and node's timing (where the engine's time goes).
		r.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	if exe, err := os.Executable(); err == nil && isStatic(exe) {
		r.Binary = exe
	} else {
		fmt.Fprintln(stderr, "pinwall: this binary is not static; building one for the image from the source (CGO_ENABLED=0)")
	}
	return r, nil
}

// isStatic reports an ELF executable without a dynamic loader.
func isStatic(path string) bool {
	f, err := elf.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return false
		}
	}
	return true
}

// prepareTools makes the firewall image of the third-party tools before
// the runs start, saying so when it takes a while (the first time:
// mmdebstrap and docker import).
func prepareTools(ctx context.Context, runner harness.Runner, stderr io.Writer) error {
	c, ok := runner.(*containers.Runner)
	if !ok {
		return nil
	}
	fmt.Fprintf(stderr, "pinwall: the interceptors' image %s (Debian %s: %s)…\n", containers.ToolsImageTag(), containers.ToolsSuite, strings.Join(interceptors.Packages, ", "))
	if _, err := c.ToolsImage(ctx); err != nil {
		return fmt.Errorf("the interceptors' image: %w", err)
	}
	if res := c.ToolsImageBuild(); res.ImageCreated {
		built := "from the cached root filesystem " + res.Rootfs
		if res.RootfsBuilt {
			built = fmt.Sprintf("mmdebstrap %.1fs", res.RootfsTook.Seconds())
		}
		fmt.Fprintf(stderr, "pinwall: made %s in %.1fs (%s)\n", res.Tag, res.Took.Seconds(), built)
	}
	return nil
}
