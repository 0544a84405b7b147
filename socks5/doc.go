// Package socks5 is the server side of SOCKS version 5 (RFC 1928), the
// protocol the endpoint client's local listener speaks so that ordinary
// programs (curl --socks5-hostname, browsers) can send flows into the tunnel.
//
// Only what the client needs is implemented: the "no authentication required"
// method (0x00) and the CONNECT command, to IPv4, IPv6 and domain-name
// destinations. A domain name is passed to the dialer unresolved ("name:port"):
// the tunnel carries names to the cloud gateway, which resolves them, exactly
// what curl's --socks5-hostname relies on.
//
// # Protocol flow
//
//	client                                   server
//	VER=5 NMETHODS METHODS...         ─►     ReadGreeting
//	                                  ◄─     VER=5 METHOD (0x00, or 0xFF: none acceptable, close)
//	VER=5 CMD RSV=0 ATYP DST.ADDR DST.PORT ─► ReadRequest
//	                                         CMD != CONNECT     → REP 0x07, close
//	                                         ATYP unknown       → REP 0x08, close
//	                                         malformed          → REP 0x01, close
//	                                         Server.Dial(ctx, "tcp", Request.Address())
//	                                  ◄─     VER=5 REP RSV=0 ATYP BND.ADDR BND.PORT
//	bytes ◄──────────── relay, half-close on EOF ────────────► upstream
//
// The whole handshake runs under Server.HandshakeTimeout. A refused client
// gets its reply, a half-close and a short drain of what it still sends
// before the server closes, so that unread input does not turn the close into
// a reset that destroys the reply. Truncated input and read failures (EOF,
// deadline) get no reply. Every refusal is logged with its cause.
//
// The greeting and the request are parsed by ReadGreeting and ReadRequest,
// pure functions over an io.Reader that read exactly the bytes of the message
// (never more, so data a client pipelines after its request reaches the
// upstream intact). Both are bounded by the wire format: at most 257 bytes for
// a greeting and 262 for a request.
//
// # Reply codes
//
// ReplyFor turns a dial error into a reply code from its failure cause
// (failure.Classify, so both attributed *failure.Error values and plain network
// errors are understood); the table is in ReplyFor's documentation.
//
// # Goroutines
//
// Server.Serve runs in its caller's goroutine and owns one goroutine per
// connection plus one copy goroutine per relay; it waits for all of them
// before it returns. Server.Close stops every Serve call and waits for them.
package socks5
