// Package probe is the field probe: run on a laptop behind a customer's
// real perimeter, it measures what the firewall does to a pinned,
// mutually-authenticated, multiplexed tunnel to a pinwall field gateway
// (package fieldgw), and whether the firewall's bypass is correct and
// narrow, with the catalogue's vocabulary (failure legs and causes, the
// finding ids of package scenarios).
//
// Run takes a Bundle (what the gateway wrote: addresses, names, the pin,
// a device identity) and the laptop's network (a hostnet.Stack:
// hostnet.OS{} in the field, a simulated host in tests) and measures, in
// order, each step bounded and paced (Config.Rate new connections a
// second, the whole run within Config.Limit):
//
//  1. dtls: a DTLS handshake to the primary (and the backup) over UDP/443,
//     by the client package in DTLS-only mode: passes, dropped or rejected.
//  2. tls: a TLS handshake to the primary with its name: is the chain the
//     pinned one? If not, the forged leaf and its issuer are described.
//  3. device: whether the gateway received the device certificate, from
//     the gateway's own record of the probe's attempts (fetched over the
//     tunnel), or the firewall's upstream leg failed it.
//  4. bypass: the primary's address with the control name (the gateway
//     asks no client certificate for it) and with no SNI, the backup's
//     name and the primary's name at the backup address, the primary's
//     name and the control name at the decoy address: from the differences,
//     what the bypass is keyed on.
//  5. learning: after a failure, repeated attempts show whether the
//     firewall learns an exclusion, and after how many failures.
//  6. tunnel: the client package brings the tunnel up with the bundle's
//     identity (DTLS first, TLS fallback, the backup), carries flows to the
//     gateway's built-in origin checked by SHA-256, and again with the
//     backup alone (failover).
//
// Every connection goes through a guard (Config.Stack wrapped) that refuses
// any address but the bundle's and the proxy's, and paces new connections;
// with Config.Capture it records them too (package capture), with the
// secrets of every TLS and DTLS session the probe opens. Every conclusion
// names the measurements it comes from. WriteEvidence writes the evidence
// bundle (the reports from templates/, in package reports' look).
package probe
