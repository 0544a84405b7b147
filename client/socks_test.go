package client_test

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/net/proxy"

	"github.com/pinwall/pinwall/client"
	"github.com/pinwall/pinwall/gateway"
	"github.com/pinwall/pinwall/harness"
	"github.com/pinwall/pinwall/harness/harnesstest"
	"github.com/pinwall/pinwall/internal/syncbuf"
)

// startLogged starts spec with its operational log captured.
func startLogged(t *testing.T, spec harness.Spec) (*harness.Topology, *syncbuf.Buffer) {
	t.Helper()
	logs := &syncbuf.Buffer{}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	topo, err := harness.StartInProcess(ctx, spec, harness.Options{
		Logger: slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo})),
	})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, topo.Close()) })
	return topo, logs
}

// serveSOCKS runs c's SOCKS5 listener on a real loopback port (curl runs
// outside the simulation) until the test ends, and returns its address.
func serveSOCKS(t *testing.T, c *client.Client) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.ServeSOCKS(ctx, l) }()
	// Registered after the topology's Close, so it runs first.
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if !errors.Is(err, client.ErrClosed) {
				assert.NoError(t, err, "ServeSOCKS")
			}
		case <-time.After(10 * time.Second):
			t.Error("ServeSOCKS did not return after its context ended")
		}
	})
	return l.Addr().String()
}

// socksHTTPClient fetches through the SOCKS5 listener at addr with
// golang.org/x/net/proxy, which sends host names unresolved, and verifies
// origins against trust.
func socksHTTPClient(t *testing.T, addr string, trust *tls.Config) *http.Client {
	t.Helper()
	d, err := proxy.SOCKS5("tcp", addr, nil, proxy.Direct)
	require.NoError(t, err)
	cd, ok := d.(proxy.ContextDialer)
	require.True(t, ok, "the x/net SOCKS5 dialer dials with a context")
	tr := &http.Transport{DialContext: cd.DialContext, TLSClientConfig: trust, ForceAttemptHTTP2: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

func get(ctx context.Context, hc *http.Client, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return string(b), errors.New(resp.Status)
	}
	return string(b), nil
}

// requireGatewayFlow waits for the gateway's log to settle and returns the
// flow events to host.
func requireGatewayFlow(t *testing.T, ctx context.Context, topo *harness.Topology, host string) []gateway.Event {
	t.Helper()
	require.NoError(t, topo.Settle(ctx))
	var out []gateway.Event
	for _, e := range flowEvents(topo.GatewayEvents()) {
		if e.Host == host {
			out = append(out, e)
		}
	}
	require.NotEmpty(t, out, "the gateway logged the flow to %s", host)
	return out
}

// TestSOCKSThroughTunnel fetches an HTTPS page through the client's SOCKS5
// listener with the x/net SOCKS5 dialer, over each tunnel transport: TLS runs
// end to end with the origin inside the tunnel, the gateway resolves the
// name and logs the flow.
func TestSOCKSThroughTunnel(t *testing.T) {
	for _, tr := range []client.TransportMode{client.TransportTLS, client.TransportDTLS} {
		t.Run(string(tr), func(t *testing.T) {
			topo := harnesstest.Start(t, harness.Spec{Client: harness.ClientSpec{Transport: tr}})
			ctx := testCtx(t, time.Minute)
			st, err := topo.Client.WaitUp(ctx)
			require.NoError(t, err)
			addr := serveSOCKS(t, topo.Client)

			hc := socksHTTPClient(t, addr, &tls.Config{RootCAs: topo.PKI.Internet.Pool()})
			body, err := get(ctx, hc, "https://www.social.test/")
			require.NoError(t, err)
			assert.Contains(t, body, "<h1>www.social.test</h1>")
			hc.CloseIdleConnections()

			flows := requireGatewayFlow(t, ctx, topo, "www.social.test")
			require.Len(t, flows, 1)
			assert.EqualValues(t, 443, flows[0].Port)
			assert.Equal(t, "ok", flows[0].Result)
			assert.Equal(t, string(tr), flows[0].Transport)
			assert.Equal(t, st.TunnelID, flows[0].TunnelID)
			assert.Positive(t, flows[0].BytesDown)
			assert.EqualValues(t, 1, topo.Client.State().Tunnelled)
			require.NotEmpty(t, topo.Origins.Records())
			assert.Equal(t, "www.social.test", topo.Origins.Records()[0].Site)
		})
	}
}

// curlPath returns the curl binary or skips the test.
func curlPath(t *testing.T) string {
	t.Helper()
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("curl not found in PATH: skipping the interop test with curl --socks5-hostname")
	}
	return curl
}

// runCurl runs curl through the SOCKS5 listener at proxyAddr, trusting only
// the run's internet CA, and returns its combined output and exit code.
func runCurl(t *testing.T, ctx context.Context, curl, proxyAddr string, topo *harness.Topology, url string) (string, int) {
	t.Helper()
	caFile := filepath.Join(t.TempDir(), "internet-ca.pem")
	require.NoError(t, os.WriteFile(caFile, topo.PKI.Internet.CertPEM(), 0o600))
	cmd := exec.CommandContext(ctx, curl, "-sS", "--max-time", "20", "--socks5-hostname", proxyAddr, "--cacert", caFile, url)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")} // no proxy variables from the environment
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return string(out), ee.ExitCode()
	}
	require.NoError(t, err, "run curl: %s", out)
	return string(out), 0
}

