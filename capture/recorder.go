package capture

import (
	"cmp"
	crand "crypto/rand"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"runtime"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pinwall/pinwall/pcapng"
)

// DefaultSnapLen is the payload a flow keeps in each direction when
// Config.SnapLen is zero: more than any catalogue flow or tunnel carries.
const DefaultSnapLen = 16 << 20

// DefaultMaxBytes bounds the packets a Recorder holds when Config.MaxBytes
// is zero.
const DefaultMaxBytes = 1 << 30

// Config configures a Recorder. The zero value is ready to use.
type Config struct {
	// SnapLen bounds the payload bytes kept per flow (a TCP connection or
	// a UDP socket pair) and direction: zero means DefaultSnapLen,
	// negative means no limit. Packets beyond it keep their headers.
	SnapLen int
	// MaxBytes bounds the packet bytes held; packets beyond it are dropped
	// and counted (Dropped). Zero means DefaultMaxBytes.
	MaxBytes int64
	// Application names the writer in the file's section header; empty
	// means pinwall with its commit and Go version, from the binary's
	// build information (DefaultApplication).
	Application string
	// Comment, if set, is the section header's comment (what was captured).
	Comment string
	// Now is the clock of synthesized packets; nil means the wall time at
	// New plus the monotonic time since, which never goes backwards.
	Now func() time.Time
	// Seed makes initial sequence numbers repeatable; zero picks them at random.
	Seed uint64
	// KeyLogTee, if set, also receives every new key log line (the file
	// SSLKEYLOGFILE names, for a browser or curl sharing it).
	KeyLogTee io.Writer
}

// Recorder collects one capture. It is safe for concurrent use.
type Recorder struct {
	cfg     Config
	clock   func() time.Time
	keys    *KeyLog
	order   atomic.Uint64
	dropped atomic.Int64

	mu     sync.Mutex
	ifaces []pcapng.Interface
	legs   map[string]*Leg
	pkts   []record
	rngMu  sync.Mutex // guards rng
	// The flows whose two ends are recorded, by the dialling end's kernel
	// addresses (TCP) or logical address (UDP).
	tcpFlows map[flowKey]*tcpFlow
	udpFlows map[flowKey]*udpFlow
	bytes    int64
	rng      *rand.Rand
}

// record is one packet held for writing.
type record struct {
	t     time.Time
	n     uint64 // order of recording, for equal timestamps
	iface uint32
	data  []byte
	orig  uint32
	dir   pcapng.Direction
}

// New returns an empty Recorder.
func New(cfg Config) *Recorder {
	if cfg.SnapLen == 0 {
		cfg.SnapLen = DefaultSnapLen
	}
	if cfg.MaxBytes <= 0 {
		cfg.MaxBytes = DefaultMaxBytes
	}
	if cfg.Application == "" {
		cfg.Application = DefaultApplication()
	}
	clock := cfg.Now
	if clock == nil {
		// Wall time at the start plus monotonic time since: timestamps
		// never go backwards, whatever the wall clock does.
		start := time.Now()
		clock = func() time.Time { return start.Add(time.Since(start)) }
	}
	seed := cfg.Seed
	if seed == 0 {
		var b [8]byte
		_, _ = crand.Read(b[:])
		seed = binary.LittleEndian.Uint64(b[:]) | 1
	}
	return &Recorder{
		cfg:      cfg,
		clock:    clock,
		keys:     NewKeyLog(cfg.KeyLogTee),
		legs:     map[string]*Leg{},
		tcpFlows: map[flowKey]*tcpFlow{},
		udpFlows: map[flowKey]*udpFlow{},
		rng:      rand.New(rand.NewPCG(seed, seed^0x5851f42d4c957f2d)),
	}
}

func (r *Recorder) now() time.Time { return r.clock() }

// DefaultApplication names this binary for a capture's section header:
// "pinwall (commit 0123abcd…, go1.26.8)", the commit from the build
// information (runtime/debug), "-dirty" when the tree had changes.
func DefaultApplication() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "pinwall"
	}
	commit, dirty := "unknown", false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			commit = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if dirty {
		commit += "-dirty"
	}
	return fmt.Sprintf("pinwall (commit %s, %s)", commit, bi.GoVersion)
}

// KeyLog returns the capture's key log: the KeyLogWriter to give every
// TLS and DTLS endpoint whose sessions the capture should decrypt.
func (r *Recorder) KeyLog() *KeyLog { return r.keys }

// Dropped counts packets dropped beyond MaxBytes.
func (r *Recorder) Dropped() int64 { return r.dropped.Load() }

// Packets counts the packets held.
func (r *Recorder) Packets() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.pkts)
}

// Interfaces returns the interfaces' names, in the file's order.
func (r *Recorder) Interfaces() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, len(r.ifaces))
	for i, f := range r.ifaces {
		out[i] = f.Name
	}
	return out
}

