// Package interceptors puts a third-party TLS interceptor in the firewall's
// place: mitmproxy, squid (ssl_bump peek/splice/bump) or sslsplit, as
// Debian bookworm packages them. It translates a pinwall policy
// (mitm/policy) into what the tool and the firewall's kernel can express,
// and refuses, with the rule's file and line and what the tool lacks,
// whatever they cannot: nothing is silently approximated.
//
// A Config has two parts. The layer-3/4 part is a list of nftables rules
// for the LAN's TCP and UDP (package netsetup installs them): UDP/443 is
// accepted or dropped (no tool decrypts DTLS), address-based rules the
// tool cannot express are forwarded around it or dropped, and what is left
// on the TLS ports is redirected into the tool's transparent listener. The
// tool part is the tool's own configuration (mitmproxy's config.yaml,
// squid.conf, sslsplit.conf), the command that runs it and the logs it
// writes, which the container runner collects into the evidence bundle
// beside the generated configuration and the tool's version string.
//
// What each tool can decide on its own, from its documentation:
//
//   - mitmproxy 8.1.1 (--mode transparent): intercept or pass through by
//     regular expressions on the server's address or the SNI, as one set:
//     ignore_hosts (pass these, intercept the rest) or allow_hosts
//     (intercept these, pass the rest). No client address, no port, no
//     refusal, no ordering.
//   - squid 5.7 (https_port … intercept ssl-bump): an ordered ssl_bump list
//     of splice, bump and terminate with ACLs on src, dst, port and
//     ssl::server_name_regex, evaluated after peeking at the ClientHello
//     (step 2): the whole TCP rule base.
//   - sslsplit 0.5.5 (ssl proxyspec with the netfilter NAT engine): splits
//     every connection it receives; no per-connection rule (filtering
//     rules came after 0.5.5), so every decision is nftables' and only
//     address-based rules translate. Passthrough (-P) hands a session it
//     cannot split — the server asked for a client certificate, or another
//     TLS error — to the server untouched.
//
// Nothing here needs Docker: the scenarios package asks Translate whether
// a row can run on a tool before anything starts.
package interceptors
