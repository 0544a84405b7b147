package clienthello_test

import (
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"

	"github.com/pinwall/pinwall/mitm/clienthello"
)

func ExampleParse() {
	raw, _ := os.ReadFile("testdata/chrome143.hex")
	var digits strings.Builder
	for _, line := range strings.Split(string(raw), "\n") {
		if !strings.HasPrefix(line, "#") {
			digits.WriteString(strings.TrimSpace(line))
		}
	}
	hello, _ := hex.DecodeString(digits.String())

	info, err := clienthello.Parse(hello)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(info.ServerName, info.ALPN, clienthello.TLSVersionName(info.MaxVersion()))
	fmt.Println(info.JA3Hash())
	fmt.Println(info.JA4())

	_, err = clienthello.Parse(hello[:100])
	fmt.Println(errors.Is(err, clienthello.ErrIncomplete))
	// Output:
	// tls-outer.browserleaks.com [h2 http/1.1] TLS1.3
	// 98487aa16281980e7d1120d399efb6a4
	// t13d1516h2_8daaf6152771_d8a2da3f94cd
	// true
}

func ExamplePeek() {
	client, firewall := net.Pipe()
	go func() {
		defer client.Close()
		_, _ = client.Write([]byte("GET / HTTP/1.1\r\nHost: www.social.test\r\n\r\n"))
	}()

	_, pc, err := clienthello.Peek(firewall, clienthello.PeekOptions{})
	defer pc.Close()
	if errors.Is(err, clienthello.ErrNotTLS) {
		// Not TLS: the firewall logs it as another application, and can
		// still forward every byte.
		all, _ := io.ReadAll(pc)
		fmt.Printf("not TLS: %q\n", strings.SplitN(string(all), "\r\n", 2)[0])
	}
	// Output:
	// not TLS: "GET / HTTP/1.1"
}

func ExampleClassify() {
	fmt.Println(clienthello.Classify([]byte{22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}))
	fmt.Println(clienthello.Classify([]byte{0xc3, 0, 0, 0, 1, 8, 1, 2, 3, 4, 5, 6, 7, 8, 0}))
	fmt.Println(clienthello.Classify([]byte("\x12\x34 a DNS answer")))
	// Output:
	// dtls
	// quic
	// unknown-udp
}
