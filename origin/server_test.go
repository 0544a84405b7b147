package origin

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/pinwall/pinwall/failure"
	"github.com/pinwall/pinwall/hostnet"
	"github.com/pinwall/pinwall/internal/syncbuf"
	"github.com/pinwall/pinwall/pki"
	"github.com/pinwall/pinwall/resolve"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var (
	originIP  = netip.MustParseAddr("192.0.2.10")
	originIP2 = netip.MustParseAddr("192.0.2.11")
	laptopIP  = netip.MustParseAddr("10.10.10.100")
)

// world is an origin host serving three sites and a laptop that reaches it.
type world struct {
	pki    *pki.Set
	sim    *hostnet.Sim
	origin *hostnet.Host
	laptop *hostnet.Host
	zone   *resolve.Zone
	srv    *Server
	access *syncbuf.Buffer
	logs   *syncbuf.Buffer
}

// testSites: two sites share 192.0.2.10 (told apart by SNI and Host), one
// lives alone on 192.0.2.11 without plain HTTP.
func testSites() []Site {
	return []Site{
		{Name: "www.social.test", Addrs: []netip.Addr{originIP}},
		{Name: "app.files.test", Addrs: []netip.Addr{originIP}},
		{Name: "login.mail.test", Addrs: []netip.Addr{originIP2}, HTTPPort: -1},
	}
}

func newWorld(t testing.TB, tweak func(*Config)) *world {
	t.Helper()
	set, err := pki.NewSet(pki.Config{}, "acme")
	require.NoError(t, err)
	w := &world{pki: set, sim: hostnet.NewSim(nil), access: &syncbuf.Buffer{}, logs: &syncbuf.Buffer{}}
	w.origin, err = w.sim.AddHost("origin", originIP, originIP2)
	require.NoError(t, err)
	w.laptop, err = w.sim.AddHost("laptop", laptopIP)
	require.NoError(t, err)
	w.zone, err = resolve.NewZone(
		resolve.Record{Name: "www.social.test", Addrs: []netip.Addr{originIP}},
		resolve.Record{Name: "app.files.test", Addrs: []netip.Addr{originIP}},
		resolve.Record{Name: "login.mail.test", Addrs: []netip.Addr{originIP2}},
		resolve.Record{Name: "evil.test", Addrs: []netip.Addr{originIP}},
	)
	require.NoError(t, err)
	cfg := Config{
		Stack:        w.origin,
		Sites:        testSites(),
		Certificates: func(name string) (*tls.Certificate, error) { return set.ServerCert(name) },
		Logger:       slog.New(slog.NewTextHandler(w.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		AccessLog:    w.access,
	}
	if tweak != nil {
		tweak(&cfg)
	}
	w.srv, err = New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, w.srv.Close()) })
	require.NoError(t, w.srv.Start(context.Background()))
	return w
}

// dial resolves with the laptop's zone and dials from the laptop's Stack.
func (w *world) dial(ctx context.Context, network, address string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(address)
	if err != nil {
		return nil, err
	}
	ip, err := resolve.Addr(ctx, w.zone, host)
	if err != nil {
		return nil, err
	}
	return w.laptop.DialContext(ctx, network, net.JoinHostPort(ip.String(), port))
}

// client returns an http.Client on the laptop trusting the internet CA;
// h2 chooses whether HTTP/2 is offered.
func (w *world) client(t testing.TB, h2 bool) *http.Client {
	t.Helper()
	tr := &http.Transport{
		DialContext:       w.dial,
		TLSClientConfig:   &tls.Config{RootCAs: w.pki.Internet.Pool()},
		ForceAttemptHTTP2: h2,
	}
	if !h2 {
		tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
		tr.TLSClientConfig.NextProtos = []string{"http/1.1"}
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 60 * time.Second}
}

func (w *world) accessLines(t *testing.T) []Record {
	t.Helper()
	var out []Record
	sc := bufio.NewScanner(strings.NewReader(w.access.String()))
	for sc.Scan() {
		var r Record
		require.NoError(t, json.Unmarshal(sc.Bytes(), &r), sc.Text())
		out = append(out, r)
	}
	return out
}

// lastRecord returns the newest in-memory access record.
func (w *world) lastRecord(t *testing.T) Record {
	t.Helper()
	recs := w.srv.Records()
	require.NotEmpty(t, recs)
	return recs[len(recs)-1]
}

