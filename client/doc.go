// Package client is the endpoint agent: the security client on a laptop that
// steers application flows into one tunnel to a cloud gateway.
//
// # Tunnel
//
// The client keeps Sessions tunnels (usually one) up to the first reachable
// gateway of its list (primary, then backups). In TransportAuto it tries
// DTLS over UDP first, bounded by FallbackTimeout, and falls back to TLS 1.3
// over TCP, staying on TLS until ResetTransport (a network change). Both
// transports pin the gateway's key (PinSet) and present the device
// certificate. A gateway that dies is replaced with backoff; the state and
// every transition are recorded (State, History) so a report can say which
// transport is in use and why it fell back.
//
// # Flows
//
// Dial is what applications use (and the SOCKS5 listener calls): a
// destination on a steered port that is not a steering exception (domain
// pattern, CIDR — RFC 1918 by default) goes into the tunnel as a new stream;
// the gateway resolves the name. Everything else goes direct through the
// laptop's network. With no tunnel up, fail-close refuses steered flows with
// a failure.CauseTunnelDown error, fail-open sends them direct.
//
// # Failures
//
// Every error names its leg and cause as a *failure.Error: pin mismatch (with
// the presented issuer and keys, *failure.PinMismatchError), unknown
// authority, client certificate required or rejected by the gateway,
// handshake timeout, UDP unanswered, connection reset or refused, proxy
// refused, tunnel down.
//
// The behaviours modelled and their sources (vendor documents, or inferred)
// are listed in docs/sources.md#client.
package client
