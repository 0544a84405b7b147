package resolve

import (
	"context"
	"net"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/net/dns/dnsmessage"
)

func startDNS(t *testing.T, cfg DNSConfig) *DNSServer {
	t.Helper()
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	s, err := ListenDNS(context.Background(), cfg)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, s.Close()) })
	return s
}

func testZone(t *testing.T) *Zone {
	t.Helper()
	z, err := NewZone(
		Record{Name: "gateway-acme.sse.test", Addrs: addrs("203.0.113.9", "203.0.113.10"), TTL: 30 * time.Second},
		Record{Name: "www.social.test", Addrs: addrs("192.0.2.10")},
	)
	require.NoError(t, err)
	return z
}

// goResolver is Go's own DNS client (the pure-Go resolver), pointed at s:
// a real client speaking the wire format, not this package's parser.
func goResolver(s *DNSServer) *net.Resolver {
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "udp", s.Addr().String())
	}}
}

func TestDNSServerAnswersTheZone(t *testing.T) {
	// The in-process mapping: 203.0.113.x is served by 127.0.113.x.
	toLoop := func(a netip.Addr) (netip.Addr, bool) {
		b := a.As4()
		return netip.AddrFrom4([4]byte{127, b[1], b[2], b[3]}), b[0] == 203
	}
	s := startDNS(t, DNSConfig{Resolver: testZone(t), Map: toLoop})
	r := goResolver(s)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	got, err := r.LookupNetIP(ctx, "ip4", "gateway-acme.sse.test")
	require.NoError(t, err)
	assert.ElementsMatch(t, addrs("127.0.113.9", "127.0.113.10"), got)

	_, err = r.LookupNetIP(ctx, "ip4", "www.social.test")
	var dnsErr *net.DNSError
	require.ErrorAs(t, err, &dnsErr, "the map drops addresses without a stand-in")

	_, err = r.LookupNetIP(ctx, "ip4", "nosuch.sse.test")
	require.ErrorAs(t, err, &dnsErr)
	assert.True(t, dnsErr.IsNotFound, "NXDOMAIN for an unknown name under .test: %v", err)

	_, err = r.LookupNetIP(ctx, "ip4", "example.com")
	require.Error(t, err, "not authoritative outside .test, and no recursion")

	st := s.Stats()
	assert.Positive(t, st.Answered)
	assert.Positive(t, st.NXDomain)
	assert.Positive(t, st.Refused)
	assert.Zero(t, st.Malformed)
}

func TestDNSServerWireAnswers(t *testing.T) {
	s := startDNS(t, DNSConfig{Resolver: testZone(t)})
	tests := []struct {
		name   string
		qname  string
		qtype  dnsmessage.Type
		rcode  dnsmessage.RCode
		answer []string
	}{
		{"A", "gateway-acme.sse.test.", dnsmessage.TypeA, dnsmessage.RCodeSuccess, []string{"203.0.113.9", "203.0.113.10"}},
		{"A, any case", "GATEWAY-ACME.sse.TEST.", dnsmessage.TypeA, dnsmessage.RCodeSuccess, []string{"203.0.113.9", "203.0.113.10"}},
		{"AAAA: the name exists, no IPv6", "gateway-acme.sse.test.", dnsmessage.TypeAAAA, dnsmessage.RCodeSuccess, nil},
		{"unknown under .test", "nosuch.test.", dnsmessage.TypeA, dnsmessage.RCodeNameError, nil},
		{"outside .test", "example.com.", dnsmessage.TypeA, dnsmessage.RCodeRefused, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msg := exchange(t, s, query(t, 0x1234, tt.qname, tt.qtype))
			assert.Equal(t, uint16(0x1234), msg.Header.ID)
			assert.True(t, msg.Header.Response)
			assert.True(t, msg.Header.Authoritative)
			assert.Equal(t, tt.rcode, msg.Header.RCode)
			require.Len(t, msg.Questions, 1, "the question is echoed")
			var got []string
			for _, a := range msg.Answers {
				got = append(got, netip.AddrFrom4(a.Body.(*dnsmessage.AResource).A).String())
				assert.EqualValues(t, 30, a.Header.TTL)
			}
			assert.Equal(t, tt.answer, got)
		})
	}
}

// Garbage, responses and multi-question messages never crash the server
// nor get an answer that could be mistaken for one.
func TestDNSServerBadQueries(t *testing.T) {
	s := startDNS(t, DNSConfig{Resolver: testZone(t)})
	c, err := net.Dial("udp", s.Addr().String())
	require.NoError(t, err)
	defer c.Close()
	for _, junk := range [][]byte{{}, {0x01}, []byte("GET / HTTP/1.1\r\n\r\n"), make([]byte, 1400)} {
		_, err := c.Write(junk)
		require.NoError(t, err)
	}
	// A response is dropped.
	resp := query(t, 7, "gateway-acme.sse.test.", dnsmessage.TypeA)
	resp[2] |= 0x80
	_, err = c.Write(resp)
	require.NoError(t, err)
	// Two questions: FORMERR.
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: 9})
	require.NoError(t, b.StartQuestions())
	for range 2 {
		require.NoError(t, b.Question(dnsmessage.Question{Name: dnsmessage.MustNewName("a.test."), Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET}))
	}
	two, err := b.Finish()
	require.NoError(t, err)
	msg := exchange(t, s, two)
	assert.Equal(t, dnsmessage.RCodeFormatError, msg.Header.RCode)
	assert.Equal(t, uint16(9), msg.Header.ID)
	// Still answering.
	ok := exchange(t, s, query(t, 10, "www.social.test.", dnsmessage.TypeA))
	assert.Len(t, ok.Answers, 1)
	assert.GreaterOrEqual(t, s.Stats().Malformed, int64(5))
}

