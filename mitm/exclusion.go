package mitm

import (
	"net/netip"
	"sort"
	"sync"
	"time"
)

// Exclusion is one learned decryption exclusion, like an entry of PAN-OS's
// local decryption exclusion cache (keyed by server address and port).
type Exclusion struct {
	Server  netip.AddrPort `json:"server"`
	SNI     string         `json:"sni,omitempty"`
	Reason  string         `json:"reason"`
	Learned time.Time      `json:"learned"`
	Expires time.Time      `json:"expires"`
	Hits    int            `json:"hits"`
}

type exclusionCache struct {
	mu      sync.Mutex
	now     func() time.Time
	entries map[netip.AddrPort]*Exclusion
	max     int
}

func newExclusionCache(now func() time.Time) *exclusionCache {
	return &exclusionCache{now: now, entries: map[netip.AddrPort]*Exclusion{}, max: 4096}
}

func (c *exclusionCache) add(server netip.AddrPort, sni, reason string, ttl time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	if len(c.entries) >= c.max {
		// Drop the entry expiring soonest.
		var victim netip.AddrPort
		var soonest time.Time
		for k, e := range c.entries {
			if soonest.IsZero() || e.Expires.Before(soonest) {
				victim, soonest = k, e.Expires
			}
		}
		delete(c.entries, victim)
	}
	c.entries[server] = &Exclusion{Server: server, SNI: sni, Reason: reason, Learned: now, Expires: now.Add(ttl)}
}

// lookup reports a live exclusion for server.
func (c *exclusionCache) lookup(server netip.AddrPort) (Exclusion, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[server]
	if !ok {
		return Exclusion{}, false
	}
	if !c.now().Before(e.Expires) {
		delete(c.entries, server)
		return Exclusion{}, false
	}
	e.Hits++
	return *e, true
}

func (c *exclusionCache) list() []Exclusion {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	out := make([]Exclusion, 0, len(c.entries))
	for _, e := range c.entries {
		if now.Before(e.Expires) {
			out = append(out, *e)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Learned.Before(out[j].Learned) })
	return out
}
