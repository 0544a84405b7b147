package socks5

import (
	"bytes"
	"errors"
	"io"
	"net/netip"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// appendRequest encodes q the way a client would (the inverse of ReadRequest).
func appendRequest(b []byte, q Request) []byte {
	b = append(b, Version, byte(q.Command), 0, byte(q.AddrType))
	switch q.AddrType {
	case AddrIPv4:
		v := q.Addr.As4()
		b = append(b, v[:]...)
	case AddrIPv6:
		v := q.Addr.As16()
		b = append(b, v[:]...)
	case AddrDomain:
		b = append(b, byte(len(q.Name)))
		b = append(b, q.Name...)
	}
	return append(b, byte(q.Port>>8), byte(q.Port))
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func TestReadGreeting(t *testing.T) {
	tests := []struct {
		name    string
		in      []byte
		want    []byte
		wantErr error
		rest    int // bytes left unread
	}{
		{name: "no auth", in: []byte{5, 1, 0}, want: []byte{0}},
		{name: "several methods", in: []byte{5, 3, 2, 1, 0}, want: []byte{2, 1, 0}},
		{name: "pipelined request untouched", in: []byte{5, 1, 0, 5, 1, 0, 1}, want: []byte{0}, rest: 4},
		{name: "socks4", in: []byte{4, 1, 0, 80}, wantErr: ErrVersion},
		{name: "http", in: []byte("GET / HTTP/1.1\r\n"), wantErr: ErrVersion},
		{name: "zero methods", in: []byte{5, 0}, wantErr: ErrNoMethods},
		{name: "empty", in: nil, wantErr: io.EOF},
		{name: "only version", in: []byte{5}, wantErr: io.ErrUnexpectedEOF},
		{name: "methods truncated", in: []byte{5, 3, 0}, wantErr: io.ErrUnexpectedEOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := bytes.NewReader(tt.in)
			g, err := ReadGreeting(r)
			if tt.wantErr != nil {
				require.ErrorIs(t, err, tt.wantErr)
				assert.True(t, strings.HasPrefix(err.Error(), "socks5: "), err.Error())
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, g.Methods)
			assert.True(t, g.Offers(tt.want[len(tt.want)-1]))
			assert.Equal(t, tt.rest, r.Len())
		})
	}
	assert.False(t, Greeting{Methods: []byte{2}}.Offers(MethodNoAuth))
}

func TestReadRequest(t *testing.T) {
	long := strings.Repeat("a", 255)
	tests := []struct {
		name     string
		in       []byte
		want     Request
		wantAddr string
		wantErr  error
		rest     int
	}{
		{
			name:     "ipv4",
			in:       []byte{5, 1, 0, 1, 192, 0, 2, 10, 1, 187},
			want:     Request{Command: CmdConnect, AddrType: AddrIPv4, Addr: netip.MustParseAddr("192.0.2.10"), Port: 443},
			wantAddr: "192.0.2.10:443",
		},
		{
			name:     "ipv6",
			in:       cat([]byte{5, 1, 0, 4}, netip.MustParseAddr("2001:db8::1").AsSlice(), []byte{0, 80}),
			want:     Request{Command: CmdConnect, AddrType: AddrIPv6, Addr: netip.MustParseAddr("2001:db8::1"), Port: 80},
			wantAddr: "[2001:db8::1]:80",
		},
		{
			name:     "domain stays unresolved",
			in:       cat([]byte{5, 1, 0, 3, 15}, []byte("www.social.test"), []byte{1, 187}),
			want:     Request{Command: CmdConnect, AddrType: AddrDomain, Name: "www.social.test", Port: 443},
			wantAddr: "www.social.test:443",
		},
		{
			name:     "255-byte name",
			in:       cat([]byte{5, 1, 0, 3, 255}, []byte(long), []byte{0, 80}),
			want:     Request{Command: CmdConnect, AddrType: AddrDomain, Name: long, Port: 80},
			wantAddr: long + ":80",
		},
		{
			name:     "ipv6 literal sent as a name",
			in:       cat([]byte{5, 1, 0, 3, 11}, []byte("2001:db8::1"), []byte{1, 187}),
			want:     Request{Command: CmdConnect, AddrType: AddrDomain, Name: "2001:db8::1", Port: 443},
			wantAddr: "[2001:db8::1]:443",
		},
		{
			name:     "punycode name",
			in:       cat([]byte{5, 1, 0, 3, 18}, []byte("xn--caf-dma.test.x"), []byte{0, 80}),
			want:     Request{Command: CmdConnect, AddrType: AddrDomain, Name: "xn--caf-dma.test.x", Port: 80},
			wantAddr: "xn--caf-dma.test.x:80",
		},
		{
			name:     "bind parses (server refuses it)",
			in:       []byte{5, 2, 0, 1, 10, 0, 0, 1, 0, 21},
			want:     Request{Command: CmdBind, AddrType: AddrIPv4, Addr: netip.MustParseAddr("10.0.0.1"), Port: 21},
			wantAddr: "10.0.0.1:21",
		},
		{
			name:     "pipelined data untouched",
			in:       []byte{5, 1, 0, 1, 192, 0, 2, 10, 0, 80, 'G', 'E', 'T'},
			want:     Request{Command: CmdConnect, AddrType: AddrIPv4, Addr: netip.MustParseAddr("192.0.2.10"), Port: 80},
			wantAddr: "192.0.2.10:80",
			rest:     3,
		},
		{name: "bad version", in: []byte{4, 1, 0, 1, 1, 2, 3, 4, 0, 80}, wantErr: ErrVersion},
		{name: "reserved set", in: []byte{5, 1, 1, 1, 1, 2, 3, 4, 0, 80}, wantErr: ErrReserved},
		{name: "unknown atyp", in: []byte{5, 1, 0, 2, 1, 2, 3, 4, 0, 80}, wantErr: ErrAddrType},
		{name: "empty name", in: []byte{5, 1, 0, 3, 0, 0, 80}, wantErr: ErrEmptyName},
		{name: "NUL in name", in: cat([]byte{5, 1, 0, 3, 5}, []byte("a\x00.te"), []byte{0, 80}), wantErr: ErrBadName},
		{name: "space in name", in: cat([]byte{5, 1, 0, 3, 5}, []byte("a b.t"), []byte{0, 80}), wantErr: ErrBadName},
		{name: "utf-8 name", in: cat([]byte{5, 1, 0, 3, 6}, []byte("\xc3\xa9.test"[:6]), []byte{0, 80}), wantErr: ErrBadName},
		{name: "colon in name", in: cat([]byte{5, 1, 0, 3, 8}, []byte("a.test:9"), []byte{0, 80}), wantErr: ErrBadName},
		{name: "empty", in: nil, wantErr: io.EOF},
		{name: "header truncated", in: []byte{5, 1}, wantErr: io.ErrUnexpectedEOF},
		{name: "ipv4 truncated", in: []byte{5, 1, 0, 1, 192, 0}, wantErr: io.ErrUnexpectedEOF},
		{name: "ipv4 no port", in: []byte{5, 1, 0, 1, 192, 0, 2, 10}, wantErr: io.ErrUnexpectedEOF},
		{name: "ipv6 truncated", in: []byte{5, 1, 0, 4, 0x20, 1}, wantErr: io.ErrUnexpectedEOF},
		{name: "name length missing", in: []byte{5, 1, 0, 3}, wantErr: io.ErrUnexpectedEOF},
		{name: "name truncated", in: cat([]byte{5, 1, 0, 3, 20}, []byte("short")), wantErr: io.ErrUnexpectedEOF},
		{name: "name port truncated", in: cat([]byte{5, 1, 0, 3, 5}, []byte("a.tst"), []byte{1}), wantErr: io.ErrUnexpectedEOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := bytes.NewReader(tt.in)
			q, err := ReadRequest(r)
			if tt.wantErr != nil {
				require.ErrorIs(t, err, tt.wantErr)
				assert.True(t, strings.HasPrefix(err.Error(), "socks5: "), err.Error())
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, q)
			assert.Equal(t, tt.wantAddr, q.Address())
			assert.Equal(t, tt.rest, r.Len())
			assert.Equal(t, tt.in[:len(tt.in)-tt.rest], appendRequest(nil, q), "re-encoding")
		})
	}
}

