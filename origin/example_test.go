package origin_test

import (
	"encoding/hex"
	"fmt"
	"io"

	"github.com/pinwall/pinwall/origin"
)

// Both ends of a flow know what the other must have sent from the seed alone.
func ExamplePayloadSHA256() {
	sum := origin.PayloadSHA256(1, 1024)
	fmt.Println(hex.EncodeToString(sum[:]))

	n, _ := io.Copy(io.Discard, origin.Payload(1, 1024))
	fmt.Println(n, "bytes")
	// Output:
	// 280974f615cd8d968b7d6ebb533b6cc3868af50cd4868931094c12081595704b
	// 1024 bytes
}

func ExampleFlow_URL() {
	f := origin.Flow{Site: "www.social.test", ReqSize: 1 << 20, RespSize: 4096, Seed: 7}
	fmt.Println(f.URL())
	// Output:
	// https://www.social.test/flow?resp=4096&seed=11400714819323198482
}
