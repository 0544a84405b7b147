package forge_test

import (
	"context"
	"fmt"

	"github.com/pinwall/pinwall/mitm/forge"
	"github.com/pinwall/pinwall/pki"
)

// The firewall forges a leaf for the gateway's SNI, imitating the gateway's
// real certificate; the laptop sees the enterprise CA as issuer.
func ExampleForger_Forge() {
	set, err := pki.NewSet(pki.Config{}, "acme")
	if err != nil {
		panic(err)
	}
	gateway, err := set.ServerCert("gateway-acme.sse.test", "gateway-backup-acme.sse.test")
	if err != nil {
		panic(err)
	}
	f, err := forge.New(forge.Config{CA: set.Enterprise})
	if err != nil {
		panic(err)
	}

	fg, err := f.Forge(context.Background(), "gateway-acme.sse.test", gateway.Leaf)
	if err != nil {
		panic(err)
	}
	fmt.Println("subject:", fg.Leaf().Subject.CommonName)
	fmt.Println("issuer:", fg.Leaf().Issuer.CommonName)
	fmt.Println("sans:", fg.Leaf().DNSNames)
	fmt.Println("chain length:", len(fg.Certificate.Certificate))

	// A regional name the gateway certificate does not cover is added, and noted.
	fg, err = f.Forge(context.Background(), "gateway-acme.eu.sse.test", gateway.Leaf)
	if err != nil {
		panic(err)
	}
	fmt.Println("sans:", fg.Leaf().DNSNames, fg.Notes)
	fmt.Printf("%+v\n", f.Stats())
	// Output:
	// subject: gateway-acme.sse.test
	// issuer: pinwall Enterprise Forward Trust CA
	// sans: [gateway-acme.sse.test gateway-backup-acme.sse.test]
	// chain length: 2
	// sans: [gateway-acme.sse.test gateway-backup-acme.sse.test gateway-acme.eu.sse.test] [sni-not-covered-by-upstream]
	// {Hits:0 Misses:2 Signings:2 Evictions:0 Cached:2}
}
