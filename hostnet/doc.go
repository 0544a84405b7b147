// Package hostnet is a host's view of the network: how a component dials,
// listens and receives datagrams, without knowing whether it runs in a real
// container or in pinwall's in-process simulation.
//
// Every component (client, firewall, gateway, origin) takes a Stack. Two
// implementations exist:
//
//   - OS is the kernel's network, used in containers where the firewall is
//     the laptop's real next hop.
//   - Sim is the in-process network. Each simulated host owns logical IPv4
//     addresses (those of docs/topology.md: 10.10.10.100, 203.0.113.x, ...)
//     mapped onto its own loopback address (127.10.10.100, 127.0.113.x, ...).
//     Listening sockets get ephemeral real ports mapped back to their logical
//     ports, so nothing needs privileges. Addresses returned by LocalAddr,
//     RemoteAddr and ReadFrom are always logical, so logs, policies and
//     assertions are the same in both runners.
//
// Routing in Sim: a LAN prefix can be routed via a Router, the firewall's
// intercept sockets. A LAN host's dial to anything outside the prefix then
// reaches the firewall instead, carrying the original source and destination
// in a PROXY protocol v2 header (TCP: once at the start of the stream; UDP:
// in front of every datagram), the in-process stand-in for the kernel's
// SO_ORIGINAL_DST / IP_RECVORIGDSTADDR. Neither end is modified: only the
// laptop's network is.
//
// Loopback destinations (127.0.0.0/8) are outside the simulation — a tool
// or proxy on the machine — and are dialled for real.
//
// Captures: Sim.SetTap shows a Tap both ends of every TCP connection
// between two hosts, the dialler's end of every UDP socket and every
// listening UDP socket, with logical addresses and after any PROXY header,
// so package capture can record each leg as a wire would show it.
//
// Names are never resolved here: every address must be an IP literal, so a
// misrouted name can never reach the host's DNS or the internet.
package hostnet
