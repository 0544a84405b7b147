package failure

import (
	"fmt"
	"strings"
)

// Handshake is what one endpoint saw of a (D)TLS handshake that failed: the
// facts an attribution from the endpoints alone rests on. The client
// records it with each failed tunnel attempt.
type Handshake struct {
	// Chain is what the peer presented, leaf first; empty when no
	// certificate came (the handshake ended before, or the peer sent none).
	Chain []Cert `json:"chain,omitempty"`
	// Pinned reports that the chain held a pinned key (false also when the
	// endpoint pins nothing).
	Pinned bool `json:"pinned,omitempty"`
	// CertRequested: the peer asked for a client certificate.
	CertRequested bool `json:"cert_requested,omitempty"`
	// Device is the endpoint's own certificate (the device certificate),
	// nil when it has none.
	Device *Cert `json:"device,omitempty"`
	// CertSent: the endpoint sent Device in answer to the request.
	CertSent bool `json:"cert_sent,omitempty"`
	// Alert is the fatal alert the peer sent, by its RFC 8446 name
	// ("handshake_failure"), if one came.
	Alert string `json:"alert,omitempty"`
}

// Issuer is the presented leaf's issuer, or "".
func (h *Handshake) Issuer() string {
	if h == nil || len(h.Chain) == 0 {
		return ""
	}
	return h.Chain[0].Issuer
}

// String says in one line what the endpoint saw, in order: the chain, the
// certificate request and its answer, the alert.
func (h *Handshake) String() string {
	if h == nil {
		return "no handshake recorded"
	}
	var parts []string
	if len(h.Chain) > 0 {
		parts = append(parts, "presented chain "+h.Chain[0].String())
	} else {
		parts = append(parts, "no certificate presented")
	}
	switch {
	case h.CertRequested && h.CertSent && h.Device != nil:
		parts = append(parts, fmt.Sprintf("device certificate %q sent on request", h.Device.Subject))
	case h.CertRequested:
		parts = append(parts, "client certificate requested, none sent")
	}
	if h.Alert != "" {
		if h.CertSent {
			parts = append(parts, "then alert "+h.Alert+" after the device certificate")
		} else {
			parts = append(parts, "alert "+h.Alert)
		}
	}
	return strings.Join(parts, "; ")
}

// Sources of Evidence.
const (
	// FromClient: the client's own account (its typed error, what it saw
	// of the handshake).
	FromClient = "client"
	// FromGateway: the gateway's log.
	FromGateway = "gateway log"
	// FromFirewall: the firewall's log.
	FromFirewall = "firewall log"
	// FromWorkload: a flow's outcome.
	FromWorkload = "workload"
)

// Evidence is one fact an attribution rests on, and where it comes from.
type Evidence struct {
	// From is FromClient, FromGateway, FromFirewall or FromWorkload.
	From string `json:"from"`
	Fact string `json:"fact"`
}

// Basis renders evidence as one line: "attributed from: client (presented
// chain issued by "CN=mitmproxy"), gateway log (no handshake from this
// device)". Facts from the same source are joined with "; ".
func Basis(evs []Evidence) string {
	if len(evs) == 0 {
		return ""
	}
	var order []string
	facts := map[string][]string{}
	for _, e := range evs {
		if _, seen := facts[e.From]; !seen {
			order = append(order, e.From)
		}
		facts[e.From] = append(facts[e.From], e.Fact)
	}
	parts := make([]string, 0, len(order))
	for _, from := range order {
		parts = append(parts, fmt.Sprintf("%s (%s)", from, strings.Join(facts[from], "; ")))
	}
	return "attributed from: " + strings.Join(parts, ", ")
}
