package bench

import (
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// cpuSnapshot is the machine's CPU time and the part of it spent by this
// process and its descendants (the external tools), in clock ticks.
type cpuSnapshot struct {
	total, busy, ours uint64
	ok                bool
}

// readCPU reads /proc; on a system without it the snapshot is not ok.
func readCPU() cpuSnapshot {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuSnapshot{}
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return cpuSnapshot{}
	}
	var s cpuSnapshot
	for i, v := range f[1:] {
		n, _ := strconv.ParseUint(v, 10, 64)
		if i >= 8 { // guest time is already counted in user
			break
		}
		s.total += n
		// user, nice, system, steal. Interrupt and softirq time is left
		// out: on loopback it is mostly this process's own traffic, which
		// the kernel charges to no process.
		if i <= 2 || i == 7 {
			s.busy += n
		}
	}
	s.ours = treeTicks(os.Getpid())
	s.ok = true
	return s
}

// treeTicks sums user and system ticks of pid and its live descendants.
func treeTicks(root int) uint64 {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	parent := map[int]int{}
	ticks := map[int]uint64{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// The command name may hold spaces; the fields after it are fixed.
		i := strings.LastIndexByte(string(b), ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) < 13 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		ut, _ := strconv.ParseUint(f[11], 10, 64)
		st, _ := strconv.ParseUint(f[12], 10, 64)
		parent[pid] = ppid
		ticks[pid] = ut + st
	}
	var sum uint64
	for pid, t := range ticks {
		for p := pid; p > 1; p = parent[p] {
			if p == root {
				sum += t
				break
			}
		}
	}
	return sum
}

// otherCores is how many cores, on average between a and b, processes
// other than this one and its descendants kept busy; -1 when unknown.
func otherCores(a, b cpuSnapshot) float64 {
	if !a.ok || !b.ok || b.total <= a.total {
		return -1
	}
	busy := float64(b.busy - a.busy)
	ours := float64(b.ours) - float64(a.ours)
	other := max(busy-ours, 0)
	return other / float64(b.total-a.total) * float64(runtime.NumCPU())
}

// userHZ is the clock tick of /proc/<pid>/stat's utime and stime: USER_HZ,
// which Linux fixes at 100 for user space (proc(5)).
const userHZ = 100

// ownCPU is the CPU time this process and its descendants spent between a
// and b, at the clock tick's resolution (10 ms); 0 when unknown.
func ownCPU(a, b cpuSnapshot) time.Duration {
	if !a.ok || !b.ok || b.ours < a.ours {
		return 0
	}
	return time.Duration(b.ours-a.ours) * (time.Second / userHZ)
}

// processCPU is this process's user and system CPU time so far (its
// goroutines, not the containers or the engine).
func processCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