func TestFlows(t *testing.T) {
	w := newWorld(t, nil)
	const MiB = 1 << 20
	tests := []struct {
		name string
		flow Flow
		h2   bool
	}{
		{"empty both ways", Flow{Site: "www.social.test", Seed: 1}, true},
		{"one byte", Flow{Site: "www.social.test", ReqSize: 1, RespSize: 1, Seed: 2}, true},
		{"1 MiB h2", Flow{Site: "app.files.test", ReqSize: MiB, RespSize: MiB, Seed: 3}, true},
		{"1 MiB http/1.1", Flow{Site: "app.files.test", ReqSize: MiB, RespSize: MiB, Seed: 4}, false},
		{"16 MiB", Flow{Site: "login.mail.test", ReqSize: 16 * MiB, RespSize: 16 * MiB, Seed: 5}, true},
		{"upload only", Flow{Site: "www.social.test", ReqSize: 3*MiB + 7, Seed: 6}, false},
		{"download only", Flow{Site: "www.social.test", RespSize: 5*MiB + 3, Seed: 7}, true},
		{"plain http", Flow{Site: "www.social.test", Scheme: "http", ReqSize: 1000, RespSize: 2000, Seed: 8}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			res, err := RunFlow(ctx, w.client(t, tt.h2), tt.flow)
			require.NoError(t, err)
			assert.True(t, res.Verified)
			assert.Equal(t, http.StatusOK, res.Status)
			assert.Equal(t, tt.flow.ReqSize, res.BytesSent)
			assert.Equal(t, tt.flow.RespSize, res.BytesReceived)
			wantReq := PayloadSHA256(tt.flow.RequestSeed(), tt.flow.ReqSize)
			assert.Equal(t, hex.EncodeToString(wantReq[:]), res.RequestSHA256)
			assert.Positive(t, res.Duration)
			assert.LessOrEqual(t, res.Latency, res.Duration)
			wantProto := "HTTP/1.1"
			if tt.h2 && tt.flow.Scheme != "http" {
				wantProto = "HTTP/2.0"
			}
			assert.Equal(t, wantProto, res.Proto)

			rec := w.lastRecord(t)
			assert.Equal(t, tt.flow.Site, rec.Site)
			assert.True(t, rec.Verified)
			assert.Equal(t, res.RequestSHA256, rec.RequestSHA256)
			assert.Equal(t, res.RequestSHA256, rec.ClaimedSHA256)
			assert.Equal(t, res.ResponseSHA256, rec.ResponseSHA256)
			assert.Equal(t, tt.flow.ReqSize, rec.BytesIn)
			assert.Equal(t, tt.flow.RespSize, rec.BytesOut)
			assert.True(t, strings.HasPrefix(rec.Peer, "10.10.10.100:"), rec.Peer)
		})
	}
}

func TestCorruptedRequestBody(t *testing.T) {
	w := newWorld(t, nil)
	body := make([]byte, 4096)
	io.ReadFull(Payload(9, 4096), body)
	claimed := sha256.Sum256(body)
	body[100] ^= 0xff // altered on the way
	got := sha256.Sum256(body)

	req, err := http.NewRequest(http.MethodPost, "https://www.social.test/flow?resp=10&seed=1", bytes.NewReader(body))
	require.NoError(t, err)
	req.Header.Set(HeaderSHA256, hex.EncodeToString(claimed[:]))
	resp, err := w.client(t, true).Do(req)
	require.NoError(t, err)
	msg, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, http.StatusUnprocessableEntity, resp.StatusCode)
	assert.Contains(t, string(msg), hex.EncodeToString(claimed[:]))
	assert.Contains(t, string(msg), hex.EncodeToString(got[:]))
	assert.Equal(t, hex.EncodeToString(got[:]), resp.Header.Get(HeaderRequestSHA256))

	lines := w.accessLines(t)
	require.NotEmpty(t, lines)
	rec := lines[len(lines)-1]
	assert.False(t, rec.Verified)
	assert.Equal(t, http.StatusUnprocessableEntity, rec.Status)
	assert.Equal(t, hex.EncodeToString(claimed[:]), rec.ClaimedSHA256)
	assert.Equal(t, hex.EncodeToString(got[:]), rec.RequestSHA256)
	assert.Contains(t, rec.Error, "mismatch")
	assert.Contains(t, w.access.String(), `"verified":false`)
}

// corrupter is a RoundTripper that flips one byte of the request body or of
// the reply body, like a middlebox damaging a flow.
type corrupter struct {
	base     http.RoundTripper
	request  bool
	response bool
}

type flipReader struct {
	r    io.ReadCloser
	at   int64
	seen int64
}

func (f *flipReader) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if f.at >= f.seen && f.at < f.seen+int64(n) {
		p[f.at-f.seen] ^= 0x01
	}
	f.seen += int64(n)
	return n, err
}

func (f *flipReader) Close() error { return f.r.Close() }

