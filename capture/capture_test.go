package capture_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/pinwall/pinwall/capture"
	"github.com/pinwall/pinwall/capture/capturetest"
	"github.com/pinwall/pinwall/pcapng"
	"github.com/pinwall/pinwall/pki"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// serverTLS returns a server certificate for "origin.test" and a pool trusting it.
func serverTLS(t *testing.T) (*tls.Certificate, *tls.Config) {
	t.Helper()
	ca, err := pki.NewCA(pki.Config{}, "capture test CA", "pinwall")
	require.NoError(t, err)
	cert, err := ca.Issue(pki.Leaf{Subject: pkix.Name{CommonName: "origin.test"}, DNSNames: []string{"origin.test"}, Usage: pki.ServerAuth})
	require.NoError(t, err)
	return cert, &tls.Config{RootCAs: ca.Pool(), ServerName: "origin.test"}
}

// readPackets returns every packet of a pcapng file with its interface name.
func readPackets(t *testing.T, file []byte) (ifaces []pcapng.Interface, pkts []pcapng.Packet, secrets [][]byte) {
	t.Helper()
	r, err := pcapng.NewReader(bytes.NewReader(file))
	require.NoError(t, err)
	for {
		b, err := r.Next()
		if errors.Is(err, io.EOF) {
			return
		}
		require.NoError(t, err)
		switch v := b.(type) {
		case *pcapng.Interface:
			ifaces = append(ifaces, *v)
		case *pcapng.Packet:
			c := *v
			c.Data = bytes.Clone(v.Data)
			pkts = append(pkts, c)
		case *pcapng.Secrets:
			secrets = append(secrets, bytes.Clone(v.Data))
		}
	}
}

// TestTLSOverRecordedTCP runs HTTPS over a recorded connection and reads
// the capture back with tshark: the handshake, the decrypted request and
// response, no TCP analysis warning, good checksums.
func TestTLSOverRecordedTCP(t *testing.T) {
	rec := capture.New(capture.Config{Seed: 7, Comment: "capture test"})
	cert, clientCfg := serverTLS(t)
	body := bytes.Repeat([]byte("pinwall "), 40000) // 320 KB: many segments, acknowledged as they go
	srv := &http.Server{
		Handler:   http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(body) }),
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{*cert}},
	}
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	require.NoError(t, err)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = srv.ServeTLS(l, "", "") }()
	t.Cleanup(func() { srv.Close(); wg.Wait() })

	leg := rec.Leg("laptop-origin", "the laptop and the origin")
	clientCfg.KeyLogWriter = rec.KeyLog()
	// The transport closes a connection after its body is read, on its own
	// goroutine; the capture is read once both closes (the FINs) are in.
	var closed sync.WaitGroup
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			c, err := d.DialContext(ctx, network, l.Addr().String())
			if err != nil {
				return nil, err
			}
			closed.Add(1)
			return &closeDone{Conn: leg.Conn(c), done: closed.Done}, nil
		},
		TLSClientConfig:   clientCfg,
		DisableKeepAlives: true,
		ForceAttemptHTTP2: false,
	}
	defer tr.CloseIdleConnections()
	for i := range 2 {
		resp, err := (&http.Client{Transport: tr}).Get(fmt.Sprintf("https://origin.test:%d/hello/%d", l.Addr().(*net.TCPAddr).Port, i))
		require.NoError(t, err)
		got, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, body, got)
	}
	tr.CloseIdleConnections()
	closed.Wait()

	var buf bytes.Buffer
	_, err = rec.WriteTo(&buf)
	require.NoError(t, err)
	ifaces, pkts, secrets := readPackets(t, buf.Bytes())
	require.Len(t, ifaces, 1)
	assert.Equal(t, "laptop-origin", ifaces[0].Name)
	require.Len(t, secrets, 1)
	assert.Contains(t, string(secrets[0]), "CLIENT_HANDSHAKE_TRAFFIC_SECRET ")
	assert.Greater(t, len(pkts), 20)
	for i := 1; i < len(pkts); i++ {
		require.False(t, pkts[i].Time.Before(pkts[i-1].Time), "packets in time order")
	}

	capturetest.RequireTshark(t)
	file := filepath.Join(t.TempDir(), "run.pcapng")
	require.NoError(t, os.WriteFile(file, buf.Bytes(), 0o644))
	assert.Empty(t, capturetest.AnalysisFlags(t, file), "Wireshark's TCP analysis flags nothing")
	assert.Empty(t, capturetest.BadChecksums(t, file), "every checksum is right")
	reqs := capturetest.Lines(capturetest.Tshark(t, "-r", file, "-Y", "http.request", "-T", "fields", "-e", "tcp.stream", "-e", "http.request.uri"))
	assert.Equal(t, []string{"0\t/hello/0", "1\t/hello/1"}, reqs, "decrypted from the key log in the file")
	resps := capturetest.Lines(capturetest.Tshark(t, "-r", file, "-Y", "http.response", "-T", "fields", "-e", "tcp.stream", "-e", "http.response.code"))
	assert.Equal(t, []string{"0\t200", "1\t200"}, resps)
	conv := capturetest.Tshark(t, "-r", file, "-q", "-z", "conv,tcp")
	assert.Equal(t, 2, strings.Count(conv, "<->"), "two TCP conversations:\n%s", conv)
	// Each connection opens with a handshake and ends with the client's
	// FIN (it closes without waiting for the server's).
	syns := capturetest.Lines(capturetest.Tshark(t, "-r", file, "-Y", "tcp.flags.syn == 1", "-T", "fields", "-e", "tcp.stream", "-e", "tcp.flags.ack"))
	assert.Equal(t, []string{"0\t0", "0\t1", "1\t0", "1\t1"}, syns)
	fins := capturetest.Lines(capturetest.Tshark(t, "-r", file, "-Y", "tcp.flags.fin == 1", "-T", "fields", "-e", "tcp.stream", "-e", "tcp.srcport"))
	require.Len(t, fins, 2)
	for _, f := range fins {
		assert.NotContains(t, f, fmt.Sprintf("\t%d", l.Addr().(*net.TCPAddr).Port), "the FIN is the client's")
	}
}

