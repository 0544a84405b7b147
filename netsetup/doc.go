// Package netsetup programs a container's network from Go: secondary
// addresses, static routes, the default route, and the firewall's
// interception rules. It is what the container runner calls inside each
// container (a FROM scratch image has no ip or nft binary) before starting
// the component.
//
// # What Apply does, in order
//
//  1. Validate the Config (IPv4 only: pinwall's topology is IPv4).
//  2. When Forward is set, check /proc/sys/net/ipv4/ip_forward. A container
//     cannot write /proc/sys; the runtime sets it (docker run --sysctl
//     net.ipv4.ip_forward=1), so Apply only checks and explains.
//  3. Add the secondary addresses (Addrs), the static routes (Routes) and
//     replace the default route (DefaultVia), through rtnetlink.
//  4. For Intercept, install one nftables table, "ip pinwall", holding every
//     rule, plus the policy-routing rule and table TPROXY needs.
//
// Every change is recorded; the undo function Apply returns reverts them in
// reverse order (deleting the pinwall table removes all its rules at once,
// and an old default route is put back). A failed Apply reverts what it had
// done before returning. Anything that was already there (an address the
// interface already had, an identical route) is left alone, and undo leaves
// it too.
//
// # Namespaces
//
// Apply works on the network namespace of the calling thread: in a
// container, the container's. Its netlink sockets are opened there once,
// so undo reverts the same namespace whichever goroutine calls it. A program that
// switches namespaces (the tests do) must hold runtime.LockOSThread around
// Apply.
//
// # Interception rules
//
// Traffic "from the LAN" is what arrives on Intercept.InIface and/or from a
// source inside Intercept.LAN (both, when both are set), and is not
// addressed to the firewall itself (fib daddr type != local), so a client
// talking to the firewall's own addresses is never redirected into a loop:
//
//	table ip pinwall {
//		chain prerouting-mangle {
//			type filter hook prerouting priority mangle; policy accept;
//			iifname "eth0" udp dport 443 fib daddr type != local meta mark set 0x000001bb tproxy to :8443 accept
//		}
//		chain prerouting-nat {
//			type nat hook prerouting priority dstnat; policy accept;
//			iifname "eth0" tcp dport 443 fib daddr type != local redirect to :8443
//		}
//		chain postrouting-nat {
//			type nat hook postrouting priority srcnat; policy accept;
//			ip saddr 10.10.10.0/24 ip daddr != 10.10.10.0/24 masquerade
//		}
//	}
//	ip rule add fwmark 0x1bb lookup 443
//	ip route add local 0.0.0.0/0 dev lo table 443
//
// (that is how nft list renders them; the tests compare). The mark is set
// before tproxy so that, while no transparent socket listens, diverted
// datagrams are dropped rather than forwarded uninspected; a redirected
// TCP connection to a closed port is reset.
//
// TCP is REDIRECTed: the kernel rewrites the destination to the firewall's
// own listener and the original one is read back with SO_ORIGINAL_DST on
// the accepted socket (mitm.ServeTransparent).
//
// UDP is diverted with TPROXY, not REDIRECT. TPROXY leaves the datagram
// untouched and hands it to a socket with IP_TRANSPARENT set; the socket
// asks for IP_RECVORIGDSTADDR and every datagram arrives with its original
// destination in a control message (mitm.ServeUDPTransparent). The firewall
// answers from that destination through a transparent socket bound to it.
// REDIRECT would rewrite the destination and leave the original only in
// conntrack, which has three problems for a UDP proxy:
//
//   - ambiguity: one client socket talking to two destinations (QUIC does)
//     becomes two conntrack entries whose redirected tuples are the same, so
//     the proxy cannot tell the datagrams apart, and the reply NAT can only
//     map its answers back to one of them;
//   - a second lookup per new flow (ctnetlink, racing the entry's
//     confirmation) instead of data that comes with the datagram;
//   - the answers depend on conntrack's own UDP timeouts (30 s unreplied)
//     rather than the firewall's idle timeout.
//
// TPROXY costs a fwmark, an ip rule and a local route in a table of its own
// (Intercept.Mark, Intercept.Table), and CAP_NET_ADMIN (or CAP_NET_RAW) for
// IP_TRANSPARENT, which the firewall container has anyway.
//
// Masquerade source-NATs forwarded traffic from that prefix to anywhere
// outside it (the laptop's traffic that is not intercepted), so gateways
// and origins need no route back to the LAN.
//
// # Errors
//
// Every failure is an *OpError naming the operation ("add route
// 203.0.113.0/24 via 198.51.100.20"), wrapping the kernel's error, with a
// hint for the usual causes: "operation not permitted (does the container
// have NET_ADMIN?)".
package netsetup
