// Package resolve is pinwall's own name service: the simulated DNS that the
// client, the firewall and the gateway each query independently.
//
// Names live under reserved TLDs (.test) and are answered only from a Zone,
// never from the host's resolver, so a misrouted name can never reach the
// internet. A Record may hold a pool of addresses larger than one answer; a
// rotating record hands out a different window of the pool to each query, the
// way a GSLB spreads clients over a gateway pool. That rotation is what makes
// a firewall's FQDN object drift from what the client resolved.
//
// DNSServer serves a Resolver over real DNS (UDP, loopback only) for tools
// outside the simulation: the lab answers its names with the real loopback
// addresses standing in for the simulated ones, so a real proxy can resolve
// a CONNECT naming the gateway. Queries are parsed with
// golang.org/x/net/dns/dnsmessage; FuzzDNSAnswer fuzzes that path.
package resolve

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"time"
)

// Answer is the result of one lookup.
type Answer struct {
	Addrs []netip.Addr
	// TTL is how long the answer may be cached.
	TTL time.Duration
}

// Resolver looks names up. Implementations must be safe for concurrent use.
// A name that does not exist yields a *net.DNSError with IsNotFound set.
type Resolver interface {
	Lookup(ctx context.Context, host string) (Answer, error)
}

// Record is one name's data.
type Record struct {
	// Name is the fully qualified name, without a trailing dot.
	Name string `json:"name"`
	// Addrs is the pool of addresses behind the name.
	Addrs []netip.Addr `json:"addrs"`
	// TTL of each answer; zero means DefaultTTL.
	TTL time.Duration `json:"ttl,omitempty"`
	// Answer is how many addresses one answer holds; zero means all of them.
	Answer int `json:"answer,omitempty"`
	// Rotate advances the answer window by Answer addresses on every query.
	Rotate bool `json:"rotate,omitempty"`
}

// DefaultTTL is the TTL of a record that sets none.
const DefaultTTL = 60 * time.Second

// Zone is an in-memory Resolver. The zero value is an empty zone; Add fills it.
type Zone struct {
	mu      sync.Mutex
	records map[string]*zoneRecord
}

type zoneRecord struct {
	Record
	next    int
	queries int
}

// NewZone returns a zone holding records.
func NewZone(records ...Record) (*Zone, error) {
	z := &Zone{}
	for _, r := range records {
		if err := z.Add(r); err != nil {
			return nil, err
		}
	}
	return z, nil
}

// Add inserts or replaces a record.
func (z *Zone) Add(r Record) error {
	name := canonical(r.Name)
	if name == "" {
		return fmt.Errorf("resolve: record with empty name")
	}
	if len(r.Addrs) == 0 {
		return fmt.Errorf("resolve: record %s has no addresses", name)
	}
	if r.Answer < 0 {
		return fmt.Errorf("resolve: record %s: negative answer size %d", name, r.Answer)
	}
	r.Name = name
	r.Addrs = append([]netip.Addr(nil), r.Addrs...)
	z.mu.Lock()
	defer z.mu.Unlock()
	if z.records == nil {
		z.records = make(map[string]*zoneRecord)
	}
	z.records[name] = &zoneRecord{Record: r}
	return nil
}

// Lookup answers from the zone.
func (z *Zone) Lookup(ctx context.Context, host string) (Answer, error) {
	if err := ctx.Err(); err != nil {
		return Answer{}, err
	}
	name := canonical(host)
	if ip, err := netip.ParseAddr(name); err == nil {
		return Answer{Addrs: []netip.Addr{ip}, TTL: DefaultTTL}, nil
	}
	z.mu.Lock()
	defer z.mu.Unlock()
	r, ok := z.records[name]
	if !ok {
		return Answer{}, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	r.queries++
	ttl := r.TTL
	if ttl == 0 {
		ttl = DefaultTTL
	}
	n := r.Answer
	if n == 0 || n > len(r.Addrs) {
		n = len(r.Addrs)
	}
	out := make([]netip.Addr, 0, n)
	for i := 0; i < n; i++ {
		out = append(out, r.Addrs[(r.next+i)%len(r.Addrs)])
	}
	if r.Rotate {
		r.next = (r.next + n) % len(r.Addrs)
	}
	return Answer{Addrs: out, TTL: ttl}, nil
}

// Queries reports how many times name was looked up.
func (z *Zone) Queries(name string) int {
	z.mu.Lock()
	defer z.mu.Unlock()
	if r, ok := z.records[canonical(name)]; ok {
		return r.queries
	}
	return 0
}

// Records returns a copy of every record, sorted by name.
func (z *Zone) Records() []Record {
	z.mu.Lock()
	defer z.mu.Unlock()
	out := make([]Record, 0, len(z.records))
	for _, r := range z.records {
		rec := r.Record
		rec.Addrs = append([]netip.Addr(nil), rec.Addrs...)
		out = append(out, rec)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Pool returns every address of name's record, or nil.
func (z *Zone) Pool(name string) []netip.Addr {
	z.mu.Lock()
	defer z.mu.Unlock()
	if r, ok := z.records[canonical(name)]; ok {
		return append([]netip.Addr(nil), r.Addrs...)
	}
	return nil
}

func canonical(name string) string {
	return strings.ToLower(strings.TrimSuffix(strings.TrimSpace(name), "."))
}

// Func adapts a function to a Resolver.
type Func func(ctx context.Context, host string) (Answer, error)

// Lookup calls f.
func (f Func) Lookup(ctx context.Context, host string) (Answer, error) { return f(ctx, host) }

// Addr resolves host (a name or an IP literal) and returns its first address.
func Addr(ctx context.Context, r Resolver, host string) (netip.Addr, error) {
	if ip, err := netip.ParseAddr(host); err == nil {
		return ip, nil
	}
	ans, err := r.Lookup(ctx, host)
	if err != nil {
		return netip.Addr{}, err
	}
	if len(ans.Addrs) == 0 {
		return netip.Addr{}, &net.DNSError{Err: "no addresses", Name: host, IsNotFound: true}
	}
	return ans.Addrs[0], nil
}
