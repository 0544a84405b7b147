package scenarios

import (
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/pinwall/pinwall/client"
	"github.com/pinwall/pinwall/failure"
	"github.com/pinwall/pinwall/gateway"
	"github.com/pinwall/pinwall/harness"
	"github.com/pinwall/pinwall/mitm/fwlog"
	"github.com/pinwall/pinwall/tunnel"
)

// summarize turns an observation into the Observed summary.
func summarize(obs *harness.Observation) Observed {
	var o Observed
	st := obs.Tunnel
	o.Tunnel.State = "down"
	if st.Up {
		o.Tunnel.State = "up"
		o.Tunnel.Transport = string(st.Transport)
		o.Tunnel.Gateway, o.Tunnel.Addr = st.Gateway, st.Addr
	}
	if st.Fallback != nil {
		o.Tunnel.Fallback = string(st.Fallback.Cause)
	}
	for _, h := range obs.History {
		if h.Event == client.EventFailover {
			o.Tunnel.Failovers++
		}
	}
	s := obs.Summary
	o.Flows = FlowsObserved{Attempted: s.Attempted, Completed: s.Completed, Verified: s.Verified, Tunnelled: s.Tunnelled, Direct: s.Direct}
	for _, f := range obs.Flows {
		if f.Attempts > 1 {
			o.Flows.Retried++
		}
		if f.Reopened > 0 {
			o.Flows.Reopened++
		}
		if !f.Verified {
			why := f.Lost
			if why == "" {
				why = f.Error
			}
			o.Flows.Lost = append(o.Flows.Lost, LostFlow{Index: f.Index, Site: f.Site, TunnelID: f.TunnelID, Gateway: f.Gateway,
				Leg: f.Leg, Cause: f.Cause, InFlight: f.InFlight, Why: why})
		}
	}
	o.Attempts = obs.Attempts
	o.RecoveryMS = obs.Recovery.Milliseconds()
	o.UpAfterMS = obs.UpAfter.Milliseconds()
	o.Failure = attribute(obs)
	return o
}

// specific causes the client can name itself better than a firewall log.
var clientSpecific = map[failure.Cause]bool{
	failure.CausePinMismatch: true, failure.CauseUnknownAuthority: true, failure.CauseCertificateInvalid: true,
	failure.CauseUDPUnanswered: true, failure.CauseClientCertRejected: true, failure.CauseDNS: true,
}

// attribute is Attribute.
func attribute(obs *harness.Observation) *FailureObserved { return Attribute(obs) }

// Attribute derives a run's failing leg and cause, and the evidence they
// rest on (FailureObserved.Basis), or nil when nothing failed.
//
// It works from the endpoints alone first: the client's typed error and
// what it saw of the handshake (the chain presented, the certificate
// request, the alert), set beside the gateway's log of the same moments
// (did a handshake with this device's certificate arrive; one without any;
// did the peer refuse the gateway's own certificate). So a third-party
// interceptor that logs nothing pinwall reads is still placed on the right
// leg. The firewall's log, when there is one, then refines and confirms:
// the firewall knows which of its sides failed.
func Attribute(obs *harness.Observation) *FailureObserved {
	tunnelDown := !obs.Tunnel.Up
	// A flow lost in flight on a tunnel that went down (its gateway died)
	// is that event's doing, explained with the flow (FlowOutcome.Lost),
	// not a failure of the path: the run fails only on the others.
	var flowErr *harness.FlowOutcome
	for i := range obs.Flows {
		if !obs.Flows[i].Verified && !obs.Flows[i].InFlight {
			flowErr = &obs.Flows[i]
			break
		}
	}
	attemptsFailed := obs.Attempts != nil && obs.Attempts.Failed > 0
	if !tunnelDown && flowErr == nil && !attemptsFailed {
		return nil
	}
	f := &FailureObserved{}
	clientLeg, clientCause, clientText := clientFailure(obs)
	fromClient := false
	var att *client.Transition
	switch {
	case clientCause != "" && (tunnelDown || attemptsFailed || flowErr == nil || flowErr.Cause == failure.CauseTunnelDown):
		// The client's typed error, as recorded (in containers it crossed a
		// process boundary as leg, cause and text).
		f.Leg, f.Cause, f.Detail = clientLeg, clientCause, clientText
		att = failedAttempt(obs.History, clientCause)
		f.note(failure.FromClient, clientFact(clientCause, att))
		fromClient = true
	case flowErr != nil:
		f.Leg, f.Cause, f.Detail = flowErr.Leg, flowErr.Cause, flowErr.Error
		f.note(failure.FromWorkload, fmt.Sprintf("flow %d to %s: %s", flowErr.Index, flowErr.Site, orDash(string(flowErr.Cause))))
	default:
		f.Leg, f.Cause = failure.LegClientGateway, failure.CauseTunnelDown
		f.note(failure.FromClient, "no tunnel came up and no attempt failed")
		fromClient = true
	}
	switch {
	case fromClient && (f.Leg == failure.LegClientGateway || f.Leg == failure.LegClientFirewall):
		f.refineByEndpoints(obs, att)
	case f.Leg != failure.LegClientGateway:
		f.Source = f.sources()
		return f
	}
	if r := tunnelFailureRecord(obs); r != nil {
		f.refineByFirewall(r)
	} else if !fromClient {
		f.refineByGateway(obs.Gateway)
	}
	f.Source = f.sources()
	return f
}

