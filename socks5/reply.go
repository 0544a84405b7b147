package socks5

import (
	"github.com/pinwall/pinwall/failure"
)

// ReplyFor maps a dial error to the reply code sent to the client, from the
// error's failure cause (failure.Classify: the outermost *failure.Error's cause, or
// the cause of a plain network error):
//
//	nil                                        0x00 succeeded
//	connection-refused                         0x05 connection refused
//	dns-failure                                0x04 host unreachable
//	policy-block, tunnel-down, proxy-refused   0x02 connection not allowed by ruleset
//	timeout, handshake-timeout                 0x04 host unreachable
//	anything else                              0x01 general SOCKS server failure
//
// A timeout maps to host unreachable, not to 0x06 "TTL expired": RFC 1928
// names the IP time-to-live there (an ICMP time-exceeded), which a dial that
// simply got no answer has not seen. Host unreachable is what a SYN to a
// silent host amounts to, and it is what curl and browsers show sensibly.
// The failure cause itself, finer than any reply code, is logged by the server.
func ReplyFor(err error) Reply {
	if err == nil {
		return ReplySucceeded
	}
	switch failure.Classify(err) {
	case failure.CauseConnectionRefused:
		return ReplyConnectionRefused
	case failure.CauseDNS:
		return ReplyHostUnreachable
	case failure.CausePolicyBlock, failure.CauseTunnelDown, failure.CauseProxyRefused:
		return ReplyNotAllowed
	case failure.CauseTimeout, failure.CauseHandshakeTimeout:
		return ReplyHostUnreachable
	}
	return ReplyGeneralFailure
}
