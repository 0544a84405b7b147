package clienthello_test

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pinwall/pinwall/mitm/clienthello"
)

func TestChrome143Golden(t *testing.T) {
	hello := chrome143().tls()
	if *update {
		writeHex(t, "chrome143.hex", hello,
			"Chrome 143 (Android) ClientHello rebuilt from browserleaks.com's decoding of it, values and order as",
			"published; key shares and ECH payload are deterministic filler of the published lengths.",
			"Published: ja3_hash 98487aa16281980e7d1120d399efb6a4, ja4 t13d1516h2_8daaf6152771_d8a2da3f94cd",
			"Built by TestChrome143Golden -update (chrome143 in helpers_test.go).")
	}
	assert.Equal(t, hello, readHex(t, "chrome143.hex"), "run go test -run TestChrome143Golden -update")
}

// TestKnownAnswers checks fingerprints computed elsewhere.
//
//   - chrome143: the JA3 and JA4 that browserleaks.com published for the
//     hello this file rebuilds (see chrome143 in helpers_test.go).
//   - ja4-spec-*: the worked example of FoxIO's JA4.md
//     ("t13d1516h2_8daaf6152771_e5627efa2ab1"), and the same hello with
//     "http/1.1" as FoxIO's rust/ja4 snapshot tls-handshake.pcapng shows it.
//   - go-tls13, openssl, pion-dtls: frozen captures of real peers, whose
//     fingerprints were computed by an independent Python implementation
//     of JA3 and JA4 written from the same specifications; the OpenSSL
//     JA3 also matches OpenSSL's own -trace decoding of that hello.
func TestKnownAnswers(t *testing.T) {
	tests := []struct {
		name    string
		hello   []byte
		dtls    bool
		sni     string
		alpn    []string
		ja3     string
		ja3Hash string
		ja4     string
		ja4Raw  string
	}{
		{
			name:    "chrome143",
			hello:   readHex(t, "chrome143.hex"),
			sni:     "tls-outer.browserleaks.com",
			alpn:    []string{"h2", "http/1.1"},
			ja3:     "771,4865-4866-4867-49195-49199-49196-49200-52393-52392-49171-49172-156-157-47-53,45-51-16-65037-23-17613-0-11-10-43-65281-35-18-5-13-27,4588-29-23-24,0",
			ja3Hash: "98487aa16281980e7d1120d399efb6a4",
			ja4:     "t13d1516h2_8daaf6152771_d8a2da3f94cd",
			ja4Raw:  "t13d1516h2_002f,0035,009c,009d,1301,1302,1303,c013,c014,c02b,c02c,c02f,c030,cca8,cca9_0005,000a,000b,000d,0012,0017,001b,0023,002b,002d,0033,44cd,fe0d,ff01_0403,0804,0401,0503,0805,0501,0806,0601",
		},
		{
			name:  "ja4-spec-h2",
			hello: ja4SpecExample("h2", "http/1.1").tls(),
			sni:   "www.social.test",
			alpn:  []string{"h2", "http/1.1"},
			ja3:   "771,4865-4866-4867-49195-49199-49196-49200-52393-52392-49171-49172-156-157-47-53,27-0-51-16-17513-23-45-13-5-35-18-43-65281-11-10-21,29-23-24,0",
			ja4:   "t13d1516h2_8daaf6152771_e5627efa2ab1",
			ja4Raw: "t13d1516h2_002f,0035,009c,009d,1301,1302,1303,c013,c014,c02b,c02c,c02f,c030,cca8,cca9_" +
				"0005,000a,000b,000d,0012,0015,0017,001b,0023,002b,002d,0033,4469,ff01_0403,0804,0401,0503,0805,0501,0806,0601",
		},
		{
			name:    "go-tls13",
			hello:   readHex(t, "go-tls13.hex"),
			sni:     "www.social.test",
			alpn:    []string{"h2", "http/1.1"},
			ja3:     "771,49195-49199-49196-49200-52393-52392-49161-49171-49162-49172-4865-4866-4867,0-11-65281-23-18-5-10-13-50-16-43-51,4588-4587-4589-29-23-24-25,0",
			ja3Hash: "03117a8ed39ef02427ebbc39f121275c",
			ja4:     "t13d1312h2_f57a46bbacb6_ab7e3b40a677",
			ja4Raw: "t13d1312h2_1301,1302,1303,c009,c00a,c013,c014,c02b,c02c,c02f,c030,cca8,cca9_" +
				"0005,000a,000b,000d,0012,0017,002b,0032,0033,ff01_0804,0403,0807,0805,0806,0401,0501,0601,0503,0603",
		},
		{
			name:    "openssl",
			hello:   readHex(t, "openssl.hex"),
			sni:     "x.test",
			alpn:    []string{"h2", "http/1.1"},
			ja3:     "771,4866-4867-4865-49196-49200-159-52393-52392-52394-49195-49199-158-49188-49192-107-49187-49191-103-49162-49172-57-49161-49171-51-157-156-61-60-53-47-255,0-11-10-35-16-22-23-13-43-45-51,29-23-30-25-24-256-257-258-259-260,0-1-2",
			ja3Hash: "5a1edc7f170af1014fc65c994878e63c",
			ja4:     "t13d3111h2_e8f1e7e78f70_1f22a2ca17c4",
		},
		{
			name:    "pion-dtls",
			hello:   readHex(t, "pion-dtls.hex"),
			dtls:    true,
			sni:     "gateway-acme.sse.test",
			alpn:    []string{"pinwall-tunnel"},
			ja3:     "65277,49195-49199-52393-52392-49162-49172-49196-49200,13-65281-10-11-23-0-16,29-23-24,0",
			ja3Hash: "63af9cb9dfb0c4debd5ebb5b033be571",
			ja4:     "dd2d0807pl_df5057009e57_861c66034698",
			ja4Raw:  "dd2d0807pl_c00a,c014,c02b,c02c,c02f,c030,cca8,cca9_000a,000b,000d,0017,ff01_0403,0503,0603,0807,0804,0805,0806,0401,0501,0601",
		},
		{
			name:  "ja4-spec-http1.1",
			hello: ja4SpecExample("http/1.1").tls(),
			sni:   "www.social.test",
			alpn:  []string{"http/1.1"},
			ja4:   "t13d1516h1_8daaf6152771_e5627efa2ab1",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var (
				info *clienthello.Info
				err  error
			)
			if tt.dtls {
				info, err = clienthello.ParseDTLS(tt.hello)
			} else {
				info, err = clienthello.Parse(tt.hello)
			}
			require.NoError(t, err)
			assert.Equal(t, len(tt.hello), info.Len)
			assert.Equal(t, tt.sni, info.ServerName)
			assert.Equal(t, tt.alpn, info.ALPN)
			if tt.ja3 != "" {
				assert.Equal(t, tt.ja3, info.JA3())
			}
			if tt.ja3Hash != "" {
				assert.Equal(t, tt.ja3Hash, info.JA3Hash())
			}
			assert.Equal(t, tt.ja4, info.JA4())
			if tt.ja4Raw != "" {
				assert.Equal(t, tt.ja4Raw, info.JA4Raw())
			}
		})
	}
}

