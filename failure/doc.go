// Package failure attributes failures to a leg of the path and a cause.
//
// pinwall's topologies have three legs: the laptop's access leg to the
// perimeter firewall (client-firewall), the firewall's outside leg to the
// cloud gateway (firewall-gateway) and the gateway's leg to the SaaS origin
// (gateway-origin). A component that cannot see which side of a firewall a
// failure happened on (the client only sees its end-to-end tunnel) reports
// LegClientGateway, except where what it saw settles it: a chain without
// the pinned gateway key was presented on the client's side
// (LegClientFirewall). The harness (scenarios.Attribute) refines the leg
// with the gateway's log and then the firewall's, and records the Evidence
// each attribution rests on; Handshake is what an endpoint saw of a failed
// handshake.
//
// Every failure pinwall reports is an *Error, found with errors.As, never by
// matching message text. Detailed cause-specific facts ride in the wrapped
// error: *PinMismatchError for a certificate that matched no pin,
// *CertificateError for a chain that did not verify.
package failure
