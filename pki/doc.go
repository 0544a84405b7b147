// Package pki makes the certificate authorities and certificates of a pinwall
// run, in memory.
//
// A run has three authorities (docs/topology.md): the internet CA, which
// signs the SaaS origins' and the cloud gateway's server certificates; the
// tenant device CA, which signs one client certificate per simulated laptop;
// and the enterprise CA, which the perimeter firewall forges leaves with and
// which a managed laptop may trust. Keys are ECDSA P-256 unless a Config asks
// for RSA (enterprises import RSA CAs, and benchmarks compare with tools that
// default to RSA-2048).
//
// Pins are SPKI SHA-256 hashes in the "sha256/<base64>" form HPKP and curl
// use; PinSet.Match is what the endpoint client checks a presented chain
// against.
package pki
