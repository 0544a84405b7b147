package resolve

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

// DNSConfig configures a DNSServer. Zero values take the documented defaults.
type DNSConfig struct {
	// Addr is the UDP address to listen on ("127.0.0.1:0": any free port);
	// it must be a loopback address (required).
	Addr string
	// Resolver answers the names (required).
	Resolver Resolver
	// Map, if set, rewrites each address of an answer (in process: the
	// logical address to the real loopback address standing in for it);
	// false drops the address. Duplicates after mapping are dropped. nil
	// answers the addresses as they are.
	Map func(netip.Addr) (netip.Addr, bool)
	// Domains are what the server is authoritative for: a name under one
	// of them that Resolver does not know is answered NXDOMAIN, a name
	// outside all of them REFUSED (it is no recursive resolver). nil means
	// the reserved "test" domain, where pinwall's names live.
	Domains []string
	// LookupTimeout bounds one Resolver lookup; zero means 2s.
	LookupTimeout time.Duration
	// Logger receives malformed-query and error messages (at most one a
	// second); nil discards.
	Logger *slog.Logger
}

// MaxDNSAnswers is the most A records one answer carries, so that every
// response fits a 512-byte UDP message (the server speaks neither EDNS nor
// TCP). A rotating record answers a window of its pool anyway.
const MaxDNSAnswers = 16

// maxDNSQuery bounds what is read of a datagram; a query is far smaller.
const maxDNSQuery = 1500

// DNSStats counts what a DNSServer did.
type DNSStats struct {
	// Queries is every datagram received.
	Queries int64 `json:"queries"`
	// Answered got an answer (NOERROR, with or without records).
	Answered int64 `json:"answered"`
	// NXDomain and Refused got those response codes.
	NXDomain int64 `json:"nxdomain"`
	Refused  int64 `json:"refused"`
	// Malformed could not be parsed, or was not a query: dropped or
	// answered FORMERR/NOTIMP.
	Malformed int64 `json:"malformed"`
}

// DNSServer answers a Resolver's names over real DNS, on UDP, so that tools
// outside pinwall's simulation (a proxy resolving a CONNECT target, dig,
// a dnsmasq forwarding .test) can look pinwall's names up. One goroutine
// reads and answers each datagram in turn: the work per datagram is bounded
// (one question, at most MaxDNSAnswers records, one lookup bounded by
// LookupTimeout), and so is the server under a flood.
type DNSServer struct {
	cfg  DNSConfig
	pc   net.PacketConn
	done chan struct{}
	once sync.Once

	queries, answered, nxdomain, refused, malformed atomic.Int64
	lastLog                                         atomic.Int64 // unix nanoseconds
}

// ListenDNS validates cfg, opens its socket and serves until ctx ends or
// Close is called.
func ListenDNS(ctx context.Context, cfg DNSConfig) (*DNSServer, error) {
	if cfg.Resolver == nil {
		return nil, errors.New("resolve: dns: field Resolver is required")
	}
	ap, err := netip.ParseAddrPort(cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("resolve: dns: listen address %q: %w", cfg.Addr, err)
	}
	if !ap.Addr().IsLoopback() {
		return nil, fmt.Errorf("resolve: dns: listen address %s: only loopback addresses are served", ap)
	}
	if cfg.Domains == nil {
		cfg.Domains = []string{"test"}
	}
	for i, d := range cfg.Domains {
		cfg.Domains[i] = canonical(d)
	}
	if cfg.LookupTimeout <= 0 {
		cfg.LookupTimeout = 2 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	var lc net.ListenConfig
	pc, err := lc.ListenPacket(ctx, "udp", ap.String())
	if err != nil {
		return nil, fmt.Errorf("resolve: dns: %w", err)
	}
	s := &DNSServer{cfg: cfg, pc: pc, done: make(chan struct{})}
	stop := context.AfterFunc(ctx, func() { _ = s.pc.Close() })
	go func() {
		defer close(s.done)
		defer stop()
		s.serve()
	}()
	return s, nil
}

// Addr is the address the server listens on.
func (s *DNSServer) Addr() netip.AddrPort {
	return s.pc.LocalAddr().(*net.UDPAddr).AddrPort()
}

// Stats returns the server's counters.
func (s *DNSServer) Stats() DNSStats {
	return DNSStats{Queries: s.queries.Load(), Answered: s.answered.Load(), NXDomain: s.nxdomain.Load(),
		Refused: s.refused.Load(), Malformed: s.malformed.Load()}
}

// Close stops the server and waits for its goroutine. It is idempotent.
func (s *DNSServer) Close() error {
	s.once.Do(func() { _ = s.pc.Close() })
	<-s.done
	return nil
}

func (s *DNSServer) serve() {
	buf := make([]byte, maxDNSQuery)
	for {
		n, from, err := s.pc.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			s.logf("dns: read", "err", err)
			continue
		}
		s.queries.Add(1)
		resp := s.answer(buf[:n])
		if resp == nil {
			continue
		}
		if _, err := s.pc.WriteTo(resp, from); err != nil {
			s.logf("dns: write", "to", from, "err", err)
		}
	}
}