// note records one fact the attribution rests on.
func (f *FailureObserved) note(from, fact string) {
	if fact != "" {
		f.Basis = append(f.Basis, failure.Evidence{From: from, Fact: fact})
	}
}

// sources names the logs the basis cites, "client+gateway+firewall" style.
func (f *FailureObserved) sources() string {
	var out []string
	for _, e := range f.Basis {
		name := strings.TrimSuffix(e.From, " log")
		if !slices.Contains(out, name) {
			out = append(out, name)
		}
	}
	return strings.Join(out, "+")
}

// BasisLine renders the basis: "attributed from: client (…), gateway log (…)".
func (f *FailureObserved) BasisLine() string { return failure.Basis(f.Basis) }

// clientFailure is the client's own account of its failure: its last
// error, unless that is a DTLS attempt going unanswered and a TLS attempt
// failed too. A DTLS attempt failing is routine (the client falls back to
// TLS); the failed TLS attempt explains why the tunnel is down.
func clientFailure(obs *harness.Observation) (failure.Leg, failure.Cause, string) {
	leg, cause, text := obs.ClientLeg, obs.ClientCause, obs.ClientErrorText
	for i := len(obs.History) - 1; i >= 0; i-- {
		h := obs.History[i]
		if h.Event == client.EventAttemptFailed && h.Transport == tunnel.TransportTLS {
			if cause == failure.CauseUDPUnanswered {
				leg, cause, text = h.Leg, h.Cause, h.Error
			}
			break
		}
	}
	return leg, cause, text
}

// failedAttempt is the client's last failed attempt with cause, or nil.
func failedAttempt(history []client.Transition, cause failure.Cause) *client.Transition {
	for i := len(history) - 1; i >= 0; i-- {
		if h := &history[i]; h.Event == client.EventAttemptFailed && h.Cause == cause {
			return h
		}
	}
	return nil
}

// clientFact says what the client saw that its leg and cause rest on.
func clientFact(cause failure.Cause, att *client.Transition) string {
	var hs *failure.Handshake
	if att != nil {
		hs = att.Handshake
	}
	if hs != nil && len(hs.Chain) > 0 {
		leaf := hs.Chain[0]
		switch cause {
		case failure.CausePinMismatch:
			return fmt.Sprintf("presented chain issued by %s (subject %s, %s key) holds no pinned gateway key", leaf.Issuer, leaf.Subject, leaf.KeyType)
		case failure.CauseUnknownAuthority:
			return fmt.Sprintf("presented chain issued by %s (subject %s, %s key), a CA the laptop does not trust", leaf.Issuer, leaf.Subject, leaf.KeyType)
		case failure.CauseCertificateInvalid:
			return fmt.Sprintf("presented certificate %s does not cover the gateway's name or is out of date", leaf.Subject)
		}
	}
	via := ""
	if att != nil && att.Via != "" {
		via = " through the proxy " + att.Via
	}
	if hs != nil && hs.Alert != "" {
		when := "before it sent a device certificate"
		if hs.CertSent {
			when = "after its device certificate"
		}
		accepted := ""
		if len(hs.Chain) > 0 {
			accepted = fmt.Sprintf(", having accepted a chain issued by %s", hs.Chain[0].Issuer)
		}
		return fmt.Sprintf("alert %s %s%s%s", hs.Alert, when, accepted, via)
	}
	if hs != nil && len(hs.Chain) > 0 {
		sent := ""
		if hs.CertSent {
			sent = " and sending its device certificate"
		}
		return fmt.Sprintf("%s after accepting a chain issued by %s%s%s", cause, hs.Chain[0].Issuer, sent, via)
	}
	if att != nil {
		return fmt.Sprintf("%s on its %s attempt to %s%s", cause, att.Transport, orDash(att.Addr), via)
	}
	return string(cause)
}

