// Package fault holds pinwall's fault-injection building blocks: what a
// degraded network does to datagrams, the same in both runners.
//
// An Impairment says what happens to each datagram: lost with probability
// Loss, otherwise delivered after Latency ± Jitter, except that a fraction
// Reorder goes at once and overtakes the datagrams delayed before it. That
// is the model of Linux netem (tc-netem(8): "loss random PERCENT", "delay
// TIME JITTER", "reorder PERCENT" with a delay; the reordered packets are
// "sent immediately", the others delayed), so both runners mean the same by
// the same numbers:
//
//   - In process (hostnet.Sim), an Impairer decides each datagram's fate on
//     its way from one simulated host to another, and a DelayLine hands the
//     delayed ones to the kernel when they are due, in due order (equal
//     times in sending order), as netem's time-ordered queue does.
//   - In containers, ApplyNetem installs a netem qdisc with the same
//     numbers through netlink (no tc binary in a FROM scratch image), on
//     the egress of the overlay interfaces facing the impaired host; a u32
//     filter limits it to UDP (and, optionally, to one destination), so
//     TCP is left alone as it is in process, where TCP runs over the
//     kernel's loopback and cannot be impaired.
//
// Impairments are datagram faults. The other faults the harness injects
// (a gateway killed, the firewall restarted with its session table lost,
// the firewall frozen) are events of the runners (harness.Event); this
// package holds what they share.
package fault