func TestParseChrome143Fields(t *testing.T) {
	info, err := clienthello.Parse(readHex(t, "chrome143.hex"))
	require.NoError(t, err)
	assert.Equal(t, clienthello.RecordTLS, info.Record)
	assert.Equal(t, uint16(0x0301), info.RecordVersion)
	assert.Equal(t, uint16(0x0303), info.LegacyVersion)
	assert.Equal(t, []uint16{0x6a6a, 0x0304, 0x0303}, info.SupportedVersions)
	assert.Equal(t, uint16(0x0304), info.MaxVersion())
	assert.Len(t, info.CipherSuites, 16)
	assert.Equal(t, uint16(0xaaaa), info.CipherSuites[0], "GREASE is kept in Info, dropped in fingerprints")
	assert.Equal(t, []uint16{0x4a4a, 45, 51, 16, 65037, 23, 17613, 0, 11, 10, 43, 65281, 35, 18, 5, 13, 27, 0x6a6a}, info.Extensions)
	assert.Equal(t, []uint16{0x3a3a, 4588, 29, 23, 24}, info.Groups)
	assert.Equal(t, []uint8{0}, info.PointFormats)
	assert.Equal(t, []uint16{0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601}, info.SignatureAlgorithms)
	assert.Equal(t, mustHex("26c4ed1789251c138e9fac1ee6cf415c5c3da06f38f90fdb404fda0afb799e7d"), info.SessionID)
	assert.Nil(t, info.Cookie)
	assert.True(t, info.HasSNI)
	assert.True(t, info.HasExtension(0xfe0d), "Chrome sent ECH: ServerName is the outer name")
	assert.False(t, info.HasExtension(0x0039))
}