func (c corrupter) RoundTrip(r *http.Request) (*http.Response, error) {
	if c.request && r.Body != nil && r.Body != http.NoBody {
		r = r.Clone(r.Context())
		r.Body = &flipReader{r: r.Body, at: 10}
		r.GetBody = nil
	}
	resp, err := c.base.RoundTrip(r)
	if err == nil && c.response {
		resp.Body = &flipReader{r: resp.Body, at: 1000}
	}
	return resp, err
}

func TestRunFlowDetectsCorruption(t *testing.T) {
	w := newWorld(t, nil)
	base := w.client(t, true)
	tests := []struct {
		name     string
		rt       corrupter
		leg      failure.Leg
		wantLeg  failure.Leg
		wantWhat string
	}{
		{"request altered, origin refuses", corrupter{request: true}, failure.LegGatewayOrigin, failure.LegGatewayOrigin, "request body at origin"},
		{"reply altered, client notices", corrupter{response: true}, "", failure.LegClientGateway, "reply body"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.rt.base = base.Transport
			client := &http.Client{Transport: tt.rt}
			f := Flow{Site: "www.social.test", ReqSize: 5000, RespSize: 5000, Seed: 11, Leg: tt.leg}
			res, err := RunFlow(context.Background(), client, f)
			require.Error(t, err)
			assert.False(t, res.Verified)
			assert.Equal(t, failure.CausePayloadMismatch, failure.CauseOf(err))
			assert.Equal(t, tt.wantLeg, failure.LegOf(err))
			var me *MismatchError
			require.ErrorAs(t, err, &me)
			assert.Equal(t, tt.wantWhat, me.What)
			assert.NotEqual(t, me.Want, me.Got)
			if tt.rt.response {
				assert.Contains(t, me.Got, "first differing byte at offset 1000")
			}
		})
	}
}

func TestRunFlowErrors(t *testing.T) {
	w := newWorld(t, nil)
	client := w.client(t, true)
	ctx := context.Background()

	_, err := RunFlow(ctx, client, Flow{Site: "nosuch.test"})
	assert.Equal(t, failure.CauseDNS, failure.CauseOf(err), "%v", err)
	assert.Equal(t, failure.LegClientGateway, failure.LegOf(err))

	_, err = RunFlow(ctx, client, Flow{Site: "login.mail.test", Scheme: "http"})
	assert.Equal(t, failure.CauseConnectionRefused, failure.CauseOf(err), "plain HTTP disabled: the host is up, the port closed")

	// A host that is down never answers: the flow times out.
	w.origin.SetDown(true)
	ctxShort, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	_, err = RunFlow(ctxShort, client, Flow{Site: "www.social.test", Scheme: "http"})
	cancel()
	w.origin.SetDown(false)
	assert.Equal(t, failure.CauseTimeout, failure.CauseOf(err), "%v", err)

	// A transport error that is already attributed keeps its leg and cause.
	blocked := &http.Client{Transport: &http.Transport{DialContext: func(context.Context, string, string) (net.Conn, error) {
		return nil, failure.New(failure.LegClientFirewall, failure.CausePolicyBlock, "dial", "192.0.2.10:443", nil)
	}}}
	_, err = RunFlow(ctx, blocked, Flow{Site: "www.social.test", Leg: failure.LegGatewayOrigin})
	assert.Equal(t, failure.CausePolicyBlock, failure.CauseOf(err))
	assert.Equal(t, failure.LegClientFirewall, failure.LegOf(err))

	// A client that does not trust the CA.
	untrusting := &http.Client{Transport: &http.Transport{DialContext: w.dial}}
	_, err = RunFlow(ctx, untrusting, Flow{Site: "www.social.test"})
	assert.Equal(t, failure.CauseUnknownAuthority, failure.CauseOf(err), "%v", err)
	untrusting.CloseIdleConnections()

	// Too large a request for the origin: 413, a protocol failure, not a mismatch.
	_, err = RunFlow(ctx, client, Flow{Site: "www.social.test", ReqSize: DefaultMaxBodySize + 1})
	assert.Equal(t, failure.CauseProtocol, failure.CauseOf(err))
	assert.ErrorContains(t, err, "413")

	for _, bad := range []Flow{{}, {Site: "a.test", Scheme: "ftp"}, {Site: "a.test", ReqSize: -1}, {Site: "a.test", RespSize: MaxPayloadSize + 1}, {Site: "a.test", Port: 70000}, {Site: "a.test", Leg: "sideways"}} {
		_, err := RunFlow(ctx, client, bad)
		assert.ErrorContains(t, err, "origin: Flow.", "%+v", bad)
	}
	_, err = RunFlow(ctx, nil, Flow{Site: "a.test"})
	assert.ErrorContains(t, err, "http.Client")
}

