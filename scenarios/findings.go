package scenarios

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/pinwall/pinwall/failure"
	"github.com/pinwall/pinwall/gateway"
	"github.com/pinwall/pinwall/harness"
	"github.com/pinwall/pinwall/mitm/fwlog"
	"github.com/pinwall/pinwall/mitm/policy"
)

// FindingID names a finding.
type FindingID string

// Findings pinwall raises from what a run observed.
const (
	// FindingInterceptionAccepted: a tunnel came up through a firewall
	// that decrypted it — the client accepted a man in the middle.
	FindingInterceptionAccepted FindingID = "client-accepted-interception"
	// FindingTunnelIntercepted: the firewall tried to decrypt tunnel
	// sessions and broke them.
	FindingTunnelIntercepted FindingID = "tunnel-intercepted"
	// FindingSNIRuleTooBroad: a session naming a gateway in its SNI went
	// undecrypted to an address that is not a gateway.
	FindingSNIRuleTooBroad FindingID = "sni-rule-too-broad"
	// FindingGatewayNameNotCovered: a gateway name the client uses was
	// matched by a decrypt rule (a wildcard or list that misses it).
	FindingGatewayNameNotCovered FindingID = "gateway-name-not-covered"
	// FindingDTLSBlocked: UDP/443 to a gateway was denied; the tunnel runs
	// over TLS.
	FindingDTLSBlocked FindingID = "dtls-blocked"
	// FindingFailOpenExposure: steered flows went direct while no tunnel
	// was up.
	FindingFailOpenExposure FindingID = "fail-open-exposure"
	// FindingTunnelDown: the tunnel never came up and flows were refused.
	FindingTunnelDown FindingID = "tunnel-down"
	// FindingExclusionLearned: the firewall learned decryption exclusions.
	FindingExclusionLearned FindingID = "exclusion-learned"
	// FindingPartialBypass: some tunnel attempts were decrypted, others not
	// (an FQDN object or a rotating pool).
	FindingPartialBypass FindingID = "partial-bypass"
	// FindingInnerDestinationsVisible: the firewall logged sessions to
	// SaaS origins (flows that bypassed the tunnel).
	FindingInnerDestinationsVisible FindingID = "inner-destinations-visible"
	// FindingBypassTooBroad: a no-decrypt rule passed a session that is
	// not the tunnel undecrypted — to an address that is not a gateway, or
	// from a host without the client (a name-based case is
	// FindingSNIRuleTooBroad).
	FindingBypassTooBroad FindingID = "bypass-too-broad"
	// FindingClientCertBypassAll: a session passed undecrypted because the
	// server asked for a client certificate — a behaviour that exempts
	// every such server, not only the gateways.
	FindingClientCertBypassAll FindingID = "client-cert-bypass-all-servers"
	// FindingDefaultAllow: sessions matched no rule and the policy's
	// default action allowed them.
	FindingDefaultAllow FindingID = "default-allow"
)

// Choices lists the finding ids.
func (FindingID) Choices() []string {
	return strs([]FindingID{FindingInterceptionAccepted, FindingTunnelIntercepted, FindingSNIRuleTooBroad,
		FindingGatewayNameNotCovered, FindingDTLSBlocked, FindingFailOpenExposure, FindingTunnelDown,
		FindingExclusionLearned, FindingPartialBypass, FindingInnerDestinationsVisible, FindingBypassTooBroad,
		FindingClientCertBypassAll, FindingDefaultAllow})
}

// Severity of a finding.
type Severity string

// Severities.
const (
	High   Severity = "high"
	Medium Severity = "medium"
	Low    Severity = "low"
	Info   Severity = "info"
)

// Finding is a conclusion drawn from a run's logs.
type Finding struct {
	ID       FindingID `json:"id"`
	Severity Severity  `json:"severity"`
	Title    string    `json:"title"`
	Detail   string    `json:"detail"`
}

// findings derives every finding a run supports.
func findings(obs *harness.Observation) []Finding {
	s := sortSessions(obs)
	var l findingList
	for _, r := range s.tooBroad {
		l.add(FindingSNIRuleTooBroad, High, "SNI-only bypass rule is too broad",
			"session %d from %s named %s but went to %s, not a gateway; rule %q passed it undecrypted",
			r.SessionID, r.Src.Addr(), r.SNI, r.Dst, r.Rule)
	}
	for _, r := range s.broad {
		l.add(FindingBypassTooBroad, High, "The bypass rule exempts more than the tunnel",
			"session %d from %s%s to %s%s passed undecrypted on rule %q: the exemption is wider than the gateways' addresses from the endpoints",
			r.SessionID, r.Src.Addr(), roleNote(obs, r.Src.Addr(), true), r.Dst, roleNote(obs, r.Dst.Addr(), false), r.Rule)
	}
	if n := len(s.ccBypass); n > 0 {
		r := s.ccBypass[0]
		l.add(FindingClientCertBypassAll, Medium, "Client-certificate bypass exempts every server that asks for a certificate",
			"%d session(s) passed undecrypted because the server asked for a client certificate (first: %s, rule %q): this exempts the gateway and any other server that does so, not only the gateways",
			n, r.Dst, r.Rule)
	}
	if s.defaultAllowed > 0 {
		l.add(FindingDefaultAllow, Low, "The policy allows what no rule matches",
			"%d session(s) matched no rule and were allowed by the default action; pinwall's policies stand for the decryption rules only, and a real firewall's security policy decides what else passes",
			s.defaultAllowed)
	}
	l.tunnelFindings(obs, s)
	l.exposureFindings(obs, s)
	return l
}

