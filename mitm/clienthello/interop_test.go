package clienthello_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/dtls/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pinwall/pinwall/mitm/clienthello"
)

// Real peers: Go's crypto/tls, pion/dtls and, when installed, OpenSSL's
// s_client send ClientHellos; the parser must read what they meant.

func TestGoClientHellos(t *testing.T) {
	tests := []struct {
		name string
		cfg  *tls.Config
		// want
		sni       string
		alpn      []string
		version   uint16
		ja4Prefix string
	}{
		{
			name:      "TLS 1.3 with SNI and ALPN",
			cfg:       &tls.Config{ServerName: "www.social.test", NextProtos: []string{"h2", "http/1.1"}},
			sni:       "www.social.test",
			alpn:      []string{"h2", "http/1.1"},
			version:   tls.VersionTLS13,
			ja4Prefix: "t13d",
		},
		{
			name:      "TLS 1.2 only",
			cfg:       &tls.Config{ServerName: "app.files.test", MaxVersion: tls.VersionTLS12},
			sni:       "app.files.test",
			version:   tls.VersionTLS12,
			ja4Prefix: "t12d",
		},
		{
			name:      "no SNI",
			cfg:       &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"pinwall/1"}},
			alpn:      []string{"pinwall/1"},
			version:   tls.VersionTLS13,
			ja4Prefix: "t13i",
		},
		{
			name:      "IP literal is not sent as SNI",
			cfg:       &tls.Config{ServerName: "203.0.113.10"},
			version:   tls.VersionTLS13,
			ja4Prefix: "t13i",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hello := captureGoHello(t, tt.cfg)
			info, err := clienthello.Parse(hello)
			require.NoError(t, err)

			assert.Equal(t, clienthello.RecordTLS, info.Record)
			assert.Equal(t, len(hello), info.Len)
			assert.Equal(t, tt.sni, info.ServerName)
			assert.Equal(t, tt.sni != "", info.HasSNI)
			assert.Equal(t, tt.alpn, info.ALPN)
			assert.Equal(t, tt.version, info.MaxVersion())
			assert.Equal(t, uint16(tls.VersionTLS12), info.LegacyVersion, "legacy_version is frozen at TLS 1.2")
			assert.NotEmpty(t, info.CipherSuites)
			assert.NotEmpty(t, info.Extensions)
			assert.NotEmpty(t, info.Groups)
			assert.NotEmpty(t, info.SignatureAlgorithms)
			assert.Equal(t, []uint8{0}, info.PointFormats)
			if tt.version == tls.VersionTLS13 {
				assert.Contains(t, info.SupportedVersions, uint16(tls.VersionTLS13))
				assert.Contains(t, info.Groups, uint16(tls.X25519MLKEM768), "Go offers the post-quantum hybrid by default")
			} else {
				assert.NotContains(t, info.SupportedVersions, uint16(tls.VersionTLS13))
			}
			assert.Regexp(t, `^\d+,[\d-]+,[\d-]+,[\d-]*,[\d-]*$`, info.JA3())
			assert.Regexp(t, `^[0-9a-f]{32}$`, info.JA3Hash())
			assert.Regexp(t, `^[tdq](1[0-3]|d[1-3]|s[23]|00)[di]\d{4}[0-9a-z]{2}_[0-9a-f]{12}_[0-9a-f]{12}$`, info.JA4())
			assert.True(t, strings.HasPrefix(info.JA4(), tt.ja4Prefix), info.JA4())
		})
	}
}

func TestGoClientHelloCapture(t *testing.T) {
	// testdata/go-tls13.hex is a frozen capture (see TestKnownAnswers);
	// -update replaces it with what this Go version sends.
	if !*update {
		t.Skip("run with -update to refresh testdata/go-tls13.hex")
	}
	hello := captureGoHello(t, &tls.Config{ServerName: "www.social.test", NextProtos: []string{"h2", "http/1.1"}})
	writeHex(t, "go-tls13.hex", hello,
		"ClientHello sent by Go crypto/tls (captured by TestGoClientHelloCapture -update)",
		`tls.Config{ServerName: "www.social.test", NextProtos: []string{"h2", "http/1.1"}}`)
}

