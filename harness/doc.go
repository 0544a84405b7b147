// Package harness builds pinwall topologies and runs them: a laptop running
// the endpoint client, an optional perimeter firewall, a pool of cloud
// gateways and the SaaS origins behind them.
//
// A Spec describes a topology in the terms of docs/topology.md (logical
// addresses, .test names, which CAs the laptop trusts, what the client pins).
// StartInProcess builds it on a hostnet.Sim, every host on its own loopback
// address, with no privileges and no Docker; the container runner builds the
// same Spec on Docker networks. Either way the result is a Topology whose
// components can be driven (Workload) and observed (Observe).
package harness
