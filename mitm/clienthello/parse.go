package clienthello

import (
	"errors"
	"fmt"
)

// MaxHelloSize bounds the ClientHello handshake message (its body, without
// the handshake header) that Parse and ParseDTLS accept. Real hellos are
// 200 bytes to a few KiB (a post-quantum X25519MLKEM768 key share adds
// 1.2 KiB); 64 KiB leaves room for large PSK identities and padding.
const MaxHelloSize = 64 << 10

// Record layers, as Info.Record spells them.
const (
	RecordTLS  = "tls"
	RecordDTLS = "dtls"
	// RecordQUIC is never set by this package's parsers (a QUIC Initial is
	// encrypted); callers that extract a ClientHello from QUIC CRYPTO frames
	// may set it so that JA4 starts with "q".
	RecordQUIC = "quic"
)

// Wire constants.
const (
	recordTypeHandshake = 22
	typeClientHello     = 1

	tlsRecordHeaderLen  = 5
	dtlsRecordHeaderLen = 13
	tlsHandshakeHdrLen  = 4
	dtlsHandshakeHdrLen = 12
	maxPlaintextRecord  = 1 << 14

	extServerName          = 0x0000
	extSupportedGroups     = 0x000a
	extECPointFormats      = 0x000b
	extSignatureAlgorithms = 0x000d
	extALPN                = 0x0010
	extSupportedVersions   = 0x002b
)

// Info is what a ClientHello tells a firewall. Slices hold values in wire
// order, GREASE values included; JA3 and JA4 drop GREASE themselves.
type Info struct {
	// Record is RecordTLS or RecordDTLS.
	Record string
	// RecordVersion is the version in the first record header (0x0301 for
	// most TLS 1.3 clients, 0xfeff or 0xfefd for DTLS).
	RecordVersion uint16
	// LegacyVersion is the ClientHello's client_version field.
	LegacyVersion uint16
	// SupportedVersions is the supported_versions extension's list, nil if
	// the extension is absent.
	SupportedVersions []uint16
	CipherSuites      []uint16
	// Extensions lists the extension types in wire order.
	Extensions []uint16
	// ServerName is the server_name extension's host_name, as sent: ASCII,
	// case preserved (compare it case-insensitively), no trailing dot.
	// Empty if there is none. With Encrypted Client Hello (extension
	// 0xfe0d) it is the outer, public name, not the name the client wants.
	ServerName string
	// HasSNI reports whether a server_name extension is present.
	HasSNI bool
	// ALPN lists the application_layer_protocol_negotiation protocols.
	ALPN []string
	// Groups lists supported_groups (named elliptic curves and KEMs).
	Groups []uint16
	// PointFormats lists ec_point_formats.
	PointFormats        []uint8
	SignatureAlgorithms []uint16
	// SessionID is the legacy_session_id (a copy; it does not alias the
	// input).
	SessionID []byte
	// Cookie is the DTLS cookie (a copy), nil for TLS and for a DTLS
	// ClientHello sent before a HelloVerifyRequest.
	Cookie []byte
	// Len is how many bytes at the start of the input the records holding
	// the ClientHello occupy, record headers included. For TLS it ends at a
	// record boundary; for DTLS it covers the datagram's first record.
	Len int
}

// HasExtension reports whether the hello carries an extension of type typ
// (e.g. 0xfe0d, encrypted_client_hello).
func (i *Info) HasExtension(typ uint16) bool {
	for _, e := range i.Extensions {
		if e == typ {
			return true
		}
	}
	return false
}

