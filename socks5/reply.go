package socks5

import (
	"github.com/pinwall/pinwall/fault"
)

// ReplyFor maps a dial error to the reply code sent to the client, from the
// error's fault cause (fault.Classify: the outermost *fault.Error's cause, or
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
// The fault cause itself, finer than any reply code, is logged by the server.
func ReplyFor(err error) Reply {
	if err == nil {
		return ReplySucceeded
	}
	switch fault.Classify(err) {
	case fault.CauseConnectionRefused:
		return ReplyConnectionRefused
	case fault.CauseDNS:
		return ReplyHostUnreachable
	case fault.CausePolicyBlock, fault.CauseTunnelDown, fault.CauseProxyRefused:
		return ReplyNotAllowed
	case fault.CauseTimeout, fault.CauseHandshakeTimeout:
		return ReplyHostUnreachable
	}
	return ReplyGeneralFailure
}
