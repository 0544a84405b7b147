package socks5_test

import (
	"bytes"
	"fmt"
	"net/netip"

	"github.com/pinwall/pinwall/socks5"
)

// What curl --socks5-hostname sends after its greeting: a CONNECT to a name,
// which the server hands to its Dial unresolved.
func ExampleReadRequest() {
	wire := []byte{5, 1, 0, 3, 15}
	wire = append(wire, "www.social.test"...)
	wire = append(wire, 1, 187)

	q, err := socks5.ReadRequest(bytes.NewReader(wire))
	if err != nil {
		panic(err)
	}
	fmt.Println(q.Command, q.AddrType, q.Address())
	// Output:
	// connect domain www.social.test:443
}

func ExampleAppendReply() {
	ok := socks5.AppendReply(nil, socks5.ReplySucceeded, netip.MustParseAddrPort("10.10.10.100:40000"))
	refused := socks5.AppendReply(nil, socks5.ReplyConnectionRefused, netip.AddrPort{})
	fmt.Printf("% x\n% x\n", ok, refused)
	// Output:
	// 05 00 00 01 0a 0a 0a 64 9c 40
	// 05 05 00 01 00 00 00 00 00 00
}