// Parse parses a TLS ClientHello at the start of b, the first bytes a
// client sent on a TCP connection. The hello may span several handshake
// records; Parse reassembles it without copying when it fits in one.
//
// Errors: *IncompleteError (ErrIncomplete) while b is a proper prefix of a
// valid hello; ErrNotTLS when b does not start with a TLS handshake record;
// ErrTooLarge when the hello declares more than MaxHelloSize bytes;
// *ParseError (ErrMalformed) otherwise. Bytes after Info.Len are ignored.
func Parse(b []byte) (*Info, error) {
	if err := checkTLSStart(b); err != nil {
		return nil, err
	}
	// First pass: walk the records without copying, validate their
	// headers, find the handshake header (which may itself be split) and
	// decide whether the hello is complete.
	w := tlsWalk{msgLen: -1}
	for !w.complete() {
		if err := w.record(b); err != nil {
			return nil, err
		}
	}
	msg := w.message(b)
	info := &Info{
		Record:        RecordTLS,
		RecordVersion: uint16(b[1])<<8 | uint16(b[2]),
		Len:           w.off,
	}
	if perr := parseBody(info, cursor{b: msg[tlsHandshakeHdrLen:], off: tlsHandshakeHdrLen}, false); perr != nil {
		perr.Offset = tlsInputOffset(b, perr.Offset)
		return nil, perr
	}
	return info, nil
}

// checkTLSStart rejects input that does not start a TLS handshake record.
func checkTLSStart(b []byte) error {
	if len(b) == 0 {
		return &IncompleteError{Need: tlsRecordHeaderLen}
	}
	if b[0] != recordTypeHandshake {
		if b[0]&0x80 != 0 && len(b) >= 3 && b[2] == typeClientHello {
			return notTLS("SSLv2-compatible ClientHello")
		}
		return notTLS("first byte 0x%02x", b[0])
	}
	if len(b) >= 2 && b[1] != 3 {
		return notTLS("record version 0x%02x%02x", b[1], b[2:min(3, len(b))])
	}
	return nil
}

// tlsWalk is Parse's first pass over the handshake records holding a
// ClientHello.
type tlsWalk struct {
	hdr      [tlsHandshakeHdrLen]byte
	msgAvail int // handshake bytes seen so far, partial record included
	msgLen   int // the whole handshake message's length; -1 until known
	off      int // where the next record starts
	records  int
}

// complete reports whether the records walked so far hold the message.
func (w *tlsWalk) complete() bool {
	return w.msgLen >= 0 && w.msgAvail >= w.msgLen && w.off > 0
}

// record walks the record at w.off.
func (w *tlsWalk) record(b []byte) error {
	off := w.off
	rest := len(b) - off
	if rest < tlsRecordHeaderLen {
		need := tlsRecordHeaderLen - rest
		if w.msgLen >= 0 {
			need += w.msgLen - w.msgAvail
		} else {
			need++ // a record carries at least one byte
		}
		return &IncompleteError{Need: need}
	}
	typ, major, rlen := b[off], b[off+1], int(b[off+3])<<8|int(b[off+4])
	switch {
	case typ != recordTypeHandshake:
		return &ParseError{Offset: off, Field: "record type", Err: fmt.Errorf("content type %d interleaved with the ClientHello's handshake records", typ)}
	case major != 3:
		return &ParseError{Offset: off + 1, Field: "record version", Err: fmt.Errorf("major version %d", major)}
	case rlen == 0:
		return &ParseError{Offset: off + 3, Field: "record length", Err: errors.New("empty handshake record")}
	case rlen > maxPlaintextRecord:
		return &ParseError{Offset: off + 3, Field: "record length", Err: fmt.Errorf("%d exceeds 2^14", rlen)}
	}
	w.records++
	payload := b[off+tlsRecordHeaderLen : min(len(b), off+tlsRecordHeaderLen+rlen)]
	if err := w.handshakeHeader(payload); err != nil {
		return err
	}
	if len(payload) < rlen {
		need := rlen - len(payload)
		if w.msgLen >= 0 && w.msgLen > w.msgAvail+need {
			need += tlsRecordHeaderLen + w.msgLen - (w.msgAvail + need)
		}
		return &IncompleteError{Need: need}
	}
	w.off += tlsRecordHeaderLen + rlen
	return nil
}

