package mitm_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/csv"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pinwall/pinwall/failure"
	"github.com/pinwall/pinwall/hostnet"
	"github.com/pinwall/pinwall/internal/syncbuf"
	"github.com/pinwall/pinwall/mitm"
	"github.com/pinwall/pinwall/mitm/fwlog"
	"github.com/pinwall/pinwall/mitm/policy"
	"github.com/pinwall/pinwall/pki"
	"github.com/pinwall/pinwall/resolve"
)

// Every session the firewall sees is logged, whatever became of it, in
// every format: a failure path that builds an invalid record loses the
// session from the JSON, PAN-OS, FortiOS and CEF logs at once.

// blackhole is an outside network where nothing answers: every dial waits
// for its deadline, like a SYN to a host that drops it.
type blackhole struct{ hostnet.OS }

func (blackhole) DialContext(ctx context.Context, _, _ string) (net.Conn, error) {
	<-ctx.Done()
	return nil, &net.OpError{Op: "dial", Net: "tcp", Err: ctx.Err()}
}

// formatLogs is one buffer per log format of a firewall.
type formatLogs map[fwlog.Format]*syncbuf.Buffer

func newFormatLogs() (formatLogs, []fwlog.Logger) {
	logs := formatLogs{}
	var writers []fwlog.Logger
	for _, f := range fwlog.Formats() {
		logs[f] = &syncbuf.Buffer{}
		writers = append(writers, fwlog.NewWriter(logs[f], f))
	}
	return logs, writers
}

// requireInEveryFormat checks that rec was written in every format: the
// JSON line equal to the record kept in memory, a PAN-OS TRAFFIC line, a
// PAN-OS DECRYPTION line exactly when a decryption rule applied, a FortiOS
// traffic line and a CEF event, each naming the session.
func (l formatLogs) requireInEveryFormat(t *testing.T, rec fwlog.Record) {
	t.Helper()
	id := strconv.FormatUint(rec.SessionID, 10)

	got, err := fwlog.ReadJSONL(strings.NewReader(l[fwlog.FormatJSON].String()))
	require.NoError(t, err)
	i := slices.IndexFunc(got, func(r fwlog.Record) bool { return r.SessionID == rec.SessionID })
	require.GreaterOrEqual(t, i, 0, "session %d missing from the JSON log:\n%s", rec.SessionID, l[fwlog.FormatJSON])
	assert.Equal(t, rec.EndReason, got[i].EndReason)
	assert.Equal(t, rec.Outcome(), got[i].Outcome())
	require.NoError(t, got[i].Validate())

	// Session ID is field 23 of both PAN-OS lines (TRAFFIC 9.1,
	// DECRYPTION 10.0).
	const panSessionID = 22
	csvWith := func(f fwlog.Format) [][]string {
		rows, err := csv.NewReader(strings.NewReader(l[f].String())).ReadAll()
		require.NoError(t, err, "%s", f)
		var out [][]string
		for _, row := range rows {
			if len(row) > panSessionID && row[panSessionID] == id {
				out = append(out, row)
			}
		}
		return out
	}
	traffic := csvWith(fwlog.FormatPANTraffic)
	require.Len(t, traffic, 1, "PAN-OS TRAFFIC lines of session %s:\n%s", id, l[fwlog.FormatPANTraffic])
	assert.Contains(t, traffic[0], string(rec.EndReason))
	decryption := csvWith(fwlog.FormatPANDecryption)
	if rec.Decryption != nil {
		require.Len(t, decryption, 1, "PAN-OS DECRYPTION lines of session %s:\n%s", id, l[fwlog.FormatPANDecryption])
	} else {
		assert.Empty(t, decryption, "a session no decryption rule matched has no DECRYPTION line, as on PAN-OS")
	}

	var forti []string
	for line := range strings.Lines(l[fwlog.FormatFortiOS].String()) {
		if strings.Contains(line, "sessionid="+id+" ") && strings.Contains(line, `type="traffic"`) {
			forti = append(forti, line)
		}
	}
	require.Len(t, forti, 1, "FortiOS traffic lines of session %s:\n%s", id, l[fwlog.FormatFortiOS])

	var cef []string
	for line := range strings.Lines(l[fwlog.FormatCEF].String()) {
		if strings.HasPrefix(line, "CEF:0|") && strings.Contains(line, " externalId="+id+" ") {
			cef = append(cef, line)
		}
	}
	require.Len(t, cef, 1, "CEF events of session %s:\n%s", id, l[fwlog.FormatCEF])
	assert.Contains(t, cef[0], "|"+string(rec.EndReason)+"|")
}

// sessionLab is a firewall forwarding to one upstream, writing every
// format.
type sessionLab struct {
	fw   *mitm.Firewall
	addr string
	logs formatLogs
	sink *logSink
	pki  *pki.Set
	done chan error
}

