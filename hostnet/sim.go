package hostnet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
)

// Sim is an in-process network of hosts on loopback addresses. Create one
// with NewSim; it has no goroutines of its own, so it needs no Close: every
// socket belongs to the component that opened it.
type Sim struct {
	log *slog.Logger

	mu        sync.Mutex
	hosts     map[string]*Host
	owner     map[netip.Addr]*Host // logical address -> host
	byLoop    map[netip.Addr]*Host // loopback address -> host
	listeners map[sockKey]uint16   // logical socket -> real port
	reverse   map[realKey]uint16   // real socket -> logical port
	routes    []route
	nextLoop  uint32
	tap       Tap // see SetTap; nil means none
}

type sockKey struct {
	proto Proto
	addr  netip.AddrPort // logical
}

type realKey struct {
	proto Proto
	addr  netip.AddrPort // loopback
}

type route struct {
	lan netip.Prefix
	via Router
}

// Router names the logical addresses of a firewall's intercept sockets, on
// the firewall's inside host. TCP connections arrive with a PROXY v2 header;
// UDP datagrams each carry one.
type Router struct {
	TCP netip.AddrPort
	UDP netip.AddrPort
}

// NewSim returns an empty network. log may be nil.
func NewSim(log *slog.Logger) *Sim {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Sim{
		log:       log,
		hosts:     make(map[string]*Host),
		owner:     make(map[netip.Addr]*Host),
		byLoop:    make(map[netip.Addr]*Host),
		listeners: make(map[sockKey]uint16),
		reverse:   make(map[realKey]uint16),
	}
}

// AddHost adds a host owning the logical IPv4 addresses addrs (the first is
// its primary address, used as the source of its connections).
func (s *Sim) AddHost(name string, addrs ...netip.Addr) (*Host, error) {
	if len(addrs) == 0 {
		return nil, fmt.Errorf("hostnet: host %q has no address", name)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, dup := s.hosts[name]; dup {
		return nil, fmt.Errorf("hostnet: host %q exists", name)
	}
	for _, a := range addrs {
		if !a.Is4() {
			return nil, fmt.Errorf("hostnet: host %q: %s is not IPv4", name, a)
		}
		if o, taken := s.owner[a]; taken {
			return nil, fmt.Errorf("hostnet: host %q: %s already belongs to %q", name, a, o.name)
		}
	}
	h := &Host{sim: s, name: name, addrs: append([]netip.Addr(nil), addrs...)}
	h.loop = s.loopbackFor(addrs[0])
	s.hosts[name] = h
	s.byLoop[h.loop] = h
	for _, a := range addrs {
		s.owner[a] = h
	}
	return h, nil
}

// loopbackFor maps a.b.c.d to 127.b.c.d when that is free, else to the next
// free address of 127.200.0.0/16.
func (s *Sim) loopbackFor(a netip.Addr) netip.Addr {
	b := a.As4()
	cand := netip.AddrFrom4([4]byte{127, b[1], b[2], b[3]})
	if _, taken := s.byLoop[cand]; !taken && b[3] != 0 && b[3] != 255 && cand != netip.MustParseAddr("127.0.0.1") {
		return cand
	}
	for {
		s.nextLoop++
		n := s.nextLoop
		cand = netip.AddrFrom4([4]byte{127, 200, byte(n >> 8), byte(n)})
		if _, taken := s.byLoop[cand]; !taken && byte(n) != 0 && byte(n) != 255 {
			return cand
		}
	}
}

// Host returns the host named name, or nil.
func (s *Sim) Host(name string) *Host {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hosts[name]
}

// Route sends traffic from hosts inside lan to anything outside it through via.
func (s *Sim) Route(lan netip.Prefix, via Router) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, r := range s.routes {
		if r.lan == lan {
			s.routes[i].via = via
			return
		}
	}
	s.routes = append(s.routes, route{lan: lan, via: via})
}

// Unroute removes lan's route: its hosts reach the internet directly again.
func (s *Sim) Unroute(lan netip.Prefix) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, r := range s.routes {
		if r.lan == lan {
			s.routes = append(s.routes[:i], s.routes[i+1:]...)
			return
		}
	}
}

