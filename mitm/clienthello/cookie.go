package clienthello

// DTLS handshake header (RFC 6347, section 4.2.2) and the handshake types
// whose cookies a DTLS server's demultiplexer looks at.
const (
	dtlsHandshakeHeaderLen = 12
	handshakeClientHello   = 1
	handshakeHelloVerify   = 3
)

// dtlsHandshakeBody returns the type and body of the first handshake
// message of a plaintext DTLS handshake record (IsDTLSHandshake) whose
// first fragment is whole in the datagram.
func dtlsHandshakeBody(datagram []byte) (typ byte, body []byte, ok bool) {
	if !IsDTLSHandshake(datagram) || len(datagram) < dtlsRecordHeaderLen+dtlsHandshakeHeaderLen {
		return 0, nil, false
	}
	h := datagram[dtlsRecordHeaderLen:]
	fragOff := int(h[6])<<16 | int(h[7])<<8 | int(h[8])
	fragLen := int(h[9])<<16 | int(h[10])<<8 | int(h[11])
	if fragOff != 0 || len(h) < dtlsHandshakeHeaderLen+fragLen {
		return 0, nil, false
	}
	return h[0], h[dtlsHandshakeHeaderLen : dtlsHandshakeHeaderLen+fragLen], true
}

// HelloVerifyCookie returns the cookie of a DTLS HelloVerifyRequest
// datagram (RFC 6347, section 4.2.1), the server's answer to a first
// ClientHello; ok is false for anything else.
func HelloVerifyCookie(datagram []byte) (cookie []byte, ok bool) {
	typ, body, ok := dtlsHandshakeBody(datagram)
	if !ok || typ != handshakeHelloVerify || len(body) < 3 || len(body) < 3+int(body[2]) {
		return nil, false
	}
	return body[3 : 3+int(body[2])], true
}

// ClientHelloCookie returns the cookie a DTLS ClientHello datagram carries
// (empty in a client's first hello, the server's cookie in its second);
// ok is false for anything but a ClientHello whose first fragment is whole.
func ClientHelloCookie(datagram []byte) (cookie []byte, ok bool) {
	typ, body, ok := dtlsHandshakeBody(datagram)
	if !ok || typ != handshakeClientHello {
		return nil, false
	}
	i := 2 + 32 // client_version, random
	if len(body) < i+1 {
		return nil, false
	}
	i += 1 + int(body[i]) // session_id
	if len(body) < i+1 || len(body) < i+1+int(body[i]) {
		return nil, false
	}
	return body[i+1 : i+1+int(body[i])], true
}