// attemptSlack widens an attempt's time span when its gateway events are
// looked up: the gateway logs a refusal when its side of the handshake
// ends, which may be just after the client recorded its failure.
const attemptSlack = time.Second

// gatewayNear returns the gateway's handshake events (tunnel refusals and
// opens) within the failed attempt's time span, or every one when the
// attempt is unknown.
func gatewayNear(evs []gateway.Event, att *client.Transition) []gateway.Event {
	var out []gateway.Event
	for _, e := range evs {
		if e.Event != gateway.EventTunnelRefused && e.Event != gateway.EventTunnelOpen {
			continue
		}
		if att != nil && !att.Time.IsZero() && !e.Time.IsZero() {
			from := att.Time.Add(-time.Duration(att.TookMS)*time.Millisecond - attemptSlack/4)
			if e.Time.Before(from) || e.Time.After(att.Time.Add(attemptSlack)) {
				continue
			}
		}
		out = append(out, e)
	}
	return out
}

// deviceOf is the device certificate the client holds, as its failed
// attempts recorded it, or nil.
func deviceOf(history []client.Transition) *failure.Cert {
	for _, h := range history {
		if h.Handshake != nil && h.Handshake.Device != nil {
			return h.Handshake.Device
		}
	}
	return nil
}

// refineByEndpoints sets a client failure beside the gateway's log of the
// same moments.
//
//   - The client refused the chain it was shown: if the gateway saw a peer
//     end its handshake with a certificate alert, the chain was the
//     gateway's own (stale pins, a missing root): client-gateway. Otherwise
//     something between presented it: client-firewall.
//   - The handshake failed after the chain: the gateway refused this
//     device's certificate (client-gateway); or it refused a handshake
//     without any device certificate while the client holds one, so
//     another party made that handshake, re-originating the session:
//     firewall-gateway / client-certificate-required.
func (f *FailureObserved) refineByEndpoints(obs *harness.Observation, att *client.Transition) {
	evs := gatewayNear(obs.Gateway, att)
	device := deviceOf(obs.History)
	switch f.Cause {
	case failure.CausePinMismatch, failure.CauseUnknownAuthority, failure.CauseCertificateInvalid:
		if e := firstEvent(evs, func(e gateway.Event) bool { return failure.CertificateAlert(e.Alert) }); e != nil {
			f.Leg = failure.LegClientGateway
			f.note(failure.FromGateway, fmt.Sprintf("the handshake from %s ended with the peer's %s alert: the gateway's own certificate was refused", e.Client, e.Alert))
			return
		}
		f.Leg = failure.LegClientFirewall
		f.note(failure.FromGateway, gatewaySaw(evs, device))
		return
	}
	if e := firstEvent(evs, func(e gateway.Event) bool {
		return e.Event == gateway.EventTunnelRefused && device != nil && e.Presented != nil && e.Presented.SPKI == device.SPKI
	}); e != nil {
		f.Leg = failure.LegClientGateway
		if !clientSpecific[f.Cause] && e.Cause != "" {
			f.Cause = e.Cause
		}
		f.note(failure.FromGateway, fmt.Sprintf("refused this device's certificate (%s) from %s: %s", device.Subject, e.Client, e.Reason))
		return
	}
	if e := firstEvent(evs, func(e gateway.Event) bool {
		return e.Event == gateway.EventTunnelRefused && e.Cause == failure.CauseClientCertRequired && e.Presented == nil
	}); e != nil {
		if device != nil {
			f.Leg, f.Cause = failure.LegFirewallGateway, failure.CauseClientCertRequired
			f.note(failure.FromGateway, fmt.Sprintf("a handshake from %s without a device certificate, none with this device's (%s): another party made it", e.Client, device.Subject))
			return
		}
		if !clientSpecific[f.Cause] {
			f.Cause = e.Cause
		}
		f.note(failure.FromGateway, fmt.Sprintf("refused a handshake from %s without a device certificate; the client has none", e.Client))
		return
	}
	if e := firstEvent(evs, func(e gateway.Event) bool { return e.Event == gateway.EventTunnelRefused && e.Cause != "" }); e != nil {
		if !clientSpecific[f.Cause] {
			f.Cause = e.Cause
		}
		f.note(failure.FromGateway, fmt.Sprintf("refused a handshake from %s: %s", e.Client, orDash(e.Reason)))
		return
	}
	if att != nil && len(evs) == 0 {
		f.note(failure.FromGateway, "no handshake logged during the attempt")
	}
}