// handshakeHeader takes in a record's payload, judging each byte of the
// handshake header as soon as it arrives. The header starts the first
// record's payload (records are never empty).
func (w *tlsWalk) handshakeHeader(payload []byte) error {
	for i := 0; w.msgAvail+i < tlsHandshakeHdrLen && i < len(payload); i++ {
		w.hdr[w.msgAvail+i] = payload[i]
	}
	w.msgAvail += len(payload)
	if w.msgAvail > 0 && w.hdr[0] != typeClientHello {
		return &ParseError{Offset: tlsRecordHeaderLen, Field: "msg_type", Err: fmt.Errorf("handshake type %d, want ClientHello (1)", w.hdr[0])}
	}
	if w.msgLen < 0 && w.msgAvail >= tlsHandshakeHdrLen {
		bodyLen := int(w.hdr[1])<<16 | int(w.hdr[2])<<8 | int(w.hdr[3])
		if bodyLen > MaxHelloSize {
			return tooLarge("handshake message declares %d bytes, limit %d", bodyLen, MaxHelloSize)
		}
		w.msgLen = tlsHandshakeHdrLen + bodyLen
	}
	return nil
}

// message is the complete handshake message: a slice of b when one record
// holds it, else the records' payloads reassembled.
func (w *tlsWalk) message(b []byte) []byte {
	if w.records == 1 {
		return b[tlsRecordHeaderLen : tlsRecordHeaderLen+w.msgLen]
	}
	msg := make([]byte, 0, w.msgLen)
	for o := 0; len(msg) < w.msgLen; {
		rlen := int(b[o+3])<<8 | int(b[o+4])
		payload := b[o+tlsRecordHeaderLen : o+tlsRecordHeaderLen+rlen]
		msg = append(msg, payload[:min(len(payload), w.msgLen-len(msg))]...)
		o += tlsRecordHeaderLen + rlen
	}
	return msg
}

// tlsInputOffset maps an offset in the reassembled handshake message to the
// offset of the same byte in the record stream b.
func tlsInputOffset(b []byte, msgOff int) int {
	for off := 0; off+tlsRecordHeaderLen <= len(b); {
		rlen := int(b[off+3])<<8 | int(b[off+4])
		if msgOff < rlen {
			return off + tlsRecordHeaderLen + msgOff
		}
		msgOff -= rlen
		off += tlsRecordHeaderLen + rlen
	}
	return len(b)
}

// ParseDTLS parses a DTLS 1.0 or 1.2 ClientHello from the first record of a
// UDP datagram. It does not reassemble a hello fragmented across records or
// datagrams: a fragment reports *IncompleteError with the number of
// handshake bytes it lacks. A DTLS 1.3 ClientHello parses too (it uses the
// same plaintext record), with SupportedVersions listing 0xfefc.
//
// Errors are those of Parse; a datagram too short for its headers is
// malformed rather than incomplete, since no more bytes will follow.
func ParseDTLS(datagram []byte) (*Info, error) {
	b := datagram
	if len(b) == 0 {
		return nil, &ParseError{Offset: 0, Field: "record header", Err: errors.New("empty datagram")}
	}
	if b[0] != recordTypeHandshake {
		return nil, notTLS("DTLS content type %d", b[0])
	}
	if len(b) >= 2 && b[1] != 0xfe {
		return nil, notTLS("DTLS record version 0x%02x%02x", b[1], b[2:min(3, len(b))])
	}
	if len(b) >= 3 && !isDTLSVersion(b[2]) {
		return nil, notTLS("DTLS record version 0xfe%02x", b[2])
	}
	if len(b) < dtlsRecordHeaderLen {
		return nil, &ParseError{Offset: 0, Field: "record header", Err: fmt.Errorf("datagram of %d bytes is shorter than a DTLS record header", len(b))}
	}
	if epoch := uint16(b[3])<<8 | uint16(b[4]); epoch != 0 {
		return nil, &ParseError{Offset: 3, Field: "epoch", Err: fmt.Errorf("epoch %d, a ClientHello is sent in epoch 0", epoch)}
	}
	rlen := int(b[11])<<8 | int(b[12])
	switch {
	case rlen > len(b)-dtlsRecordHeaderLen:
		return nil, &ParseError{Offset: 11, Field: "record length", Err: fmt.Errorf("%d overruns the %d-byte datagram", rlen, len(b))}
	case rlen < dtlsHandshakeHdrLen:
		return nil, &ParseError{Offset: 11, Field: "record length", Err: fmt.Errorf("%d is shorter than a DTLS handshake header", rlen)}
	case rlen > maxPlaintextRecord:
		return nil, &ParseError{Offset: 11, Field: "record length", Err: fmt.Errorf("%d exceeds 2^14", rlen)}
	}
	rec := b[dtlsRecordHeaderLen : dtlsRecordHeaderLen+rlen]
	if rec[0] != typeClientHello {
		return nil, &ParseError{Offset: dtlsRecordHeaderLen, Field: "msg_type", Err: fmt.Errorf("handshake type %d, want ClientHello (1)", rec[0])}
	}
	msgLen := int(rec[1])<<16 | int(rec[2])<<8 | int(rec[3])
	fragOff := int(rec[6])<<16 | int(rec[7])<<8 | int(rec[8])
	fragLen := int(rec[9])<<16 | int(rec[10])<<8 | int(rec[11])
	const hs = dtlsRecordHeaderLen
	switch {
	case msgLen > MaxHelloSize:
		return nil, tooLarge("handshake message declares %d bytes, limit %d", msgLen, MaxHelloSize)
	case fragOff+fragLen > msgLen:
		return nil, &ParseError{Offset: hs + 6, Field: "fragment_offset", Err: fmt.Errorf("fragment %d+%d overruns the %d-byte message", fragOff, fragLen, msgLen)}
	case fragLen > rlen-dtlsHandshakeHdrLen:
		return nil, &ParseError{Offset: hs + 9, Field: "fragment_length", Err: fmt.Errorf("%d overruns the record", fragLen)}
	case fragOff != 0 || fragLen < msgLen:
		return nil, &IncompleteError{Need: msgLen - fragLen}
	}
	info := &Info{
		Record:        RecordDTLS,
		RecordVersion: uint16(b[1])<<8 | uint16(b[2]),
		Len:           dtlsRecordHeaderLen + rlen,
	}
	body := rec[dtlsHandshakeHdrLen : dtlsHandshakeHdrLen+msgLen]
	if perr := parseBody(info, cursor{b: body, off: hs + dtlsHandshakeHdrLen}, true); perr != nil {
		return nil, perr
	}
	return info, nil
}