// errReader fails with err after its data.
type errReader struct {
	data []byte
	err  error
}

func (r *errReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, r.err
	}
	n := copy(p, r.data)
	r.data = r.data[n:]
	return n, nil
}

func TestReadRequestReaderErrorKept(t *testing.T) {
	boom := errors.New("boom")
	_, err := ReadRequest(&errReader{data: []byte{5, 1, 0, 1, 1}, err: boom})
	require.ErrorIs(t, err, boom)
	_, err = ReadGreeting(&errReader{err: boom})
	require.ErrorIs(t, err, boom)
}

func TestAppendReply(t *testing.T) {
	tests := []struct {
		name string
		rep  Reply
		bnd  netip.AddrPort
		want []byte
	}{
		{"zero address", ReplyGeneralFailure, netip.AddrPort{}, []byte{5, 1, 0, 1, 0, 0, 0, 0, 0, 0}},
		{"ipv4", ReplySucceeded, netip.MustParseAddrPort("10.10.10.100:40000"), []byte{5, 0, 0, 1, 10, 10, 10, 100, 0x9c, 0x40}},
		{"mapped ipv4", ReplySucceeded, netip.MustParseAddrPort("[::ffff:10.0.0.1]:1"), []byte{5, 0, 0, 1, 10, 0, 0, 1, 0, 1}},
		{"ipv6", ReplySucceeded, netip.MustParseAddrPort("[2001:db8::2]:443"),
			cat([]byte{5, 0, 0, 4}, netip.MustParseAddr("2001:db8::2").AsSlice(), []byte{1, 187})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, AppendReply(nil, tt.rep, tt.bnd))
		})
	}
}

