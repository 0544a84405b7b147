// Package policy is the perimeter firewall's ordered rule base: which
// sessions it decrypts, splices untouched, blocks or simply allows.
//
// A Policy is loaded from YAML (Load, Parse) with package strictyaml, so every
// mistake in a policy file is reported with its file, line, column and field.
// Rules are evaluated in order and the first rule whose Match holds decides;
// when none does, the implicit rule named "default" applies default-action.
//
// Data flows like this: the firewall peeks a session's ClientHello, builds a
// Session (addresses, protocol, SNI) and asks an Engine to Decide. The Engine
// walks the rules, checking the cheap fields first and the FQDN address
// objects last. FQDN objects behave like a vendor's: they are resolved through
// the firewall's own resolve.Resolver (not the client's), hold at most
// max-ips addresses, and are refreshed lazily, on the Decide that finds the
// record's TTL expired, never more often than min-refresh, with concurrent
// sessions sharing one lookup. That is what makes an FQDN-based bypass rule
// drift from the gateway address a client resolved on its own.
//
// The Decision carries the rule's options (SNI/certificate check, client
// certificate handling, exclusion learning, logging) for the caller to
// enforce: this package decides, it does not intercept.
//
// Zero values mean defaults throughout: a Rule's Options{} is "client-cert
// block, no SNI/certificate check, no learning, log", a Policy's empty
// DefaultAction is allow. Marshal writes only what differs from a default.
package policy
