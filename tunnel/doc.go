// Package tunnel is the wire protocol between the endpoint client and the
// cloud gateway: one secure session per tunnel, many inner flows multiplexed
// over it.
//
// # Transports
//
// A Session is carried either by TLS 1.3 over TCP with yamux streams on top
// (TransportTLS), or by DTLS 1.2 over UDP with SCTP streams on top
// (TransportDTLS) — the arrangement WebRTC data channels use, which gives
// independent, reliable, ordered streams over datagrams without
// head-of-line blocking between flows. pion/dtls v3 speaks DTLS 1.2 only; the
// real products speak (D)TLS 1.3, and reports say so.
//
// # Protocol flow
//
//   - The client completes the (D)TLS handshake: it checks the gateway's key
//     against its pins and presents its device certificate.
//   - For every inner flow the client opens a stream and writes a Request:
//     magic "PW", version, command CONNECT, port, the destination host name
//     (unresolved: the gateway resolves it) and the client's flow id.
//   - The gateway resolves the host with its own resolver, dials the origin
//     and writes a Reply: magic "PR", version, a Status, the origin address it
//     reached and a short message. Status OK is followed by the relayed bytes
//     in both directions; anything else closes the stream.
//   - Closing a stream half-closes it (yamux FIN, SCTP outgoing stream reset);
//     the flow ends when both directions have closed.
//   - On DTLS, stream 0 is a control stream carrying keepalive pings, since
//     a datagram session has no connection to notice a vanished peer.
//
// Both messages are small and bounded (MaxHostLen, MaxMessageLen);
// ReadRequest and ReadReply never read past their message and are fuzzed.
//
// docs/protocol.md describes the protocol byte by byte; its hex examples are
// checked against these encoders by TestProtocolDocHex.
package tunnel