func firstEvent(evs []gateway.Event, match func(gateway.Event) bool) *gateway.Event {
	for i := range evs {
		if match(evs[i]) {
			return &evs[i]
		}
	}
	return nil
}

// gatewaySaw summarises the gateway's handshakes of the attempt for a
// client that refused the chain it was shown.
func gatewaySaw(evs []gateway.Event, device *failure.Cert) string {
	if len(evs) == 0 {
		return "no handshake from this device"
	}
	var withDevice, without int
	peers := map[string]bool{}
	for _, e := range evs {
		if device != nil && e.Presented != nil && e.Presented.SPKI == device.SPKI {
			withDevice++
		} else {
			without++
		}
		if ap, err := netip.ParseAddrPort(e.Client); err == nil {
			peers[ap.Addr().String()] = true
		}
	}
	addrs := make([]string, 0, len(peers))
	for a := range peers {
		addrs = append(addrs, a)
	}
	sort.Strings(addrs)
	if withDevice == 0 {
		return fmt.Sprintf("%d handshake(s) from %s, none with this device's certificate", without, strings.Join(addrs, ", "))
	}
	return fmt.Sprintf("%d handshake(s) with this device's certificate", withDevice)
}

// refineByFirewall narrows a failure with the firewall's record of the
// failed session: the side of a failed decryption, or a deny. It also
// confirms an attribution made from the endpoints.
func (f *FailureObserved) refineByFirewall(r *fwlog.Record) {
	d := r.Decryption
	if d != nil && d.Leg != "" {
		f.Leg = d.Leg
		if !clientSpecific[f.Cause] {
			f.Cause = d.Cause
		}
		f.Session = r.SessionID
		f.Detail = fmt.Sprintf("%s; firewall session %d: %s", f.Detail, r.SessionID, d.Reason)
		f.note(failure.FromFirewall, fmt.Sprintf("session %d: %s, %s", r.SessionID, orDash(string(r.EndReason)), d.Reason))
	} else if r.Action == fwlog.ActionDeny || r.EndReason == fwlog.EndPolicyDeny {
		f.Leg = failure.LegClientFirewall
		if !clientSpecific[f.Cause] || f.Cause == failure.CauseUDPUnanswered {
			f.Cause = failure.CausePolicyBlock
			if r.Proto == fwlog.ProtoUDP {
				f.Cause = failure.CauseUDPBlocked
			}
		}
		f.Session = r.SessionID
		f.note(failure.FromFirewall, fmt.Sprintf("session %d: %s by rule %s", r.SessionID, orDash(string(r.EndReason)), orDash(r.Rule)))
	}
}

// refineByGateway names the gateway's cause when no firewall record
// explains a workload failure and the gateway refused a tunnel.
func (f *FailureObserved) refineByGateway(events []gateway.Event) {
	for _, e := range events {
		if e.Event == gateway.EventTunnelRefused && e.Cause != "" {
			if !clientSpecific[f.Cause] {
				f.Cause = e.Cause
			}
			f.note(failure.FromGateway, fmt.Sprintf("refused a handshake from %s: %s", e.Client, orDash(e.Reason)))
			break
		}
	}
}

// tunnelFailureRecord is the last firewall record of a failed session
// from the laptop to a gateway.
// A decryption failure explains more than a deny, so it wins.
func tunnelFailureRecord(obs *harness.Observation) *fwlog.Record {
	var failed, denied *fwlog.Record
	for i := range obs.Firewall {
		r := &obs.Firewall[i]
		if !obs.Roles.IsLaptop(r.Src.Addr()) || !obs.Roles.IsGateway(r.Dst.Addr()) {
			continue
		}
		if r.Decryption != nil && r.Decryption.Outcome == fwlog.OutcomeFailed {
			failed = r
		}
		if r.Action == fwlog.ActionDeny || r.EndReason == fwlog.EndPolicyDeny {
			denied = r
		}
	}
	if failed != nil {
		return failed
	}
	return denied
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func clientAddr(e gateway.Event) netip.Addr {
	ap, err := netip.ParseAddrPort(e.Client)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr()
}
