// Package review answers, for one firewall policy, the questions a network
// engineer brings about an endpoint client's tunnel to its cloud gateway:
//
//   - does the tunnel come up over DTLS (UDP/443), and over TLS (TCP/443)?
//   - does it survive the primary gateway going down (failover)?
//   - is the bypass narrow: does anything else ride it (a spoofed, look-alike
//     or sibling server name, another port, QUIC to a site, a LAN host
//     without the client, a host beside the gateways in their /24)?
//   - would a regional gateway name (one label more than the primary's, as
//     a tenant moved to another region gets) pass too?
//   - do FQDN address objects hold the addresses the client really uses?
//   - is the policy itself sound: rules shadowed by earlier ones, decrypt
//     rules for UDP, a client-certificate bypass for every server, bypass
//     rules meant for the gateways that match nothing the tunnel sends?
//
// Run takes a *policy.Policy and a description of where it came from (a
// YAML file, or a vendor configuration translated into one), so every
// source flows through the same review. Each question runs on its own
// in-process topology (harness.StartInProcess: the real client, firewall,
// gateways and origins on loopback), all questions at once, and each is
// decided from signals as they arrive rather than by waiting out timeouts:
// the client's changes of state (client.Changed: a tunnel up, an attempt
// failed) and the firewall's records as it logs them (harness.Options.Records:
// a deny of the tunnel's UDP/443 is known from the deny record, long before
// the client's handshake timeout). A limit per question (Options.Limit) is
// only a safety net; a question that reaches it says so.
//
// Every Answer has a Level: OK, Warn (the tunnel works, but worse than it
// could or only by luck: over TLS only, after a learned exclusion, through
// decryption) or Problem (it fails, or the bypass lets other traffic
// through). Every answer that is not OK carries Advice: the rule to add or
// the rule as it should read, in the policy file's own YAML, and where it
// goes. Report.Write prints the answers as text; the CLI maps the report's
// level to its exit status (0 OK, 3 warnings only, 1 problems).
package review