func TestUnknownSNIRefused(t *testing.T) {
	w := newWorld(t, nil)
	tests := []struct {
		name, addr, sni string
	}{
		{"name served nowhere", "192.0.2.10:443", "evil.test"},
		{"site served on another address", "192.0.2.10:443", "login.mail.test"},
		{"no SNI", "192.0.2.11:443", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw, err := w.laptop.DialContext(context.Background(), "tcp", tt.addr)
			require.NoError(t, err)
			defer raw.Close()
			c := tls.Client(raw, &tls.Config{ServerName: tt.sni, RootCAs: w.pki.Internet.Pool(), InsecureSkipVerify: tt.sni == ""})
			c.SetDeadline(time.Now().Add(5 * time.Second))
			err = c.Handshake()
			require.Error(t, err)
			assert.ErrorContains(t, err, "remote error: tls:", "the server sends an alert")
			assert.Equal(t, failure.CauseHandshakeFailed, classify(err))
			assert.Eventually(t, func() bool {
				return strings.Contains(w.logs.String(), "unknown SNI") && strings.Contains(w.logs.String(), `sni=`+tt.sni)
			}, 10*time.Second, 10*time.Millisecond, w.logs.String())
		})
	}
	assert.Contains(t, w.logs.String(), "peer=10.10.10.100:")
}

func TestH2Negotiation(t *testing.T) {
	w := newWorld(t, nil)
	for _, h2 := range []bool{true, false} {
		t.Run(fmt.Sprintf("h2=%v", h2), func(t *testing.T) {
			resp, err := w.client(t, h2).Get("https://app.files.test/")
			require.NoError(t, err)
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			rec := w.lastRecord(t)
			require.NotNil(t, rec.TLS)
			if h2 {
				assert.Equal(t, "HTTP/2.0", resp.Proto)
				assert.Equal(t, "h2", rec.TLS.ALPN)
			} else {
				assert.Equal(t, "HTTP/1.1", resp.Proto)
				assert.Equal(t, "http/1.1", rec.TLS.ALPN)
			}
			assert.Equal(t, "TLS 1.3", rec.TLS.Version)
			assert.Equal(t, "app.files.test", rec.TLS.SNI)
		})
	}
}

func TestEndpoints(t *testing.T) {
	w := newWorld(t, nil)
	tests := []struct {
		method, url string
		body        string
		header      map[string]string
		status      int
		contains    string
	}{
		{"GET", "https://www.social.test/", "", nil, 200, "<h1>www.social.test</h1>"},
		{"HEAD", "https://www.social.test/", "", nil, 200, ""},
		{"GET", "http://app.files.test/", "", nil, 200, "<h1>app.files.test</h1>"},
		{"GET", "https://www.social.test/payload?size=0", "", nil, 200, ""},
		{"GET", "https://www.social.test/payload", "", nil, 400, "parameter size is required"},
		{"GET", "https://www.social.test/payload?size=abc", "", nil, 400, `size="abc" is not a decimal integer`},
		{"GET", "https://www.social.test/payload?size=-1", "", nil, 400, "not a decimal integer"},
		{"GET", "https://www.social.test/payload?size=1073741825", "", nil, 400, "exceeds the limit 1073741824"},
		{"GET", "https://www.social.test/payload?size=1&seed=x", "", nil, 400, `seed="x"`},
		{"GET", "https://www.social.test/payload?size=1&sze=2", "", nil, 400, `unknown parameter "sze" (valid: size, seed)`},
		{"GET", "https://www.social.test/payload?size=1&size=2", "", nil, 400, "given 2 times"},
		{"GET", "https://www.social.test/payload?size=%zz", "", nil, 400, "bad query string"},
		{"POST", "https://www.social.test/payload?size=1", "", nil, 405, "allowed: GET, HEAD"},
		{"POST", "https://www.social.test/flow?resp=1", "", nil, 400, "X-Pinwall-Sha256 (the hex SHA-256 of the body) is required"},
		{"POST", "https://www.social.test/flow?resp=1", "", map[string]string{HeaderSHA256: "abc"}, 400, "is not a hex SHA-256"},
		{"POST", "https://www.social.test/flow", "", map[string]string{HeaderSHA256: emptySHA}, 400, "parameter resp is required"},
		{"POST", "https://www.social.test/flow?resp=2000000000", "", map[string]string{HeaderSHA256: emptySHA}, 400, "exceeds the limit"},
		{"GET", "https://www.social.test/flow?resp=1", "", nil, 405, "allowed: POST"},
		{"POST", "https://www.social.test/echo?x=1", "", nil, 400, "this path takes none"},
		{"GET", "https://www.social.test/nope", "", nil, 404, "no such path"},
		{"GET", "https://www.social.test/", "", map[string]string{"Host": "app.files.test"}, 421, "does not match the TLS server name"},
		{"GET", "http://www.social.test/", "", map[string]string{"Host": "login.mail.test"}, 421, `no site "login.mail.test"`},
	}
	client := w.client(t, true)
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.url+" "+tt.header["Host"], func(t *testing.T) {
			req, err := http.NewRequest(tt.method, tt.url, strings.NewReader(tt.body))
			require.NoError(t, err)
			for k, v := range tt.header {
				if k == "Host" {
					req.Host = v
					continue
				}
				req.Header.Set(k, v)
			}
			resp, err := client.Do(req)
			require.NoError(t, err)
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			assert.Equal(t, tt.status, resp.StatusCode, string(b))
			assert.Contains(t, string(b), tt.contains)
			rec := w.lastRecord(t)
			assert.Equal(t, tt.status, rec.Status)
			if tt.status >= 400 {
				assert.NotEmpty(t, rec.Error)
			}
		})
	}
}

