// Package fieldgw is the gateway a pre-sales architect deploys on the
// internet for the field probe (package probe): a standalone
// gateway.Gateway on a primary address (and optionally a backup and a
// decoy address), TLS 1.3 and DTLS on the same port number, with the
// device-certificate check, the pre-authentication limits of package
// gateway and its event log.
//
// It serves no inner flow to anything but its own built-in test origins
// unless told otherwise: the gateway's network dials nothing outside; its
// inner flows reach in-memory servers only (memStack):
//
//	origin.probe.pinwall.test:80   package origin's site (POST /flow with SHA-256 checks)
//	record.probe.pinwall.test:80   GET /record: the gateway's record of one probe run
//
// and, when Config.Origins names them (serve gateway --origin NAME=IP:PORT),
// those destinations: the name answered with that IP only, that IP and
// port dialled only, on Config.OriginStack.
//
// The record is what the gateway logged of one probe run, kept under the
// run's id: the events of the device the request names, and every event
// from the source addresses its tunnels came from, since the time the
// request names, less what an earlier run's record holds (its tunnels,
// and anything of its device or sources before it was made). It is reached
// only through a tunnel, so only by a device holding a certificate of this
// gateway's device CA. Each run is logged once under its id
// (Config.RunLog).
//
// State (the gateway's key and certificate, the device CA, one device
// certificate per bundle) lives in a directory (LoadState, package outfile,
// private keys 0600); IssueBundle writes the probe bundle (probe.Bundle)
// signed with the gateway's key.
package fieldgw