// roleNote names what an address is not, for bypass-too-broad: a host
// without the client, or an address that is not a gateway.
func roleNote(obs *harness.Observation, a netip.Addr, src bool) string {
	switch {
	case src && a != obs.Roles.Laptop:
		return " (a host without the client)"
	case !src && !obs.Roles.IsGateway(a):
		return " (not a gateway)"
	}
	return ""
}

// findingList collects findings in the order they are raised.
type findingList []Finding

func (l *findingList) add(id FindingID, sev Severity, title, format string, args ...any) {
	*l = append(*l, Finding{ID: id, Severity: sev, Title: title, Detail: fmt.Sprintf(format, args...)})
}

// fwSessions are the firewall's sessions sorted by what the findings ask
// of them.
type fwSessions struct {
	// decrypted, failed and passed are the laptop's TCP sessions to a
	// gateway by decryption outcome (passed: not decrypted, excluded or
	// no decryption); deniedUDP counts its denied UDP sessions to one.
	decrypted, failed, passed []fwlog.Record
	deniedUDP                 int
	// uncovered are the gateway names a laptop→gateway session was
	// decrypted (or tried) under.
	uncovered []string
	// origins are the SaaS destinations the laptop reached outside the
	// tunnel (SNI, else the address).
	origins []string
	// tooBroad are sessions naming a gateway that went undecrypted to an
	// address that is not one.
	tooBroad []fwlog.Record
	// broad are other sessions a no-decrypt rule passed that are not the
	// laptop's to a gateway; ccBypass those a client-certificate bypass
	// passed; defaultAllowed counts the sessions the default rule allowed.
	broad, ccBypass []fwlog.Record
	defaultAllowed  int
}

func sortSessions(obs *harness.Observation) fwSessions {
	roles := obs.Roles
	gwNames := map[string]bool{}
	for n := range roles.Gateways {
		gwNames[n] = true
	}
	var s fwSessions
	for _, r := range obs.Firewall {
		toGateway := roles.IsGateway(r.Dst.Addr())
		fromLaptop := roles.IsLaptop(r.Src.Addr())
		if toGateway && fromLaptop {
			s.addTunnelSession(r, gwNames)
		}
		if fromLaptop && roles.IsOrigin(r.Dst.Addr()) {
			name := r.SNI
			if name == "" {
				name = r.Dst.Addr().String()
			}
			if !slices.Contains(s.origins, name) {
				s.origins = append(s.origins, name)
			}
		}
		passedBypass := r.Decryption != nil && r.Decryption.Outcome == fwlog.OutcomeNotDecrypted &&
			r.Action == fwlog.ActionAllow && r.EndReason != fwlog.EndDecryptCertValidation
		switch {
		case passedBypass && !toGateway && gwNames[r.SNI]:
			s.tooBroad = append(s.tooBroad, r)
		case passedBypass && r.Proto == fwlog.ProtoTCP && (!toGateway || !fromLaptop):
			s.broad = append(s.broad, r)
		}
		if r.Decryption != nil && r.Decryption.ExemptBy == fwlog.ExemptClientCert {
			s.ccBypass = append(s.ccBypass, r)
		}
		if r.Rule == "default" && r.Action == fwlog.ActionAllow {
			s.defaultAllowed++
		}
	}
	return s
}

// addTunnelSession sorts a session from the laptop to a gateway.
func (s *fwSessions) addTunnelSession(r fwlog.Record, gwNames map[string]bool) {
	switch {
	case r.Decryption != nil && r.Decryption.Outcome == fwlog.OutcomeDecrypted:
		s.decrypted = append(s.decrypted, r)
	case r.Decryption != nil && r.Decryption.Outcome == fwlog.OutcomeFailed:
		s.failed = append(s.failed, r)
	case r.Proto == fwlog.ProtoTCP:
		s.passed = append(s.passed, r)
	}
	if r.Proto == fwlog.ProtoUDP && r.Action == fwlog.ActionDeny {
		s.deniedUDP++
	}
	if r.Proto == fwlog.ProtoTCP && r.Decryption != nil && r.Decryption.Outcome != fwlog.OutcomeNotDecrypted &&
		r.Decryption.Outcome != fwlog.OutcomeExcluded && gwNames[r.SNI] && !slices.Contains(s.uncovered, r.SNI) {
		s.uncovered = append(s.uncovered, r.SNI)
	}
}

