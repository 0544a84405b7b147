package scenarios

import (
	"fmt"
	"net/netip"

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

// attribute derives the run's failing leg and cause. The client reports
// its end-to-end view (leg client-gateway); the firewall knows which of its
// sides failed, so its record refines the leg, and its cause replaces a
// generic client cause (a handshake_failure alert, a reset).
func attribute(obs *harness.Observation) *FailureObserved {
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
	switch {
	case clientCause != "" && (tunnelDown || attemptsFailed || flowErr == nil || flowErr.Cause == failure.CauseTunnelDown):
		// The client's typed error, as recorded (in containers it crossed a
		// process boundary as leg, cause and text).
		f.Leg, f.Cause, f.Source = clientLeg, clientCause, "client"
		f.Detail = clientText
	case flowErr != nil:
		f.Leg, f.Cause, f.Source = flowErr.Leg, flowErr.Cause, "workload"
		f.Detail = flowErr.Error
	default:
		f.Leg, f.Cause, f.Source = failure.LegClientGateway, failure.CauseTunnelDown, "client"
	}
	if f.Leg != failure.LegClientGateway {
		return f
	}
	if r := tunnelFailureRecord(obs); r != nil {
		f.refineByFirewall(r)
		return f
	}
	f.refineByGateway(obs.Gateway)
	return f
}

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

// refineByFirewall narrows a client-gateway failure with the firewall's
// record of the failed session: the side of a failed decryption, or a
// deny.
func (f *FailureObserved) refineByFirewall(r *fwlog.Record) {
	d := r.Decryption
	if d != nil && d.Leg != "" {
		f.Leg = d.Leg
		if !clientSpecific[f.Cause] {
			f.Cause = d.Cause
		}
		f.Source += "+firewall"
		f.Session = r.SessionID
		f.Detail = fmt.Sprintf("%s; firewall session %d: %s", f.Detail, r.SessionID, d.Reason)
	} else if r.Action == fwlog.ActionDeny || r.EndReason == fwlog.EndPolicyDeny {
		f.Leg = failure.LegClientFirewall
		if !clientSpecific[f.Cause] || f.Cause == failure.CauseUDPUnanswered {
			f.Cause = failure.CausePolicyBlock
			if r.Proto == fwlog.ProtoUDP {
				f.Cause = failure.CauseUDPBlocked
			}
		}
		f.Source += "+firewall"
		f.Session = r.SessionID
	}
}

// refineByGateway names the gateway's cause when no firewall record
// explains the failure and the gateway refused a tunnel.
func (f *FailureObserved) refineByGateway(events []gateway.Event) {
	for _, e := range events {
		if e.Event == gateway.EventTunnelRefused && e.Cause != "" {
			if !clientSpecific[f.Cause] {
				f.Cause = e.Cause
			}
			f.Source += "+gateway"
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
		if r.Src.Addr() != obs.Roles.Laptop || !obs.Roles.IsGateway(r.Dst.Addr()) {
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

func clientAddr(e gateway.Event) netip.Addr {
	ap, err := netip.ParseAddrPort(e.Client)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr()
}
