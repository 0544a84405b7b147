package policy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"regexp"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/pinwall/pinwall/resolve"
)

// EngineConfig configures an Engine. The zero value is usable for a policy
// without FQDN objects.
type EngineConfig struct {
	// Resolver is the firewall's own resolver, used for FQDN objects. It
	// may be nil only if no rule uses dst-fqdn.
	Resolver resolve.Resolver
	// Now returns the current time, for FQDN refresh timing. Nil means
	// time.Now.
	Now func() time.Time
	// Logger receives FQDN refreshes (Info), failed refreshes (Warn) and
	// every decision (Debug). Nil discards.
	Logger *slog.Logger
}

// Decision is the outcome of Decide.
type Decision struct {
	// Rule is the rule that matched: never nil from Decide. When no rule
	// matched it is the policy's implicit rule (Name "default", Line 0, see
	// Rule.Implicit). Do not modify it.
	Rule *Rule
	// RuleName is Rule.Name.
	RuleName string
	// Action is Rule.Action.
	Action Action
	// Options are Rule.Options with defaults filled in.
	Options Options
	// Position is the rule's place in the policy, from 1; 0 for the
	// implicit rule.
	Position int
}

// Number is the rule's number for logs: its ID when it has one, else its
// Position (0 for the implicit rule).
func (d Decision) Number() int {
	if d.Rule != nil && d.Rule.ID > 0 {
		return d.Rule.ID
	}
	return d.Position
}

// Stats counts decisions.
type Stats struct {
	// Total is the number of decisions.
	Total uint64
	// ByRule counts decisions per rule name, the implicit rule as "default".
	// It survives Swap: rules keep their counts by name.
	ByRule map[string]uint64
	// ByAction counts decisions per action.
	ByAction map[Action]uint64
}

// Engine decides sessions against a policy. It is safe for concurrent use.
type Engine struct {
	resolver resolve.Resolver
	now      func() time.Time
	log      *slog.Logger

	cur     atomic.Pointer[compiled]
	flights singleflight.Group
	nextID  atomic.Uint64

	mu    sync.Mutex // guards stats and swaps
	stats Stats
}

// compiled is an immutable policy in use, with its FQDN object state.
type compiled struct {
	p    *Policy
	def  *Rule
	fqdn map[string]*fqdnEntry
	// sniRe holds each rule's compiled sni-regex, by rule index.
	sniRe [][]*regexp.Regexp
}

// NewEngine returns an engine deciding with p, which is validated and must
// not be modified afterwards.
func NewEngine(p *Policy, cfg EngineConfig) (*Engine, error) {
	e := &Engine{
		resolver: cfg.Resolver,
		now:      cfg.Now,
		log:      cfg.Logger,
		stats:    Stats{ByRule: map[string]uint64{}, ByAction: map[Action]uint64{}},
	}
	if e.now == nil {
		e.now = time.Now
	}
	if e.log == nil {
		e.log = slog.New(slog.DiscardHandler)
	}
	if err := e.Swap(p); err != nil {
		return nil, err
	}
	return e, nil
}