func TestParseMultiRecord(t *testing.T) {
	msg := tlsMessage(chrome143().body())
	want, err := clienthello.Parse(tlsRecords(msg, 0x0301))
	require.NoError(t, err)

	tests := []struct {
		name  string
		sizes []int
	}{
		{"two records", []int{1000}},
		{"handshake header split", []int{2, 1, 1, 500}},
		{"one byte records at the start", []int{1, 1, 1, 1, 1, 1, 1, 1}},
		{"many small records", []int{100, 100, 100, 100, 100, 100, 100, 100, 100, 100, 100, 100, 100, 100, 100, 100, 100, 100, 100, 100}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hello := tlsRecords(msg, 0x0303, tt.sizes...)
			got, err := clienthello.Parse(append(hello, 0x17, 0x03, 0x03, 0, 1, 0xff))
			require.NoError(t, err)
			assert.Equal(t, len(hello), got.Len, "Len ends at the hello's last record")
			assert.Equal(t, uint16(0x0303), got.RecordVersion)
			got.RecordVersion, got.Len = want.RecordVersion, want.Len
			assert.Equal(t, want, got)
			assertPrefixesIncomplete(t, hello)
		})
	}
}

// TestParseTrailingBytesInLastRecord: whatever follows the ClientHello in
// its last record belongs to that record, so Len covers it.
func TestParseTrailingBytesInLastRecord(t *testing.T) {
	msg := append(tlsMessage(ja4SpecExample("h2").body()), 0x0b, 0, 0, 0)
	hello := tlsRecords(msg, 0x0301)
	info, err := clienthello.Parse(hello)
	require.NoError(t, err)
	assert.Equal(t, len(hello), info.Len)
}

func TestParsePrefixesAreIncomplete(t *testing.T) {
	for _, name := range []string{"chrome143.hex", "go-tls13.hex", "openssl.hex"} {
		t.Run(name, func(t *testing.T) { assertPrefixesIncomplete(t, readHex(t, name)) })
	}
}

// assertPrefixesIncomplete checks that every proper prefix of a valid hello
// is ErrIncomplete, with a Need that never overshoots what is missing.
func assertPrefixesIncomplete(t *testing.T, hello []byte) {
	t.Helper()
	for n := range len(hello) {
		_, err := clienthello.Parse(hello[:n])
		var inc *clienthello.IncompleteError
		if !assert.ErrorAs(t, err, &inc, "prefix of %d bytes", n) {
			return
		}
		require.ErrorIs(t, err, clienthello.ErrIncomplete)
		require.GreaterOrEqual(t, inc.Need, 1)
		require.LessOrEqual(t, n+inc.Need, len(hello), "prefix of %d bytes: Need %d overshoots", n, inc.Need)
	}
}

func TestParseNoExtensions(t *testing.T) {
	h := helloSpec{legacyVersion: 0x0301, ciphers: []uint16{0x002f, 0x0035, 0x000a}, noExtensions: true}
	info, err := clienthello.Parse(tlsRecords(tlsMessage(h.body()), 0x0301))
	require.NoError(t, err)
	assert.Nil(t, info.Extensions)
	assert.False(t, info.HasSNI)
	assert.Equal(t, "769,47-53-10,,,", info.JA3())
	assert.Equal(t, "t10i030000_5704bdfc91c6_000000000000", info.JA4()) // sha256("000a,002f,0035")
}

func TestParseNotTLS(t *testing.T) {
	tests := []struct {
		name  string
		input string
	}{
		{"HTTP GET", "GET / HTTP/1.1\r\nHost: www.social.test\r\n\r\n"},
		{"HTTP CONNECT", "CONNECT gateway-acme.sse.test:443 HTTP/1.1\r\n"},
		{"SSH banner", "SSH-2.0-OpenSSH_9.6\r\n"},
		{"one byte", "G"},
		{"alert record", "\x15\x03\x03\x00\x02\x02\x28"},
		{"application data", "\x17\x03\x03\x00\x10"},
		{"handshake type but no TLS version", "\x16\x00\x01"},
		{"DTLS record", "\x16\xfe\xfd"},
		{"SSLv2-compatible hello", "\x80\x2e\x01\x03\x01\x00\x15"},
		{"PROXY v1", "PROXY TCP4 10.10.10.100 192.0.2.1 51000 443\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := clienthello.Parse([]byte(tt.input))
			require.ErrorIs(t, err, clienthello.ErrNotTLS)
			assert.NotErrorIs(t, err, clienthello.ErrMalformed)
			assert.Contains(t, err.Error(), "clienthello: ")
		})
	}
}