func startSessionLab(t *testing.T, set *pki.Set, rules string, up netip.AddrPort, outside hostnet.Stack) *sessionLab {
	t.Helper()
	pol, err := policy.Parse("session-policy.yaml", []byte(rules))
	require.NoError(t, err)
	zone, err := resolve.NewZone(resolve.Record{Name: siteName, Addrs: []netip.Addr{up.Addr()}})
	require.NoError(t, err)
	logs, writers := newFormatLogs()
	sink := newLogSink()
	fw, err := mitm.New(mitm.Config{
		Outside: outside, Policy: pol, CA: set.Enterprise, Roots: set.Internet.Pool(), Resolver: zone,
		Writers: writers, Logger: slog.New(sink),
		PeekTimeout: 2 * time.Second, HandshakeTimeout: 2 * time.Second, DialTimeout: 300 * time.Millisecond,
	})
	require.NoError(t, err)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fw.Close()
		require.NoError(t, err)
	}
	lab := &sessionLab{fw: fw, addr: l.Addr().String(), logs: logs, sink: sink, pki: set, done: make(chan error, 1)}
	go func() { lab.done <- fw.ServeForward(context.Background(), l, up) }()
	t.Cleanup(func() { lab.close(t) })
	return lab
}

func (l *sessionLab) close(t *testing.T) {
	require.NoError(t, l.fw.Close())
	select {
	case err := <-l.done:
		require.NoError(t, err)
	default:
		// already collected
	}
}

// closedPort returns a loopback address nothing listens on.
func closedPort(t *testing.T, _ *pki.Set) netip.AddrPort {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ap := netip.MustParseAddrPort(l.Addr().String())
	require.NoError(t, l.Close())
	return ap
}

// hangUpServer accepts TCP connections and closes each at once: a TLS
// handshake with it fails.
func hangUpServer(t *testing.T, _ *pki.Set) netip.AddrPort {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	t.Cleanup(func() { l.Close(); <-done })
	return netip.MustParseAddrPort(l.Addr().String())
}

// tlsOrigin serves siteName over TLS with a certificate of set's internet CA.
func tlsOrigin(t *testing.T, set *pki.Set) netip.AddrPort {
	t.Helper()
	cert, err := set.ServerCert(siteName)
	require.NoError(t, err)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") }))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{*cert}}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return netip.MustParseAddrPort(srv.Listener.Addr().String())
}

// tlsClient runs a TLS handshake to the firewall as a client trusting the
// enterprise CA would, and returns its error.
func tlsClient(t *testing.T, addr string, set *pki.Set) error {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	require.NoError(t, err)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return tls.Client(c, &tls.Config{ServerName: siteName, RootCAs: set.Enterprise.Pool()}).HandshakeContext(ctx)
}

const decryptLoopback = `rules:
  - name: decrypt-loopback
    match: { proto: tcp, dst: [127.0.0.1/32] }
    action: decrypt
`

const blockLoopback = `rules:
  - name: block-loopback
    match: { proto: tcp, dst: [127.0.0.1/32] }
    action: block
`

