// Package gateway is the cloud security gateway: the far end of every
// client's tunnel and the one place that sees each inner flow's real
// destination.
//
// A Gateway listens on one address for TLS 1.3 over TCP and DTLS over UDP on
// the same port number. For each tunnel it authenticates the device (a client
// certificate chaining to the tenant device CA, unless AllowAnonymous), sends
// a tunnel.Greeting, then accepts streams: each names a destination host and
// port, which the gateway resolves with its own resolver, dials through its
// Stack and relays.
//
// Everything the gateway sees is an Event, written as one JSON line to the
// configured log and kept in memory: tunnel-open and tunnel-close, every
// refused tunnel attempt (peer, transport, the certificate presented if any,
// the reason), every refused stream, and one "flow" event per inner flow with
// the device identity, destination, bytes each way, duration and result. This
// is "what the cloud sees" beside what the perimeter firewall logs.
package gateway