// parseBody parses a ClientHello body (after the handshake header) into
// info. Offsets in the returned error are those of c.
func parseBody(info *Info, c cursor, dtls bool) *ParseError {
	start := c.off
	v, ok := c.u16()
	if !ok {
		return c.errAt(start, "legacy_version", errOverrun)
	}
	info.LegacyVersion = v
	if _, ok := c.bytes(32); !ok {
		return c.errAt(c.off, "random", errOverrun)
	}
	sid, perr := c.vec8("legacy_session_id")
	if perr != nil {
		return perr
	}
	if len(sid.b) > 32 {
		return sid.errAt(sid.off-1, "legacy_session_id", fmt.Errorf("%d bytes, at most 32", len(sid.b)))
	}
	info.SessionID = append([]byte{}, sid.b...)
	if dtls {
		cookie, perr := c.vec8("cookie")
		if perr != nil {
			return perr
		}
		if len(cookie.b) > 0 {
			info.Cookie = append([]byte{}, cookie.b...)
		}
	}
	suites, perr := c.vec16("cipher_suites")
	if perr != nil {
		return perr
	}
	if info.CipherSuites, perr = suites.u16List("cipher_suites"); perr != nil {
		return perr
	}
	comp, perr := c.vec8("legacy_compression_methods")
	if perr != nil {
		return perr
	}
	if len(comp.b) == 0 {
		return comp.errAt(comp.off-1, "legacy_compression_methods", errEmpty)
	}
	if c.empty() {
		return nil // no extensions: a valid TLS 1.2 (and older) ClientHello
	}
	exts, perr := c.vec16("extensions")
	if perr != nil {
		return perr
	}
	if !c.empty() {
		return c.errAt(c.off, "extensions", errTrailing)
	}
	return parseExtensions(info, exts)
}

