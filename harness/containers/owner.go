package containers

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// Labels every container and network of a container run carries, so that
// runs sharing one Docker engine (other users, other CI jobs, another
// pinwall in the same process) each find their own resources and a sweep
// can tell a dead run's leftovers from a live run's resources.
const (
	// LabelRun holds the run's id: one plan's containers and networks.
	LabelRun = "pinwall.run"
	// LabelRunner holds the id of the Runner value that made the run, so
	// a test asserts on its own runs only.
	LabelRunner = "pinwall.runner"
	// LabelOwner holds the owning process, "HOST/PID/START" (see Owner).
	LabelOwner = "pinwall.owner"
	// LabelKeep marks the resources of a Runner with Keep set: the sweep
	// before each run leaves them for whoever is debugging; `pinwall
	// clean` removes them once their owner is gone.
	LabelKeep = "pinwall.keep"
)

// Owner identifies a process: the host it runs on (thisHost), its pid and its start
// time (clock ticks since boot, from /proc/PID/stat, so that a pid the
// kernel has reused for another process is not mistaken for the owner).
type Owner struct {
	Host  string
	PID   int
	Start uint64
}

// String is the LabelOwner value: "HOST/PID/START".
func (o Owner) String() string { return fmt.Sprintf("%s/%d/%d", o.Host, o.PID, o.Start) }

// ParseOwner reads a LabelOwner value.
func ParseOwner(s string) (Owner, error) {
	i := strings.LastIndex(s, "/")
	j := strings.LastIndex(s[:max(i, 0)], "/")
	if i < 0 || j < 0 {
		return Owner{}, fmt.Errorf("owner %q: want HOST/PID/START", s)
	}
	pid, err := strconv.Atoi(s[j+1 : i])
	if err != nil || pid <= 0 {
		return Owner{}, fmt.Errorf("owner %q: pid %q is not a positive number", s, s[j+1:i])
	}
	start, err := strconv.ParseUint(s[i+1:], 10, 64)
	if err != nil {
		return Owner{}, fmt.Errorf("owner %q: start %q is not a number", s, s[i+1:])
	}
	return Owner{Host: s[:j], PID: pid, Start: start}, nil
}

// Self is this process as an Owner.
func Self() Owner {
	pid := os.Getpid()
	start, _ := processStart(pid)
	return Owner{Host: thisHost(), PID: pid, Start: start}
}

// thisHost names this machine for LabelOwner: its hostname and, where the
// kernel has one, the first 12 digits of its boot id. A hostname alone is
// not enough on a shared engine: machines made from one image share it
// (every machine of this project's workplace is "vm"), and a pid on one is
// not a pid on another, so another machine's live run would look dead here
// and `pinwall clean` would remove it. The boot id differs between
// machines and between boots of one; an owner from another boot is judged
// as one elsewhere, by the age of its resources.
func thisHost() string {
	host, _ := os.Hostname()
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if id := strings.ReplaceAll(strings.TrimSpace(string(b)), "-", ""); err == nil && len(id) >= 12 {
		host += "@" + id[:12]
	}
	return host
}

// Liveness is what can be known about an owner from this host.
type Liveness int

// Liveness values.
const (
	// Alive: the owner runs on this host.
	Alive Liveness = iota
	// Dead: the owner ran on this host and is gone (its pid is free, or
	// held by a process started at another time).
	Dead
	// Elsewhere: the owner runs (or ran) on another host sharing the
	// engine; only the age of its resources can tell.
	Elsewhere
)

func (l Liveness) String() string {
	switch l {
	case Alive:
		return "alive"
	case Dead:
		return "dead"
	}
	return "on another host"
}

// Check tells whether o is alive, seen from this host.
func (o Owner) Check() Liveness {
	if o.Host != thisHost() {
		return Elsewhere
	}
	start, err := processStart(o.PID)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return Dead
	case err == nil:
		if o.Start != 0 && start != o.Start {
			return Dead // the pid was reused
		}
		return Alive
	}
	// No /proc (not Linux): ask the kernel whether the pid exists.
	if err := syscall.Kill(o.PID, 0); errors.Is(err, syscall.ESRCH) {
		return Dead
	}
	return Alive
}

// errNoProc: this system has no /proc to read a process's start from.
var errNoProc = errors.New("no /proc")

// processStart reads a process's start time (field 22 of /proc/PID/stat).
// A missing process is os.ErrNotExist.
func processStart(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			if _, serr := os.Stat("/proc/self/stat"); serr != nil {
				return 0, errNoProc // not "the process is gone"
			}
		}
		return 0, err
	}
	// The command name (field 2) is in parentheses and may hold spaces.
	s := string(b)
	rest := s[strings.LastIndexByte(s, ')')+1:]
	f := strings.Fields(rest)
	if len(f) < 20 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields after the name", pid, len(f))
	}
	return strconv.ParseUint(f[19], 10, 64)
}