// SnapLen is the payload limit per flow and direction; negative means none.
func (r *Recorder) SnapLen() int { return r.cfg.SnapLen }

// AddInterface adds an interface as it is (a real one, read from another
// capture) and returns its index for AddPacket.
func (r *Recorder) AddInterface(i pcapng.Interface) uint32 {
	r.mu.Lock()
	defer r.mu.Unlock()
	i.TSResol = 9
	r.ifaces = append(r.ifaces, i)
	return uint32(len(r.ifaces) - 1)
}

// AddPacket adds a packet on an interface AddInterface returned; its data
// is copied.
func (r *Recorder) AddPacket(p pcapng.Packet) {
	orig := p.OrigLen
	if orig < uint32(len(p.Data)) {
		orig = uint32(len(p.Data))
	}
	r.add(record{t: p.Time, iface: p.Interface, data: slices.Clone(p.Data), orig: orig, dir: p.Direction})
}

func (r *Recorder) add(rec record) {
	rec.n = r.order.Add(1)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.bytes+int64(len(rec.data)) > r.cfg.MaxBytes {
		r.dropped.Add(1)
		return
	}
	r.bytes += int64(len(rec.data))
	r.pkts = append(r.pkts, rec)
}

// Leg returns the leg called name, adding its interface (raw IP, described
// by description) the first time.
func (r *Recorder) Leg(name, description string) *Leg {
	r.mu.Lock()
	defer r.mu.Unlock()
	if l, ok := r.legs[name]; ok {
		return l
	}
	r.ifaces = append(r.ifaces, pcapng.Interface{LinkType: pcapng.LinkRaw, Name: name, Description: description, OS: runtime.GOOS, TSResol: 9})
	l := &Leg{r: r, iface: uint32(len(r.ifaces) - 1), name: name}
	r.legs[name] = l
	return l
}

func (r *Recorder) isn() uint32 {
	r.rngMu.Lock()
	defer r.rngMu.Unlock()
	return r.rng.Uint32()
}