func TestParseMalformed(t *testing.T) {
	valid := ja4SpecExample("h2")
	withExts := func(exts ...ext) []byte {
		h := valid
		h.exts = exts
		return h.tls()
	}
	rawBody := func(body []byte) []byte { return tlsRecords(tlsMessage(body), 0x0301) }
	base := valid.body()

	tests := []struct {
		name   string
		input  []byte
		field  string
		offset int // -1: do not check
	}{
		{"record too long", []byte{22, 3, 1, 0x40, 0x01}, "record length", 3},
		{"empty record", []byte{22, 3, 1, 0, 0, 22, 3, 1, 0, 4}, "record length", 3},
		{"not a ClientHello", []byte{22, 3, 3, 0, 4, 2, 0, 0, 0}, "msg_type", 5},
		{"not a ClientHello, judged on its first byte", []byte{22, 3, 3, 0, 40, 11}, "msg_type", 5},
		{"alert between records", append(tlsRecords(tlsMessage(base), 0x0301, 10)[:15], 21, 3, 3, 0, 2, 2, 40), "record type", 15},
		{"second record not TLS", append(tlsRecords(tlsMessage(base), 0x0301, 10)[:15], 22, 0xfe, 0xfd, 0, 2, 2, 40), "record version", 16},
		{"body shorter than random", rawBody(bytes.Clone(base[:20])), "random", 5 + 4 + 2},
		{"session id of 33 bytes", rawBody(helloSpec{legacyVersion: 0x0303, sessionID: make([]byte, 33), ciphers: []uint16{0x1301}}.body()), "legacy_session_id", 5 + 4 + 34},
		{"cipher suites overrun", rawBody(append(bytes.Clone(base[:35+32]), 0xff, 0xff)), "cipher_suites", -1},
		{"odd cipher suites", rawBody(append(append([]byte{3, 3}, make([]byte, 32)...), 0, 0, 3, 0x13, 0x01, 0x13, 1, 0)), "cipher_suites", 5 + 4 + 35 + 2},
		{"no cipher suites", rawBody(append(append([]byte{3, 3}, make([]byte, 32)...), 0, 0, 0, 1, 0)), "cipher_suites", -1},
		{"no compression methods", rawBody(helloSpec{legacyVersion: 0x0303, ciphers: []uint16{0x1301}, compression: []byte{}}.body()), "legacy_compression_methods", -1},
		{"trailing bytes after extensions", rawBody(append(append([]byte{}, base...), 0)), "extensions", -1},
		{"truncated extension header", rawBody(append(helloSpec{legacyVersion: 0x0303, ciphers: []uint16{0x1301}, noExtensions: true}.body(), 0, 1, 0)), "extension_type", -1},
		{"truncated extension data", rawBody(append(helloSpec{legacyVersion: 0x0303, ciphers: []uint16{0x1301}, noExtensions: true}.body(), 0, 5, 0, 0, 0, 2, 0)), "extension_data", -1},
		{"extensions block overruns", rawBody(append(helloSpec{legacyVersion: 0x0303, ciphers: []uint16{0x1301}, noExtensions: true}.body(), 0, 9, 0, 23, 0, 0)), "extensions", -1},
		{"duplicate extension", withExts(ext{23, nil}, sniExt("a.test"), ext{23, nil}), "extension_type", -1},
		{"duplicate SNI", withExts(sniExt("a.test"), sniExt("b.test")), "extension_type", -1},
		{"empty SNI extension", withExts(ext{0, nil}), "server_name", -1},
		{"empty server name list", withExts(ext{0, []byte{0, 0}}), "server_name", -1},
		{"two host names", withExts(sniExt("a.test", "b.test")), "server_name", -1},
		{"empty host name", withExts(sniExt("")), "server_name", -1},
		{"host name with NUL", withExts(sniExt("www.social.test\x00.evil")), "server_name", -1},
		{"host name with space", withExts(sniExt("www social.test")), "server_name", -1},
		{"host name with UTF-8", withExts(sniExt("bücher.test")), "server_name", -1},
		{"host name with trailing dot", withExts(sniExt("www.social.test.")), "server_name", -1},
		{"server name list overruns", withExts(ext{0, []byte{0, 9, 0, 0, 3, 'a', 'b', 'c'}}), "server_name", -1},
		{"server name list short", withExts(ext{0, []byte{0, 6, 0, 0, 3, 'a', 'b', 'c', 0}}), "server_name", -1},
		{"empty ALPN list", withExts(ext{16, []byte{0, 0}}), "application_layer_protocol_negotiation", -1},
		{"empty ALPN protocol", withExts(alpnExt("h2", "")), "application_layer_protocol_negotiation", -1},
		{"ALPN overruns", withExts(ext{16, []byte{0, 3, 5, 'h', '2'}}), "application_layer_protocol_negotiation", -1},
		{"odd supported groups", withExts(ext{10, []byte{0, 3, 0, 29, 0}}), "supported_groups", -1},
		{"empty supported groups", withExts(u16VecExt(10)), "supported_groups", -1},
		{"empty point formats", withExts(pointFormatsExt()), "ec_point_formats", -1},
		{"odd signature algorithms", withExts(ext{13, []byte{0, 1, 4}}), "signature_algorithms", -1},
		{"odd supported versions", withExts(ext{43, []byte{3, 3, 4, 3}}), "supported_versions", -1},
		{"supported versions with trailing byte", withExts(ext{43, []byte{2, 3, 4, 0}}), "supported_versions", -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := clienthello.Parse(tt.input)
			require.ErrorIs(t, err, clienthello.ErrMalformed)
			var perr *clienthello.ParseError
			require.ErrorAs(t, err, &perr)
			assert.Equal(t, tt.field, perr.Field, err.Error())
			if tt.offset >= 0 {
				assert.Equal(t, tt.offset, perr.Offset, err.Error())
			}
			assert.GreaterOrEqual(t, perr.Offset, 0)
			assert.Less(t, perr.Offset, len(tt.input)+1)
			assert.NotErrorIs(t, err, clienthello.ErrIncomplete)
			assert.Contains(t, err.Error(), "clienthello: malformed ClientHello: "+tt.field)
		})
	}
}

