package reports

import (
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/pinwall/pinwall/failure"
	"github.com/pinwall/pinwall/gateway"
	"github.com/pinwall/pinwall/harness"
	"github.com/pinwall/pinwall/mitm/fwlog"
	"github.com/pinwall/pinwall/scenarios"
)

// facts is what the report derives from one Result: the firewall sessions
// sorted by what they carried, the gateway's flows, and names for every
// address the roles know.
type facts struct {
	r *scenarios.Result
	// tunnel are sessions from the laptop to a gateway address; direct from
	// the laptop to anything else; others from other LAN hosts (probes).
	tunnel, direct, others []fwlog.Record
	// flows are the gateway's flow events; sites their distinct hosts.
	flows []gateway.Event
	sites []string
	// failing is the firewall record that explains the run's failure, chosen
	// as the scenarios package does: the last failed decryption of a tunnel
	// session, else the last deny of one.
	failing *fwlog.Record
}

func newFacts(r *scenarios.Result) *facts {
	f := &facts{r: r}
	for _, rec := range r.FirewallLog {
		switch {
		case r.Roles.IsLaptop(rec.Src.Addr()) && r.Roles.IsGateway(rec.Dst.Addr()):
			f.tunnel = append(f.tunnel, rec)
		case r.Roles.IsLaptop(rec.Src.Addr()):
			f.direct = append(f.direct, rec)
		default:
			f.others = append(f.others, rec)
		}
	}
	for _, e := range r.GatewayLog {
		if e.Event == gateway.EventFlow {
			f.flows = append(f.flows, e)
			if e.Host != "" && !slices.Contains(f.sites, e.Host) {
				f.sites = append(f.sites, e.Host)
			}
		}
	}
	sort.Strings(f.sites)
	var failed, denied *fwlog.Record
	for i := range f.tunnel {
		rec := &f.tunnel[i]
		if rec.Outcome() == fwlog.OutcomeFailed {
			failed = rec
		}
		if rec.Action == fwlog.ActionDeny || rec.EndReason == fwlog.EndPolicyDeny {
			denied = rec
		}
	}
	f.failing = failed
	if f.failing == nil {
		f.failing = denied
	}
	return f
}

// who says who made a gateway event's connection. Behind the firewall
// the gateway sees every connection come from the firewall's NAT address;
// the firewall record with that NAT source tells the laptop's own tunnel,
// passed through (or another LAN host's session), from the firewall's own
// handshake on the upstream leg of a session it decrypts — which a gateway
// log would otherwise show as the laptop's tunnel-open.
func (f *facts) who(e gateway.Event) string {
	ro := f.r.Roles
	ap, err := netip.ParseAddrPort(e.Client)
	if err != nil {
		return e.Client
	}
	if ap.Addr() == ro.Laptop {
		return "the laptop"
	}
	for _, rec := range f.r.FirewallLog {
		if !rec.NATSrc.IsValid() || rec.NATSrc != ap {
			continue
		}
		from := orAddr(name(ro, rec.Src.Addr()), rec.Src.Addr())
		if from != "laptop" {
			from = "host " + from
		} else {
			from = "the laptop"
		}
		if o := rec.Outcome(); o == fwlog.OutcomeDecrypted || o == fwlog.OutcomeFailed {
			return fmt.Sprintf("the firewall's own handshake (decrypting %s's session #%d)", strings.TrimPrefix(from, "the "), rec.SessionID)
		}
		return fmt.Sprintf("%s via the firewall (session #%d)", from, rec.SessionID)
	}
	if n := name(ro, ap.Addr()); n != "" {
		return "the " + n
	}
	return e.Client
}

// firewallHandshakes counts the gateway events of the firewall's own
// upstream handshakes (see who).
func (f *facts) firewallHandshakes() int {
	n := 0
	for _, e := range f.r.GatewayLog {
		if strings.HasPrefix(f.who(e), "the firewall's own handshake") {
			n++
		}
	}
	return n
}

// name labels an address by its role: "laptop", "firewall", a gateway,
// origin or extra host name; "" for an address no role names.
func name(ro harness.Roles, a netip.Addr) string {
	switch {
	case !a.IsValid():
		return ""
	case a == ro.Laptop:
		return "laptop"
	case a == ro.FirewallIn || a == ro.FirewallOut:
		return "firewall"
	}
	for _, g := range sortedKeys(ro.Gateways) {
		if slices.Contains(ro.Gateways[g], a) {
			return g
		}
	}
	for _, o := range sortedKeys(ro.Origins) {
		if ro.Origins[o] == a {
			return o
		}
	}
	for _, x := range sortedKeys(ro.Extra) {
		if ro.Extra[x] == a {
			return x
		}
	}
	return ""
}

// addrLabel is "203.0.113.9 (gateway-acme.sse.test)" or the bare address.
func addrLabel(ro harness.Roles, a netip.Addr) string {
	if n := name(ro, a); n != "" {
		return a.String() + " (" + n + ")"
	}
	return a.String()
}