// Swap replaces the policy, for scenario events such as "UDP blocked after
// t". Decisions already under way finish with the old policy. FQDN objects
// whose definition is unchanged keep their resolved addresses. An invalid
// policy is refused and the old one stays.
func (e *Engine) Swap(p *Policy) error {
	if p == nil {
		return errors.New("policy: nil policy")
	}
	if err := p.Validate(); err != nil {
		return fmt.Errorf("policy: %w", err)
	}
	if e.resolver == nil {
		for _, r := range p.Rules {
			if len(r.Match.DstFQDN) > 0 {
				return fmt.Errorf("policy: rule %q uses dst-fqdn but EngineConfig.Resolver is nil", r.Name)
			}
		}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	old := e.cur.Load()
	c := &compiled{p: p, def: p.Default(), fqdn: make(map[string]*fqdnEntry, len(p.Objects.FQDN)), sniRe: make([][]*regexp.Regexp, len(p.Rules))}
	for i, r := range p.Rules {
		for _, expr := range r.Match.SNIRegex {
			c.sniRe[i] = append(c.sniRe[i], regexp.MustCompile(expr)) // checked by Validate
		}
	}
	for name, o := range p.Objects.FQDN {
		o = o.WithDefaults()
		o.Line = 0
		if old != nil {
			if prev, ok := old.fqdn[name]; ok && prev.obj == o {
				c.fqdn[name] = prev
				continue
			}
		}
		c.fqdn[name] = &fqdnEntry{name: name, obj: o, key: fmt.Sprint(e.nextID.Add(1))}
	}
	e.cur.Store(c)
	return nil
}

// Policy returns the policy in use.
func (e *Engine) Policy() *Policy { return e.cur.Load().p }

// Decide returns the first rule matching s, or the implicit default rule.
// It may look FQDN objects up, through the configured resolver and with
// ctx; if a lookup fails the object keeps its last good addresses.
func (e *Engine) Decide(ctx context.Context, s Session) Decision {
	c := e.cur.Load()
	s = s.normalize()
	rule, pos := c.def, 0
	for i := range c.p.Rules {
		if r := &c.p.Rules[i]; e.matches(ctx, c, i, s) {
			rule, pos = r, i+1
			break
		}
	}
	d := Decision{Rule: rule, RuleName: rule.Name, Action: rule.Action, Options: rule.Options.WithDefaults(), Position: pos}
	e.mu.Lock()
	e.stats.Total++
	e.stats.ByRule[d.RuleName]++
	e.stats.ByAction[d.Action]++
	e.mu.Unlock()
	if e.log.Enabled(ctx, slog.LevelDebug) {
		e.log.LogAttrs(ctx, slog.LevelDebug, "policy decision",
			slog.String("rule", d.RuleName), slog.String("action", string(d.Action)),
			slog.String("proto", string(s.Proto)), slog.String("src", s.Src.String()),
			slog.String("dst", s.Dst.String()), slog.String("sni", s.SNI))
	}
	return d
}

func (e *Engine) matches(ctx context.Context, c *compiled, i int, s Session) bool {
	r := &c.p.Rules[i]
	if !r.Match.matchStatic(s) || !r.Match.matchSNI(s, c.sniRe[i]) {
		return false
	}
	if len(r.Match.DstFQDN) == 0 {
		return true
	}
	dst := s.Dst.Addr()
	for _, name := range r.Match.DstFQDN {
		if c.fqdn[name].contains(ctx, e, dst) {
			return true
		}
	}
	return false
}

// Stats returns a copy of the decision counters.
func (e *Engine) Stats() Stats {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := Stats{Total: e.stats.Total, ByRule: make(map[string]uint64, len(e.stats.ByRule)), ByAction: make(map[Action]uint64, len(e.stats.ByAction))}
	for k, v := range e.stats.ByRule {
		out.ByRule[k] = v
	}
	for k, v := range e.stats.ByAction {
		out.ByAction[k] = v
	}
	return out
}

// FQDNState is the state of one FQDN object, for reports.
type FQDNState struct {
	// FQDN is the name the object resolves.
	FQDN string
	// Addrs are the addresses the object holds now, in answer order.
	Addrs []netip.Addr
	// ResolvedAt is the time of the last successful lookup; zero if none.
	ResolvedAt time.Time
	// Expires is when that answer's TTL runs out.
	Expires time.Time
	// NextRefresh is the earliest time a Decide will look the name up
	// again: the later of Expires and the min-refresh floor.
	NextRefresh time.Time
	// Lookups counts lookups attempted; Failures those that failed.
	Lookups, Failures int
	// LastError is the last failure's message, or "".
	LastError string
}

// FQDNSnapshot returns the state of every FQDN object of the current
// policy, by object name.
func (e *Engine) FQDNSnapshot() map[string]FQDNState {
	c := e.cur.Load()
	out := make(map[string]FQDNState, len(c.fqdn))
	for name, ent := range c.fqdn {
		out[name] = ent.state()
	}
	return out
}