// TestParseErrorOffsetAcrossRecords: an offset points into the input even
// when the hello was reassembled from several records.
func TestParseErrorOffsetAcrossRecords(t *testing.T) {
	h := ja4SpecExample("h2")
	h.exts = append(h.exts, sniExt("again.test")) // duplicate SNI, last extension
	msg := tlsMessage(h.body())
	dupAt := len(msg) - len(sniExt("again.test").data) - 4 // its extension_type
	for _, sizes := range [][]int{nil, {7}, {100, 3, 50}} {
		in := tlsRecords(msg, 0x0301, sizes...)
		_, err := clienthello.Parse(in)
		var perr *clienthello.ParseError
		require.ErrorAs(t, err, &perr)
		assert.Equal(t, "extension_type", perr.Field)
		records := 1 + len(sizes)
		assert.Equal(t, dupAt+5*records, perr.Offset, "records %v", sizes)
		assert.Equal(t, byte(0), in[perr.Offset])
	}
}

func TestParseTooLarge(t *testing.T) {
	tests := []struct {
		name  string
		input []byte
	}{
		{"declared 2^24-1", []byte{22, 3, 1, 0x40, 0, 1, 0xff, 0xff, 0xff}},
		{"declared MaxHelloSize+1", []byte{22, 3, 1, 0x40, 0, 1, 0x01, 0x00, 0x01}},
		{"declared in a split header", []byte{22, 3, 1, 0, 2, 1, 0xff, 22, 3, 1, 0, 2, 0xff, 0xff}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := clienthello.Parse(tt.input)
			require.ErrorIs(t, err, clienthello.ErrTooLarge)
			assert.NotErrorIs(t, err, clienthello.ErrMalformed)
		})
	}

	// Exactly MaxHelloSize is fine: a padded hello over five records.
	h := ja4SpecExample("h2")
	body := h.body()
	pad := clienthello.MaxHelloSize - len(body) - 4
	h.exts = append(h.exts, ext{0xfe00, make([]byte, pad)})
	msg := tlsMessage(h.body())
	require.Len(t, msg, clienthello.MaxHelloSize+4)
	info, err := clienthello.Parse(tlsRecords(msg, 0x0301, 16384, 16384, 16384, 16384))
	require.NoError(t, err)
	assert.Equal(t, clienthello.MaxHelloSize+4+5*5, info.Len)
}