const emptySHA = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

func TestPayloadEndpoint(t *testing.T) {
	w := newWorld(t, nil)
	resp, err := w.client(t, true).Get("https://www.social.test/payload?size=300000&seed=77")
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	want := PayloadSHA256(77, 300000)
	assert.Equal(t, want, sha256.Sum256(b))
	assert.Equal(t, hex.EncodeToString(want[:]), resp.Header.Get(HeaderSHA256))
	assert.Equal(t, "300000", resp.Header.Get("Content-Length"))
	assert.Equal(t, "www.social.test", resp.Header.Get(HeaderSite))
}

func TestEcho(t *testing.T) {
	w := newWorld(t, nil)
	body := make([]byte, 1<<20+13)
	io.ReadFull(Payload(5, int64(len(body))), body)
	for _, h2 := range []bool{true, false} {
		t.Run(fmt.Sprintf("h2=%v", h2), func(t *testing.T) {
			resp, err := w.client(t, h2).Post("https://login.mail.test/echo", "application/octet-stream", bytes.NewReader(body))
			require.NoError(t, err)
			got, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			require.NoError(t, err)
			assert.Equal(t, http.StatusOK, resp.StatusCode)
			assert.True(t, bytes.Equal(body, got), "echoed %d bytes", len(got))
			rec := w.lastRecord(t)
			assert.EqualValues(t, len(body), rec.BytesIn)
			assert.EqualValues(t, len(body), rec.BytesOut)
			sum := sha256.Sum256(body)
			assert.Equal(t, hex.EncodeToString(sum[:]), rec.RequestSHA256)
			assert.False(t, rec.Verified, "nothing claimed, nothing verified")
		})
	}
}

func TestBodyCap(t *testing.T) {
	w := newWorld(t, func(c *Config) { c.MaxBodySize = 1000 })
	client := w.client(t, false)
	tests := []struct {
		name    string
		path    string
		chunked bool
	}{
		{"flow, length declared", "/flow?resp=0", false},
		{"flow, chunked", "/flow?resp=0", true},
		{"echo, length declared", "/echo", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var body io.Reader = bytes.NewReader(make([]byte, 5000))
			if tt.chunked {
				body = io.MultiReader(body) // hides the length
			}
			req, err := http.NewRequest(http.MethodPost, "https://www.social.test"+tt.path, body)
			require.NoError(t, err)
			req.Header.Set(HeaderSHA256, emptySHA)
			resp, err := client.Do(req)
			require.NoError(t, err)
			msg, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			assert.Equal(t, http.StatusRequestEntityTooLarge, resp.StatusCode)
			assert.Contains(t, string(msg), "limit")
		})
	}
}

