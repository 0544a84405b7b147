// Package clienthello reads TLS and DTLS ClientHellos off the wire without
// consuming them, fingerprints them (JA3, JA4) and tells DTLS from QUIC in
// UDP/443 datagrams.
//
// The perimeter firewall (package mitm) decides what to do with a TCP/443
// connection before it has sent a byte back: it peeks the client's first
// flight, reads the ClientHello's SNI, ALPN and versions, asks its policy,
// and then either splices the untouched bytes to the real server or
// terminates TLS itself. Peek does the first part:
//
//	info, pc, err := clienthello.Peek(conn, clienthello.PeekOptions{})
//	if err != nil {
//		// pc.Buffered() holds what the client sent (plain HTTP, garbage, a
//		// truncated hello); errors.Is tells ErrNotTLS, ErrMalformed,
//		// ErrTooLarge, io.EOF, io.ErrUnexpectedEOF and os.ErrDeadlineExceeded
//		// apart.
//	}
//	// pc replays the peeked bytes, then reads from conn: hand it to
//	// tls.Server to decrypt, or io.Copy it to the upstream connection to
//	// splice (pc.WriteTo and pc.ReadFrom keep kernel splicing possible).
//
// Parse does the same on bytes already in hand: a TCP stream that starts
// with one or more TLS handshake records (content type 22) carrying a
// ClientHello, which may be split across records and is reassembled, up to
// MaxHelloSize. It reports ErrIncomplete (as *IncompleteError, with a lower
// bound of the bytes still missing) until the hello and the records holding
// it are complete. ParseDTLS reads a DTLS 1.0/1.2 ClientHello from a single
// UDP datagram; a ClientHello fragmented over several datagrams is reported
// as incomplete and not reassembled. Classify labels a UDP payload "dtls",
// "quic" or "unknown-udp" the way the firewall's application log does.
//
// Both parsers are strict about structure (every length prefix must match
// its container, no duplicate extensions, a server_name must be an ASCII
// host name) and report violations as *ParseError, which matches
// ErrMalformed. They never panic and never allocate more than a small
// multiple of MaxHelloSize, whatever the input claims.
//
// Info.JA3 and Info.JA3Hash compute Salesforce's JA3, Info.JA4 FoxIO's
// JA4 (technical_details/JA4.md in github.com/FoxIO-LLC/ja4); the comment
// at the top of fingerprint.go says which details follow which source.
// TLSVersionName names versions for logs.
package clienthello