// answer builds the response to one datagram, or nil to drop it (not a
// DNS query at all, or a response).
func (s *DNSServer) answer(query []byte) []byte {
	var p dnsmessage.Parser
	h, err := p.Start(query)
	if err != nil || h.Response {
		s.malformed.Add(1)
		return nil
	}
	resp := dnsmessage.Header{ID: h.ID, Response: true, OpCode: h.OpCode, RecursionDesired: h.RecursionDesired, Authoritative: true}
	if h.OpCode != 0 {
		s.malformed.Add(1)
		resp.RCode = dnsmessage.RCodeNotImplemented
		return s.build(resp, nil, nil)
	}
	qs, err := p.AllQuestions()
	if err != nil || len(qs) != 1 {
		s.malformed.Add(1)
		resp.RCode = dnsmessage.RCodeFormatError
		return s.build(resp, nil, nil)
	}
	q := qs[0]
	name := canonical(q.Name.String())
	if q.Class != dnsmessage.ClassINET || !s.authoritative(name) {
		s.refused.Add(1)
		resp.RCode = dnsmessage.RCodeRefused
		return s.build(resp, &q, nil)
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.LookupTimeout)
	ans, err := s.cfg.Resolver.Lookup(ctx, name)
	cancel()
	var dnsErr *net.DNSError
	switch {
	case errors.As(err, &dnsErr) && dnsErr.IsNotFound:
		s.nxdomain.Add(1)
		resp.RCode = dnsmessage.RCodeNameError
		return s.build(resp, &q, nil)
	case err != nil:
		s.logf("dns: lookup", "name", name, "err", err)
		resp.RCode = dnsmessage.RCodeServerFailure
		return s.build(resp, &q, nil)
	}
	s.answered.Add(1)
	if q.Type != dnsmessage.TypeA {
		return s.build(resp, &q, nil) // the name exists, with IPv4 addresses only
	}
	return s.build(resp, &q, s.records(q.Name, ans))
}

// records turns an answer into A records: mapped, deduplicated, IPv4 only,
// at most MaxDNSAnswers.
func (s *DNSServer) records(name dnsmessage.Name, ans Answer) []dnsmessage.Resource {
	ttl := uint32(ans.TTL / time.Second)
	var out []dnsmessage.Resource
	seen := map[netip.Addr]bool{}
	for _, a := range ans.Addrs {
		if s.cfg.Map != nil {
			var ok bool
			if a, ok = s.cfg.Map(a); !ok {
				continue
			}
		}
		a = a.Unmap()
		if !a.Is4() || seen[a] {
			continue
		}
		seen[a] = true
		out = append(out, dnsmessage.Resource{
			Header: dnsmessage.ResourceHeader{Name: name, Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET, TTL: ttl},
			Body:   &dnsmessage.AResource{A: a.As4()},
		})
		if len(out) == MaxDNSAnswers {
			break
		}
	}
	return out
}

func (s *DNSServer) authoritative(name string) bool {
	for _, d := range s.cfg.Domains {
		if name == d || strings.HasSuffix(name, "."+d) {
			return true
		}
	}
	return false
}

func (s *DNSServer) build(h dnsmessage.Header, q *dnsmessage.Question, answers []dnsmessage.Resource) []byte {
	b := dnsmessage.NewBuilder(make([]byte, 0, 512), h)
	b.EnableCompression()
	if q != nil {
		if err := b.StartQuestions(); err != nil {
			return nil
		}
		if err := b.Question(*q); err != nil {
			return nil
		}
	}
	if err := b.StartAnswers(); err != nil {
		return nil
	}
	for _, r := range answers {
		if err := b.AResource(r.Header, *r.Body.(*dnsmessage.AResource)); err != nil {
			return nil
		}
	}
	msg, err := b.Finish()
	if err != nil {
		return nil
	}
	return msg
}

// logf logs at most one message a second.
func (s *DNSServer) logf(msg string, args ...any) {
	now := time.Now().UnixNano()
	last := s.lastLog.Load()
	if now-last < int64(time.Second) || !s.lastLog.CompareAndSwap(last, now) {
		return
	}
	s.cfg.Logger.Warn("resolve: "+msg, args...)
}