func TestParseDTLS(t *testing.T) {
	h := ja4SpecExample("webrtc")
	h.dtls = true
	h.legacyVersion = 0xfefd
	h.cookie = []byte{1, 2, 3, 4}
	// DTLS peers send no supported_versions below 1.3.
	var exts []ext
	for _, e := range h.exts {
		if e.typ != 43 {
			exts = append(exts, e)
		}
	}
	h.exts = exts
	body := h.body()
	datagram := dtlsDatagram(body, 0xfefd, 1)

	info, err := clienthello.ParseDTLS(datagram)
	require.NoError(t, err)
	assert.Equal(t, clienthello.RecordDTLS, info.Record)
	assert.Equal(t, uint16(0xfefd), info.RecordVersion)
	assert.Equal(t, []byte{1, 2, 3, 4}, info.Cookie)
	assert.Equal(t, "www.social.test", info.ServerName)
	assert.Equal(t, len(datagram), info.Len)
	assert.Equal(t, "dd2d1515wc_8daaf6152771_", info.JA4()[:24])

	// A second record in the datagram is not part of the hello.
	info, err = clienthello.ParseDTLS(append(append([]byte{}, datagram...), 21, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 1, 0, 2, 1, 0))
	require.NoError(t, err)
	assert.Equal(t, len(datagram), info.Len)

	// DTLS 1.3 advertises itself in supported_versions.
	h13 := h
	h13.exts = append(append([]ext{}, h.exts...), u8VecExt(43, 0x2a2a, 0xfefc, 0xfefd))
	info, err = clienthello.ParseDTLS(dtlsDatagram(h13.body(), 0xfefd, 0))
	require.NoError(t, err)
	assert.Equal(t, uint16(0xfefc), info.MaxVersion())
	assert.Equal(t, "dd3d", info.JA4()[:4])

	fragment := func(fragOff, fragLen int) []byte {
		d := bytes.Clone(datagram)
		put24 := func(at, v int) { d[at], d[at+1], d[at+2] = byte(v>>16), byte(v>>8), byte(v) }
		put24(13+6, fragOff)
		put24(13+9, fragLen)
		return d
	}
	errTests := []struct {
		name   string
		input  []byte
		target error
		field  string
	}{
		{"empty", nil, clienthello.ErrMalformed, "record header"},
		{"TLS record", h.tls(), clienthello.ErrNotTLS, ""},
		{"unknown DTLS version", append([]byte{22, 0xfe, 0x30}, datagram[3:]...), clienthello.ErrNotTLS, ""},
		{"application data", []byte{23, 0xfe, 0xfd, 0, 1, 0, 0, 0, 0, 0, 1, 0, 0}, clienthello.ErrNotTLS, ""},
		{"short header", datagram[:10], clienthello.ErrMalformed, "record header"},
		{"epoch 1", append([]byte{22, 0xfe, 0xfd, 0, 1}, datagram[5:]...), clienthello.ErrMalformed, "epoch"},
		{"record overruns datagram", datagram[:len(datagram)-1], clienthello.ErrMalformed, "record length"},
		{"record shorter than handshake header", []byte{22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 1, 0, 0, 0}, clienthello.ErrMalformed, "record length"},
		{"not a ClientHello", append(datagram[:13:13], append([]byte{3}, datagram[14:]...)...), clienthello.ErrMalformed, "msg_type"},
		{"first fragment", fragment(0, len(body)-10), clienthello.ErrIncomplete, ""},
		{"later fragment", fragment(10, len(body)-10), clienthello.ErrIncomplete, ""},
		{"fragment past the message", fragment(11, len(body)-10), clienthello.ErrMalformed, "fragment_offset"},
		{"fragment past the record", fragment(0, len(body)+1), clienthello.ErrMalformed, "fragment_offset"},
		{"too large", []byte{22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 12, 1, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0}, clienthello.ErrTooLarge, ""},
	}
	for _, tt := range errTests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := clienthello.ParseDTLS(tt.input)
			require.ErrorIs(t, err, tt.target)
			for _, other := range []error{clienthello.ErrNotTLS, clienthello.ErrMalformed, clienthello.ErrIncomplete, clienthello.ErrTooLarge} {
				if other != tt.target {
					assert.NotErrorIs(t, err, other)
				}
			}
			var perr *clienthello.ParseError
			if errors.As(err, &perr) {
				assert.Equal(t, tt.field, perr.Field, err.Error())
			}
		})
	}

	var inc *clienthello.IncompleteError
	_, err = clienthello.ParseDTLS(fragment(0, len(body)-10))
	require.ErrorAs(t, err, &inc)
	assert.Equal(t, 10, inc.Need)
}