// Loopback returns the loopback address standing in for logical address a.
func (s *Sim) Loopback(a netip.Addr) (netip.Addr, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	h, ok := s.owner[a.Unmap()]
	if !ok {
		return netip.Addr{}, false
	}
	return h.loop, true
}

// RealAddr returns the real loopback socket address standing in for the
// logical socket address a (a listening socket's real port, or the same port).
func (s *Sim) RealAddr(proto Proto, a netip.AddrPort) (netip.AddrPort, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.realLocked(proto, a)
}

func (s *Sim) realLocked(proto Proto, a netip.AddrPort) (netip.AddrPort, bool) {
	a = netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
	h, ok := s.owner[a.Addr()]
	if !ok || h.down.Load() {
		return netip.AddrPort{}, false
	}
	port := a.Port()
	if p, ok := s.listeners[sockKey{proto, a}]; ok {
		port = p
	}
	return netip.AddrPortFrom(h.loop, port), true
}

// Logical maps a real loopback socket address back to its logical address.
// Addresses outside the simulation are returned unchanged.
func (s *Sim) Logical(proto Proto, real netip.AddrPort) netip.AddrPort {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.logicalLocked(proto, real)
}

func (s *Sim) logicalLocked(proto Proto, real netip.AddrPort) netip.AddrPort {
	real = netip.AddrPortFrom(real.Addr().Unmap(), real.Port())
	h, ok := s.byLoop[real.Addr()]
	if !ok {
		return real
	}
	port := real.Port()
	if p, ok := s.reverse[realKey{proto, real}]; ok {
		port = p
	}
	return netip.AddrPortFrom(h.addrs[0], port)
}

func (s *Sim) routeFor(src, dst netip.Addr) (Router, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range s.routes {
		if r.lan.Contains(src) && !r.lan.Contains(dst) {
			return r.via, true
		}
	}
	return Router{}, false
}

func (s *Sim) register(proto Proto, logical []netip.AddrPort, real netip.AddrPort) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range logical {
		if _, taken := s.listeners[sockKey{proto, l}]; taken {
			return fmt.Errorf("hostnet: %s %s: %w", proto, l, errAddrInUse)
		}
	}
	for _, l := range logical {
		s.listeners[sockKey{proto, l}] = real.Port()
	}
	s.reverse[realKey{proto, real}] = logical[0].Port()
	return nil
}

func (s *Sim) unregister(proto Proto, logical []netip.AddrPort, real netip.AddrPort) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range logical {
		if s.listeners[sockKey{proto, l}] == real.Port() {
			delete(s.listeners, sockKey{proto, l})
		}
	}
	delete(s.reverse, realKey{proto, real})
}

var errAddrInUse = errors.New("address already in use")

// Impairment degrades a host's UDP: every datagram it sends or receives is
// dropped with probability Loss. Loss 1 drops everything.
type Impairment struct {
	Loss float64
	// Seed makes the drops repeatable; zero picks 1.
	Seed uint64
}

// Host is one simulated machine. It implements Stack.
type Host struct {
	sim   *Sim
	name  string
	addrs []netip.Addr
	loop  netip.Addr

	down   atomic.Bool
	impair atomic.Pointer[impairer]

	droppedUDP atomic.Int64
}

var _ Stack = (*Host)(nil)

// Name returns the host's name.
func (h *Host) Name() string { return h.name }

// Addr returns the host's primary logical address.
func (h *Host) Addr() netip.Addr { return h.addrs[0] }

// Addrs returns every logical address of the host.
func (h *Host) Addrs() []netip.Addr { return append([]netip.Addr(nil), h.addrs...) }

// Loopback returns the real loopback address behind the host.
func (h *Host) Loopback() netip.Addr { return h.loop }

// SetDown makes the host unreachable (true) or reachable again: dials to it
// hang until their context ends, as towards a machine that is switched off.
// Sockets already open are not affected.
func (h *Host) SetDown(down bool) { h.down.Store(down) }

// Impair sets (or, with a zero Impairment, clears) the host's UDP impairment.
func (h *Host) Impair(im Impairment) {
	if im.Loss <= 0 {
		h.impair.Store(nil)
		return
	}
	h.impair.Store(newImpairer(im))
}

