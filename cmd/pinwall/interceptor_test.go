package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/net/proxy"

	"github.com/pinwall/pinwall/harness"
	"github.com/pinwall/pinwall/internal/syncbuf"
)

// These tests put real third-party proxies (mitmproxy 8.1.1's mitmdump and
// squid 5.7 from Debian) in the firewall's place with pinwall lab
// --upstream-proxy. They skip with a one-line reason when a tool is not
// installed (.ci/run installs both).

// labRun is a pinwall lab started by a test, in this process.
type labRun struct {
	dir    string
	ready  string // the ready line and the lines that explain it
	out    *syncbuf.Buffer
	errOut *syncbuf.Buffer
	stop   func() int // stops the lab and returns its exit code
}

// startLab runs pinwall lab with args (a --socks and --dir are added) until
// its ready line, and registers its stop.
func startLab(t *testing.T, args ...string) *labRun {
	t.Helper()
	lr := &labRun{dir: t.TempDir(), out: &syncbuf.Buffer{}, errOut: &syncbuf.Buffer{}}
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan int, 1)
	go func() {
		err := dispatch(ctx, append([]string{"lab", "--socks", "127.0.0.1:0", "--dir", lr.dir}, args...), pw, lr.errOut)
		pw.Close()
		done <- exitCode(err, lr.errOut)
	}()
	// Lines for the wait below; once it is over, nobody reads them and the
	// rest only goes to out.
	lines := make(chan string, 1024)
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		defer close(lines)
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			lr.out.Write([]byte(sc.Text() + "\n"))
			select {
			case lines <- sc.Text():
			default:
			}
		}
	}()
	code := -1
	stopped := false
	lr.stop = func() int {
		if !stopped {
			stopped = true
			cancel()
			select {
			case code = <-done:
				<-copied
			case <-time.After(60 * time.Second):
				// Its output is still being written: the test fails
				// without waiting for it.
				t.Errorf("lab did not stop; output:\n%s", lr.out.String())
			}
		}
		return code
	}
	t.Cleanup(func() { lr.stop() })
	// The ready line comes after the tunnel is up or a round of attempts
	// failed (--wait bounds it).
	deadline := time.After(90 * time.Second)
	for lr.ready == "" || strings.Contains(lr.ready, "NOT up") && strings.Count(lr.ready, "\n") < 2 {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("lab ended before it was ready (exit %d):\n%s\n%s", lr.stop(), lr.out.String(), lr.errOut.String())
			}
			if strings.HasPrefix(l, "pinwall lab ready") {
				lr.ready = l
			} else if lr.ready != "" {
				lr.ready += "\n" + l
			}
		case <-deadline:
			t.Fatalf("lab not ready:\n%s\n%s", lr.out.String(), lr.errOut.String())
		}
	}
	return lr
}

// socks is the lab's SOCKS5 listener, from its ready line.
func (lr *labRun) socks(t *testing.T) string {
	t.Helper()
	f := strings.Fields(strings.TrimPrefix(lr.ready, "pinwall lab ready: socks5 "))
	require.NotEmpty(t, f, lr.ready)
	return strings.TrimSuffix(f[0], ";")
}

// info is the lab's lab.json.
func (lr *labRun) info(t *testing.T) harness.LabInfo {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(lr.dir, harness.LabJSON))
	require.NoError(t, err)
	var info harness.LabInfo
	require.NoError(t, json.Unmarshal(b, &info))
	return info
}

// fetch gets url through the lab's SOCKS5 listener with curl
// --socks5-hostname (or Go's SOCKS5 client when curl is not installed),
// trusting the lab's internet CA.
func (lr *labRun) fetch(t *testing.T, url string) string {
	t.Helper()
	ca := filepath.Join(lr.dir, "internet-ca.pem")
	if curl, err := exec.LookPath("curl"); err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, curl, "-sS", "--max-time", "20", "--socks5-hostname", lr.socks(t), "--cacert", ca, url).CombinedOutput()
		require.NoError(t, err, "curl: %s", out)
		return string(out)
	}
	pem, err := os.ReadFile(ca)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	require.True(t, pool.AppendCertsFromPEM(pem))
	d, err := proxy.SOCKS5("tcp", lr.socks(t), nil, proxy.Direct)
	require.NoError(t, err)
	tr := &http.Transport{DialContext: d.(proxy.ContextDialer).DialContext, TLSClientConfig: &tls.Config{RootCAs: pool}}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 20 * time.Second}).Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return string(body)
}

// freePort is a TCP port free on 127.0.0.1 a moment ago.
func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
}