func parseExtensions(info *Info, c cursor) *ParseError {
	// Count first so that Extensions is allocated once.
	n := 0
	for probe := c; !probe.empty(); n++ {
		if _, ok := probe.u16(); !ok {
			break
		}
		if _, perr := probe.vec16("extension_data"); perr != nil {
			break
		}
	}
	info.Extensions = make([]uint16, 0, n)
	// Real hellos carry a dozen or two extensions, checked for duplicates
	// by a scan; a crafted one can carry 16 Ki, checked with a bitmap so
	// that the work stays linear.
	var seenSet []uint64
	if n > 64 {
		seenSet = make([]uint64, 1<<16/64)
	}
	for !c.empty() {
		typOff := c.off
		typ, ok := c.u16()
		if !ok {
			return c.errAt(typOff, "extension_type", errOverrun)
		}
		data, perr := c.vec16("extension_data")
		if perr != nil {
			return perr
		}
		if seenExtension(info.Extensions, seenSet, typ) {
			return c.errAt(typOff, "extension_type", fmt.Errorf("duplicate extension 0x%04x", typ))
		}
		info.Extensions = append(info.Extensions, typ)
		if perr := parseExtension(info, typ, data); perr != nil {
			return perr
		}
	}
	return nil
}

// seenExtension reports whether typ is in seen, recording it in set when
// set is not nil.
func seenExtension(seen []uint16, set []uint64, typ uint16) bool {
	if set != nil {
		w, bit := typ/64, uint64(1)<<(typ%64)
		dup := set[w]&bit != 0
		set[w] |= bit
		return dup
	}
	for _, s := range seen {
		if s == typ {
			return true
		}
	}
	return false
}

func parseExtension(info *Info, typ uint16, data cursor) *ParseError {
	var perr *ParseError
	switch typ {
	case extServerName:
		info.HasSNI = true
		info.ServerName, perr = parseServerName(data)
	case extALPN:
		info.ALPN, perr = parseALPN(data)
	case extSupportedGroups:
		var l cursor
		if l, perr = data.exactVec16("supported_groups"); perr == nil {
			info.Groups, perr = l.u16List("supported_groups")
		}
	case extECPointFormats:
		var l cursor
		if l, perr = data.exactVec8("ec_point_formats"); perr == nil {
			if len(l.b) == 0 {
				return l.errAt(l.off-1, "ec_point_formats", errEmpty)
			}
			info.PointFormats = append([]uint8{}, l.b...)
		}
	case extSignatureAlgorithms:
		var l cursor
		if l, perr = data.exactVec16("signature_algorithms"); perr == nil {
			info.SignatureAlgorithms, perr = l.u16List("signature_algorithms")
		}
	case extSupportedVersions:
		var l cursor
		if l, perr = data.exactVec8("supported_versions"); perr == nil {
			info.SupportedVersions, perr = l.u16List("supported_versions")
		}
	}
	return perr
}

// parseServerName reads a server_name extension (RFC 6066, section 3) and
// returns its host_name.
func parseServerName(data cursor) (string, *ParseError) {
	const field = "server_name"
	list, perr := data.exactVec16(field)
	if perr != nil {
		return "", perr
	}
	if list.empty() {
		return "", list.errAt(list.off-2, field, errEmpty)
	}
	var host string
	seen := false
	for !list.empty() {
		typOff := list.off
		nameType, ok := list.u8()
		if !ok {
			return "", list.errAt(typOff, field, errOverrun)
		}
		name, perr := list.vec16(field)
		if perr != nil {
			return "", perr
		}
		if nameType != 0 {
			continue // an unknown NameType; RFC 6066 servers ignore it
		}
		if seen {
			return "", list.errAt(typOff, field, errors.New("more than one host_name"))
		}
		seen = true
		if err := checkHostName(name.b); err != nil {
			return "", name.errAt(name.off, field, err)
		}
		host = string(name.b)
	}
	return host, nil
}

// checkHostName applies RFC 6066's rules for a HostName: ASCII, no
// trailing dot. Spaces and control bytes are refused too, so a logged SNI
// never carries them.
func checkHostName(name []byte) error {
	if len(name) == 0 {
		return errors.New("empty host_name")
	}
	for i, c := range name {
		if c <= ' ' || c >= 0x7f {
			return fmt.Errorf("host_name byte 0x%02x at %d is not printable ASCII", c, i)
		}
	}
	if name[len(name)-1] == '.' {
		return errors.New("host_name has a trailing dot")
	}
	return nil
}