// DroppedUDP counts datagrams dropped by the host's impairment.
func (h *Host) DroppedUDP() int64 { return h.droppedUDP.Load() }

func (h *Host) drop() bool {
	im := h.impair.Load()
	if im == nil || !im.drop() {
		return false
	}
	h.droppedUDP.Add(1)
	return true
}

func (h *Host) owns(a netip.Addr) bool {
	for _, x := range h.addrs {
		if x == a {
			return true
		}
	}
	return false
}

func protoOf(network string) (Proto, error) {
	switch network {
	case "tcp", "tcp4":
		return ProtoTCP, nil
	case "udp", "udp4":
		return ProtoUDP, nil
	}
	return 0, fmt.Errorf("hostnet: network %q not supported (want tcp or udp)", network)
}

// listenAddrs expands address into the logical socket addresses to claim.
func (h *Host) listenAddrs(address string) ([]netip.AddrPort, error) {
	ap, err := ParseAddrPort(address)
	if err != nil {
		return nil, err
	}
	if ap.Addr().IsUnspecified() {
		out := make([]netip.AddrPort, len(h.addrs))
		for i, a := range h.addrs {
			out[i] = netip.AddrPortFrom(a, ap.Port())
		}
		return out, nil
	}
	if !h.owns(ap.Addr()) {
		return nil, fmt.Errorf("hostnet: host %q cannot listen on %s: not its address", h.name, ap.Addr())
	}
	return []netip.AddrPort{ap}, nil
}

// Listen implements Stack.
func (h *Host) Listen(ctx context.Context, network, address string) (net.Listener, error) {
	proto, err := protoOf(network)
	if err != nil || proto != ProtoTCP {
		return nil, fmt.Errorf("hostnet: Listen wants tcp, got %q", network)
	}
	logical, err := h.listenAddrs(address)
	if err != nil {
		return nil, err
	}
	lc := net.ListenConfig{}
	l, err := lc.Listen(ctx, "tcp4", netip.AddrPortFrom(h.loop, 0).String())
	if err != nil {
		return nil, err
	}
	real := l.Addr().(*net.TCPAddr).AddrPort()
	logical = fillPort(logical, real.Port())
	if err := h.sim.register(ProtoTCP, logical, real); err != nil {
		l.Close()
		return nil, err
	}
	return &listener{Listener: l, host: h, logical: logical, real: real}, nil
}

// ListenPacket implements Stack.
func (h *Host) ListenPacket(ctx context.Context, network, address string) (net.PacketConn, error) {
	proto, err := protoOf(network)
	if err != nil || proto != ProtoUDP {
		return nil, fmt.Errorf("hostnet: ListenPacket wants udp, got %q", network)
	}
	logical, err := h.listenAddrs(address)
	if err != nil {
		return nil, err
	}
	lc := net.ListenConfig{Control: OS{}.control}
	pc, err := lc.ListenPacket(ctx, "udp4", netip.AddrPortFrom(h.loop, 0).String())
	if err != nil {
		return nil, err
	}
	real := pc.LocalAddr().(*net.UDPAddr).AddrPort()
	logical = fillPort(logical, real.Port())
	if err := h.sim.register(ProtoUDP, logical, real); err != nil {
		pc.Close()
		return nil, err
	}
	return h.tapPacketConn(&packetConn{UDPConn: pc.(*net.UDPConn), host: h, logical: logical, real: real}), nil
}

func fillPort(logical []netip.AddrPort, port uint16) []netip.AddrPort {
	if logical[0].Port() != 0 {
		return logical
	}
	out := make([]netip.AddrPort, len(logical))
	for i, l := range logical {
		out[i] = netip.AddrPortFrom(l.Addr(), port)
	}
	return out
}

