package policy_test

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"github.com/pinwall/pinwall/mitm/policy"
	"github.com/pinwall/pinwall/resolve"
)

func ExampleParse() {
	p, err := policy.Parse("policy.yaml", []byte(`
rules:
  - name: no-decrypt-sse
    match: { sni: [gateway-acme.sse.test, gateway-backup-acme.sse.test] }
    action: no-decrypt
  - name: decrypt-rest
    match: { proto: tcp, port: [443] }
    action: decrypt
`))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Print(p.Describe())
	// Output:
	// #  rule            match                                                   action      options  line
	// 1  no-decrypt-sse  sni=gateway-acme.sse.test,gateway-backup-acme.sse.test  no-decrypt  -        3
	// 2  decrypt-rest    proto=tcp port=443                                      decrypt     -        6
	// -  default         any                                                     allow       -        -
}

func ExampleParse_error() {
	_, err := policy.Parse("policy.yaml", []byte(`
rules:
  - name: no-decrypt-sse
    match: { sni: ["gate*.sse.test"] }
    action: no-decrypt
`))
	fmt.Println(err)
	// Output: policy.yaml:4:20: rules[0].match.sni[0]: "gate*.sse.test": * must be a whole label, as in *.sse.test (exactly one label) or **.sse.test (one or more)
}

func ExampleEngine_Decide() {
	p, _ := policy.Parse("policy.yaml", []byte(`
rules:
  - name: no-decrypt-sse
    match: { sni: ["*.sse.test"] }
    action: no-decrypt
  - name: decrypt-rest
    match: { proto: tcp, port: 443 }
    action: decrypt
`))
	e, _ := policy.NewEngine(p, policy.EngineConfig{})
	for _, sni := range []string{"gateway-acme.sse.test", "gateway-acme.eu.sse.test"} {
		d := e.Decide(context.Background(), policy.Session{
			Src:    netip.MustParseAddrPort("10.10.10.100:50000"),
			Dst:    netip.MustParseAddrPort("203.0.113.7:443"),
			Proto:  policy.ProtoTCP,
			SNI:    sni,
			HasSNI: true,
		})
		fmt.Println(sni, "->", d.RuleName, d.Action)
	}
	// Output:
	// gateway-acme.sse.test -> no-decrypt-sse no-decrypt
	// gateway-acme.eu.sse.test -> decrypt-rest decrypt
}

func ExampleEngine_FQDNSnapshot() {
	zone, _ := resolve.NewZone(resolve.Record{
		Name: "gateway-acme.sse.test", TTL: time.Minute, Answer: 2, Rotate: true,
		Addrs: []netip.Addr{
			netip.MustParseAddr("203.0.113.1"), netip.MustParseAddr("203.0.113.2"),
			netip.MustParseAddr("203.0.113.3"), netip.MustParseAddr("203.0.113.4"),
		},
	})
	p, _ := policy.Parse("policy.yaml", []byte(`
rules:
  - name: no-decrypt-gw
    match: { dst-fqdn: gw }
    action: no-decrypt
objects:
  fqdn:
    gw: { fqdn: gateway-acme.sse.test }
`))
	e, _ := policy.NewEngine(p, policy.EngineConfig{Resolver: zone})
	for _, dst := range []string{"203.0.113.1:443", "203.0.113.3:443"} {
		d := e.Decide(context.Background(), policy.Session{Dst: netip.MustParseAddrPort(dst), Proto: policy.ProtoTCP})
		fmt.Println(dst, "->", d.RuleName)
	}
	st := e.FQDNSnapshot()["gw"]
	fmt.Println(st.Addrs, st.Lookups)
	// Output:
	// 203.0.113.1:443 -> no-decrypt-gw
	// 203.0.113.3:443 -> default
	// [203.0.113.1 203.0.113.2] 1
}