// tool is a third-party program run by a test: killed and waited for in
// t.Cleanup, its output kept.
type tool struct {
	cmd *exec.Cmd
	out *syncbuf.Buffer
}

func startTool(t *testing.T, bin string, args ...string) *tool {
	t.Helper()
	tl := &tool{cmd: exec.Command(bin, args...), out: &syncbuf.Buffer{}}
	tl.cmd.Stdout, tl.cmd.Stderr = tl.out, tl.out
	require.NoError(t, tl.cmd.Start())
	waited := make(chan struct{})
	go func() {
		_ = tl.cmd.Wait()
		close(waited)
	}()
	t.Cleanup(func() {
		_ = tl.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-waited:
		case <-time.After(10 * time.Second):
			_ = tl.cmd.Process.Kill()
			<-waited
		}
	})
	return tl
}

// waitListening waits until addr accepts TCP connections.
func waitListening(t *testing.T, tl *tool, addr string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s is not listening on %s: %v\n%s", tl.cmd.Path, addr, err, tl.out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// mitmdump is a running mitmdump: its proxy URL, its CA certificate file
// and that CA's subject.
type mitmdump struct {
	*tool
	url, caFile, caSubject string
}

// startMitmdump runs a plain mitmdump (no addon) on 127.0.0.1 with its
// configuration directory in a temporary directory.
func startMitmdump(t *testing.T, args ...string) mitmdump {
	t.Helper()
	bin, err := exec.LookPath("mitmdump")
	if err != nil {
		t.Skip("mitmdump not installed (Debian package mitmproxy)")
	}
	port, confdir := freePort(t), t.TempDir()
	tl := startTool(t, bin, append([]string{"--listen-host", "127.0.0.1", "--listen-port", port, "--set", "confdir=" + confdir}, args...)...)
	addr := "127.0.0.1:" + port
	waitListening(t, tl, addr)
	caFile := filepath.Join(confdir, "mitmproxy-ca-cert.pem")
	b, err := os.ReadFile(caFile)
	require.NoError(t, err, "mitmdump writes its CA into its confdir")
	blk, _ := pem.Decode(b)
	require.NotNil(t, blk)
	ca, err := x509.ParseCertificate(blk.Bytes)
	require.NoError(t, err)
	return mitmdump{tool: tl, url: "http://" + addr, caFile: caFile, caSubject: ca.Subject.String()}
}

// TestLabThroughMitmproxy: a real mitmdump in the firewall's place. With
// the gateway ignored the tunnel comes up through it and a page comes back
// through the lab's SOCKS5 listener; without, the lab names the leg and
// the cause from the endpoints alone (no firewall log exists), and the
// intercepting CA.
func TestLabThroughMitmproxy(t *testing.T) {
	if testing.Short() {
		t.Skip("runs mitmdump; skipped with -short")
	}
	for _, tt := range []struct{ name, ignore string }{
		{"gateway ignored by name (SNI)", `sse\.test`},
		{"gateway ignored by address", `^127\.0\.113\.`}, // the gateways' real addresses (203.0.113.x → 127.0.113.x)
	} {
		t.Run(tt.name, func(t *testing.T) {
			mitm := startMitmdump(t, "--ignore-hosts", tt.ignore)
			proxyURL := mitm.url
			lr := startLab(t, "--transport", "tls", "--upstream-proxy", proxyURL, "--wait", "20s")
			require.Contains(t, lr.ready, "tunnel up over tls", lr.out.String())
			assert.Contains(t, lr.ready, "through the upstream proxy "+proxyURL)
			assert.Contains(t, lr.fetch(t, "https://www.social.test/"), "<h1>www.social.test</h1>")
			gw := lr.info(t).Gateways[0]
			assert.Contains(t, mitm.out.String(), "server connect "+gw.TCP[0].String(),
				"mitmdump connected to the gateway's real address, the CONNECT target")
			assert.NotContains(t, mitm.out.String(), "Client TLS handshake failed", "nothing intercepted")
			require.Equal(t, 0, lr.stop())
			assert.Contains(t, lr.out.String(), "flow to www.social.test:443 x1")
		})
	}

	t.Run("not ignored", func(t *testing.T) {
		mitm := startMitmdump(t)
		proxyURL, caSubject := mitm.url, mitm.caSubject
		lr := startLab(t, "--transport", "tls", "--upstream-proxy", proxyURL, "--wait", "20s")
		require.Contains(t, lr.ready, "tunnel NOT up: client-firewall / pin-mismatch", lr.out.String())
		assert.Contains(t, lr.ready, "attributed from: client (presented chain issued by "+caSubject+" (subject CN=gateway-")
		assert.Regexp(t, `gateway log \(\d+ handshake\(s\) from 127\.0\.0\.1, none with this device's certificate\)`, lr.ready)
		assert.NotContains(t, lr.ready, "firewall log", "no firewall log: the endpoints alone")
		assert.Contains(t, lr.ready, `issued by "`+caSubject+`"`, "the client's error names mitmproxy's CA")
		assert.Contains(t, mitm.out.String(), "Client TLS handshake failed", "mitmdump saw the client refuse its certificate")

		// The client's history records what it saw, for the evidence.
		lr.stop()
		b, err := os.ReadFile(filepath.Join(lr.dir, harness.LabClientHistory))
		require.NoError(t, err)
		assert.Contains(t, string(b), `"issuer": "`+caSubject+`"`)
		assert.Contains(t, string(b), `"via": "`+proxyURL+`"`)
	})

	t.Run("a name mitmdump cannot resolve", func(t *testing.T) {
		// mitmproxy resolves CONNECT names with the system resolver
		// (getaddrinfo), which does not know pinwall's names.
		proxyURL := startMitmdump(t).url
		lr := startLab(t, "--transport", "tls", "--upstream-proxy", proxyURL, "--proxy-connect", "name", "--wait", "20s")
		require.Contains(t, lr.ready, "tunnel NOT up: client-firewall / proxy-refused", lr.out.String())
		assert.Regexp(t, `proxy http://127\.0\.0\.1:\d+ CONNECT gateway(-backup)?-acme\.sse\.test:\d+: proxy-refused on leg client-firewall: proxy answered 502`, lr.ready)
		assert.Contains(t, lr.ready, "through the proxy "+proxyURL)
	})
}

// TestLabDecryptedByMitmproxy: a laptop that trusts mitmproxy's CA and
// pins nothing accepts the forged chain; mitmproxy (not verifying the
// gateway's chain, --ssl-insecure) has no device certificate for the
// gateway and the gateway refuses it. With no firewall log, the client's
// view beside the gateway's log places the failure on the firewall's
// outside leg.
func TestLabDecryptedByMitmproxy(t *testing.T) {
	if testing.Short() {
		t.Skip("runs mitmdump; skipped with -short")
	}
	mitm := startMitmdump(t, "--ssl-insecure")
	// mitmproxy holds the client's connection open, sending nothing, once
	// the gateway has refused it: each attempt ends at the client's
	// handshake timeout.
	lr := startLab(t, "--transport", "tls", "--pin", "none", "--trust-file", mitm.caFile, "--upstream-proxy", mitm.url,
		"--handshake-timeout", "1500ms", "--wait", "30s")
	assert.Contains(t, lr.ready, "handshake-timeout after accepting a chain issued by "+mitm.caSubject, "the client's own view")
	require.Contains(t, lr.ready, "tunnel NOT up: firewall-gateway / client-certificate-required", lr.out.String())
	assert.Contains(t, lr.ready, "client (")
	assert.Contains(t, lr.ready, "after accepting a chain issued by "+mitm.caSubject)
	assert.Regexp(t, `gateway log \(a handshake from 127\.0\.0\.1:\d+ without a device certificate, none with this device's \(SERIALNUMBER=LAPTOP-0001`, lr.ready)
	assert.NotContains(t, lr.ready, "firewall log")
	assert.Contains(t, mitm.out.String(), "alert certificate required", "mitmproxy was refused by the gateway")
}

// startSquid runs squid as a plain forward proxy (CONNECT without bumping)
// on 127.0.0.1, with extra configuration lines, and returns its proxy URL
// and the path of its access log.
func startSquid(t *testing.T, extra ...string) (*tool, string, string) {
	t.Helper()
	bin, err := exec.LookPath("squid")
	if err != nil {
		if bin, err = exec.LookPath("/usr/sbin/squid"); err != nil { // not on a user's PATH
			t.Skip("squid not installed (Debian package squid-openssl)")
		}
	}
	// Run as root, squid drops to its cache_effective_user (Debian:
	// proxy), which must be able to write its logs.
	dir, err := os.MkdirTemp("", "pinwall-squid-")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	if os.Geteuid() == 0 {
		if u, err := user.Lookup("proxy"); err == nil {
			uid, _ := strconv.Atoi(u.Uid)
			gid, _ := strconv.Atoi(u.Gid)
			require.NoError(t, os.Chown(dir, uid, gid))
		}
	}
	port := freePort(t)
	access := filepath.Join(dir, "access.log")
	conf := []string{
		"http_port 127.0.0.1:" + port,
		"acl lab src 127.0.0.0/8", // the lab's laptop connects from 127.10.10.100
		"http_access allow lab",
		"http_access deny all",
		"cache deny all",
		"pinger_enable off",
		"access_log stdio:" + access,
		"cache_log " + filepath.Join(dir, "cache.log"),
		"pid_filename " + filepath.Join(dir, "squid.pid"),
		"coredump_dir " + dir,
		"shutdown_lifetime 0 seconds",
	}
	file := filepath.Join(dir, "squid.conf")
	require.NoError(t, os.WriteFile(file, []byte(strings.Join(append(conf, extra...), "\n")+"\n"), 0o644))
	tl := startTool(t, bin, "-N", "-d", "1", "-f", file)
	waitListening(t, tl, "127.0.0.1:"+port)
	return tl, "http://127.0.0.1:" + port, access
}

// accessLog waits for squid's access log to hold a line with want (squid
// logs a tunnel when it ends).
func accessLog(t *testing.T, tl *tool, file, want string) string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		b, _ := os.ReadFile(file)
		if strings.Contains(string(b), want) {
			return string(b)
		}
		if time.Now().After(deadline) {
			t.Fatalf("squid's access log has no %q:\n%s\n%s", want, b, tl.out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestLabThroughSquid: a real squid forward proxy (CONNECT, no bumping)
// carries the tunnel, to the gateway's real address, and to its name when
// squid resolves it with the lab's DNS server.
func TestLabThroughSquid(t *testing.T) {
	if testing.Short() {
		t.Skip("runs squid; skipped with -short")
	}
	t.Run("CONNECT to the gateway's address", func(t *testing.T) {
		sq, proxyURL, access := startSquid(t)
		lr := startLab(t, "--transport", "tls", "--upstream-proxy", proxyURL, "--wait", "20s")
		require.Contains(t, lr.ready, "tunnel up over tls", lr.out.String())
		assert.Contains(t, lr.fetch(t, "https://app.files.test/"), "<h1>app.files.test</h1>")
		gw := lr.info(t).Gateways[0]
		require.Equal(t, 0, lr.stop())
		accessLog(t, sq, access, "TCP_TUNNEL/200")
		assert.Contains(t, accessLog(t, sq, access, "CONNECT "+gw.TCP[0].String()), "CONNECT "+gw.TCP[0].String())
	})

	t.Run("CONNECT to the gateway's name, resolved with the lab's DNS", func(t *testing.T) {
		// squid's dns_nameservers takes addresses only, port 53: the lab's
		// DNS server must listen there, which takes privileges.
		const dnsAddr = "127.0.53.53:53"
		pc, err := net.ListenPacket("udp", dnsAddr)
		if err != nil {
			t.Skipf("cannot listen on %s for squid's resolver: %v", dnsAddr, err)
		}
		pc.Close()
		sq, proxyURL, access := startSquid(t, "dns_nameservers 127.0.53.53")
		lr := startLab(t, "--transport", "tls", "--upstream-proxy", proxyURL, "--proxy-connect", "name", "--dns", dnsAddr, "--wait", "20s")
		require.Contains(t, lr.ready, "tunnel up over tls", lr.out.String())
		assert.Contains(t, lr.fetch(t, "https://www.social.test/"), "<h1>www.social.test</h1>")
		gw := lr.info(t).Gateways[0]
		require.Equal(t, 0, lr.stop())
		log := accessLog(t, sq, access, "TCP_TUNNEL/200")
		assert.Contains(t, log, fmt.Sprintf("CONNECT %s:%d", gw.Name, gw.TCP[0].Port()), "squid was asked for the name")
		assert.Contains(t, log, "HIER_DIRECT/"+gw.TCP[0].Addr().String(), "and resolved it to the real address with the lab's DNS")
	})
}

// TestLabUpstreamProxyAuto: with --transport auto the DTLS attempt goes
// around the proxy; the lab says so in a warning and in its ready line.
func TestLabUpstreamProxyAuto(t *testing.T) {
	// Nothing listens at the proxy: DTLS does not need it.
	lr := startLab(t, "--upstream-proxy", "http://127.0.0.1:"+freePort(t), "--wait", "20s")
	require.Contains(t, lr.ready, "tunnel up over dtls", lr.out.String())
	assert.Contains(t, lr.ready, "around the upstream proxy http://127.0.0.1:")
	assert.Contains(t, lr.ready, "--transport tls sends the tunnel through it")
	assert.Contains(t, lr.errOut.String(), "warning: --transport auto tries DTLS (UDP/443) first, and DTLS does not go through an HTTP proxy")
}