// DialContext implements Stack.
func (h *Host) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	proto, err := protoOf(network)
	if err != nil {
		return nil, err
	}
	dst, err := ParseAddrPort(address)
	if err != nil {
		return nil, err
	}
	if dst.Addr().IsLoopback() {
		// Outside the simulation: a program on this machine (curl, a
		// proxy the lab exposes on 127.0.0.1). Dialled for real.
		return h.dialReal(ctx, proto, dst, dst, nil, nil)
	}
	if via, routed := h.sim.routeFor(h.addrs[0], dst.Addr()); routed {
		return h.dialVia(ctx, proto, dst, via)
	}
	real, ok := h.sim.RealAddr(proto, dst)
	if !ok {
		return h.blackhole(ctx, proto, dst)
	}
	return h.dialReal(ctx, proto, real, dst, nil, h.sim.hostAt(dst.Addr()))
}

// dialReal dials the real address standing in for logicalDst; to is the
// host that answers (nil outside the simulation), for the tap.
func (h *Host) dialReal(ctx context.Context, proto Proto, real, logicalDst netip.AddrPort, header *ProxyHeader, to *Host) (net.Conn, error) {
	d := net.Dialer{Control: OS{}.control}
	switch proto {
	case ProtoTCP:
		d.LocalAddr = &net.TCPAddr{IP: h.loop.AsSlice()}
		c, err := d.DialContext(ctx, "tcp4", real.String())
		if err != nil {
			return nil, h.dialError("tcp", logicalDst, err)
		}
		tc := c.(*net.TCPConn)
		local := netip.AddrPortFrom(h.addrs[0], tc.LocalAddr().(*net.TCPAddr).AddrPort().Port())
		if header != nil {
			header.Src = local
			b, err := AppendProxyHeader(nil, *header)
			if err == nil {
				_, err = tc.Write(b)
			}
			if err != nil {
				tc.Close()
				return nil, h.dialError("tcp", logicalDst, err)
			}
		}
		return h.tapDialled(proto, to, &tcpConn{TCPConn: tc, local: net.TCPAddrFromAddrPort(local), remote: net.TCPAddrFromAddrPort(logicalDst)}), nil
	default:
		d.LocalAddr = &net.UDPAddr{IP: h.loop.AsSlice()}
		c, err := d.DialContext(ctx, "udp4", real.String())
		if err != nil {
			return nil, h.dialError("udp", logicalDst, err)
		}
		uc := c.(*net.UDPConn)
		local := netip.AddrPortFrom(h.addrs[0], uc.LocalAddr().(*net.UDPAddr).AddrPort().Port())
		out := &udpConn{UDPConn: uc, host: h, local: net.UDPAddrFromAddrPort(local), remote: net.UDPAddrFromAddrPort(logicalDst)}
		if header != nil {
			header.Src = local
			b, err := AppendProxyHeader(nil, *header)
			if err != nil {
				uc.Close()
				return nil, h.dialError("udp", logicalDst, err)
			}
			out.prefix = b
		}
		return h.tapDialled(proto, to, out), nil
	}
}

func (h *Host) dialVia(ctx context.Context, proto Proto, dst netip.AddrPort, via Router) (net.Conn, error) {
	intercept := via.TCP
	if proto == ProtoUDP {
		intercept = via.UDP
	}
	real, ok := h.sim.RealAddr(proto, intercept)
	if !ok {
		// The router is gone: as if the default gateway stopped answering.
		return h.blackhole(ctx, proto, dst)
	}
	return h.dialReal(ctx, proto, real, dst, &ProxyHeader{Proto: proto, Dst: dst}, h.sim.hostAt(intercept.Addr()))
}

func (h *Host) dialError(network string, dst netip.AddrPort, err error) error {
	var oe *net.OpError
	if errors.As(err, &oe) {
		return &net.OpError{Op: "dial", Net: network, Addr: net.TCPAddrFromAddrPort(dst), Err: oe.Err}
	}
	return err
}

// blackhole behaves like a destination that never answers: TCP dials hang
// until ctx ends; UDP "connects" and then loses every datagram.
func (h *Host) blackhole(ctx context.Context, proto Proto, dst netip.AddrPort) (net.Conn, error) {
	if proto == ProtoUDP {
		return newSinkConn(netip.AddrPortFrom(h.addrs[0], 0), dst), nil
	}
	<-ctx.Done()
	return nil, &net.OpError{Op: "dial", Net: "tcp", Addr: net.TCPAddrFromAddrPort(dst), Err: ctx.Err()}
}