func TestAccessLog(t *testing.T) {
	var fixed = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	w := newWorld(t, func(c *Config) {
		c.RecentRecords = 3
		c.Now = func() time.Time { return fixed }
	})
	client := w.client(t, true)
	for i := range 5 {
		resp, err := client.Get("https://www.social.test/payload?size=" + strconv.Itoa(i*10) + "&seed=3")
		require.NoError(t, err)
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	recs := w.srv.Records()
	require.Len(t, recs, 3, "the ring keeps the newest three")
	assert.Equal(t, []int64{20, 30, 40}, []int64{recs[0].BytesOut, recs[1].BytesOut, recs[2].BytesOut})
	assert.EqualValues(t, 5, w.srv.Requests())

	lines := w.accessLines(t)
	require.Len(t, lines, 5)
	r := lines[4]
	assert.Equal(t, fixed, r.Time)
	assert.Equal(t, "www.social.test", r.Site)
	assert.True(t, strings.HasPrefix(r.Peer, "10.10.10.100:"), r.Peer)
	assert.Equal(t, "192.0.2.10:443", r.Local)
	assert.Equal(t, &TLSInfo{Version: "TLS 1.3", SNI: "www.social.test", ALPN: "h2", Cipher: r.TLS.Cipher}, r.TLS)
	assert.Equal(t, "GET", r.Method)
	assert.Equal(t, "/payload", r.Path)
	assert.Equal(t, "size=40&seed=3", r.Query)
	assert.EqualValues(t, 40, r.BytesOut)
	assert.Equal(t, 200, r.Status)
	assert.Zero(t, r.DurationMS, "duration comes from the injected clock")
	sum := PayloadSHA256(3, 40)
	assert.Equal(t, hex.EncodeToString(sum[:]), r.ResponseSHA256)

	// The raw line has the documented field names.
	last := strings.Split(strings.TrimSpace(w.access.String()), "\n")[4]
	assert.Contains(t, last, `"query":"size=40&seed=3"`, "no HTML escaping")
	for _, field := range []string{`"time"`, `"site"`, `"peer"`, `"tls":{"version"`, `"sni"`, `"alpn"`, `"method"`, `"path"`, `"bytes_in"`, `"bytes_out"`, `"verified"`, `"status"`, `"duration_ms"`} {
		assert.Contains(t, last, field)
	}
}

func TestPlainHTTPDisabled(t *testing.T) {
	w := newWorld(t, nil)
	eps := w.srv.Endpoints()
	var addrs []string
	for _, e := range eps {
		addrs = append(addrs, fmt.Sprintf("%s tls=%v %v", e.Addr, e.TLS, e.Sites))
	}
	assert.Equal(t, []string{
		"192.0.2.10:80 tls=false [app.files.test www.social.test]",
		"192.0.2.10:443 tls=true [app.files.test www.social.test]",
		"192.0.2.11:443 tls=true [login.mail.test]",
	}, addrs)
	real := w.srv.RealAddrs()
	require.Len(t, real, 3)
	for logical, r := range real {
		lb, _ := w.sim.Loopback(logical.Addr())
		assert.Equal(t, lb, r.Addr())
		assert.NotZero(t, r.Port())
	}
}

func TestNewValidation(t *testing.T) {
	set, err := pki.NewSet(pki.Config{}, "acme")
	require.NoError(t, err)
	certs := func(name string) (*tls.Certificate, error) { return set.ServerCert(name) }
	sim := hostnet.NewSim(nil)
	host, err := sim.AddHost("origin", originIP)
	require.NoError(t, err)
	a := []netip.Addr{originIP}
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"no stack", Config{Sites: []Site{{Name: "a.test", Addrs: a}}}, "Config.Stack is required"},
		{"no sites", Config{Stack: host}, "Config.Sites is empty"},
		{"empty name", Config{Stack: host, Sites: []Site{{Addrs: a}}, Certificates: certs}, "site name is empty"},
		{"bad name", Config{Stack: host, Sites: []Site{{Name: "a_b.test", Addrs: a}}, Certificates: certs}, "invalid character"},
		{"ip as name", Config{Stack: host, Sites: []Site{{Name: "192.0.2.10", Addrs: a}}, Certificates: certs}, "is an IP address"},
		{"duplicate", Config{Stack: host, Sites: []Site{{Name: "a.test", Addrs: a}, {Name: "A.test.", Addrs: a}}, Certificates: certs}, "listed twice"},
		{"no address", Config{Stack: host, Sites: []Site{{Name: "a.test"}}, Certificates: certs}, "has no address"},
		{"bad port", Config{Stack: host, Sites: []Site{{Name: "a.test", Addrs: a, HTTPPort: 70000}}, Certificates: certs}, "HTTPPort: 70000 is not a port"},
		{"all disabled", Config{Stack: host, Sites: []Site{{Name: "a.test", Addrs: a, HTTPPort: -1, HTTPSPort: -1}}}, "disables both"},
		{"https without certs", Config{Stack: host, Sites: []Site{{Name: "a.test", Addrs: a}}}, "Certificates is nil"},
		{"cert error", Config{Stack: host, Sites: []Site{{Name: "a.test", Addrs: a}}, Certificates: CertMap(nil)}, `no certificate for "a.test"`},
		{"cert for another name", Config{Stack: host, Sites: []Site{{Name: "a.test", Addrs: a}}, Certificates: func(string) (*tls.Certificate, error) { return set.ServerCert("b.test") }}, "certificate for a.test"},
		{"port both http and https", Config{Stack: host, Sites: []Site{{Name: "a.test", Addrs: a, HTTPPort: 8443}, {Name: "b.test", Addrs: a, HTTPPort: -1, HTTPSPort: 8443}}, Certificates: certs}, "both an HTTP and an HTTPS port"},
		{"negative body cap", Config{Stack: host, Sites: []Site{{Name: "a.test", Addrs: a}}, Certificates: certs, MaxBodySize: -1}, "MaxBodySize"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.cfg)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
			assert.True(t, strings.HasPrefix(err.Error(), "origin: "), err.Error())
		})
	}

	// A map works as well as a function; plain HTTP needs no certificate.
	cert, err := set.ServerCert("a.test")
	require.NoError(t, err)
	_, err = New(Config{Stack: host, Sites: []Site{{Name: "a.test", Addrs: a}}, Certificates: CertMap(map[string]*tls.Certificate{"A.TEST": cert})})
	assert.NoError(t, err)
	_, err = New(Config{Stack: host, Sites: []Site{{Name: "a.test", Addrs: a, HTTPSPort: -1}}})
	assert.NoError(t, err)
}

