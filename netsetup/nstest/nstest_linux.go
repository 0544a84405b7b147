//go:build linux

package nstest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/pinwall/pinwall/hostnet"
)

// SkipReason is the message of a test skipped for lack of privileges.
const SkipReason = "netsetup: needs root and CAP_NET_ADMIN (run inside a container or as root)"

// Env is one test's set of namespaces. Create it with Guard.
type Env struct {
	t testing.TB

	mu     sync.Mutex
	nss    []*NS
	links  []string // every interface name the test created
	before hostState
}

// NS is a network namespace of the test.
type NS struct {
	env  *Env
	name string
	h    netns.NsHandle
	ino  uint64
}

// Guard skips t unless the process can create network namespaces and
// configure them, and registers the end-of-test checks (see the package
// documentation). Call it before anything else so its check runs last.
func Guard(t testing.TB) *Env {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip(SkipReason)
	}
	probe, _, err := newNS()
	if err != nil {
		t.Skipf("%s: creating a network namespace: %v", SkipReason, err)
	}
	probe.Close()
	e := &Env{t: t}
	e.before = hostSnapshot(nil)
	t.Cleanup(e.check)
	return e
}

// newNS creates an unnamed namespace on a thread of its own and returns its
// handle and inode; the calling thread's namespace is untouched.
func newNS() (netns.NsHandle, uint64, error) {
	var (
		h   netns.NsHandle = -1
		err error
	)
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread()
		orig, gerr := netns.Get()
		if gerr != nil {
			err = gerr
			return // exits locked: the thread is discarded
		}
		defer orig.Close()
		h, err = netns.New()
		if err != nil {
			return
		}
		if serr := netns.Set(orig); serr != nil {
			err = fmt.Errorf("back to the original namespace: %w", serr)
			h.Close()
			h = -1
			return
		}
		runtime.UnlockOSThread()
	}()
	<-done
	if err != nil {
		return -1, 0, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(h), &st); err != nil {
		h.Close()
		return -1, 0, err
	}
	return h, st.Ino, nil
}

// NS creates a namespace named name (for messages only) with its loopback
// interface up. It is released when the test ends.
func (e *Env) NS(name string) *NS {
	e.t.Helper()
	h, ino, err := newNS()
	if err != nil {
		e.t.Fatalf("nstest: create namespace %s: %v", name, err)
	}
	n := &NS{env: e, name: name, h: h, ino: ino}
	e.mu.Lock()
	e.nss = append(e.nss, n)
	e.mu.Unlock()
	e.t.Cleanup(func() { n.h.Close() })
	if err := n.Do(func() error {
		lo, err := netlink.LinkByName("lo")
		if err != nil {
			return err
		}
		return netlink.LinkSetUp(lo)
	}); err != nil {
		e.t.Fatalf("nstest: %s: set lo up: %v", name, err)
	}
	return n
}

// Name returns the namespace's name.
func (n *NS) Name() string { return n.name }

// Do runs fn inside the namespace on a locked OS thread of its own and
// returns its error. Sockets fn opens belong to the namespace; goroutines
// fn starts do not run in it.
func (n *NS) Do(fn func() error) error {
	var err error
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread()
		orig, gerr := netns.Get()
		if gerr != nil {
			err = gerr
			return
		}
		defer orig.Close()
		if serr := netns.Set(n.h); serr != nil {
			err = fmt.Errorf("nstest: enter %s: %w", n.name, serr)
			runtime.UnlockOSThread()
			return
		}
		err = fn()
		if rerr := netns.Set(orig); rerr != nil {
			// Stay locked: the thread is discarded with the goroutine.
			err = errors.Join(err, fmt.Errorf("nstest: leave %s: %w", n.name, rerr))
			return
		}
		runtime.UnlockOSThread()
	}()
	<-done
	return err
}

// DoThenDiscard runs fn inside the namespace on a locked OS thread that is
// discarded afterwards, for fn that change the thread itself (dropping a
// capability, say).
func (n *NS) DoThenDiscard(fn func() error) error {
	var err error
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		if serr := netns.Set(n.h); serr != nil {
			err = fmt.Errorf("nstest: enter %s: %w", n.name, serr)
			return
		}
		err = fn()
	}()
	<-done
	return err
}

// MustDo is Do failing the test on error.
func (n *NS) MustDo(fn func() error) {
	n.env.t.Helper()
	if err := n.Do(fn); err != nil {
		n.env.t.Fatalf("nstest: in %s: %v", n.name, err)
	}
}

// Sysctl writes value to /proc/sys/<key with dots as slashes> inside the
// namespace (as docker run --sysctl does for a container).
func (n *NS) Sysctl(key, value string) error {
	path := "/proc/sys/" + strings.ReplaceAll(key, ".", "/")
	return n.Do(func() error { return os.WriteFile(path, []byte(value), 0o644) })
}

// Link joins a and b with a veth pair: aIf in a with aAddr, bIf in b with
// bAddr, both up. The pair is deleted when the test ends.
func (e *Env) Link(a *NS, aIf string, aAddr netip.Prefix, b *NS, bIf string, bAddr netip.Prefix) {
	e.t.Helper()
	e.mu.Lock()
	e.links = append(e.links, aIf, bIf)
	e.mu.Unlock()
	a.MustDo(func() error {
		veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: aIf}, PeerName: bIf, PeerNamespace: netlink.NsFd(int(b.h))}
		if err := netlink.LinkAdd(veth); err != nil {
			return fmt.Errorf("add veth %s/%s: %w", aIf, bIf, err)
		}
		return addrUp(aIf, aAddr)
	})
	e.t.Cleanup(func() {
		_ = a.Do(func() error {
			if l, err := netlink.LinkByName(aIf); err == nil {
				return netlink.LinkDel(l)
			}
			return nil
		})
	})
	b.MustDo(func() error { return addrUp(bIf, bAddr) })
}