// gatewayOf returns the gateway name whose pool holds a.
func gatewayOf(ro harness.Roles, a netip.Addr) string {
	for _, g := range sortedKeys(ro.Gateways) {
		if slices.Contains(ro.Gateways[g], a) {
			return g
		}
	}
	return ""
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// protoPort is "udp/443".
func protoPort(rec fwlog.Record) string {
	return fmt.Sprintf("%s/%d", rec.Proto, rec.Dst.Port())
}

// decryptionText is "failed (client-firewall / forged-certificate-rejected)",
// "not-decrypted", or "-" when no decryption rule applied.
func decryptionText(rec fwlog.Record) string {
	d := rec.Decryption
	if d == nil {
		return "-"
	}
	s := string(d.Outcome)
	if d.Leg != "" || d.Cause != "" {
		s += " (" + legCause(d.Leg, d.Cause) + ")"
	}
	return s
}

func legCause(l failure.Leg, c failure.Cause) string {
	switch {
	case l == "" && c == "":
		return "-"
	case l == "":
		return string(c)
	case c == "":
		return string(l)
	}
	return string(l) + " / " + string(c)
}

// offset is a time relative to the run's start: "+0.236s".
func offset(start, t time.Time) string {
	if start.IsZero() || t.IsZero() {
		return ""
	}
	return fmt.Sprintf("%+.3fs", t.Sub(start).Seconds())
}

// distinct returns the distinct values of key over recs, in first-seen
// order.
func distinct(recs []fwlog.Record, key func(fwlog.Record) string) []string {
	var out []string
	for _, r := range recs {
		if k := key(r); k != "" && !slices.Contains(out, k) {
			out = append(out, k)
		}
	}
	return out
}

// count returns how many recs satisfy keep.
func count(recs []fwlog.Record, keep func(fwlog.Record) bool) int {
	n := 0
	for _, r := range recs {
		if keep(r) {
			n++
		}
	}
	return n
}

// plural is "1 session" / "3 sessions".
func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	if strings.HasSuffix(word, "s") {
		return fmt.Sprintf("%d %ses", n, word)
	}
	return fmt.Sprintf("%d %ss", n, word)
}

// quoted wraps every element in backticks (rendered as code).
func quoted(xs []string) []string {
	out := make([]string, len(xs))
	for i, x := range xs {
		out[i] = "`" + x + "`"
	}
	return out
}

// list joins "a", "a and b", "a, b and c".
func list(xs []string) string {
	switch len(xs) {
	case 0:
		return ""
	case 1:
		return xs[0]
	}
	return strings.Join(xs[:len(xs)-1], ", ") + " and " + xs[len(xs)-1]
}

// firewallSummary says in one line what the firewall logged: "3 sessions:
// 1× udp/443 dtls allow (allow-all); 2× tcp/443 ssl decryption failed
// (decrypt-all, decrypt-cert-validation)".
func firewallSummary(f *facts) string {
	recs := f.r.FirewallLog
	if len(recs) == 0 {
		return "no sessions"
	}
	type group struct {
		key string
		n   int
	}
	var groups []group
	for _, rec := range recs {
		what := string(rec.Action)
		if rec.Decryption != nil {
			what = string(rec.Decryption.Outcome)
			if rec.Decryption.Outcome == fwlog.OutcomeFailed {
				what = "decryption failed"
			}
		}
		dst := "gateway"
		switch {
		case !f.r.Roles.IsLaptop(rec.Src.Addr()):
			dst = "from " + orAddr(name(f.r.Roles, rec.Src.Addr()), rec.Src.Addr()) + " to " + orAddr(name(f.r.Roles, rec.Dst.Addr()), rec.Dst.Addr())
		case !f.r.Roles.IsGateway(rec.Dst.Addr()):
			dst = "to " + orAddr(name(f.r.Roles, rec.Dst.Addr()), rec.Dst.Addr())
		default:
			dst = "to gateway"
		}
		k := fmt.Sprintf("%s %s %s %s (%s, %s)", dst, protoPort(rec), rec.App, what, rec.Rule, rec.EndReason)
		i := slices.IndexFunc(groups, func(g group) bool { return g.key == k })
		if i < 0 {
			groups = append(groups, group{key: k})
			i = len(groups) - 1
		}
		groups[i].n++
	}
	parts := make([]string, len(groups))
	for i, g := range groups {
		parts[i] = fmt.Sprintf("%d× %s", g.n, g.key)
	}
	return plural(len(recs), "session") + ": " + strings.Join(parts, "; ")
}

func orAddr(n string, a netip.Addr) string {
	if n != "" {
		return n
	}
	return a.String()
}

// gatewaySummary says in one line what the gateway logged.
func gatewaySummary(f *facts) string {
	evs := f.r.GatewayLog
	if len(evs) == 0 {
		return "no events"
	}
	var kinds []string
	counts := map[string]int{}
	for _, e := range evs {
		if counts[e.Event] == 0 {
			kinds = append(kinds, e.Event)
		}
		counts[e.Event]++
	}
	parts := make([]string, 0, len(kinds))
	for _, k := range kinds {
		s := fmt.Sprintf("%d× %s", counts[k], k)
		if k == gateway.EventFlow && len(f.sites) > 0 {
			s += " to " + plural(len(f.sites), "site")
		}
		parts = append(parts, s)
	}
	s := plural(len(evs), "event") + ": " + strings.Join(parts, ", ")
	if n := f.firewallHandshakes(); n > 0 {
		s += fmt.Sprintf("; %d of them from the firewall's own handshakes on the upstream leg of sessions it decrypts, not from the laptop's tunnel", n)
	}
	return s
}