// parseALPN reads an application_layer_protocol_negotiation extension
// (RFC 7301, section 3.1).
func parseALPN(data cursor) ([]string, *ParseError) {
	const field = "application_layer_protocol_negotiation"
	list, perr := data.exactVec16(field)
	if perr != nil {
		return nil, perr
	}
	if list.empty() {
		return nil, list.errAt(list.off-2, field, errEmpty)
	}
	n := 0
	for probe := list; !probe.empty(); n++ {
		if _, perr := probe.vec8(field); perr != nil {
			break
		}
	}
	protos := make([]string, 0, n)
	for !list.empty() {
		p, perr := list.vec8(field)
		if perr != nil {
			return nil, perr
		}
		if len(p.b) == 0 {
			return nil, p.errAt(p.off-1, field, errors.New("empty protocol name"))
		}
		protos = append(protos, string(p.b))
	}
	return protos, nil
}

// cursor reads big-endian fields from b, tracking where b starts in the
// handshake message (or datagram) so that errors carry offsets.
type cursor struct {
	b   []byte
	off int
}

func (c *cursor) empty() bool { return len(c.b) == 0 }

func (c *cursor) errAt(off int, field string, err error) *ParseError {
	return &ParseError{Offset: off, Field: field, Err: err}
}

func (c *cursor) bytes(n int) (cursor, bool) {
	if n > len(c.b) {
		return cursor{}, false
	}
	sub := cursor{b: c.b[:n:n], off: c.off}
	c.b = c.b[n:]
	c.off += n
	return sub, true
}

func (c *cursor) u8() (uint8, bool) {
	if len(c.b) < 1 {
		return 0, false
	}
	v := c.b[0]
	c.b = c.b[1:]
	c.off++
	return v, true
}

func (c *cursor) u16() (uint16, bool) {
	if len(c.b) < 2 {
		return 0, false
	}
	v := uint16(c.b[0])<<8 | uint16(c.b[1])
	c.b = c.b[2:]
	c.off += 2
	return v, true
}

// vec8 reads an opaque vector with a one-byte length prefix.
func (c *cursor) vec8(field string) (cursor, *ParseError) {
	at := c.off
	n, ok := c.u8()
	if !ok {
		return cursor{}, c.errAt(at, field, errOverrun)
	}
	sub, ok := c.bytes(int(n))
	if !ok {
		return cursor{}, c.errAt(at, field, errOverrun)
	}
	return sub, nil
}

// vec16 reads an opaque vector with a two-byte length prefix.
func (c *cursor) vec16(field string) (cursor, *ParseError) {
	at := c.off
	n, ok := c.u16()
	if !ok {
		return cursor{}, c.errAt(at, field, errOverrun)
	}
	sub, ok := c.bytes(int(n))
	if !ok {
		return cursor{}, c.errAt(at, field, errOverrun)
	}
	return sub, nil
}

// exactVec8 reads a one-byte-prefixed vector that must fill c.
func (c cursor) exactVec8(field string) (cursor, *ParseError) {
	sub, perr := c.vec8(field)
	if perr == nil && !c.empty() {
		perr = c.errAt(c.off, field, errTrailing)
	}
	return sub, perr
}

// exactVec16 reads a two-byte-prefixed vector that must fill c.
func (c cursor) exactVec16(field string) (cursor, *ParseError) {
	sub, perr := c.vec16(field)
	if perr == nil && !c.empty() {
		perr = c.errAt(c.off, field, errTrailing)
	}
	return sub, perr
}

// u16List decodes the rest of c, a non-empty list of uint16 values.
func (c cursor) u16List(field string) ([]uint16, *ParseError) {
	switch {
	case len(c.b) == 0:
		return nil, c.errAt(c.off, field, errEmpty)
	case len(c.b)%2 != 0:
		return nil, c.errAt(c.off, field, errOddLen)
	}
	out := make([]uint16, len(c.b)/2)
	for i := range out {
		out[i] = uint16(c.b[2*i])<<8 | uint16(c.b[2*i+1])
	}
	return out, nil
}
