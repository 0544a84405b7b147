package clienthello

// UDPApp is the application the firewall logs for a UDP flow, judged from
// a datagram's payload.
type UDPApp string

// The UDP applications Classify tells apart.
const (
	AppDTLS       UDPApp = "dtls"
	AppQUIC       UDPApp = "quic"
	AppUnknownUDP UDPApp = "unknown-udp"
)

// QUIC versions Classify recognises in a long header.
const (
	quicV1 = 0x00000001 // RFC 9000
	quicV2 = 0x6b3343cf // RFC 9369
)

// Classify labels a UDP payload, normally the first datagram of a flow.
//
// AppDTLS: a plaintext DTLS record header (RFC 6347, section 4.1): content
// type 20 to 25, version 0xfeff (DTLS 1.0), 0xfefd (1.2) or 0xfefc (1.3),
// and a length that fits the datagram. DTLS 1.3's encrypted unified header
// carries no version and is not recognised.
//
// AppQUIC: a QUIC long header (RFC 8999 and RFC 9000, section 17.2): the
// header-form bit set, the fixed bit set (except in Version Negotiation),
// a version that is QUIC v1, v2 (RFC 9369), an IETF draft (0xff0000xx),
// Version Negotiation (0), a reserved greasing version (0x?a?a?a?a) or
// Google QUIC's Q0xx/T0xx, and connection IDs that fit. Short-header
// (1-RTT) packets cannot be told from noise and are not recognised.
//
// Everything else is AppUnknownUDP.
func Classify(datagram []byte) UDPApp {
	switch {
	case isDTLSRecord(datagram):
		return AppDTLS
	case isQUICLongHeader(datagram):
		return AppQUIC
	}
	return AppUnknownUDP
}

// IsDTLSHandshake reports whether datagram starts with a plaintext DTLS
// handshake record of epoch 0 (the record header Classify accepts, content
// type 22, epoch 0): what a client's first flight looks like. A DTLS server
// sharing one socket among peers admits a new peer only on such a
// datagram; the record's payload is not parsed (see ParseDTLS for that).
func IsDTLSHandshake(datagram []byte) bool {
	b := datagram
	return isDTLSRecord(b) && b[0] == recordTypeHandshake && b[3] == 0 && b[4] == 0
}

func isDTLSRecord(b []byte) bool {
	if len(b) < dtlsRecordHeaderLen || b[0] < 20 || b[0] > 25 || b[1] != 0xfe || !isDTLSVersion(b[2]) {
		return false
	}
	rlen := int(b[11])<<8 | int(b[12])
	return rlen <= len(b)-dtlsRecordHeaderLen
}

// isDTLSVersion reports whether 0xfe<minor> is DTLS 1.0 (0xfeff), 1.2
// (0xfefd) or 1.3 (0xfefc).
func isDTLSVersion(minor byte) bool {
	return minor == 0xff || minor == 0xfd || minor == 0xfc
}

func isQUICLongHeader(b []byte) bool {
	// first byte, version, DCID length, DCID, SCID length, SCID
	if len(b) < 7 || b[0]&0x80 == 0 {
		return false
	}
	v := uint32(b[1])<<24 | uint32(b[2])<<16 | uint32(b[3])<<8 | uint32(b[4])
	maxCID := 20 // RFC 9000, section 17.2
	switch {
	case v == 0: // Version Negotiation: the fixed bit is unused
		maxCID = 255
	case b[0]&0x40 == 0:
		return false
	case v == quicV1, v == quicV2, v>>8 == 0xff0000:
	case v&0x0f0f0f0f == 0x0a0a0a0a:
		maxCID = 255 // a greasing version, only the invariants hold
	case (b[1] == 'Q' || b[1] == 'T') && b[2] == '0' && isDigit(b[3]) && isDigit(b[4]):
	default:
		return false
	}
	dcid := int(b[5])
	if dcid > maxCID || 6+dcid >= len(b) {
		return false
	}
	scid := int(b[6+dcid])
	return scid <= maxCID && 7+dcid+scid <= len(b)
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }
