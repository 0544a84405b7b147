// Package panos reads a PAN-OS running configuration (the XML a firewall or
// Panorama exports, or "show config running" returns) and translates what
// matters to an endpoint client's tunnel into a pinwall policy.
//
// # What is read
//
// The schema is PAN-OS's configuration XML as the PAN-OS XML API and the
// Terraform/pango SDK write it (see docs/vendor-configs.md for the sources):
//
//   - Scope: /config/devices/entry/vsys/entry (a firewall's vsys) or
//     /config/devices/entry/device-group/entry (a Panorama device group, with
//     /config/shared/pre-rulebase and post-rulebase around its own), with
//     objects looked up in the scope first and /config/shared next.
//   - address (ip-netmask, ip-range, fqdn), address-group (static; dynamic
//     is noted), service and service-group, profiles/custom-url-category
//     (URL List), profiles/decryption (ssl-forward-proxy, ssl-no-proxy,
//     ssl-protocol-settings).
//   - rulebase/security/rules: from, to, source, destination, application,
//     service (application-default or services), action; the ones that
//     decide UDP/443 for dtls and quic are why it matters.
//   - rulebase/decryption/rules: from, to, source, destination, service,
//     category (custom URL lists), action decrypt / no-decrypt, type
//     ssl-forward-proxy, profile.
//   - shared/ssl-decrypt/ssl-exclude-cert: the custom SSL Decryption
//     Exclusion list (hostnames, "*" for one label).
//
// # How it becomes a pinwall policy
//
// PAN-OS decides a session twice: the security rulebase allows or denies it,
// then for allowed TLS the decryption rulebase decides decrypt or not.
// pinwall's policy is one ordered list, so Translate walks the security
// rules in order and writes a deny as a block rule, and an allow as: the
// decryption exclusions (no-decrypt), each decryption rule restricted to the
// allow rule's match (TCP), then the allow rule itself. The default is
// PAN-OS's interzone-default, deny, unless the configuration overrides it.
//
// URL category entries follow PAN-OS's wildcards: "*" stands for one or
// more labels (pinwall "**"), "^" for exactly one (pinwall "*"); decryption
// exclusion hostnames use "*" for exactly one label.
package panos
