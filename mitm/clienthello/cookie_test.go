package clienthello

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// dtlsHelloWithCookie is a DTLS 1.2 ClientHello record carrying cookie.
func dtlsHelloWithCookie(cookie []byte) []byte {
	body := []byte{0xfe, 0xfd}
	body = append(body, bytes.Repeat([]byte{7}, 32)...)
	body = append(body, 0, byte(len(cookie)))
	body = append(body, cookie...)
	body = append(body, 0, 2, 0xc0, 0x2b, 1, 0, 0, 0)
	n := len(body)
	hs := append([]byte{1, byte(n >> 16), byte(n >> 8), byte(n), 0, 0, 0, 0, 0, byte(n >> 16), byte(n >> 8), byte(n)}, body...)
	return append([]byte{22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, byte(len(hs) >> 8), byte(len(hs))}, hs...)
}

// dtlsHelloVerify is a HelloVerifyRequest record carrying cookie.
func dtlsHelloVerify(cookie []byte) []byte {
	body := append([]byte{0xfe, 0xff, byte(len(cookie))}, cookie...)
	n := len(body)
	hs := append([]byte{3, byte(n >> 16), byte(n >> 8), byte(n), 0, 0, 0, 0, 0, byte(n >> 16), byte(n >> 8), byte(n)}, body...)
	return append([]byte{22, 0xfe, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, byte(len(hs) >> 8), byte(len(hs))}, hs...)
}

func TestHelloCookieParsers(t *testing.T) {
	cookie := []byte("0123456789abcdefghij")
	c, ok := ClientHelloCookie(dtlsHelloWithCookie(cookie))
	require.True(t, ok)
	assert.Equal(t, cookie, c)
	c, ok = ClientHelloCookie(dtlsHelloWithCookie(nil))
	require.True(t, ok)
	assert.Empty(t, c)
	c, ok = HelloVerifyCookie(dtlsHelloVerify(cookie))
	require.True(t, ok)
	assert.Equal(t, cookie, c)

	_, ok = HelloVerifyCookie(dtlsHelloWithCookie(cookie))
	assert.False(t, ok, "a ClientHello is not a HelloVerifyRequest")
	_, ok = ClientHelloCookie(dtlsHelloVerify(cookie))
	assert.False(t, ok)
	_, ok = ClientHelloCookie(dtlsHelloWithCookie(cookie)[:40])
	assert.False(t, ok, "truncated")
	_, ok = ClientHelloCookie([]byte("not dtls at all, not even close"))
	assert.False(t, ok)
}

func FuzzHelloCookies(f *testing.F) {
	f.Add(dtlsHelloWithCookie([]byte("cookie")))
	f.Add(dtlsHelloWithCookie(nil))
	f.Add(dtlsHelloVerify([]byte("0123456789abcdefghij")))
	f.Add([]byte{22, 0xfe, 0xfd, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		if c, ok := ClientHelloCookie(b); ok && len(c) > len(b) {
			t.Fatalf("cookie of %d bytes from %d", len(c), len(b))
		}
		if c, ok := HelloVerifyCookie(b); ok && len(c) > len(b) {
			t.Fatalf("cookie of %d bytes from %d", len(c), len(b))
		}
	})
}