func TestClassify(t *testing.T) {
	dtlsHello := dtlsDatagram(helloSpec{dtls: true, legacyVersion: 0xfefd, ciphers: []uint16{0xc02b}}.body(), 0xfefd, 0)
	quicInitial := func(version uint32, first byte) []byte {
		b := []byte{first, byte(version >> 24), byte(version >> 16), byte(version >> 8), byte(version), 8}
		b = append(b, pattern(8, 1)...)
		b = append(b, 0) // SCID length
		return append(b, make([]byte, 1200-len(b))...)
	}
	tests := []struct {
		name string
		in   []byte
		want clienthello.UDPApp
	}{
		{"DTLS 1.2 ClientHello", dtlsHello, clienthello.AppDTLS},
		{"DTLS 1.0 HelloVerifyRequest", []byte{22, 0xfe, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3, 3, 0, 0}, clienthello.AppDTLS},
		{"DTLS 1.2 application data", append([]byte{23, 0xfe, 0xfd, 0, 1, 0, 0, 0, 0, 0, 5, 0, 4}, 1, 2, 3, 4), clienthello.AppDTLS},
		{"DTLS change cipher spec", []byte{20, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 9, 0, 1, 1}, clienthello.AppDTLS},
		{"DTLS heartbeat (type 24)", []byte{24, 0xfe, 0xfd, 0, 1, 0, 0, 0, 0, 0, 9, 0, 0}, clienthello.AppDTLS},
		{"DTLS record length overruns", []byte{22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9, 1}, clienthello.AppUnknownUDP},
		{"DTLS header truncated", dtlsHello[:12], clienthello.AppUnknownUDP},
		{"DTLS unknown version", []byte{22, 0xfe, 0xfe, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, clienthello.AppUnknownUDP},
		{"content type 26", []byte{26, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, clienthello.AppUnknownUDP},
		{"QUIC v1 Initial", quicInitial(0x00000001, 0xc3), clienthello.AppQUIC},
		{"QUIC v2 Initial", quicInitial(0x6b3343cf, 0xd3), clienthello.AppQUIC},
		{"QUIC draft-29", quicInitial(0xff00001d, 0xc0), clienthello.AppQUIC},
		{"QUIC greasing version", quicInitial(0x1a2a3a4a, 0xc0), clienthello.AppQUIC},
		{"QUIC version negotiation, fixed bit clear", quicInitial(0, 0x80), clienthello.AppQUIC},
		{"gQUIC Q050", quicInitial(0x51303530, 0xc3), clienthello.AppQUIC},
		{"QUIC v1 without the fixed bit", quicInitial(0x00000001, 0x83), clienthello.AppUnknownUDP},
		{"long header, unknown version", quicInitial(0x12345678, 0xc3), clienthello.AppUnknownUDP},
		{"QUIC v1, DCID of 21 bytes", append([]byte{0xc3, 0, 0, 0, 1, 21}, make([]byte, 40)...), clienthello.AppUnknownUDP},
		{"QUIC v1, CIDs overrun", []byte{0xc3, 0, 0, 0, 1, 8, 1, 2, 3, 4, 5, 6, 7, 8, 9}, clienthello.AppUnknownUDP},
		{"QUIC short header", append([]byte{0x43}, pattern(40, 3)...), clienthello.AppUnknownUDP},
		{"DNS query", append([]byte{0xab, 0xcd, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 3, 'w', 'w', 'w', 6, 's', 'o', 'c', 'i', 'a', 'l', 4, 't', 'e', 's', 't', 0}, 0, 1, 0, 1), clienthello.AppUnknownUDP},
		{"TLS record over UDP", []byte{22, 3, 1, 0, 5, 1, 0, 0, 1, 0}, clienthello.AppUnknownUDP},
		{"empty", nil, clienthello.AppUnknownUDP},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, clienthello.Classify(tt.in))
		})
	}
	assert.Equal(t, "dtls", string(clienthello.AppDTLS))
	assert.Equal(t, "quic", string(clienthello.AppQUIC))
	assert.Equal(t, "unknown-udp", string(clienthello.AppUnknownUDP))
}

