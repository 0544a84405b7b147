package clienthello_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"flag"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"golang.org/x/crypto/cryptobyte"

	"github.com/pinwall/pinwall/mitm/clienthello"
)

var update = flag.Bool("update", false, "rewrite the captures in testdata/ from live peers")

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// ---- testdata captures ----

// readHex reads a testdata file of hex digits; whitespace and lines
// starting with '#' (provenance notes) are ignored.
func readHex(t testing.TB, name string) []byte {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", name))
	require.NoError(t, err)
	var digits strings.Builder
	for _, line := range strings.Split(string(raw), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		digits.WriteString(line)
	}
	b, err := hex.DecodeString(digits.String())
	require.NoError(t, err, "testdata/%s", name)
	return b
}

// writeHex writes b to a testdata file, 64 hex digits a line, after the
// given comment lines.
func writeHex(t testing.TB, name string, b []byte, comments ...string) {
	t.Helper()
	var out bytes.Buffer
	for _, c := range comments {
		out.WriteString("# " + c + "\n")
	}
	h := hex.EncodeToString(b)
	for len(h) > 64 {
		out.WriteString(h[:64] + "\n")
		h = h[64:]
	}
	out.WriteString(h + "\n")
	require.NoError(t, os.WriteFile(filepath.Join("testdata", name), out.Bytes(), 0o644))
}

// ---- building ClientHellos by hand (independently of the parser) ----

type ext struct {
	typ  uint16
	data []byte
}

// helloSpec describes a ClientHello to build.
type helloSpec struct {
	legacyVersion uint16
	random        []byte // 32 bytes; zeros if nil
	sessionID     []byte
	dtls          bool
	cookie        []byte
	ciphers       []uint16
	compression   []byte // {0} if nil
	exts          []ext
	noExtensions  bool // omit the extensions block entirely
}

// body returns the ClientHello body (after the handshake header).
func (h helloSpec) body() []byte {
	var b cryptobyte.Builder
	b.AddUint16(h.legacyVersion)
	random := h.random
	if random == nil {
		random = make([]byte, 32)
	}
	b.AddBytes(random)
	b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(h.sessionID) })
	if h.dtls {
		b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(h.cookie) })
	}
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
		for _, c := range h.ciphers {
			b.AddUint16(c)
		}
	})
	comp := h.compression
	if comp == nil {
		comp = []byte{0}
	}
	b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(comp) })
	if !h.noExtensions {
		b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
			for _, e := range h.exts {
				b.AddUint16(e.typ)
				b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(e.data) })
			}
		})
	}
	return b.BytesOrPanic()
}

// tlsMessage wraps a body in a TLS handshake header.
func tlsMessage(body []byte) []byte {
	var b cryptobyte.Builder
	b.AddUint8(1)
	b.AddUint24LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(body) })
	return b.BytesOrPanic()
}

// tlsRecords splits msg into handshake records of the given payload sizes
// (the last record takes what is left).
func tlsRecords(msg []byte, version uint16, sizes ...int) []byte {
	var out []byte
	for len(msg) > 0 {
		n := len(msg)
		if len(sizes) > 0 {
			n = min(sizes[0], len(msg))
			sizes = sizes[1:]
		}
		out = append(out, 22, byte(version>>8), byte(version), byte(n>>8), byte(n))
		out = append(out, msg[:n]...)
		msg = msg[n:]
	}
	return out
}

// tlsHello is a complete single-record hello.
func (h helloSpec) tls() []byte { return tlsRecords(tlsMessage(h.body()), 0x0301) }

// dtlsDatagram wraps a body in a DTLS record and handshake header, as one
// unfragmented message.
func dtlsDatagram(body []byte, version uint16, messageSeq uint16) []byte {
	var b cryptobyte.Builder
	b.AddUint8(22)
	b.AddUint16(version)
	b.AddUint16(0)              // epoch
	b.AddBytes(make([]byte, 6)) // sequence_number
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
		b.AddUint8(1)
		b.AddUint24(uint32(len(body)))
		b.AddUint16(messageSeq)
		b.AddUint24(0)
		b.AddUint24(uint32(len(body)))
		b.AddBytes(body)
	})
	return b.BytesOrPanic()
}

func sniExt(names ...string) ext {
	var b cryptobyte.Builder
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
		for _, n := range names {
			b.AddUint8(0)
			b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes([]byte(n)) })
		}
	})
	return ext{0x0000, b.BytesOrPanic()}
}

func alpnExt(protos ...string) ext {
	var b cryptobyte.Builder
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
		for _, p := range protos {
			b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes([]byte(p)) })
		}
	})
	return ext{0x0010, b.BytesOrPanic()}
}

// u16VecExt is an extension whose data is a uint16-prefixed list of uint16.
func u16VecExt(typ uint16, vals ...uint16) ext {
	var b cryptobyte.Builder
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
		for _, v := range vals {
			b.AddUint16(v)
		}
	})
	return ext{typ, b.BytesOrPanic()}
}

// u8VecExt is an extension whose data is a uint8-prefixed list of uint16.
func u8VecExt(typ uint16, vals ...uint16) ext {
	var b cryptobyte.Builder
	b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) {
		for _, v := range vals {
			b.AddUint16(v)
		}
	})
	return ext{typ, b.BytesOrPanic()}
}