// TestSnapLen cuts a flow's payload after SnapLen bytes in each direction:
// packets keep their headers, the TCP analysis stays clean.
func TestSnapLen(t *testing.T) {
	rec := capture.New(capture.Config{Seed: 3, SnapLen: 1000})
	a, b := net.Pipe()
	defer b.Close()
	c := rec.Leg("leg", "").Conn(&addrConn{Conn: a, local: &net.TCPAddr{IP: net.IPv4(10, 10, 10, 100), Port: 40000}, remote: &net.TCPAddr{IP: net.IPv4(203, 0, 113, 10), Port: 443}})
	go func() { _, _ = io.Copy(io.Discard, b) }()
	_, err := c.Write(make([]byte, 600))
	require.NoError(t, err)
	_, err = c.Write(make([]byte, 600))
	require.NoError(t, err)
	_, err = c.Write(make([]byte, 600))
	require.NoError(t, err)
	require.NoError(t, c.Close())

	var buf bytes.Buffer
	_, err = rec.WriteTo(&buf)
	require.NoError(t, err)
	_, pkts, _ := readPackets(t, buf.Bytes())
	var payloads []int
	for _, p := range pkts {
		if int(p.OrigLen) > 48 { // data, not the handshake's SYNs (48 bytes with options)
			payloads = append(payloads, len(p.Data)-40, int(p.OrigLen)-40)
		}
	}
	assert.Equal(t, []int{600, 600, 400, 600, 0, 600}, payloads, "kept, then cut at 1000 bytes")

	capturetest.RequireTshark(t)
	file := filepath.Join(t.TempDir(), "snap.pcapng")
	require.NoError(t, os.WriteFile(file, buf.Bytes(), 0o644))
	assert.Empty(t, capturetest.AnalysisFlags(t, file))
	lens := capturetest.Lines(capturetest.Tshark(t, "-r", file, "-Y", "tcp.len > 0", "-T", "fields", "-e", "tcp.len", "-e", "frame.cap_len"))
	assert.Equal(t, []string{"600\t640", "600\t440", "600\t40"}, lens)
}

