package node

import (
	"os"
	"path/filepath"
)

// ContainerEvidence says why this process is taken to run in a container,
// or returns "" when nothing shows it does. A node reconfigures the network
// of the machine it runs on (addresses, routes, VXLAN, nftables), so it
// must not run on someone's host by mistake.
//
// The evidence, from the runtimes' own markers: /.dockerenv (Docker creates
// it in every container), /run/.containerenv (Podman), the "container"
// environment variable (the systemd convention that Podman, systemd-nspawn
// and LXC follow), or this process being PID 1 (a container's entrypoint;
// on a host PID 1 is the init system). root is "/" outside tests; getenv
// looks up the environment and pid is this process's.
func ContainerEvidence(root string, getenv func(string) string, pid int) string {
	for _, f := range []string{".dockerenv", "run/.containerenv"} {
		if fi, err := os.Stat(filepath.Join(root, f)); err == nil && fi.Mode().IsRegular() {
			return "/" + f + " exists"
		}
	}
	if v := getenv("container"); v != "" {
		return "container=" + v + " in the environment"
	}
	if pid == 1 {
		return "running as PID 1"
	}
	return ""
}