func TestIsDTLSHandshake(t *testing.T) {
	dtlsHello := dtlsDatagram(helloSpec{dtls: true, legacyVersion: 0xfefd, ciphers: []uint16{0xc02b}}.body(), 0xfefd, 0)
	tests := []struct {
		name string
		in   []byte
		want bool
	}{
		{"DTLS 1.2 ClientHello", dtlsHello, true},
		{"DTLS 1.0 HelloVerifyRequest", []byte{22, 0xfe, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3, 3, 0, 0}, true},
		{"handshake of epoch 1 (Finished)", []byte{22, 0xfe, 0xfd, 0, 1, 0, 0, 0, 0, 0, 9, 0, 1, 0}, false},
		{"application data", append([]byte{23, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 5, 0, 4}, 1, 2, 3, 4), false},
		{"change cipher spec", []byte{20, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 9, 0, 1, 1}, false},
		{"record length overruns", []byte{22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9, 1}, false},
		{"header truncated", dtlsHello[:12], false},
		{"unknown version", []byte{22, 0xfe, 0xfe, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, false},
		{"TLS record over UDP", []byte{22, 3, 1, 0, 5, 1, 0, 0, 1, 0}, false},
		{"empty", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, clienthello.IsDTLSHandshake(tt.in))
			if tt.want {
				assert.Equal(t, clienthello.AppDTLS, clienthello.Classify(tt.in), "a DTLS handshake is a DTLS record")
			}
		})
	}
}

func TestTLSVersionName(t *testing.T) {
	for v, want := range map[uint16]string{
		0x0300: "SSL3.0", 0x0301: "TLS1.0", 0x0302: "TLS1.1", 0x0303: "TLS1.2", 0x0304: "TLS1.3",
		0xfeff: "DTLS1.0", 0xfefd: "DTLS1.2", 0xfefc: "DTLS1.3",
		0x0a0a: "GREASE", 0xfafa: "GREASE", 0x7f1c: "0x7f1c", 0: "0x0000",
	} {
		assert.Equal(t, want, clienthello.TLSVersionName(v), "0x%04x", v)
	}
}

func TestIsGREASE(t *testing.T) {
	var grease []uint16
	for v := range 1 << 16 {
		if clienthello.IsGREASE(uint16(v)) {
			grease = append(grease, uint16(v))
		}
	}
	assert.Equal(t, []uint16{0x0a0a, 0x1a1a, 0x2a2a, 0x3a3a, 0x4a4a, 0x5a5a, 0x6a6a, 0x7a7a,
		0x8a8a, 0x9a9a, 0xaaaa, 0xbaba, 0xcaca, 0xdada, 0xeaea, 0xfafa}, grease)
}

// TestParseManyExtensions: a crafted hello may carry thousands of
// extensions; duplicates are still found, and the work stays linear.
func TestParseManyExtensions(t *testing.T) {
	build := func(n int, dup bool) []byte {
		h := helloSpec{legacyVersion: 0x0303, ciphers: []uint16{0x1301}}
		for i := range n {
			h.exts = append(h.exts, ext{uint16(0x1000 + i), nil})
		}
		if dup {
			h.exts = append(h.exts, ext{0x1000 + uint16(n/2), nil})
		}
		msg := tlsMessage(h.body())
		return tlsRecords(msg, 0x0301, 16384, 16384, 16384, 16384)
	}
	for _, n := range []int{65, 200, 16000} {
		info, err := clienthello.Parse(build(n, false))
		require.NoError(t, err)
		assert.Len(t, info.Extensions, n)
		assert.Equal(t, fmt.Sprintf("%02d", min(n, 99)), info.JA4()[6:8])

		_, err = clienthello.Parse(build(n, true))
		var perr *clienthello.ParseError
		require.ErrorAs(t, err, &perr)
		assert.Equal(t, "extension_type", perr.Field)
		assert.ErrorContains(t, err, "duplicate extension")
	}
}

func TestIncompleteErrorMessage(t *testing.T) {
	_, err := clienthello.Parse([]byte{22, 3, 1, 0, 10, 1})
	var inc *clienthello.IncompleteError
	require.ErrorAs(t, err, &inc)
	assert.Equal(t, 9, inc.Need)
	assert.EqualError(t, err, "clienthello: incomplete ClientHello: need at least 9 more bytes")
}
