// Package nstest gives tests throwaway network namespaces joined by veth
// pairs: several hosts with their own addresses, routes and nftables
// rules inside one test process, and nothing changed on the machine.
//
// Namespaces are unnamed (nothing under /var/run/netns): each lives as long
// as the handle New opened and the sockets created in it, so even a test
// that crashes leaves nothing behind. Code runs inside a namespace through
// NS.Do, on a locked OS thread of its own that returns to the process's
// namespace afterwards (or is discarded when it cannot); sockets opened
// there keep working from any goroutine. NS.Stack is a hostnet.Stack whose
// dials and listens happen inside the namespace.
//
// The package is Linux only. Everything needs root with CAP_NET_ADMIN and
// CAP_SYS_ADMIN; Guard skips the test otherwise. Guard also checks, when the test
// ends, that no thread or descriptor of the process still refers to the
// test's namespaces and that the machine's own interfaces, policy-routing
// rules and nftables tables are as they were.
package nstest
