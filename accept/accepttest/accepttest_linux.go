package accepttest

import (
	"context"
	"errors"
	"math"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// childTimeout bounds a child test run.
const childTimeout = 3 * time.Minute

// InChild, in the test process, runs t again in a child process (the same
// test binary, only this test) and fails t if the child fails; it returns
// false and the caller returns. In the child it lowers the soft
// RLIMIT_NOFILE to the descriptors already open plus headroom and returns
// true: the caller runs the test's body. t must be a top-level test.
func InChild(t *testing.T, headroom int) bool {
	t.Helper()
	if os.Getenv(envChild) == t.Name() {
		open, err := OpenFDs()
		if err != nil {
			t.Fatalf("accepttest: %v", err)
		}
		var lim syscall.Rlimit
		if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			t.Fatalf("accepttest: getrlimit: %v", err)
		}
		lim.Cur = uint64(open + headroom)
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			t.Fatalf("accepttest: setrlimit NOFILE %d: %v", lim.Cur, err)
		}
		t.Logf("accepttest: child with RLIMIT_NOFILE %d (%d open)", lim.Cur, open)
		return true
	}
	if strings.Contains(t.Name(), "/") {
		t.Fatalf("accepttest: InChild needs a top-level test, not %s", t.Name())
	}
	ctx, cancel := context.WithTimeout(t.Context(), childTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^"+regexp.QuoteMeta(t.Name())+"$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), envChild+"="+t.Name())
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("accepttest: child run of %s failed (%v):\n%s", t.Name(), err, out)
	}
	if !strings.Contains(string(out), "--- PASS: "+t.Name()) {
		t.Fatalf("accepttest: child run of %s did not pass:\n%s", t.Name(), out)
	}
	t.Logf("child run:\n%s", out)
	return false
}

// OpenFDs counts the process's open descriptors (/proc/self/fd).
func OpenFDs() (int, error) {
	f, err := os.Open("/proc/self/fd")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return 0, err
	}
	return len(names) - 1, nil // less the directory being read
}

// Filler holds descriptors taken by Exhaust.
type Filler struct {
	mu  sync.Mutex
	fds []int
}

// Exhaust opens /dev/null until the process reaches its descriptor limit
// (EMFILE) and holds every descriptor it opened; they are closed when the
// test ends, or earlier by Release.
func Exhaust(t testing.TB) *Filler {
	t.Helper()
	f := &Filler{}
	t.Cleanup(f.ReleaseAll)
	for {
		fd, err := syscall.Open("/dev/null", syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
		if errors.Is(err, syscall.EMFILE) {
			break
		}
		if err != nil {
			t.Fatalf("accepttest: open /dev/null: %v", err)
		}
		f.fds = append(f.fds, fd)
		if len(f.fds) > 1<<20 {
			t.Fatal("accepttest: no descriptor limit reached after 1M descriptors: run under InChild")
		}
	}
	t.Logf("accepttest: holding %d descriptors, none left", len(f.fds))
	return f
}

// Len counts the descriptors held.
func (f *Filler) Len() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.fds)
}

// Release closes n of the descriptors held (all if fewer).
func (f *Filler) Release(n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for ; n > 0 && len(f.fds) > 0; n-- {
		_ = syscall.Close(f.fds[len(f.fds)-1])
		f.fds = f.fds[:len(f.fds)-1]
	}
}

// ReleaseAll closes every descriptor held.
func (f *Filler) ReleaseAll() { f.Release(math.MaxInt) }