func TestLifecycle(t *testing.T) {
	set, err := pki.NewSet(pki.Config{}, "acme")
	require.NoError(t, err)
	sim := hostnet.NewSim(nil)
	host, err := sim.AddHost("origin", originIP)
	require.NoError(t, err)
	client, err := sim.AddHost("laptop", laptopIP)
	require.NoError(t, err)
	cfg := Config{Stack: host, Sites: []Site{{Name: "a.test", Addrs: []netip.Addr{originIP}}},
		Certificates: func(name string) (*tls.Certificate, error) { return set.ServerCert(name) }}

	t.Run("close before start", func(t *testing.T) {
		s, err := New(cfg)
		require.NoError(t, err)
		assert.NoError(t, s.Close())
		assert.ErrorContains(t, s.Start(context.Background()), "Start after Close")
	})
	t.Run("start twice, close twice", func(t *testing.T) {
		s, err := New(cfg)
		require.NoError(t, err)
		require.NoError(t, s.Start(context.Background()))
		assert.ErrorContains(t, s.Start(context.Background()), "Start called twice")
		assert.NoError(t, s.Close())
		assert.NoError(t, s.Close())
	})
	t.Run("stops with its context and frees the ports", func(t *testing.T) {
		s, err := New(cfg)
		require.NoError(t, err)
		ctx, cancel := context.WithCancel(context.Background())
		require.NoError(t, s.Start(ctx))
		c, err := client.DialContext(context.Background(), "tcp", "192.0.2.10:443")
		require.NoError(t, err)
		c.Close()
		cancel()
		require.NoError(t, s.Close())
		s2, err := New(cfg)
		require.NoError(t, err)
		require.NoError(t, s2.Start(context.Background()), "same ports again")
		require.NoError(t, s2.Close())
	})
	t.Run("listen failure closes what was opened", func(t *testing.T) {
		// 192.0.2.99 belongs to another host: the origin cannot listen there.
		_, err := sim.AddHost("other", netip.MustParseAddr("192.0.2.99"))
		require.NoError(t, err)
		bad := cfg
		bad.Sites = []Site{{Name: "a.test", Addrs: []netip.Addr{originIP, netip.MustParseAddr("192.0.2.99")}}}
		s, err := New(bad)
		require.NoError(t, err)
		err = s.Start(context.Background())
		assert.ErrorContains(t, err, "origin: listen on 192.0.2.99:")
		require.NoError(t, s.Close())
		s2, err := New(cfg)
		require.NoError(t, err)
		require.NoError(t, s2.Start(context.Background()), "192.0.2.10 ports were released")
		require.NoError(t, s2.Close())
	})
	closeWithin := func(t *testing.T, s *Server) {
		t.Helper()
		done := make(chan struct{})
		go func() { s.Close(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("Close hung with a request in flight")
		}
	}
	newClient := func(t *testing.T) *http.Client {
		tr := &http.Transport{
			DialContext: func(ctx context.Context, n, _ string) (net.Conn, error) {
				return client.DialContext(ctx, n, "192.0.2.10:443")
			},
			TLSClientConfig: &tls.Config{RootCAs: set.Internet.Pool()},
		}
		t.Cleanup(tr.CloseIdleConnections)
		return &http.Client{Transport: tr}
	}
	t.Run("close interrupts a download", func(t *testing.T) {
		s, err := New(cfg)
		require.NoError(t, err)
		require.NoError(t, s.Start(context.Background()))
		resp, err := newClient(t).Get("https://a.test/payload?size=" + strconv.Itoa(64<<20))
		require.NoError(t, err)
		defer resp.Body.Close()
		_, err = io.ReadFull(resp.Body, make([]byte, 1<<20))
		require.NoError(t, err)
		closeWithin(t, s)
		_, err = io.Copy(io.Discard, resp.Body)
		assert.Error(t, err, "the download was cut")
	})
	t.Run("close interrupts the hashing of a 1 GiB payload", func(t *testing.T) {
		s, err := New(cfg)
		require.NoError(t, err)
		// A real 1 GiB hash can finish before Close on a loaded machine;
		// this one lasts until its request is cancelled.
		hashing := make(chan struct{})
		s.hashes.hash = func(ctx context.Context, _ uint64, _ int64) ([32]byte, error) {
			close(hashing)
			<-ctx.Done()
			return [32]byte{}, ctx.Err()
		}
		require.NoError(t, s.Start(context.Background()))
		got := make(chan error, 1)
		go func() {
			resp, err := newClient(t).Get("https://a.test/payload?size=1073741824")
			if err == nil {
				resp.Body.Close()
			}
			got <- err
		}()
		select {
		case <-hashing:
		case <-time.After(10 * time.Second):
			t.Fatal("the handler never started hashing")
		}
		closeWithin(t, s)
		assert.Error(t, <-got, "no reply: the server closed while hashing")
		recs := s.Records()
		require.Len(t, recs, 1)
		assert.Equal(t, 499, recs[0].Status)
		assert.Contains(t, recs[0].Error, "client gone while hashing")
	})
}

// TestCurl fetches a page and a payload with the real curl over the real
// loopback socket behind 192.0.2.10:443, trusting only the run's internet CA.
func TestCurl(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("curl not found in PATH: skipping the interop test with curl --resolve")
	}
	w := newWorld(t, nil)
	real := w.srv.RealAddrs()[netip.MustParseAddrPort("192.0.2.10:443")]
	require.True(t, real.IsValid())
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	require.NoError(t, os.WriteFile(caFile, w.pki.Internet.CertPEM(), 0o600))
	port := strconv.Itoa(int(real.Port()))
	resolveArg := "www.social.test:" + port + ":" + real.Addr().String()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	run := func(args ...string) string {
		t.Helper()
		cmd := exec.CommandContext(ctx, curl, append([]string{"-sS", "--max-time", "20", "--resolve", resolveArg, "--cacert", caFile}, args...)...)
		cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
		out, err := cmd.Output()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("curl %v: %v: %s", args, err, ee.Stderr)
		}
		require.NoError(t, err)
		return string(out)
	}

	page := run("https://www.social.test:" + port + "/")
	assert.Contains(t, page, "<h1>www.social.test</h1>")

	proto := run("-o", os.DevNull, "-w", "%{http_version}", "https://www.social.test:"+port+"/")
	if strings.Contains(run("--version"), "HTTP2") {
		assert.Equal(t, "2", proto, "curl negotiates h2 by ALPN")
	}

	out := filepath.Join(t.TempDir(), "payload")
	headers := run("-D", "-", "-o", out, "https://www.social.test:"+port+"/payload?size=123457&seed=99")
	b, err := os.ReadFile(out)
	require.NoError(t, err)
	want := PayloadSHA256(99, 123457)
	assert.Equal(t, want, sha256.Sum256(b))
	assert.Contains(t, strings.ToLower(headers), strings.ToLower(HeaderSHA256)+": "+hex.EncodeToString(want[:]))

	rec := w.lastRecord(t)
	assert.Equal(t, "www.social.test", rec.Site)
	assert.Contains(t, rec.Peer, "127.0.0.1:", "curl is outside the simulation: its real address is logged")
}

// BenchmarkRunFlow measures whole flows (both payloads generated, hashed,
// sent over TLS on the simulated network and verified).
func BenchmarkRunFlow(b *testing.B) {
	w := newWorld(b, nil)
	for _, size := range []int64{1 << 10, 1 << 20, 16 << 20} {
		for _, h2 := range []bool{false, true} {
			proto := "h1"
			if h2 {
				proto = "h2"
			}
			b.Run(byteSize(size)+"/"+proto, func(b *testing.B) {
				client := w.client(b, h2)
				b.SetBytes(2 * size)
				var seed uint64
				for b.Loop() {
					seed++
					res, err := RunFlow(context.Background(), client, Flow{Site: "www.social.test", ReqSize: size, RespSize: size, Seed: seed})
					if err != nil || !res.Verified {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
