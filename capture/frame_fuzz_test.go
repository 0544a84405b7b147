package capture

import (
	"net/netip"
	"testing"
)

// FuzzParseEthernet feeds arbitrary frames, as an AF_PACKET socket may
// deliver, to the frame parser and the tap classifier: no panic, and a
// flow's header and payload lengths stay within what the IP header says.
func FuzzParseEthernet(f *testing.F) {
	tcp := append([]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 0x08, 0x00},
		0x45, 0, 0, 44, 0, 1, 0x40, 0, 64, 6, 0, 0, 192, 0, 2, 1, 192, 0, 2, 2,
		0x13, 0x88, 0x01, 0xbb, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x18, 0xff, 0xff, 0, 0, 0, 0, 'd', 'a', 't', 'a')
	f.Add(tcp)
	short := append([]byte(nil), tcp...)
	short[14+9], short[14+3] = 17, 23 // UDP, total length 23: shorter than its header
	f.Add(short)
	f.Add(tcp[:20])
	f.Add(append([]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 0x81, 0x00, 0, 1}, tcp[12:]...))
	cls := classifier{own: []byte{0, 1, 2, 3, 4, 5}, taps: []Tap{{Leg: "a", Peers: []netip.Prefix{netip.MustParsePrefix("192.0.2.1/32")}}, {Leg: "b"}}}
	f.Fuzz(func(t *testing.T, frame []byte) {
		if _, hdr, payload, ok := parseEthernet(frame); ok {
			if hdr < 14+20+8 || payload < 0 {
				t.Fatalf("header %d, payload %d", hdr, payload)
			}
		}
		if i := cls.tap(frame); i < -1 || i >= len(cls.taps) {
			t.Fatalf("tap %d", i)
		}
	})
}