// captureDTLSHellos runs a pion/dtls client against a UDP socket that
// answers its first ClientHello with a HelloVerifyRequest, and returns the
// first ClientHello datagram and the second, which carries the cookie.
func captureDTLSHellos(t testing.TB, opts ...dtls.ClientOption) (first, second []byte) {
	t.Helper()
	srv, err := net.ListenPacket("udp", "127.0.0.1:0")
	require.NoError(t, err)
	defer srv.Close()
	cpc, err := net.ListenPacket("udp", "127.0.0.1:0")
	require.NoError(t, err)
	defer cpc.Close()
	conn, err := dtls.ClientWithOptions(cpc, srv.LocalAddr(), opts...)
	require.NoError(t, err)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = conn.HandshakeContext(ctx) // fails: nobody finishes the handshake
	}()
	defer func() {
		cancel()
		_ = conn.Close()
		<-done
	}()

	require.NoError(t, srv.SetReadDeadline(time.Now().Add(10*time.Second)))
	buf := make([]byte, 64<<10)
	n, from, err := srv.ReadFrom(buf)
	require.NoError(t, err)
	first = append([]byte(nil), buf[:n]...)

	cookie := []byte("pinwall-cookie-0123456789")
	hvr := []byte{22, 0xfe, 0xff, 0, 0, 0, 0, 0, 0, 0, 0}
	body := append([]byte{0xfe, 0xff, byte(len(cookie))}, cookie...)
	hs := append([]byte{3, 0, 0, byte(len(body)), 0, 0, 0, 0, 0, 0, 0, byte(len(body))}, body...)
	hvr = append(hvr, byte(len(hs)>>8), byte(len(hs)))
	hvr = append(hvr, hs...)
	_, err = srv.WriteTo(hvr, from)
	require.NoError(t, err)

	for second == nil {
		n, _, err := srv.ReadFrom(buf)
		require.NoError(t, err)
		if info, err := clienthello.ParseDTLS(buf[:n]); err == nil && info.Cookie != nil {
			second = append([]byte(nil), buf[:n]...)
		}
	}
	return first, second
}

func TestPionDTLSClientHello(t *testing.T) {
	first, second := captureDTLSHellos(t,
		dtls.WithServerName("gateway-acme.sse.test"),
		dtls.WithInsecureSkipVerify(true),
		dtls.WithSupportedProtocols("pinwall-tunnel"),
	)
	if *update {
		writeHex(t, "pion-dtls.hex", first,
			"first ClientHello datagram sent by github.com/pion/dtls/v3 (captured by TestPionDTLSClientHello -update)",
			`dtls.WithServerName("gateway-acme.sse.test"), dtls.WithInsecureSkipVerify(true), dtls.WithSupportedProtocols("pinwall-tunnel")`)
	}

	for name, datagram := range map[string][]byte{"first": first, "after HelloVerifyRequest": second} {
		t.Run(name, func(t *testing.T) {
			assert.Equal(t, clienthello.AppDTLS, clienthello.Classify(datagram))
			info, err := clienthello.ParseDTLS(datagram)
			require.NoError(t, err)
			assert.Equal(t, clienthello.RecordDTLS, info.Record)
			assert.Equal(t, "gateway-acme.sse.test", info.ServerName)
			assert.True(t, info.HasSNI)
			assert.Equal(t, []string{"pinwall-tunnel"}, info.ALPN)
			assert.Equal(t, uint16(0xfefd), info.LegacyVersion)
			assert.Equal(t, "DTLS1.2", clienthello.TLSVersionName(info.MaxVersion()))
			assert.NotEmpty(t, info.CipherSuites)
			assert.NotEmpty(t, info.Groups)
			assert.Equal(t, len(datagram), info.Len)
			assert.Regexp(t, `^dd2d\d{4}pl_[0-9a-f]{12}_[0-9a-f]{12}$`, info.JA4())
			assert.Regexp(t, `^65277,`, info.JA3())
		})
	}
	i1, err := clienthello.ParseDTLS(first)
	require.NoError(t, err)
	i2, err := clienthello.ParseDTLS(second)
	require.NoError(t, err)
	assert.Nil(t, i1.Cookie)
	assert.Equal(t, []byte("pinwall-cookie-0123456789"), i2.Cookie)
	assert.Equal(t, i1.JA4(), i2.JA4(), "the cookie does not change the fingerprint")

	// The TCP parser refuses a DTLS record, and the other way round.
	_, err = clienthello.Parse(first)
	assert.ErrorIs(t, err, clienthello.ErrNotTLS)
	_, err = clienthello.ParseDTLS(captureGoHello(t, &tls.Config{ServerName: "x.test"}))
	assert.ErrorIs(t, err, clienthello.ErrNotTLS)
}

