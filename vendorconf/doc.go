// Package vendorconf holds what the vendor configuration readers share: the
// Translation they return, the Note that records everything they could not
// translate exactly, the positioned SyntaxError for malformed input, and the
// Options that say whose traffic the configuration is read for.
//
// Network teams do not write pinwall policy YAML; they have a PAN-OS or
// FortiOS configuration. The readers live in the subpackages named for what
// they read: vendorconf/panos (a PAN-OS or Panorama running configuration,
// XML) and vendorconf/fortios (FortiOS "show full-configuration" CLI text).
// Each parses its file into a tree that keeps every element's line, then
// translates what matters to the endpoint client's tunnel into an ordered
// pinwall policy (mitm/policy):
//
//	vendor file --parse--> tree with lines --translate--> Translation{Policy, Notes}
//
// Every translated rule carries the line of the vendor rule it came from
// (policy.Rule.Line, and a Comment naming the file, line and vendor rule),
// so a reviewer can put the two side by side. Everything the reader did not
// translate exactly — a user-ID match, a FortiGuard category, a dynamic
// address group, an application pinwall does not identify, a setting pinwall
// does not model — becomes a Note with its line, why, and the assumption the
// translation made instead. Nothing is dropped silently.
//
// The translation is read for one laptop (Options.Laptop, pinwall's
// simulated laptop by default) crossing one path through the firewall
// (Options.From and Options.To: PAN-OS zones, FortiOS interfaces). Rules
// whose sources or path cannot include the laptop are reported as not
// applying; rules that can have their source dropped, so that the review's
// probe host on the same LAN meets the same rules.
package vendorconf