func TestNames(t *testing.T) {
	assert.Equal(t, "connection not allowed by ruleset", ReplyNotAllowed.String())
	assert.Equal(t, "reply(0x9)", Reply(9).String())
	assert.Equal(t, "udp-associate", CmdUDPAssociate.String())
	assert.Equal(t, "command(0x9)", Command(9).String())
	assert.Equal(t, "domain", AddrDomain.String())
	assert.Equal(t, "atyp(0x2)", AddrType(2).String())
}

// FuzzReadRequest feeds arbitrary bytes to the handshake parsers in the order
// the server runs them: greeting, then request, from one stream.
func FuzzReadRequest(f *testing.F) {
	seeds := [][]byte{
		{5, 1, 0, 5, 1, 0, 1, 192, 0, 2, 10, 1, 187},
		cat([]byte{5, 1, 0, 5, 1, 0, 3, 15}, []byte("www.social.test"), []byte{1, 187}),
		cat([]byte{5, 2, 0, 2, 5, 1, 0, 4}, netip.MustParseAddr("2001:db8::1").AsSlice(), []byte{0, 80}),
		cat([]byte{5, 1, 0, 5, 1, 0, 3, 255}, bytes.Repeat([]byte{'x'}, 255), []byte{0, 80}),
		{5, 1, 0, 5, 3, 0, 1, 0, 0, 0, 0, 0, 0},
		{5, 1, 0, 5, 1, 0, 3, 0, 0, 80},
		{5, 1, 0, 5, 1, 7, 9},
		{5, 0},
		{4, 1, 0, 80, 1, 2, 3, 4, 0},
		[]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
		{},
	}
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bytes.NewReader(data)
		g, err := ReadGreeting(r)
		if err != nil {
			if len(data) >= MaxGreetingLen && !errors.Is(err, ErrVersion) && !errors.Is(err, ErrNoMethods) {
				t.Fatalf("greeting failed on %d bytes: %v", len(data), err)
			}
			return
		}
		used := len(data) - r.Len()
		if used > MaxGreetingLen || used != 2+len(g.Methods) {
			t.Fatalf("greeting consumed %d bytes for %d methods", used, len(g.Methods))
		}
		rest := data[used:]
		r = bytes.NewReader(rest)
		q, err := ReadRequest(r)
		if err != nil {
			if q != (Request{}) {
				t.Fatalf("error %v with non-zero request %+v", err, q)
			}
			return
		}
		n := len(rest) - r.Len()
		if n > MaxRequestLen {
			t.Fatalf("request consumed %d bytes", n)
		}
		if got := appendRequest(nil, q); !bytes.Equal(got, rest[:n]) {
			t.Fatalf("re-encoding %+v gave %x, read %x", q, got, rest[:n])
		}
		if q.AddrType == AddrDomain && (q.Name == "" || len(q.Name) > 255 || checkName([]byte(q.Name)) != nil) {
			t.Fatalf("accepted name %q", q.Name)
		}
	})
}