// TestOpenSSLClientHello has OpenSSL's s_client connect to a listener that
// peeks its hello, and checks the parse against OpenSSL's own decoding of
// what it sent (-trace): cipher suites, extension order, groups and point
// formats, hence the JA3 string.
func TestOpenSSLClientHello(t *testing.T) {
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("openssl is not on the PATH: skipping the OpenSSL s_client interop test")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()

	type result struct {
		hello []byte
		info  *clienthello.Info
		err   error
	}
	results := make(chan result, 1)
	var wg sync.WaitGroup
	defer func() {
		ln.Close()
		wg.Wait()
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		conn, err := ln.Accept()
		if err != nil {
			results <- result{err: err}
			return
		}
		defer conn.Close()
		info, pc, err := clienthello.Peek(conn, clienthello.PeekOptions{Timeout: 10 * time.Second})
		results <- result{hello: pc.Buffered(), info: info, err: err}
	}()

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, openssl, "s_client", "-connect", ln.Addr().String(),
		"-servername", "x.test", "-alpn", "h2,http/1.1", "-trace")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	_ = cmd.Run() // fails: the listener hangs up after the hello
	ln.Close()    // if s_client never connected, Accept fails now

	r := <-results
	trace, err := parseOpenSSLTrace(stdout.String())
	if errors.Is(err, errNoTrace) {
		t.Skipf("openssl printed no ClientHello trace (built without ssl-trace?): %v; stderr: %s", r.err, stderr.String())
	}
	require.NoError(t, err, "s_client -trace output:\n%s", stdout.String())
	require.NoError(t, r.err, "stderr: %s", stderr.String())

	info := r.info
	assert.Equal(t, "x.test", info.ServerName)
	assert.Equal(t, []string{"h2", "http/1.1"}, info.ALPN)
	assert.Equal(t, trace.version, info.LegacyVersion)
	assert.Equal(t, trace.ciphers, info.CipherSuites)
	assert.Equal(t, trace.extensions, info.Extensions)
	assert.Equal(t, trace.groups, info.Groups)
	assert.Equal(t, trace.pointFormats, info.PointFormats)
	assert.Equal(t, trace.ja3(), info.JA3())
	assert.Equal(t, "t13d", info.JA4()[:4])
	t.Logf("OpenSSL JA3 %s (%s), JA4 %s", info.JA3(), info.JA3Hash(), info.JA4())

	if *update {
		writeHex(t, "openssl.hex", r.hello[:info.Len],
			"ClientHello sent by `openssl s_client -servername x.test -alpn h2,http/1.1` (captured by TestOpenSSLClientHello -update)",
			"JA3 per that run's -trace decoding: "+trace.ja3())
	}
}

var errNoTrace = errors.New("no ClientHello in the -trace output")

// openSSLTrace is what s_client -trace printed about its ClientHello.
type openSSLTrace struct {
	version      uint16
	ciphers      []uint16
	extensions   []uint16
	groups       []uint16
	pointFormats []uint8
}

func (o openSSLTrace) ja3() string {
	dec := func(vs []uint16) string {
		s := make([]string, len(vs))
		for i, v := range vs {
			s[i] = strconv.Itoa(int(v))
		}
		return strings.Join(s, "-")
	}
	pf := make([]uint16, len(o.pointFormats))
	for i, f := range o.pointFormats {
		pf[i] = uint16(f)
	}
	return fmt.Sprintf("%d,%s,%s,%s,%s", o.version, dec(o.ciphers), dec(o.extensions), dec(o.groups), dec(pf))
}

var (
	traceVersion   = regexp.MustCompile(`^\s*client_version=0x([0-9a-fA-F]+)`)
	traceCipher    = regexp.MustCompile(`^\s*\{0x([0-9A-Fa-f]{2}), 0x([0-9A-Fa-f]{2})\}`)
	traceExtension = regexp.MustCompile(`^\s*extension_type=.*\((\d+)\), length=\d+`)
	traceListValue = regexp.MustCompile(`\((\d+)\)\s*$`)
)

// parseOpenSSLTrace reads the first ClientHello of s_client -trace output.
func parseOpenSSLTrace(out string) (openSSLTrace, error) {
	var tr openSSLTrace
	inHello, currentExt := false, -1
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		if strings.Contains(line, "ClientHello, Length=") {
			if inHello {
				break // a second ClientHello
			}
			inHello = true
			continue
		}
		if !inHello {
			continue
		}
		if strings.HasPrefix(line, "Received Record") || strings.HasPrefix(line, "Sent Record") {
			break
		}
		if m := traceVersion.FindStringSubmatch(line); m != nil {
			v, _ := strconv.ParseUint(m[1], 16, 16)
			tr.version = uint16(v)
			continue
		}
		if m := traceExtension.FindStringSubmatch(line); m != nil {
			v, _ := strconv.Atoi(m[1])
			tr.extensions = append(tr.extensions, uint16(v))
			currentExt = v
			continue
		}
		if currentExt < 0 {
			if m := traceCipher.FindStringSubmatch(line); m != nil {
				hi, _ := strconv.ParseUint(m[1], 16, 8)
				lo, _ := strconv.ParseUint(m[2], 16, 8)
				tr.ciphers = append(tr.ciphers, uint16(hi<<8|lo))
			}
			continue
		}
		if m := traceListValue.FindStringSubmatch(line); m != nil {
			v, _ := strconv.Atoi(m[1])
			switch currentExt {
			case 10:
				tr.groups = append(tr.groups, uint16(v))
			case 11:
				tr.pointFormats = append(tr.pointFormats, uint8(v))
			}
		}
	}
	if !inHello || len(tr.ciphers) == 0 {
		return tr, errNoTrace
	}
	return tr, nil
}