// addrConn gives a pipe TCP addresses.
type addrConn struct {
	net.Conn
	local, remote net.Addr
}

func (c *addrConn) LocalAddr() net.Addr  { return c.local }
func (c *addrConn) RemoteAddr() net.Addr { return c.remote }

// TestUDP records datagrams both ways with the socket's addresses.
func TestUDP(t *testing.T) {
	rec := capture.New(capture.Config{Seed: 1})
	srv, err := net.ListenPacket("udp4", "127.0.0.1:0")
	require.NoError(t, err)
	defer srv.Close()
	raw, err := net.Dial("udp4", srv.LocalAddr().String())
	require.NoError(t, err)
	c := rec.Leg("laptop-gateway", "").Conn(raw)
	defer c.Close()
	_, err = c.Write([]byte("hello"))
	require.NoError(t, err)
	buf := make([]byte, 64)
	require.NoError(t, srv.SetReadDeadline(time.Now().Add(5*time.Second)))
	n, from, err := srv.ReadFrom(buf)
	require.NoError(t, err)
	_, err = srv.WriteTo(append([]byte("re: "), buf[:n]...), from)
	require.NoError(t, err)
	require.NoError(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
	n, err = c.Read(buf)
	require.NoError(t, err)
	assert.Equal(t, "re: hello", string(buf[:n]))

	var out bytes.Buffer
	_, err = rec.WriteTo(&out)
	require.NoError(t, err)
	capturetest.RequireTshark(t)
	file := filepath.Join(t.TempDir(), "udp.pcapng")
	require.NoError(t, os.WriteFile(file, out.Bytes(), 0o644))
	assert.Empty(t, capturetest.BadChecksums(t, file))
	got := capturetest.Lines(capturetest.Tshark(t, "-r", file, "-T", "fields", "-e", "udp.srcport", "-e", "udp.dstport", "-e", "udp.length"))
	sp := c.LocalAddr().(*net.UDPAddr).Port
	dp := srv.LocalAddr().(*net.UDPAddr).Port
	assert.Equal(t, []string{fmt.Sprintf("%d\t%d\t13", sp, dp), fmt.Sprintf("%d\t%d\t17", dp, sp)}, got)
}

func TestKeyLog(t *testing.T) {
	var tee bytes.Buffer
	k := capture.NewKeyLog(&tee)
	_, _ = k.Write([]byte("CLIENT_RANDOM aa bb\nSERVER_"))
	_, _ = k.Write([]byte("TRAFFIC_SECRET_0 cc dd\n"))
	_, _ = k.Write([]byte("CLIENT_RANDOM aa bb\n\n"))
	want := "CLIENT_RANDOM aa bb\nSERVER_TRAFFIC_SECRET_0 cc dd\n"
	assert.Equal(t, want, string(k.Bytes()))
	assert.Equal(t, want, tee.String())
	assert.Equal(t, 2, k.Lines())
	sc := bufio.NewScanner(bytes.NewReader(k.Bytes()))
	for sc.Scan() {
		assert.Len(t, strings.Fields(sc.Text()), 3)
	}
}

// TestMaxBytes drops packets beyond the memory bound and says so.
func TestMaxBytes(t *testing.T) {
	rec := capture.New(capture.Config{MaxBytes: 100})
	i := rec.AddInterface(pcapng.Interface{LinkType: pcapng.LinkRaw, Name: "x"})
	for range 3 {
		rec.AddPacket(pcapng.Packet{Interface: i, Time: time.Unix(1, 0), Data: make([]byte, 40)})
	}
	assert.Equal(t, 2, rec.Packets())
	assert.EqualValues(t, 1, rec.Dropped())
	var buf bytes.Buffer
	_, err := rec.WriteTo(&buf)
	require.NoError(t, err)
	r, err := pcapng.NewReader(&buf)
	require.NoError(t, err)
	assert.Contains(t, r.Section().Comment, "1 packets dropped")
}

// closeDone calls done once, after the connection it wraps is closed.
type closeDone struct {
	net.Conn
	once sync.Once
	done func()
}

func (c *closeDone) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.done)
	return err
}
