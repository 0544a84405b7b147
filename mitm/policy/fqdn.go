package policy

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"sync"
	"time"
)

// fqdnEntry is the live state of one FQDN object. Its address set is
// replaced, never modified, on each successful refresh.
type fqdnEntry struct {
	name string
	obj  FQDNObject // with defaults, Line cleared
	key  string     // singleflight key, unique per entry

	mu          sync.Mutex
	addrs       []netip.Addr
	set         map[netip.Addr]struct{}
	resolved    bool
	resolvedAt  time.Time
	expires     time.Time
	lastAttempt time.Time
	attempted   bool
	inflight    bool // a lookup is running
	lookups     int
	failures    int
	lastErr     string
}

// due reports whether a lookup may run at now: the object was never looked
// up, or its answer expired (or the last lookup failed), and min-refresh has
// passed since the last attempt. e.mu must be held.
func (e *fqdnEntry) due(now time.Time) bool {
	if !e.attempted {
		return true
	}
	if now.Before(e.lastAttempt.Add(e.obj.MinRefresh)) {
		return false
	}
	return !e.resolved || !now.Before(e.expires)
}

// contains reports whether the object holds a, refreshing it first if due.
func (e *fqdnEntry) contains(ctx context.Context, eng *Engine, a netip.Addr) bool {
	e.refresh(ctx, eng)
	e.mu.Lock()
	defer e.mu.Unlock()
	_, ok := e.set[a]
	return ok
}

// refresh looks the name up if due, or waits for a lookup already running.
// Concurrent callers share one lookup; it runs in the goroutine of the first
// caller, with its ctx.
func (e *fqdnEntry) refresh(ctx context.Context, eng *Engine) {
	e.mu.Lock()
	wait := e.inflight || e.due(eng.now())
	e.mu.Unlock()
	if !wait {
		return
	}
	_, _, _ = eng.flights.Do(e.key, func() (any, error) {
		now := eng.now()
		e.mu.Lock()
		if !e.due(now) { // another flight finished in between
			e.mu.Unlock()
			return nil, nil
		}
		prevAttempt, prevAttempted := e.lastAttempt, e.attempted
		e.lastAttempt, e.attempted = now, true
		e.lookups++
		e.inflight = true
		e.mu.Unlock()

		ans, err := eng.resolver.Lookup(ctx, e.obj.FQDN)
		if err == nil && len(ans.Addrs) == 0 {
			err = errors.New("empty answer")
		}

		e.mu.Lock()
		defer e.mu.Unlock()
		e.inflight = false
		if err != nil {
			if ctx.Err() != nil {
				// The caller gave up; that says nothing about the name.
				e.lookups--
				e.lastAttempt, e.attempted = prevAttempt, prevAttempted
				return nil, nil
			}
			e.failures++
			e.lastErr = err.Error()
			eng.log.LogAttrs(ctx, slog.LevelWarn, "policy: FQDN object refresh failed; keeping the last addresses",
				slog.String("object", e.name), slog.String("fqdn", e.obj.FQDN),
				slog.Int("held", len(e.addrs)), slog.String("error", e.lastErr))
			return nil, nil
		}
		n := min(len(ans.Addrs), e.obj.MaxIPs)
		addrs := make([]netip.Addr, 0, n)
		set := make(map[netip.Addr]struct{}, n)
		for _, a := range ans.Addrs {
			if len(addrs) == n {
				break
			}
			a = a.Unmap()
			if _, dup := set[a]; !dup {
				set[a] = struct{}{}
				addrs = append(addrs, a)
			}
		}
		e.addrs, e.set = addrs, set
		e.resolved, e.resolvedAt, e.expires = true, now, now.Add(ans.TTL)
		e.lastErr = ""
		eng.log.LogAttrs(ctx, slog.LevelInfo, "policy: FQDN object refreshed",
			slog.String("object", e.name), slog.String("fqdn", e.obj.FQDN),
			slog.Int("answer", len(ans.Addrs)), slog.Int("held", len(addrs)),
			slog.Duration("ttl", ans.TTL))
		return nil, nil
	})
}

func (e *fqdnEntry) state() FQDNState {
	e.mu.Lock()
	defer e.mu.Unlock()
	st := FQDNState{
		FQDN:       e.obj.FQDN,
		Addrs:      append([]netip.Addr(nil), e.addrs...),
		ResolvedAt: e.resolvedAt,
		Expires:    e.expires,
		Lookups:    e.lookups,
		Failures:   e.failures,
		LastError:  e.lastErr,
	}
	if e.attempted {
		st.NextRefresh = e.lastAttempt.Add(e.obj.MinRefresh)
		if e.resolved && e.expires.After(st.NextRefresh) {
			st.NextRefresh = e.expires
		}
	}
	return st
}