// TestSOCKSWithCurl is the same fetch with the real curl, which hands the
// name to the listener unresolved (--socks5-hostname).
func TestSOCKSWithCurl(t *testing.T) {
	curl := curlPath(t)
	topo := harnesstest.Start(t, harness.Spec{Client: harness.ClientSpec{Transport: client.TransportTLS}})
	ctx := testCtx(t, time.Minute)
	_, err := topo.Client.WaitUp(ctx)
	require.NoError(t, err)
	addr := serveSOCKS(t, topo.Client)

	out, code := runCurl(t, ctx, curl, addr, topo, "https://www.social.test/")
	require.Zero(t, code, "curl: %s", out)
	assert.Contains(t, out, "<h1>www.social.test</h1>")

	flows := requireGatewayFlow(t, ctx, topo, "www.social.test")
	assert.Equal(t, "ok", flows[0].Result)
	assert.EqualValues(t, 443, flows[0].Port)
}

// TestSOCKSFailCloseRefuses: with no tunnel (the gateway's key is not the
// pinned one) a steered flow is refused in fail-close mode with SOCKS reply
// 0x02 "connection not allowed by ruleset", which both SOCKS clients report,
// and the refusal is logged with its cause; nothing reaches the gateway or
// the origin.
func TestSOCKSFailCloseRefuses(t *testing.T) {
	topo, logs := startLogged(t, harness.Spec{Client: harness.ClientSpec{Pin: harness.PinWrong, TunnelWait: 200 * time.Millisecond}})
	ctx := testCtx(t, time.Minute)
	addr := serveSOCKS(t, topo.Client)

	t.Run("x/net/proxy", func(t *testing.T) {
		hc := socksHTTPClient(t, addr, &tls.Config{RootCAs: topo.PKI.Internet.Pool()})
		_, err := get(ctx, hc, "https://www.social.test/")
		require.Error(t, err)
		assert.Contains(t, err.Error(), "connection not allowed by ruleset")
	})
	t.Run("curl", func(t *testing.T) {
		curl := curlPath(t)
		out, code := runCurl(t, ctx, curl, addr, topo, "https://www.social.test/")
		// CURLE_PROXY (97) since curl 7.73: "Can't complete SOCKS5
		// connection to www.social.test. (2)"; older versions exit 7.
		assert.Equal(t, 97, code, "curl: %s", out)
		t.Logf("curl exit %d: %s", code, out)
		assert.Regexp(t, `\(2\)|(?i)not allowed`, out, "curl reports the SOCKS reply")
	})

	refused := logs.Lines(`"msg":"socks5: refused"`, `"dst":"www.social.test:443"`)
	require.NotEmpty(t, refused, "the refusal is logged; log:\n%s", logs)
	for _, l := range refused {
		assert.Contains(t, l, `"reply":"connection not allowed by ruleset"`)
		assert.Contains(t, l, `"cause":"tunnel-down"`)
		assert.Contains(t, l, `"leg":"client-gateway"`)
	}
	assert.EqualValues(t, len(refused), topo.Client.State().Refused, "every refused flow is counted")
	assert.Empty(t, flowEvents(topo.GatewayEvents()), "fail-close: no flow reached the gateway")
	assert.Empty(t, topo.Origins.Records(), "fail-close: nothing leaked direct")
}

// TestServeSOCKSOwnedByClient: Close stops the listener and its relayed
// connections, ServeSOCKS returns ErrClosed, and a ServeSOCKS after Close
// refuses at once and closes the listener it was given.
func TestServeSOCKSOwnedByClient(t *testing.T) {
	topo := harnesstest.Start(t, harness.Spec{Client: harness.ClientSpec{Transport: client.TransportTLS}})
	ctx := testCtx(t, 30*time.Second)
	_, err := topo.Client.WaitUp(ctx)
	require.NoError(t, err)

	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- topo.Client.ServeSOCKS(context.Background(), l) }()

	// A relayed flow in progress when the client closes.
	d, err := proxy.SOCKS5("tcp", l.Addr().String(), nil, proxy.Direct)
	require.NoError(t, err)
	conn, err := d.(proxy.ContextDialer).DialContext(ctx, "tcp", "www.social.test:443")
	require.NoError(t, err)
	defer conn.Close()

	require.NoError(t, topo.Client.Close())
	select {
	case err := <-done:
		require.ErrorIs(t, err, client.ErrClosed)
	case <-ctx.Done():
		t.Fatal("ServeSOCKS still running after Client.Close")
	}
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err = conn.Read(make([]byte, 1))
	assert.Error(t, err, "the relayed connection was closed")
	_, err = net.DialTimeout("tcp", l.Addr().String(), time.Second)
	assert.Error(t, err, "the listener is closed")

	l2, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	require.ErrorIs(t, topo.Client.ServeSOCKS(ctx, l2), client.ErrClosed)
	_, err = net.DialTimeout("tcp", l2.Addr().String(), time.Second)
	assert.Error(t, err, "ServeSOCKS closes the listener it refuses")
}