// WriteTo writes the capture as pcapng: section header, interfaces, the
// key log as a Decryption Secrets Block (when there are keys), then every
// packet in time order. The Recorder can go on recording afterwards.
func (r *Recorder) WriteTo(w io.Writer) (int64, error) {
	r.mu.Lock()
	ifaces := slices.Clone(r.ifaces)
	pkts := slices.Clone(r.pkts)
	r.mu.Unlock()
	slices.SortStableFunc(pkts, func(a, b record) int {
		if c := a.t.Compare(b.t); c != 0 {
			return c
		}
		return cmp.Compare(a.n, b.n)
	})
	cw := &countWriter{w: w}
	comment := r.cfg.Comment
	if d := r.Dropped(); d > 0 {
		comment += fmt.Sprintf(" (%d packets dropped beyond the capture's %d-byte memory limit)", d, r.cfg.MaxBytes)
	}
	pw, err := pcapng.NewWriter(cw, pcapng.Section{Application: r.cfg.Application, OS: runtime.GOOS, Comment: comment})
	if err != nil {
		return cw.n, err
	}
	for _, i := range ifaces {
		if _, err := pw.AddInterface(i); err != nil {
			return cw.n, err
		}
	}
	if keys := r.keys.Bytes(); len(keys) > 0 {
		if err := pw.WriteSecrets(pcapng.Secrets{Type: pcapng.SecretsTLSKeyLog, Data: keys}); err != nil {
			return cw.n, err
		}
	}
	for _, p := range pkts {
		if err := pw.WritePacket(pcapng.Packet{Interface: p.iface, Time: p.t, Data: p.data, OrigLen: p.orig, Direction: p.dir}); err != nil {
			return cw.n, err
		}
	}
	return cw.n, nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// Leg is one link of the topology: an interface of the capture.
type Leg struct {
	r     *Recorder
	iface uint32
	name  string
}

// Name returns the leg's name.
func (l *Leg) Name() string { return l.name }

// Conn returns c recording on this leg as the only end recorded: what
// it writes and what it reads, from its point of view (LocalAddr is the
// client). For a connection whose far end is out of reach (a real server
// a probe connects to). A TCP connection (*net.TCPAddr addresses) or a
// connected UDP socket (*net.UDPAddr); any other is returned as it is.
func (l *Leg) Conn(c net.Conn) net.Conn {
	local, remote, proto, ok := addrsOf(c)
	if !ok {
		return c
	}
	if proto == protoUDP {
		return &udpConn{Conn: c, f: &udpFlow{leg: l, a: local, b: remote}, oneSided: true}
	}
	f := &tcpFlow{leg: l, t0: l.r.now()}
	f.refs.Store(1)
	f.mu.Lock()
	f.start(local, remote)
	f.mu.Unlock()
	return &tcpConn{Conn: c, f: f, oneSided: true}
}

// Dialled returns the dialling end of a connection whose other end is
// recorded too (Accepted, PacketConn): each end records what it sends, as
// a capture on the wire between them would show it, even what the other
// end never reads. c's addresses are the flow's: LocalAddr the client,
// RemoteAddr the server as the client addressed it.
func (l *Leg) Dialled(c net.Conn) net.Conn {
	local, remote, proto, ok := addrsOf(c)
	if !ok {
		return c
	}
	if proto == protoUDP {
		f := &udpFlow{leg: l, a: local, b: remote, key: flowKey{proto: protoUDP, src: local}}
		l.r.registerUDP(f)
		return &udpConn{Conn: c, f: f}
	}
	rl, rr := kernelAddrs(c)
	f := l.r.tcpFlowFor(l, flowKey{proto: protoTCP, src: rl, dst: rr})
	f.mu.Lock()
	f.start(local, remote)
	f.mu.Unlock()
	return &tcpConn{Conn: c, f: f}
}

// Accepted returns the listening end of a TCP connection whose dialling
// end is recorded with Dialled.
func (l *Leg) Accepted(c net.Conn) net.Conn {
	if _, _, proto, ok := addrsOf(c); !ok || proto != protoTCP {
		return c
	}
	rl, rr := kernelAddrs(c)
	f := l.r.tcpFlowFor(l, flowKey{proto: protoTCP, src: rr, dst: rl})
	return &tcpConn{Conn: c, f: f, side: 1}
}

// PacketConn returns a listening UDP socket recording every datagram it
// sends to a socket recorded with Dialled.
func (r *Recorder) PacketConn(pc net.PacketConn) net.PacketConn {
	return &packetConn{PacketConn: pc, r: r}
}

// addrsOf returns a connection's addresses and protocol.
func addrsOf(c net.Conn) (local, remote netip.AddrPort, proto uint8, ok bool) {
	switch la := c.LocalAddr().(type) {
	case *net.TCPAddr:
		if ra, ok := c.RemoteAddr().(*net.TCPAddr); ok {
			return unmap(la.AddrPort()), unmap(ra.AddrPort()), protoTCP, true
		}
	case *net.UDPAddr:
		if ra, ok := c.RemoteAddr().(*net.UDPAddr); ok {
			return unmap(la.AddrPort()), unmap(ra.AddrPort()), protoUDP, true
		}
	}
	return local, remote, 0, false
}

// kernelAddrs returns the addresses of the innermost connection c wraps
// (the kernel's, which pair the two ends of a connection in hostnet's
// simulation, where each end reports logical addresses of its own).
func kernelAddrs(c net.Conn) (local, remote netip.AddrPort) {
	for {
		u, ok := c.(interface{ Unwrap() net.Conn })
		if !ok {
			break
		}
		c = u.Unwrap()
	}
	l, r, _, _ := addrsOf(c)
	return l, r
}

// tcpFlowFor returns the registered flow of key, creating it (not yet
// started) the first time, and counts one more end attached to it.
func (r *Recorder) tcpFlowFor(l *Leg, key flowKey) *tcpFlow {
	r.mu.Lock()
	defer r.mu.Unlock()
	f := r.tcpFlows[key]
	if f == nil {
		f = &tcpFlow{leg: l, key: key, t0: r.clock()}
		r.tcpFlows[key] = f
	}
	f.refs.Add(1)
	return f
}

// release forgets a flow once every end attached to it has closed.
//
// Lock order: a flow's mutex may be held when taking the Recorder's (to
// add a packet), never the other way round.
func (r *Recorder) release(f *tcpFlow) {
	if f.refs.Add(-1) > 0 || f.key == (flowKey{}) {
		return
	}
	r.mu.Lock()
	if r.tcpFlows[f.key] == f {
		delete(r.tcpFlows, f.key)
	}
	r.mu.Unlock()
}

func (r *Recorder) registerUDP(f *udpFlow) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.udpFlows[f.key] = f
}

func (r *Recorder) releaseUDP(f *udpFlow) {
	if f.key == (flowKey{}) {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.udpFlows[f.key] == f {
		delete(r.udpFlows, f.key)
	}
}

// udpFlowTo returns the registered flow of the connected socket at a.
func (r *Recorder) udpFlowTo(a netip.AddrPort) *udpFlow {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.udpFlows[flowKey{proto: protoUDP, src: a}]
}

// unmap turns an IPv4-mapped IPv6 address into IPv4.
func unmap(a netip.AddrPort) netip.AddrPort { return netip.AddrPortFrom(a.Addr().Unmap(), a.Port()) }

// keep returns how much of n payload bytes a flow direction that has kept
// *kept so far may keep, and counts them.
func (l *Leg) keep(kept *int, n int) int {
	snap := l.r.cfg.SnapLen
	if snap < 0 {
		return n
	}
	k := max(0, min(n, snap-*kept))
	*kept += k
	return k
}

func (l *Leg) emit(t time.Time, data []byte, orig int, dir pcapng.Direction) {
	l.r.add(record{t: t, iface: l.iface, data: data, orig: uint32(orig), dir: dir})
}