// tunnelFindings adds what the firewall did to the tunnel's sessions.
func (l *findingList) tunnelFindings(obs *harness.Observation, s fwSessions) {
	tunnelUp := false
	for _, e := range obs.Gateway {
		tunnelUp = tunnelUp || e.Event == gateway.EventTunnelOpen
	}
	decrypted, failed, passed := s.decrypted, s.failed, s.passed
	if len(decrypted) > 0 && tunnelUp {
		l.add(FindingInterceptionAccepted, High, "The client accepted the firewall's interception",
			"%d tunnel session(s) to the gateway were decrypted by the firewall (rule %q) and the tunnel still came up: the client neither pins the gateway key nor is refused without its device certificate",
			len(decrypted), decrypted[0].Rule)
	}
	if len(failed) > 0 {
		r := failed[0]
		l.add(FindingTunnelIntercepted, Medium, "The firewall broke tunnel sessions by decrypting them",
			"%d tunnel session(s) failed decryption: %s (leg %s, cause %s, end reason %s)",
			len(failed), r.Decryption.Reason, r.Decryption.Leg, r.Decryption.Cause, r.EndReason)
	}
	if len(failed) > 0 && len(passed)+len(decrypted) > 0 {
		l.add(FindingPartialBypass, Medium, "The bypass covers some tunnel sessions and not others",
			"%d tunnel session(s) failed decryption while %d passed: the rule matches only part of what the client connects to",
			len(failed), len(passed)+len(decrypted))
	}
	// Only a bypass that exists and misses a name is "not covering" it:
	// some tunnel session passed undecrypted while another name was decrypted.
	if len(s.uncovered) > 0 && len(passed) > 0 {
		l.add(FindingGatewayNameNotCovered, Medium, "A gateway name is not covered by the bypass",
			"decryption was applied to sessions naming %s", strings.Join(s.uncovered, ", "))
	}
	if s.deniedUDP > 0 {
		l.add(FindingDTLSBlocked, Low, "UDP/443 to the gateway is blocked",
			"%d UDP/443 session(s) to gateway addresses were denied; the tunnel cannot use DTLS", s.deniedUDP)
	}
}

// exposureFindings adds what went around the tunnel or without it, and
// what the firewall learned.
func (l *findingList) exposureFindings(obs *harness.Observation, s fwSessions) {
	if obs.Summary.FailOpen > 0 {
		l.add(FindingFailOpenExposure, Medium, "Steered traffic went direct while the tunnel was down",
			"%d flow(s) bypassed the cloud gateway's inspection (fail-open)", obs.Summary.FailOpen)
	}
	if len(s.origins) > 0 {
		l.add(FindingInnerDestinationsVisible, Info, "The firewall saw real SaaS destinations",
			"sessions from the laptop to %s were visible to the firewall (flows outside the tunnel)", strings.Join(s.origins, ", "))
	}
	refused := 0
	for _, f := range obs.Flows {
		if !f.Verified && f.Cause == failure.CauseTunnelDown {
			refused++
		}
	}
	if (!obs.Tunnel.Up && obs.FirstUp == nil && obs.Attempts == nil) || refused > 0 {
		l.add(FindingTunnelDown, High, "The tunnel did not come up",
			"%d flow(s) refused with no tunnel; last client error: %s", refused, obs.ClientErrorText)
	}
	if obs.Exclusions != nil {
		l.add(FindingExclusionLearned, Info, "The firewall learned decryption exclusions",
			"after failed sessions the firewall excluded servers from decryption; recovery took %v", obs.Recovery.Round(1e6))
	}
}

// PolicyFindings reads a policy's blanket behaviours from its rules: a
// client-certificate bypass that is not limited to given destinations
// (every server that asks for a client certificate passes undecrypted),
// and a default action that allows what no rule matches.
func PolicyFindings(p *policy.Policy) []Finding {
	var l findingList
	for _, r := range p.Rules {
		if r.Action == policy.ActionDecrypt && r.Options.ClientCert == policy.ClientCertBypass && len(r.Match.Dst) == 0 && len(r.Match.DstFQDN) == 0 {
			l.add(FindingClientCertBypassAll, Medium, "Client-certificate bypass exempts every server that asks for a certificate",
				"rule %q passes undecrypted any server that asks for a client certificate, the gateways and every other such server; exempt the gateways by address instead", r.Name)
		}
	}
	if p.DefaultAction == "" || p.DefaultAction == policy.ActionAllow {
		l.add(FindingDefaultAllow, Low, "The policy allows what no rule matches",
			"default-action allow: a session no rule matches passes uninspected; pinwall's policies stand for the decryption rules, and a real firewall's security policy decides what else passes")
	}
	return l
}
