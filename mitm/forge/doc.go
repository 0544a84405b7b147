// Package forge makes the certificates the perimeter firewall presents to the
// laptop when it decrypts a TLS session: leaves signed by the enterprise CA
// that imitate the upstream server's certificate.
//
// The package is isolated the way google/martian's mitm package is: the
// firewall's proxy loop asks a Forger for a certificate (Certificate, Forge),
// a *tls.Config (ServerConfig) or a tls.Config.GetCertificate callback
// (GetCertificate), and never learns how certificates are made.
//
// # Data flow
//
// The proxy loop peeks the ClientHello (SNI), dials the upstream server,
// completes the upstream handshake and hands the upstream leaf to Forge. Forge
// looks the pair (SNI, upstream SHA-256 fingerprint) up in an LRU cache; on a
// miss exactly one goroutine signs a leaf for that pair (singleflight) while
// the others wait for it, each honouring its own context.
//
// # What a forged leaf looks like
//
// Like mitmproxy, sslsplit and squid's ssl_bump, the leaf mimics the
// upstream certificate:
//
//   - Subject: copied from the upstream (CN, O, OU, C, L, ST, street, postal
//     code, serial number).
//   - SANs: the upstream DNS names and IP addresses; the SNI is appended when
//     the upstream does not cover it (Note NoteSNINotCovered). Without an
//     upstream certificate the SAN is the SNI alone (an IP SAN when the SNI is
//     an IP literal) or Config.FallbackName when the client sent no SNI.
//   - Validity: from max(now-1h, CA NotBefore) to min(upstream NotAfter or
//     now+1y, CA NotAfter). An upstream that has already expired yields a leaf
//     that has expired too (NoteUpstreamExpired), so the client sees the same
//     failure it would have seen without the firewall.
//   - A fresh random serial, issuer = the enterprise CA, key usage
//     digitalSignature (plus keyEncipherment for RSA) and EKU serverAuth.
//
// # Keys and CAs
//
// By default (KeyFollowUpstream) the leaf's key follows the upstream
// certificate's: RSA of the same size for an RSA server, ECDSA on the same
// curve for an ECDSA one, as PAN-OS and FortiOS forge (an RSA-2048 server
// gets an RSA-2048 forgery, not an ECDSA one). One key per algorithm is
// generated on first use and reused, so signing, not key generation, stays
// the per-name cost. KeyFixed gives every leaf one key (Config.LeafKey, or
// one of the CA's algorithm), as mitmproxy and sslsplit do.
//
// Config.CA signs the leaves; with Config.ECDSACA set, that CA signs the
// ECDSA leaves and CA the others, as PAN-OS keeps one forward trust
// certificate for RSA and one for ECDSA. ForgeUntrusted signs with
// Config.UntrustedCA instead (generated at New when nil): what a forward
// proxy presents for a server whose chain it does not trust (PAN-OS Forward
// Untrust, FortiOS untrusted-server-cert allow), so the client sees an
// untrusted certificate instead of a reset.
//
// # Chain
//
// The chain served is [leaf, enterprise CA]. Forward-proxy firewalls (PAN-OS
// "Forward Trust" certificates, FortiGate deep inspection) send the forging
// CA after the leaf: when the enterprise CA is itself an intermediate under
// the enterprise root, the client needs it to build a path; when it is the
// root, clients that trust it ignore the redundant copy.
package forge