func addrUp(name string, p netip.Prefix) error {
	l, err := netlink.LinkByName(name)
	if err != nil {
		return err
	}
	if p.IsValid() {
		ipn := &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
		if err := netlink.AddrAdd(l, &netlink.Addr{IPNet: ipn}); err != nil {
			return fmt.Errorf("add %s to %s: %w", p, name, err)
		}
	}
	return netlink.LinkSetUp(l)
}

// Stack returns a hostnet.Stack whose sockets are opened inside n.
func (n *NS) Stack() hostnet.Stack { return nsStack{n} }

type nsStack struct{ n *NS }

func (s nsStack) DialContext(ctx context.Context, network, address string) (c net.Conn, err error) {
	derr := s.n.Do(func() error {
		c, err = hostnet.OS{}.DialContext(ctx, network, address)
		return nil
	})
	return c, errors.Join(err, derr)
}

func (s nsStack) Listen(ctx context.Context, network, address string) (l net.Listener, err error) {
	derr := s.n.Do(func() error {
		l, err = hostnet.OS{}.Listen(ctx, network, address)
		return nil
	})
	return l, errors.Join(err, derr)
}

func (s nsStack) ListenPacket(ctx context.Context, network, address string) (pc net.PacketConn, err error) {
	derr := s.n.Do(func() error {
		pc, err = hostnet.OS{}.ListenPacket(ctx, network, address)
		return nil
	})
	return pc, errors.Join(err, derr)
}

// hostState is what of the machine's own network a test could leak into.
type hostState struct {
	links  []string
	rules  []string
	tables []string
	err    error
}

// hostSnapshot reads the interfaces, IPv4 policy-routing rules and nftables
// tables of the process's namespace (nil links means all of them).
func hostSnapshot(names []string) hostState {
	var s hostState
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		links, err := netlink.LinkList()
		if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
			s.err = err
			return
		}
		for _, l := range links {
			if names == nil || slices.Contains(names, l.Attrs().Name) {
				s.links = append(s.links, l.Attrs().Name)
			}
		}
		rules, err := netlink.RuleList(netlink.FAMILY_V4)
		if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
			s.err = err
			return
		}
		for _, r := range rules {
			s.rules = append(s.rules, r.String())
		}
		c, err := nftables.New()
		if err != nil {
			s.err = err
			return
		}
		tables, err := c.ListTables()
		if err != nil {
			s.err = err
			return
		}
		for _, t := range tables {
			s.tables = append(s.tables, fmt.Sprintf("%d/%s", t.Family, t.Name))
		}
	}()
	<-done
	slices.Sort(s.rules)
	slices.Sort(s.tables)
	return s
}

// check runs when the test ends, after every other cleanup.
func (e *Env) check() {
	t := e.t
	e.mu.Lock()
	links, nss := e.links, e.nss
	e.mu.Unlock()
	if links == nil {
		// Only the test's own interfaces are its to check: other programs
		// (a Docker engine starting containers beside the test) add theirs.
		links = []string{}
	}
	after := hostSnapshot(links)
	if after.err != nil || e.before.err != nil {
		t.Errorf("nstest: reading the machine's network: %v", errors.Join(e.before.err, after.err))
		return
	}
	for _, l := range after.links {
		if !slices.Contains(e.before.links, l) {
			t.Errorf("nstest: interface %s left in the machine's namespace", l)
		}
	}
	for _, r := range after.rules {
		if !slices.Contains(e.before.rules, r) {
			t.Errorf("nstest: policy-routing rule added to the machine's namespace: %s", r)
		}
	}
	for _, tb := range after.tables {
		// Only pinwall's own table: a Docker engine may add its tables
		// while a container suite runs beside this test.
		if strings.HasSuffix(tb, "/pinwall") && !slices.Contains(e.before.tables, tb) {
			t.Errorf("nstest: nftables table added to the machine's namespace: %s", tb)
		}
	}
	// No thread of the process is still inside a test namespace, and no
	// descriptor refers to one: once their sockets are closed, the kernel
	// destroys them. A discarded thread takes a moment to exit.
	inos := map[string]string{}
	for _, n := range nss {
		inos[fmt.Sprintf("net:[%d]", n.ino)] = n.name
	}
	var refs []string
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		refs = nsRefs(inos)
		if len(refs) == 0 || time.Now().After(deadline) {
			break
		}
	}
	for _, r := range refs {
		t.Errorf("nstest: %s", r)
	}
}

func nsRefs(inos map[string]string) []string {
	var refs []string
	for _, pattern := range []string{"/proc/self/task/*/ns/net", "/proc/self/fd/*"} {
		paths, _ := filepath.Glob(pattern)
		for _, p := range paths {
			target, err := os.Readlink(p)
			if err != nil {
				continue
			}
			if name, ok := inos[target]; ok {
				refs = append(refs, fmt.Sprintf("%s still refers to namespace %s", p, name))
			}
		}
	}
	return refs
}
