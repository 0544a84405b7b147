// Package bench measures pinwall's data paths and prints them against their
// goals: the tunnel (TLS 1.3 + yamux, DTLS + SCTP) between the real client
// and gateway, and the firewall (package mitm) beside a plain relay and two
// tools people already trust, sslsplit and mitmproxy.
//
// # Layout
//
// Every figure is a measurement of an Op — one connection, one flow, one
// transfer — run by Run under a stop rule (a count for `go test -bench`, a
// duration for the report). The environments that Ops run in are built by
// StartTunnelEnv (an in-process topology of package harness with a blob
// origin of our own) and StartFirewallEnv (a TLS blob origin on loopback with
// RSA-2048 keys, and the paths to it: direct, a Go io.Copy relay, pinwall's
// decrypt and splice paths in explicit-destination mode, sslsplit and
// mitmdump). A second firewall environment pair puts pinwall's decrypt path
// in front of an RSA-2048 and an ECDSA P-256 origin (FirewallEnvConfig's
// OriginAlgorithm): the forged leaf's key follows the origin's, so the report
// gives decrypt figures for both. The benchmarks in the _test files and the
// report program
// (bench/cmd/report, `make bench`) call the same Ops, so a figure means the
// same in both.
//
// # Data flow of one firewall connection
//
//	client (crypto/tls, X25519, TCP_NODELAY)
//	  ──TCP──► path under test (127.0.0.1:port)
//	  ──TCP──► blob origin (127.0.0.1:port, RSA-2048, one certificate per SNI)
//	request "GET /blob/N", response N bytes; the client trusts the internet
//	CA (direct, relay, splice) and the enterprise CA (the decrypting paths).
//
// Nothing here asserts a wall-clock threshold: goals are printed as pass or
// miss by Report and never fail a test.
package bench
