// Package mitm is the perimeter firewall: a TLS-intercepting next-generation
// firewall in the path of every laptop flow.
//
// # Data path
//
// Connections arrive on one of four listeners: the in-process intercept
// listener (each connection starts with a PROXY v2 header carrying the
// original source and destination, see hostnet), the transparent listener
// (TCP redirected by nftables; the original destination comes from
// SO_ORIGINAL_DST), the explicit HTTP CONNECT proxy, and a forward listener
// that sends everything to one upstream. From there every TCP session takes
// the same path:
//
//  0. Connect to the destination from the outside leg while the ClientHello
//     is on its way, as an inline firewall passes the TCP handshake before
//     any data (earlydial.go; bounded by Config.EarlyDials). The connection
//     is taken in step 3; a session that ends before resets it.
//  1. Peek the ClientHello without consuming it (mitm/clienthello): SNI,
//     ALPN, versions, JA3/JA4. Bounded in bytes and time.
//  2. Decide with the ordered rule base (mitm/policy), then consult the
//     learned decryption exclusion cache.
//  3. block: reset. allow / no-decrypt: take the connection to the
//     destination (or dial it now, past the early dials' bound) and splice
//     the untouched bytes, so the server sees the client's own handshake
//     byte for byte (with sni-cert-check strict, a
//     probe handshake first checks the server's certificate covers the SNI).
//     decrypt: handshake upstream first (verifying the chain against the
//     firewall's trust store and noticing a CertificateRequest), forge a leaf
//     mimicking the upstream certificate (mitm/forge; its key follows the
//     server's, type and size), terminate the client's TLS with it, and
//     relay the plaintext, identifying the application from its first
//     bytes. A chain the firewall does not trust is answered as the rule's
//     untrusted-cert says: by default a leaf from the firewall's untrusted
//     CA, so the client sees an untrusted certificate (PAN-OS Forward
//     Untrust, FortiOS untrusted-server-cert allow); block resets; ignore
//     forges with the enterprise CA.
//
// When the upstream demands a client certificate the firewall cannot supply
// it follows the rule's client-cert behaviour: block (the session fails on
// the firewall-gateway leg), bypass (FortiGate-style: reconnect and splice),
// or learn (PAN-OS-style: fail this session, add the server to the
// exclusion cache, pass later sessions undecrypted). A client that rejects
// the forged certificate can feed the same cache (learn-on-client-reject),
// but only on a certificate alert, never on a timeout or reset.
//
// UDP is allowed or blocked per policy and never decrypted; flows are
// tracked per (source, destination) with idle timeouts and classified as
// dtls, quic or unknown-udp.
//
// # Logs
//
// Every session produces one fwlog.Record when it ends, in PAN-OS
// vocabulary (application, rule and its number, action, decryption outcome
// with leg and cause, the handshake's messages, cipher suite and the
// server certificate's details, end reason, bytes and packets each way,
// JA3/JA4 of TLS and DTLS hellos), kept in memory and written to any number
// of fwlog writers. TCP packet counts are the kernel's segment counters of
// the firewall's two sockets (TCP_INFO, Linux; see segments.go).
//
// # Sources
//
// Which vendor document each behaviour follows, and which parts are
// inferred, is listed in docs/sources.md#firewall; every log field in
// docs/fwlog.md.
package mitm
