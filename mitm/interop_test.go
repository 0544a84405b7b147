package mitm_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pinwall/pinwall/failure"
	"github.com/pinwall/pinwall/harness"
	"github.com/pinwall/pinwall/internal/syncbuf"
	"github.com/pinwall/pinwall/mitm/fwlog"
	"github.com/pinwall/pinwall/pki"
)

// Interop with real peers: OpenSSL's s_client and curl talk to the
// firewall's explicit proxy exactly as a browser behind it would, and the
// pinwall binary runs the firewall standalone with an imported RSA CA.

const (
	// decryptWeb decrypts every TLS session to port 443.
	decryptWeb = `rules:
  - name: decrypt-web
    match: { proto: tcp, port: [443] }
    action: decrypt
`
	// noDecryptSocial passes www.social.test undecrypted.
	noDecryptSocial = `rules:
  - name: no-decrypt-social
    match: { sni: [www.social.test] }
    action: no-decrypt
`
	internetCAName   = "pinwall Internet Root CA"
	enterpriseCAName = "pinwall Enterprise Forward Trust CA"
)

// needTool skips the test when name is not installed.
func needTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("interop with %s: %s is not installed (%v)", name, name, err)
	}
	return p
}

// proxyLab is an in-process lab whose firewall's explicit proxy also
// listens on a real 127.0.0.1 port, for tools outside the simulation.
type proxyLab struct {
	topo  *harness.Topology
	proxy string // 127.0.0.1:port
	dir   string // CA certificates and logs
}

func startProxyLab(t *testing.T, policyYAML string) *proxyLab {
	t.Helper()
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	topo, err := harness.StartInProcess(ctx, harness.Spec{Firewall: &harness.FirewallSpec{PolicyYAML: policyYAML}},
		harness.Options{Dir: dir, NoClient: true})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, topo.Close()) })
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	topo.Firewall.ServeProxyOn(context.Background(), l) // closed with the firewall
	return &proxyLab{topo: topo, proxy: l.Addr().String(), dir: dir}
}

func (pl *proxyLab) ca(name string) string { return filepath.Join(pl.dir, name) }

// waitSession waits for the firewall's next record after the first n.
func (pl *proxyLab) waitSession(t *testing.T, n int) fwlog.Record {
	t.Helper()
	recs := waitRecords(t, pl.topo.Firewall.Firewall, n+1)
	require.Len(t, recs, n+1, "one session")
	return recs[n]
}

// loggedRecords reads the firewall's JSON log file.
func (pl *proxyLab) loggedRecords(t *testing.T) []fwlog.Record {
	t.Helper()
	b, err := os.ReadFile(pl.ca("firewall.jsonl"))
	require.NoError(t, err)
	return parseRecords(t, b)
}

func parseRecords(t *testing.T, b []byte) []fwlog.Record {
	t.Helper()
	var out []fwlog.Record
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if !strings.HasPrefix(sc.Text(), "{") {
			continue
		}
		var r fwlog.Record
		require.NoError(t, json.Unmarshal(sc.Bytes(), &r), "%s", sc.Text())
		out = append(out, r)
	}
	return out
}

// runTool runs a tool with a clean environment (no proxy variables, no rc
// files) and returns its stdout, stderr and exit code.
func runTool(t *testing.T, stdin string, name string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(), "LC_ALL=C"}
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = ee.ExitCode()
	default:
		require.NoError(t, err, "%s %s", name, strings.Join(args, " "))
	}
	require.NoError(t, ctx.Err(), "%s timed out", name)
	return out.String(), errb.String(), code
}

// pemCerts extracts the certificates printed in PEM (openssl -showcerts).
func pemCerts(t *testing.T, text string) []*x509.Certificate {
	t.Helper()
	var certs []*x509.Certificate
	rest := []byte(text)
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			return certs
		}
		if b.Type == "CERTIFICATE" {
			c, err := x509.ParseCertificate(b.Bytes)
			require.NoError(t, err)
			certs = append(certs, c)
		}
	}
}

var (
	opensslSubject = regexp.MustCompile(`(?m)^\s*0 s:(.*)$`)
	opensslIssuer  = regexp.MustCompile(`(?m)^\s*0 s:.*\n\s*i:(.*)$`)
	curlIssuer     = regexp.MustCompile(`(?m)^\*\s+issuer:\s*(.*)$`)
)

