// Package fortios reads a FortiOS configuration (the CLI text "show
// full-configuration" prints, or a configuration backup) and translates what
// matters to an endpoint client's tunnel into a pinwall policy.
//
// # What is read
//
// The CLI grammar (config / edit / set / unset / next / end, quoted values)
// and the tables below, as the FortiOS CLI reference and the FortiOS Ansible
// modules document them (see docs/vendor-configs.md):
//
//   - config firewall address (ipmask subnet, iprange, fqdn, wildcard-fqdn),
//     config firewall addrgrp, config firewall wildcard-fqdn custom/group;
//   - config firewall service custom (tcp-portrange, udp-portrange) and
//     config firewall service group;
//   - config firewall ssl-ssh-profile: config https (status
//     certificate-inspection / deep-inspection / disable, ports,
//     client-certificate bypass / inspect / block, untrusted-server-cert
//     allow / block / ignore, sni-server-cert-check enable / strict /
//     disable) and config ssl-exempt (address, wildcard-fqdn, regex,
//     fortiguard-category);
//   - config firewall policy: srcintf, dstintf, srcaddr, dstaddr, service,
//     action, utm-status, ssl-ssh-profile, in their order.
//
// A configuration with VDOMs (config vdom / edit NAME) is read for one VDOM.
//
// # How it becomes a pinwall policy
//
// Each firewall policy becomes, in order: for deny, a block rule; for accept
// with a deep-inspection profile, one no-decrypt rule per ssl-exempt entry,
// a decrypt rule for TCP on the profile's HTTPS ports, then an allow rule
// for the rest; with certificate inspection, a no-decrypt rule on those
// ports and an allow rule. Every rule keeps the policy's ID (FortiOS logs
// it as policyid). The default is FortiOS's implicit deny (policy 0).
package fortios
