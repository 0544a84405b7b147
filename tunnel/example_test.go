package tunnel_test

import (
	"encoding/hex"
	"fmt"
	"net/netip"

	"github.com/pinwall/pinwall/tunnel"
)

// The stream header a client writes to open a flow to www.social.test:443
// (docs/protocol.md, "Request").
func ExampleAppendRequest() {
	b, err := tunnel.AppendRequest(nil, tunnel.Request{Host: "www.social.test", Port: 443, FlowID: 1})
	if err != nil {
		panic(err)
	}
	fmt.Print(hex.Dump(b))
	// Output:
	// 00000000  50 57 01 01 01 bb 0f 77  77 77 2e 73 6f 63 69 61  |PW.....www.socia|
	// 00000010  6c 2e 74 65 73 74 00 00  00 00 00 00 00 01        |l.test........|
}

// The gateway's answers: the origin reached, and a refusal with its reason
// (docs/protocol.md, "Reply").
func ExampleAppendReply() {
	ok := tunnel.AppendReply(nil, tunnel.Reply{Status: tunnel.StatusOK, Addr: netip.MustParseAddrPort("192.0.2.10:443")})
	fmt.Print(hex.Dump(ok))
	refused := tunnel.AppendReply(nil, tunnel.Reply{Status: tunnel.StatusDNSFailure, Message: "no such host"})
	fmt.Print(hex.Dump(refused))
	// Output:
	// 00000000  50 52 01 00 04 c0 00 02  0a 01 bb 00              |PR..........|
	// 00000000  50 52 01 01 00 0c 6e 6f  20 73 75 63 68 20 68 6f  |PR....no such ho|
	// 00000010  73 74                                             |st|
}

// The gateway's first message on a new tunnel (docs/protocol.md, "Greeting").
func ExampleAppendGreeting() {
	g := tunnel.Greeting{TunnelID: [16]byte{0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef}}
	fmt.Print(hex.Dump(tunnel.AppendGreeting(nil, g)))
	fmt.Println(g.TunnelIDString())
	// Output:
	// 00000000  50 57 47 57 01 01 23 45  67 89 ab cd ef 01 23 45  |PWGW..#Eg.....#E|
	// 00000010  67 89 ab cd ef                                    |g....|
	// 0123456789abcdef0123456789abcdef
}