func pointFormatsExt(formats ...byte) ext {
	return ext{0x000b, append([]byte{byte(len(formats))}, formats...)}
}

func mustHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

// pattern returns n deterministic filler bytes.
func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = seed + byte(i*7)
	}
	return b
}

// ---- live peers ----

// selfSigned returns a certificate for names and a pool trusting it.
func selfSigned(t testing.TB, names ...string) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: names[0]},
		DNSNames:              names,
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: cert}, pool
}

// captureGoHello runs a crypto/tls client with cfg over a net.Pipe and
// returns the ClientHello records it sent.
func captureGoHello(t testing.TB, cfg *tls.Config) []byte {
	t.Helper()
	client, server := net.Pipe()
	defer server.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer client.Close()
		// Fails once server is closed: nobody answers the hello.
		_ = tls.Client(client, cfg).HandshakeContext(ctx)
	}()
	defer func() {
		server.Close()
		<-done
	}()
	info, pc, err := clienthello.Peek(server, clienthello.PeekOptions{Timeout: 5 * time.Second})
	require.NoError(t, err)
	return append([]byte(nil), pc.Buffered()[:info.Len]...)
}

// chrome143 rebuilds the ClientHello of Chrome 143 on Android as
// browserleaks.com decoded it (a JSON dump with its published JA3 and JA4,
// quoted in TestKnownAnswers): the same values in the same order, with
// deterministic bytes where the dump gives only lengths (key shares, ECH
// payload).
func chrome143() helloSpec {
	ks := func() []byte {
		var b cryptobyte.Builder
		b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
			for _, share := range []struct {
				group uint16
				n     int
			}{{0x3a3a, 1}, {4588, 1216}, {29, 32}} {
				b.AddUint16(share.group)
				b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(pattern(share.n, byte(share.group))) })
			}
		})
		return b.BytesOrPanic()
	}
	ech := func() []byte {
		var b cryptobyte.Builder
		b.AddUint8(0)   // outer
		b.AddUint16(1)  // HKDF-SHA256
		b.AddUint16(1)  // AES-128-GCM
		b.AddUint8(254) // config_id
		b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(pattern(32, 0xe0)) })
		b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(pattern(144, 0xe1)) })
		return b.BytesOrPanic()
	}
	return helloSpec{
		legacyVersion: 0x0303,
		random:        mustHex("65428825bd3030d23fc6d8dcb95b6d68aba7c3310c7db2cef588f07b6b26cb99"),
		sessionID:     mustHex("26c4ed1789251c138e9fac1ee6cf415c5c3da06f38f90fdb404fda0afb799e7d"),
		ciphers:       []uint16{0xaaaa, 4865, 4866, 4867, 49195, 49199, 49196, 49200, 52393, 52392, 49171, 49172, 156, 157, 47, 53},
		exts: []ext{
			{0x4a4a, nil},
			{45, []byte{1, 1}},
			{51, ks()},
			alpnExt("h2", "http/1.1"),
			{65037, ech()},
			{23, nil},
			{17613, []byte{0, 3, 2, 'h', '2'}},
			sniExt("tls-outer.browserleaks.com"),
			pointFormatsExt(0),
			u16VecExt(10, 0x3a3a, 4588, 29, 23, 24),
			u8VecExt(43, 0x6a6a, 0x0304, 0x0303),
			{65281, []byte{0}},
			{35, nil},
			{18, nil},
			{5, []byte{1, 0, 0, 0, 0}},
			u16VecExt(13, 0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601),
			{27, []byte{2, 0, 2}},
			{0x6a6a, []byte{0}},
		},
	}
}

// ja4SpecExample builds a hello with the cipher suites, extensions and
// signature algorithms of the worked example in FoxIO's JA4.md (a Chrome
// hello of 2023), GREASE added where Chrome puts it.
func ja4SpecExample(alpn ...string) helloSpec {
	extOrder := []uint16{0x001b, 0x0000, 0x0033, 0x0010, 0x4469, 0x0017, 0x002d, 0x000d, 0x0005, 0x0023, 0x0012, 0x002b, 0xff01, 0x000b, 0x000a, 0x0015}
	exts := []ext{{0x0a0a, nil}}
	for _, typ := range extOrder {
		switch typ {
		case 0x0000:
			exts = append(exts, sniExt("www.social.test"))
		case 0x0010:
			exts = append(exts, alpnExt(alpn...))
		case 0x000d:
			exts = append(exts, u16VecExt(13, 0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601))
		case 0x002b:
			exts = append(exts, u8VecExt(43, 0x1a1a, 0x0304, 0x0303))
		case 0x000a:
			exts = append(exts, u16VecExt(10, 0x2a2a, 29, 23, 24))
		case 0x000b:
			exts = append(exts, pointFormatsExt(0))
		case 0x0015:
			exts = append(exts, ext{typ, make([]byte, 17)})
		default:
			exts = append(exts, ext{typ, nil})
		}
	}
	exts = append(exts, ext{0xfafa, []byte{0}})
	return helloSpec{
		legacyVersion: 0x0303,
		sessionID:     pattern(32, 1),
		ciphers:       []uint16{0x3a3a, 0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8, 0xc013, 0xc014, 0x009c, 0x009d, 0x002f, 0x0035},
		exts:          exts,
	}
}
