package capture

import (
	"encoding/binary"
	"net/netip"
)

var be = binary.BigEndian

// IP protocol numbers.
const (
	protoTCP = 6
	protoUDP = 17
)

// TCP flags.
const (
	flagFIN = 0x01
	flagSYN = 0x02
	flagRST = 0x04
	flagPSH = 0x08
	flagACK = 0x10
)

// TCP settings of synthesized connections.
const (
	// mss is the segment size: the largest payload one IPv4 packet holds
	// with 40 bytes of headers (what loopback's MTU of 65536 gives).
	mss = 65495
	// windowScale is the shift both ends announce; with the window field
	// at 0xffff the window is 8 MiB, wider than any burst between two
	// acknowledgements.
	windowScale = 7
	window      = 0xffff
	// ackEvery is the longest run of data one end sends before the other
	// acknowledges it, within one write.
	ackEvery = 1 << 20
)

// ipHeader appends an IPv4 or IPv6 header for a payload of n bytes.
func ipHeader(b []byte, src, dst netip.Addr, proto uint8, n int, id uint16) []byte {
	if src.Is4() && dst.Is4() {
		start := len(b)
		b = append(b, 0x45, 0)
		b = be.AppendUint16(b, uint16(20+n))
		b = be.AppendUint16(b, id)
		b = be.AppendUint16(b, 0x4000) // don't fragment
		b = append(b, 64, proto, 0, 0)
		s, d := src.As4(), dst.As4()
		b = append(b, s[:]...)
		b = append(b, d[:]...)
		be.PutUint16(b[start+10:], ^fold(sum(b[start:start+20], 0)))
		return b
	}
	b = append(b, 0x60, 0, 0, 0)
	b = be.AppendUint16(b, uint16(n))
	b = append(b, proto, 64)
	s, d := src.As16(), dst.As16()
	b = append(b, s[:]...)
	return append(b, d[:]...)
}

// ipHeaderLen is the header length ipHeader writes.
func ipHeaderLen(src, dst netip.Addr) int {
	if src.Is4() && dst.Is4() {
		return 20
	}
	return 40
}

// pseudoSum is the checksum of the TCP/UDP pseudo-header.
func pseudoSum(src, dst netip.Addr, proto uint8, n int) uint32 {
	var s uint32
	if src.Is4() && dst.Is4() {
		a, b := src.As4(), dst.As4()
		s = sum(a[:], s)
		s = sum(b[:], s)
	} else {
		a, b := src.As16(), dst.As16()
		s = sum(a[:], s)
		s = sum(b[:], s)
	}
	s += uint32(proto)
	s += uint32(n>>16) + uint32(n&0xffff)
	return s
}

// sum adds b as big-endian 16-bit words to s.
func sum(b []byte, s uint32) uint32 {
	n := len(b)
	i := 0
	for ; i+8 <= n; i += 8 {
		s += uint32(be.Uint16(b[i:])) + uint32(be.Uint16(b[i+2:])) + uint32(be.Uint16(b[i+4:])) + uint32(be.Uint16(b[i+6:]))
		if s >= 0xf0000000 {
			s = (s & 0xffff) + (s >> 16)
		}
	}
	for ; i+1 < n; i += 2 {
		s += uint32(be.Uint16(b[i:]))
	}
	if i < n {
		s += uint32(b[i]) << 8
	}
	return s
}

func fold(s uint32) uint16 {
	for s > 0xffff {
		s = (s & 0xffff) + (s >> 16)
	}
	return uint16(s)
}

// tcpSegment is one TCP segment to synthesize.
type tcpSegment struct {
	src, dst netip.AddrPort
	seq, ack uint32
	flags    uint8
	syn      bool // carries the SYN options (MSS, window scale)
	payload  []byte
	id       uint16
}

// packet returns the segment as an IP packet, keeping at most keep bytes
// of the payload, and the packet's full length.
func (s tcpSegment) packet(keep int) ([]byte, int) {
	hl := 20
	if s.syn {
		hl = 28
	}
	tcpLen := hl + len(s.payload)
	ipl := ipHeaderLen(s.src.Addr(), s.dst.Addr())
	keep = min(keep, len(s.payload))
	b := make([]byte, 0, ipl+hl+keep)
	b = ipHeader(b, s.src.Addr(), s.dst.Addr(), protoTCP, tcpLen, s.id)
	t := len(b)
	b = be.AppendUint16(b, s.src.Port())
	b = be.AppendUint16(b, s.dst.Port())
	b = be.AppendUint32(b, s.seq)
	b = be.AppendUint32(b, s.ack)
	b = append(b, byte(hl/4)<<4, s.flags)
	b = be.AppendUint16(b, window)
	b = append(b, 0, 0, 0, 0) // checksum, urgent pointer
	if s.syn {
		b = append(b, 2, 4)
		b = be.AppendUint16(b, mss)
		b = append(b, 1, 3, 3, windowScale)
	}
	cs := sum(b[t:], pseudoSum(s.src.Addr(), s.dst.Addr(), protoTCP, tcpLen))
	cs = sum(s.payload, cs)
	be.PutUint16(b[t+16:], ^fold(cs))
	b = append(b, s.payload[:keep]...)
	return b, ipl + tcpLen
}

// udpPacket returns a datagram as an IP packet, keeping at most keep
// bytes of the payload, and the packet's full length.
func udpPacket(src, dst netip.AddrPort, payload []byte, id uint16, keep int) ([]byte, int) {
	udpLen := 8 + len(payload)
	ipl := ipHeaderLen(src.Addr(), dst.Addr())
	keep = min(keep, len(payload))
	b := make([]byte, 0, ipl+8+keep)
	b = ipHeader(b, src.Addr(), dst.Addr(), protoUDP, udpLen, id)
	u := len(b)
	b = be.AppendUint16(b, src.Port())
	b = be.AppendUint16(b, dst.Port())
	b = be.AppendUint16(b, uint16(udpLen))
	b = append(b, 0, 0)
	cs := sum(b[u:], pseudoSum(src.Addr(), dst.Addr(), protoUDP, udpLen))
	cs = sum(payload, cs)
	c := ^fold(cs)
	if c == 0 {
		c = 0xffff
	}
	be.PutUint16(b[u+6:], c)
	b = append(b, payload[:keep]...)
	return b, ipl + udpLen
}