func TestEverySessionLoggedInEveryFormat(t *testing.T) {
	set, err := pki.NewSet(pki.Config{}, "acme")
	require.NoError(t, err)

	tests := []struct {
		name    string
		rules   string
		up      func(t *testing.T, set *pki.Set) netip.AddrPort
		outside hostnet.Stack
		client  func(t *testing.T, addr string)
		check   func(t *testing.T, r fwlog.Record)
	}{
		{
			name: "upstream refused", rules: decryptLoopback, up: closedPort,
			client: func(t *testing.T, addr string) { require.Error(t, tlsClient(t, addr, set)) },
			check: func(t *testing.T, r fwlog.Record) {
				require.NotNil(t, r.Decryption)
				assert.Equal(t, fwlog.OutcomeFailed, r.Decryption.Outcome)
				assert.Equal(t, failure.LegFirewallGateway, r.Decryption.Leg)
				assert.Equal(t, failure.CauseConnectionRefused, r.Decryption.Cause)
				assert.Equal(t, fwlog.EndTCPRSTFromServer, r.EndReason)
				assert.Contains(t, r.Reason, "destination unreachable")
				assert.Equal(t, siteName, r.SNI)
			},
		},
		{
			name: "upstream timeout", rules: decryptLoopback, up: closedPort, outside: blackhole{},
			client: func(t *testing.T, addr string) { require.Error(t, tlsClient(t, addr, set)) },
			check: func(t *testing.T, r fwlog.Record) {
				require.NotNil(t, r.Decryption)
				assert.Equal(t, fwlog.OutcomeFailed, r.Decryption.Outcome)
				assert.Equal(t, failure.LegFirewallGateway, r.Decryption.Leg)
				assert.Equal(t, failure.CauseTimeout, r.Decryption.Cause)
				assert.Equal(t, fwlog.EndAgedOut, r.EndReason)
				assert.Contains(t, r.Decryption.Reason, "destination unreachable")
			},
		},
		{
			name: "upstream TLS failure", rules: decryptLoopback, up: hangUpServer,
			client: func(t *testing.T, addr string) { require.Error(t, tlsClient(t, addr, set)) },
			check: func(t *testing.T, r fwlog.Record) {
				require.NotNil(t, r.Decryption)
				assert.Equal(t, fwlog.OutcomeFailed, r.Decryption.Outcome)
				assert.Equal(t, failure.LegFirewallGateway, r.Decryption.Leg)
				assert.Equal(t, fwlog.EndDecryptError, r.EndReason)
				assert.Contains(t, r.Decryption.Reason, "handshake with server failed")
			},
		},
		{
			name: "client abort before its hello", rules: decryptLoopback, up: hangUpServer,
			client: func(t *testing.T, addr string) {
				c, err := net.Dial("tcp", addr)
				require.NoError(t, err)
				_, err = c.Write(helloPrefix(200, 196)[:7])
				require.NoError(t, err)
				require.NoError(t, c.Close())
			},
			check: func(t *testing.T, r fwlog.Record) {
				assert.Nil(t, r.Decryption, "no hello, no decryption decided")
				assert.Equal(t, fwlog.AppIncomplete, r.App)
				assert.Equal(t, fwlog.EndTCPFin, r.EndReason)
			},
		},
		{
			name: "client abort during the handshake", rules: decryptLoopback, up: tlsOrigin,
			client: func(t *testing.T, addr string) {
				// The client sees the forged certificate and hangs up
				// without an alert, as an agent shutting down does.
				c, err := net.Dial("tcp", addr)
				require.NoError(t, err)
				tc := tls.Client(c, &tls.Config{ServerName: siteName, InsecureSkipVerify: true,
					VerifyConnection: func(tls.ConnectionState) error { c.Close(); return io.EOF }})
				require.Error(t, tc.Handshake())
			},
			check: func(t *testing.T, r fwlog.Record) {
				require.NotNil(t, r.Decryption)
				assert.Equal(t, fwlog.OutcomeFailed, r.Decryption.Outcome)
				assert.Equal(t, failure.LegClientFirewall, r.Decryption.Leg)
				assert.Equal(t, failure.CauseConnectionReset, r.Decryption.Cause)
				assert.NotEmpty(t, r.Decryption.ForgedFingerprint)
			},
		},
		{
			name: "policy block", rules: blockLoopback, up: hangUpServer,
			client: func(t *testing.T, addr string) { require.Error(t, tlsClient(t, addr, set)) },
			check: func(t *testing.T, r fwlog.Record) {
				assert.Nil(t, r.Decryption)
				assert.Equal(t, "block-loopback", r.Rule)
				assert.Equal(t, fwlog.ActionResetBoth, r.Action)
				assert.Equal(t, fwlog.EndPolicyDeny, r.EndReason)
				assert.Equal(t, siteName, r.SNI)
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			outside := tt.outside
			if outside == nil {
				outside = hostnet.OS{}
			}
			lab := startSessionLab(t, set, tt.rules, tt.up(t, set), outside)
			tt.client(t, lab.addr)
			recs := waitRecords(t, lab.fw, 1)
			require.Len(t, recs, 1)
			r := recs[0]
			require.NoError(t, r.Validate())
			if r.Decryption != nil {
				assert.NotEmpty(t, r.Decryption.Outcome)
				assert.NotEmpty(t, r.Decryption.Reason, "every decryption outcome says why")
			}
			tt.check(t, r)
			lab.logs.requireInEveryFormat(t, r)
			assert.Zero(t, lab.sink.count("mitm: session record refused"))
			assert.Zero(t, lab.sink.count("mitm: session ended with no decryption outcome, logging it as failed"))
		})
	}
}

// TestShutdownIsNotAMalformedHello: connections the firewall closes itself
// when it shuts down are logged with that reason, not as malformed
// ClientHellos.
func TestShutdownIsNotAMalformedHello(t *testing.T) {
	set, err := pki.NewSet(pki.Config{}, "acme")
	require.NoError(t, err)
	lab := startSessionLab(t, set, decryptLoopback, hangUpServer(t, set), hostnet.OS{})
	const clients = 3
	for range clients {
		c, err := net.Dial("tcp", lab.addr)
		require.NoError(t, err)
		t.Cleanup(func() { c.Close() })
		_, err = c.Write(helloPrefix(200, 196)) // a hello that never finishes
		require.NoError(t, err)
	}
	require.Eventually(t, func() bool { return lab.fw.ActiveSessions() == clients }, 10*time.Second, time.Millisecond)
	lab.close(t)

	recs := lab.fw.Records()
	require.Len(t, recs, clients, "every session is logged at shutdown")
	for _, r := range recs {
		assert.Equal(t, fwlog.AppIncomplete, r.App)
		assert.Equal(t, fwlog.EndAgedOut, r.EndReason)
		assert.Contains(t, r.Reason, "firewall shut down")
		lab.logs.requireInEveryFormat(t, r)
		assert.Contains(t, lab.logs[fwlog.FormatCEF].String(), "msg=firewall shut down")
	}
	assert.Zero(t, lab.sink.count(msgMalformed))
	assert.False(t, bytes.Contains([]byte(lab.logs[fwlog.FormatJSON].String()), []byte(`"end_reason":"decrypt-unsupport-param"`)))
}