func TestDNSServerConfig(t *testing.T) {
	_, err := ListenDNS(context.Background(), DNSConfig{Addr: "127.0.0.1:0"})
	assert.ErrorContains(t, err, "Resolver is required")
	_, err = ListenDNS(context.Background(), DNSConfig{Addr: "0.0.0.0:0", Resolver: &Zone{}})
	assert.ErrorContains(t, err, "only loopback")
	_, err = ListenDNS(context.Background(), DNSConfig{Addr: "localhost:53", Resolver: &Zone{}})
	assert.ErrorContains(t, err, "listen address")

	// Its context ends it; Close after that is fine, twice.
	ctx, cancel := context.WithCancel(context.Background())
	s, err := ListenDNS(ctx, DNSConfig{Addr: "127.0.0.1:0", Resolver: &Zone{}})
	require.NoError(t, err)
	cancel()
	require.NoError(t, s.Close())
	require.NoError(t, s.Close())
}

// dig, when installed, is a third-party judge of the wire format.
func TestDNSServerWithDig(t *testing.T) {
	dig, err := exec.LookPath("dig")
	if err != nil {
		t.Skip("dig not installed (Debian package dnsutils)")
	}
	s := startDNS(t, DNSConfig{Resolver: testZone(t)})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	port := strconv.Itoa(int(s.Addr().Port()))
	out, err := exec.CommandContext(ctx, dig, "@"+s.Addr().Addr().String(), "-p", port, "+tries=1", "+time=2",
		"gateway-acme.sse.test", "A").CombinedOutput()
	require.NoError(t, err, "%s", out)
	text := string(out)
	assert.Contains(t, text, "status: NOERROR")
	assert.Contains(t, text, "flags: qr aa")
	assert.Regexp(t, `gateway-acme\.sse\.test\.\s+30\s+IN\s+A\s+203\.0\.113\.9`, text)
	out, err = exec.CommandContext(ctx, dig, "@"+s.Addr().Addr().String(), "-p", port, "+tries=1", "+time=2",
		"nosuch.test", "A").CombinedOutput()
	require.NoError(t, err, "%s", out)
	assert.True(t, strings.Contains(string(out), "status: NXDOMAIN"), "%s", out)
}

func query(t *testing.T, id uint16, name string, qtype dnsmessage.Type) []byte {
	t.Helper()
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: id, RecursionDesired: true})
	require.NoError(t, b.StartQuestions())
	require.NoError(t, b.Question(dnsmessage.Question{Name: dnsmessage.MustNewName(name), Type: qtype, Class: dnsmessage.ClassINET}))
	msg, err := b.Finish()
	require.NoError(t, err)
	return msg
}

func exchange(t *testing.T, s *DNSServer, q []byte) dnsmessage.Message {
	t.Helper()
	c, err := net.Dial("udp", s.Addr().String())
	require.NoError(t, err)
	defer c.Close()
	_, err = c.Write(q)
	require.NoError(t, err)
	require.NoError(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
	buf := make([]byte, 1500)
	n, err := c.Read(buf)
	require.NoError(t, err)
	var m dnsmessage.Message
	require.NoError(t, m.Unpack(buf[:n]))
	return m
}

// FuzzDNSAnswer: whatever arrives, the server answers with a well-formed
// response to the same ID, or drops it; it never panics.
func FuzzDNSAnswer(f *testing.F) {
	for _, seed := range [][]byte{
		{}, {0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0},
		mustQuery(1, "gateway-acme.sse.test.", dnsmessage.TypeA),
		mustQuery(2, "nosuch.test.", dnsmessage.TypeAAAA),
		mustQuery(3, "example.com.", dnsmessage.TypeMX),
	} {
		f.Add(seed)
	}
	z, err := NewZone(Record{Name: "gateway-acme.sse.test", Addrs: addrs("203.0.113.9")})
	if err != nil {
		f.Fatal(err)
	}
	s := &DNSServer{cfg: DNSConfig{Resolver: z, Domains: []string{"test"}, LookupTimeout: time.Second}}
	f.Fuzz(func(t *testing.T, q []byte) {
		resp := s.answer(q)
		if resp == nil {
			return
		}
		if len(resp) > 512 {
			t.Fatalf("response of %d bytes does not fit 512", len(resp))
		}
		var m dnsmessage.Message
		if err := m.Unpack(resp); err != nil {
			t.Fatalf("unparsable response: %v", err)
		}
		var p dnsmessage.Parser
		h, err := p.Start(q)
		if err != nil {
			t.Fatalf("answered a query that does not parse: %v", err)
		}
		if m.Header.ID != h.ID || !m.Header.Response {
			t.Fatalf("response header %+v to query %+v", m.Header, h)
		}
	})
}

func mustQuery(id uint16, name string, qtype dnsmessage.Type) []byte {
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: id})
	if err := b.StartQuestions(); err != nil {
		panic(err)
	}
	if err := b.Question(dnsmessage.Question{Name: dnsmessage.MustNewName(name), Type: qtype, Class: dnsmessage.ClassINET}); err != nil {
		panic(err)
	}
	msg, err := b.Finish()
	if err != nil {
		panic(err)
	}
	return msg
}
