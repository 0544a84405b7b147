package scenarios

import (
	"fmt"
	"slices"
	"strings"

	"github.com/pinwall/pinwall/failure"
	"github.com/pinwall/pinwall/gateway"
	"github.com/pinwall/pinwall/harness"
	"github.com/pinwall/pinwall/mitm/fwlog"
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
)

// Choices lists the finding ids.
func (FindingID) Choices() []string {
	return strs([]FindingID{FindingInterceptionAccepted, FindingTunnelIntercepted, FindingSNIRuleTooBroad,
		FindingGatewayNameNotCovered, FindingDTLSBlocked, FindingFailOpenExposure, FindingTunnelDown,
		FindingExclusionLearned, FindingPartialBypass, FindingInnerDestinationsVisible})
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
	l.tunnelFindings(obs, s)
	l.exposureFindings(obs, s)
	return l
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
		if !toGateway && gwNames[r.SNI] && r.Decryption != nil && r.Decryption.Outcome == fwlog.OutcomeNotDecrypted &&
			r.Action == fwlog.ActionAllow && r.EndReason != fwlog.EndDecryptCertValidation {
			s.tooBroad = append(s.tooBroad, r)
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