func TestOpenSSLAndCurlThroughProxy(t *testing.T) {
	tests := []struct {
		name   string
		policy string
		trust  string // the CA the tool is given
		// want
		issuer  string
		outcome fwlog.Outcome
		rule    string
	}{
		{"decrypt", decryptWeb, "enterprise-ca.pem", enterpriseCAName, fwlog.OutcomeDecrypted, "decrypt-web"},
		{"no-decrypt", noDecryptSocial, "internet-ca.pem", internetCAName, fwlog.OutcomeNotDecrypted, "no-decrypt-social"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pl := startProxyLab(t, tt.policy)
			// checkRecord checks the session a tool just ran, in memory and
			// in the JSON log file.
			checkRecord := func(t *testing.T, r fwlog.Record) {
				t.Helper()
				assert.Equal(t, siteName, r.SNI)
				assert.Equal(t, siteName, r.HostnameHint, "the CONNECT target")
				assert.Equal(t, "192.0.2.10:443", r.Dst.String())
				assert.Equal(t, "198.51.100.1", r.NATSrc.Addr().String())
				assert.Equal(t, tt.rule, r.Rule)
				require.NotNil(t, r.Decryption)
				assert.Equal(t, tt.outcome, r.Decryption.Outcome)
				if tt.outcome == fwlog.OutcomeDecrypted {
					assert.NotEmpty(t, r.Decryption.ForgedFingerprint)
					assert.NotEmpty(t, r.Decryption.UpstreamFingerprint)
					assert.NotEqual(t, r.Decryption.ForgedFingerprint, r.Decryption.UpstreamFingerprint)
					assert.Contains(t, r.Decryption.UpstreamIssuer, internetCAName)
				} else {
					assert.Empty(t, r.Decryption.ForgedFingerprint)
					assert.Equal(t, fwlog.ChainUninspected, r.Decryption.ChainStatus)
				}
				var logged *fwlog.Record
				for _, l := range pl.loggedRecords(t) {
					if l.SessionID == r.SessionID {
						logged = &l
					}
				}
				require.NotNil(t, logged, "session %d is in firewall.jsonl", r.SessionID)
				assert.Equal(t, r.Decryption.Outcome, logged.Decryption.Outcome)
				assert.Equal(t, r.Decryption.ForgedFingerprint, logged.Decryption.ForgedFingerprint)
				assert.Equal(t, r.Decryption.UpstreamFingerprint, logged.Decryption.UpstreamFingerprint)
			}

			t.Run("openssl s_client", func(t *testing.T) {
				openssl := needTool(t, "openssl")
				n := len(pl.topo.Firewall.Records())
				out, errOut, code := runTool(t, "", openssl, "s_client",
					"-proxy", pl.proxy, "-connect", siteName+":443", "-servername", siteName,
					"-showcerts", "-CAfile", pl.ca(tt.trust))
				require.Zero(t, code, "openssl s_client:\n%s\n%s", out, errOut)
				m := opensslSubject.FindStringSubmatch(out)
				require.NotNil(t, m, "no certificate chain in:\n%s", out)
				assert.Contains(t, m[1], siteName, "the subject mimics the origin")
				m = opensslIssuer.FindStringSubmatch(out)
				require.NotNil(t, m, "no issuer in:\n%s", out)
				assert.Contains(t, m[1], tt.issuer)
				assert.Contains(t, out, "Verify return code: 0 (ok)")

				certs := pemCerts(t, out)
				require.NotEmpty(t, certs)
				leaf := certs[0]
				assert.Equal(t, tt.issuer, leaf.Issuer.CommonName)
				assert.Contains(t, leaf.DNSNames, siteName)

				r := pl.waitSession(t, n)
				checkRecord(t, r)
				if tt.outcome == fwlog.OutcomeDecrypted {
					assert.Equal(t, r.Decryption.ForgedFingerprint, pki.Fingerprint(leaf), "openssl saw the forged leaf the firewall logged")
				}
			})

			t.Run("curl", func(t *testing.T) {
				curl := needTool(t, "curl")
				n := len(pl.topo.Firewall.Records())
				out, errOut, code := runTool(t, "", curl, "-q", "-sS", "-v", "--max-time", "30",
					"-x", "http://"+pl.proxy, "--cacert", pl.ca(tt.trust),
					"-w", "\nssl_verify_result=%{ssl_verify_result}\n",
					"https://"+siteName+"/")
				require.Zero(t, code, "curl:\n%s\n%s", out, errOut)
				assert.Contains(t, out, "<h1>"+siteName+"</h1>", "the origin's page names the site")
				assert.Contains(t, out, "ssl_verify_result=0")
				assert.Contains(t, errOut, "CONNECT "+siteName+":443")
				m := curlIssuer.FindStringSubmatch(errOut)
				require.NotNil(t, m, "curl -v shows no issuer:\n%s", errOut)
				assert.Contains(t, m[1], tt.issuer)

				r := pl.waitSession(t, n)
				checkRecord(t, r)
				if tt.outcome == fwlog.OutcomeDecrypted {
					// curl offers h2; the origin speaks it.
					assert.Contains(t, []fwlog.App{fwlog.AppHTTP2, fwlog.AppWebBrowsing}, r.App, "identified in the plaintext")
				}
			})

			if tt.outcome != fwlog.OutcomeDecrypted {
				return
			}
			// A laptop that does not trust the enterprise CA refuses the
			// forgery with an alert the firewall attributes to its client
			// leg.
			for _, v := range []struct {
				max   string
				cause []failure.Cause
			}{
				{"1.2", []failure.Cause{failure.CauseForgedCertRejected}},
				// OpenSSL sends this alert unencrypted: it rejects the
				// certificate before switching to its handshake keys, and
				// crypto/tls, expecting an encrypted record, reports "bad
				// record MAC"; the firewall reads the plaintext alert itself.
				{"1.3", []failure.Cause{failure.CauseForgedCertRejected}},
			} {
				t.Run("curl TLS "+v.max+" without the enterprise CA", func(t *testing.T) {
					curl := needTool(t, "curl")
					n := len(pl.topo.Firewall.Records())
					_, errOut, code := runTool(t, "", curl, "-q", "-sS", "--max-time", "30", "--tls-max", v.max,
						"-x", "http://"+pl.proxy, "--cacert", pl.ca("internet-ca.pem"), "https://"+siteName+"/")
					assert.Equal(t, 60, code, "curl: peer certificate cannot be authenticated:\n%s", errOut)
					r := pl.waitSession(t, n)
					require.NotNil(t, r.Decryption)
					assert.Equal(t, fwlog.OutcomeFailed, r.Decryption.Outcome)
					assert.Equal(t, failure.LegClientFirewall, r.Decryption.Leg)
					assert.Contains(t, v.cause, r.Decryption.Cause, "%s", r.Decryption.Reason)
					if r.Decryption.Cause == failure.CauseForgedCertRejected {
						assert.Equal(t, fwlog.EndDecryptCertValidation, r.EndReason)
						assert.Contains(t, r.Decryption.Reason, "unknown_ca")
					}
				})
			}
		})
	}
}

