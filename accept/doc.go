// Package accept keeps a server's accept loop alive through errors that
// pass: a listener that hits the descriptor limit ("too many open files",
// EMFILE/ENFILE), a connection aborted before it was accepted
// (ECONNABORTED), a kernel short of buffers. Such an error says nothing
// about the listening socket, which stays good; giving up on it leaves a
// process that looks ready and accepts nothing.
//
// Wrap turns a net.Listener into one whose Accept retries those errors
// with a growing pause, the way net/http's Server does (5 ms doubling to
// 1 s, back to 5 ms after a success), logs them (the first of a streak at
// once, then at most one line a second, and a line when accepting
// recovers) and counts them. Any other error, and Close, end Accept as
// before. Backoff is the same pause for loops that read datagrams.
//
// Every accept loop in pinwall goes through Wrap: the gateway's TLS
// listener, the firewall's intercept, transparent, forward and proxy
// listeners, the client's SOCKS5 listener and the origins.
package accept