// buildPinwall builds cmd/pinwall into dir, with -race when this test
// binary has it (so the build reuses the test's compiled packages).
func buildPinwall(t *testing.T, dir string) string {
	t.Helper()
	goTool := needTool(t, "go")
	out, err := exec.Command(goTool, "env", "GOMOD").Output()
	require.NoError(t, err)
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		t.Skip("not inside the pinwall module: cannot build cmd/pinwall")
	}
	args := []string{"build", "-o", filepath.Join(dir, "pinwall")}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "-race" && s.Value == "true" {
				args = append(args, "-race")
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, goTool, append(args, "./cmd/pinwall")...)
	cmd.Dir = filepath.Dir(gomod)
	start := time.Now()
	b, err := cmd.CombinedOutput()
	require.NoError(t, err, "go build ./cmd/pinwall:\n%s", b)
	t.Logf("built pinwall in %v", time.Since(start).Round(time.Millisecond))
	return filepath.Join(dir, "pinwall")
}

// `pinwall serve firewall --proxy` as a real process, with an enterprise
// CA imported from PEM files as a customer would export it: RSA-2048, the
// key in PKCS#1 or PKCS#8.
func TestServeFirewallProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the pinwall binary")
	}
	curl := needTool(t, "curl")
	dir := t.TempDir()
	bin := buildPinwall(t, dir)

	// The origin: a TLS server on 127.0.0.1 with an internet-CA certificate.
	fl := startForwardLab(t, nil) // only its origin and CAs are used here
	writeFile := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, b, 0o600))
		return p
	}
	internetCA := writeFile("internet-ca.pem", fl.pki.Internet.CertPEM())
	hosts := writeFile("hosts.yaml", []byte(fmt.Sprintf("records:\n  - name: %s\n    addrs: [%s]\n", siteName, fl.upstream.Addr())))
	policyFile := writeFile("policy.yaml", []byte(`rules:
  - name: decrypt-all
    match: { proto: tcp }
    action: decrypt
`))
	ca, err := pki.NewCA(pki.Config{Algorithm: pki.RSA2048}, "pinwall Imported RSA Enterprise CA", "acme")
	require.NoError(t, err)
	caCert := writeFile("enterprise-ca.pem", ca.CertPEM())
	pkcs8, err := ca.KeyPEM()
	require.NoError(t, err)
	pkcs1 := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(ca.Key.(*rsa.PrivateKey))})

	tests := []struct {
		name string
		key  []byte
	}{
		{"pkcs1", pkcs1},
		{"pkcs8", pkcs8},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			caKey := writeFile("enterprise-ca-"+tt.name+".key", tt.key)
			var stdout, stderr syncbuf.Buffer
			cmd := exec.Command(bin, "serve", "firewall", "--proxy", "--listen", "127.0.0.1:0",
				"--ca-cert", caCert, "--ca-key", caKey, "--policy", policyFile,
				"--trust", internetCA, "--hosts", hosts)
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			require.NoError(t, cmd.Start())
			exited := make(chan error, 1)
			go func() { exited <- cmd.Wait() }()
			stopped := false
			t.Cleanup(func() {
				if !stopped {
					_ = cmd.Process.Kill()
					<-exited
				}
			})

			// Wait for "ready" and read the proxy's address from it.
			ready := regexp.MustCompile(`pinwall firewall ready: HTTP CONNECT proxy on (\S+),`)
			var proxy string
			deadline := time.After(time.Minute)
			for proxy == "" {
				if m := ready.FindStringSubmatch(stderr.String()); m != nil {
					proxy = m[1]
					break
				}
				select {
				case err := <-exited:
					stopped = true
					require.FailNow(t, "pinwall serve firewall exited before it was ready", "%v\n%s", err, stderr.String())
				case <-deadline:
					require.FailNow(t, "pinwall serve firewall never said it was ready", "%s", stderr.String())
				case <-time.After(10 * time.Millisecond):
				}
			}
			assert.Contains(t, stderr.String(), `enterprise CA "pinwall Imported RSA Enterprise CA"`)

			url := fmt.Sprintf("https://%s:%d/", siteName, fl.upstream.Port())
			out, errOut, code := runTool(t, "", curl, "-q", "-sS", "-v", "--max-time", "30",
				"-x", "http://"+proxy, "--cacert", caCert, "-w", "\nssl_verify_result=%{ssl_verify_result}\n", url)
			require.Zero(t, code, "curl:\n%s\n%s", out, errOut)
			assert.Contains(t, out, "pinwall test origin "+siteName)
			assert.Contains(t, out, "ssl_verify_result=0")
			m := curlIssuer.FindStringSubmatch(errOut)
			require.NotNil(t, m, "curl -v shows no issuer:\n%s", errOut)
			assert.Contains(t, m[1], "pinwall Imported RSA Enterprise CA")

			// The session record is written when curl hangs up.
			require.Eventually(t, func() bool { return strings.Contains(stdout.String(), "\n") }, 20*time.Second, 10*time.Millisecond,
				"no session log line on stdout")
			require.NoError(t, cmd.Process.Signal(os.Interrupt))
			select {
			case err := <-exited:
				stopped = true
				require.NoError(t, err, "exit status after SIGINT; stderr:\n%s", stderr.String())
			case <-time.After(30 * time.Second):
				require.FailNow(t, "pinwall serve firewall ignored SIGINT")
			}
			assert.Zero(t, cmd.ProcessState.ExitCode())

			recs := parseRecords(t, []byte(stdout.String()))
			require.Len(t, recs, 1, "stdout:\n%s", stdout.String())
			r := recs[0]
			assert.Equal(t, siteName, r.SNI)
			assert.Equal(t, siteName, r.HostnameHint)
			assert.Equal(t, fl.upstream, r.Dst)
			require.NotNil(t, r.Decryption)
			assert.Equal(t, fwlog.OutcomeDecrypted, r.Decryption.Outcome)
			assert.NotEmpty(t, r.Decryption.ForgedFingerprint)
			assert.NotEmpty(t, r.Decryption.UpstreamFingerprint)
			assert.Equal(t, fwlog.AppWebBrowsing, r.App)
		})
	}
}
