package bench

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pinwall/pinwall/hostnet"
	"github.com/pinwall/pinwall/mitm"
	"github.com/pinwall/pinwall/mitm/policy"
	"github.com/pinwall/pinwall/pki"
	"github.com/pinwall/pinwall/resolve"
)

// OriginDomain is the domain of every SNI the firewall measurements use.
const OriginDomain = "bench.test"

// WarmName is the SNI of warm-cache connections.
const WarmName = "warm." + OriginDomain

// Policies of pinwall's two paths.
const (
	decryptPolicy = `rules:
  - name: bench-decrypt
    match: { proto: tcp }
    action: decrypt
`
	splicePolicy = `rules:
  - name: bench-no-decrypt
    match: { proto: tcp }
    action: no-decrypt
`
)

// FirewallEnvConfig configures StartFirewallEnv. The zero value is the
// reference setup: RSA-2048 everywhere.
type FirewallEnvConfig struct {
	// Algorithm of every key (both CAs, the origin's leaves, the forged
	// leaves); empty means pki.RSA2048.
	Algorithm pki.KeyAlgorithm
	// OriginAlgorithm, if set, is the origin leaves' key alone (the CAs
	// keep Algorithm): pinwall's forged leaves follow it.
	OriginAlgorithm pki.KeyAlgorithm
	// Dir holds the files the external tools read; empty means a new
	// temporary directory, removed by Close.
	Dir string
}

// FirewallEnv is a TLS blob origin on loopback and the paths to it. The
// origin serves a wildcard certificate for *.bench.test unless a name has a
// certificate of its own (see ColdNames), so that a cold connection meets
// both a new SNI and a new upstream certificate.
type FirewallEnv struct {
	// Internet signs the origin's certificates; Enterprise is the
	// intercepting CA of pinwall, sslsplit and mitmproxy alike.
	Internet, Enterprise *pki.CA

	origin   *BlobServer
	wildcard *tls.Certificate
	leafKey  crypto.Signer
	certs    sync.Map // SNI → *tls.Certificate
	serial   atomic.Uint64
	trust    *x509.CertPool
	dir      string
	ownDir   bool

	mu     sync.Mutex
	paths  []*Path
	closed bool
}

// Path is one way to the origin: direct, through a relay or through a
// firewall listening on loopback.
type Path struct {
	// Name labels the path in figures ("pinwall decrypt").
	Name string
	// Addr is where its clients connect.
	Addr netip.AddrPort
	// Decrypts says whether the path terminates TLS with forged certificates.
	Decrypts bool
	// Note qualifies the path's figures (version, options).
	Note string
	// Curve is the ECDHE group the client offers first; zero means X25519.
	// A path whose server has no X25519 gets its own group, so that no
	// handshake pays a HelloRetryRequest.
	Curve tls.CurveID

	stop     func() error
	stopOnce sync.Once
	stopErr  error
}

// Close stops whatever serves the path. It is idempotent.
func (p *Path) Close() error {
	p.stopOnce.Do(func() {
		if p.stop != nil {
			p.stopErr = p.stop()
		}
	})
	return p.stopErr
}

// StartFirewallEnv makes the CAs and starts the origin.
func StartFirewallEnv(cfg FirewallEnvConfig) (_ *FirewallEnv, err error) {
	alg := cfg.Algorithm
	if alg == "" {
		alg = pki.RSA2048
	}
	pc := pki.Config{Algorithm: alg}
	e := &FirewallEnv{dir: cfg.Dir}
	if e.dir == "" {
		if e.dir, err = os.MkdirTemp("", "pinwall-bench-"); err != nil {
			return nil, fmt.Errorf("bench: %w", err)
		}
		e.ownDir = true
	}
	defer func() {
		if err != nil {
			e.Close()
		}
	}()
	// The three keys are independent: make them side by side.
	var (
		wg   sync.WaitGroup
		errs [3]error
	)
	wg.Add(3)
	go func() {
		defer wg.Done()
		e.Internet, errs[0] = pki.NewCA(pc, "pinwall bench Internet Root CA", "pinwall bench internet")
	}()
	go func() {
		defer wg.Done()
		e.Enterprise, errs[1] = pki.NewCA(pc, "pinwall bench Enterprise Forward Trust CA", "pinwall bench enterprise")
	}()
	go func() {
		defer wg.Done()
		oc := pc
		if cfg.OriginAlgorithm != "" {
			oc.Algorithm = cfg.OriginAlgorithm
		}
		e.leafKey, errs[2] = oc.GenerateKey()
	}()
	wg.Wait()
	if err := errors.Join(errs[:]...); err != nil {
		return nil, err
	}
	e.wildcard, err = e.Internet.Issue(pki.Leaf{
		Subject:  pkix.Name{CommonName: "*." + OriginDomain, Organization: []string{"pinwall bench origin"}},
		DNSNames: []string{"*." + OriginDomain, OriginDomain},
		Key:      e.leafKey,
	})
	if err != nil {
		return nil, err
	}
	e.trust = x509.NewCertPool()
	e.trust.AddCert(e.Internet.Cert)
	e.trust.AddCert(e.Enterprise.Cert)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("bench: origin: %w", err)
	}
	e.origin = ServeBlob(ln, &tls.Config{
		MinVersion: tls.VersionTLS12, // sslsplit 0.5 speaks TLS 1.2 upstream
		GetCertificate: func(h *tls.ClientHelloInfo) (*tls.Certificate, error) {
			if c, ok := e.certs.Load(h.ServerName); ok {
				return c.(*tls.Certificate), nil
			}
			return e.wildcard, nil
		},
	})
	return e, nil
}

// OriginAddr is the origin's address.
func (e *FirewallEnv) OriginAddr() netip.AddrPort {
	return e.origin.Addr().(*net.TCPAddr).AddrPort()
}

// Dir is where the external tools' files go.
func (e *FirewallEnv) Dir() string { return e.dir }

// Close stops every path and the origin and removes the temporary files. It
// is idempotent.
func (e *FirewallEnv) Close() error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil
	}
	e.closed = true
	paths := e.paths
	e.mu.Unlock()
	var errs []error
	for _, p := range paths {
		errs = append(errs, p.Close())
	}
	if e.origin != nil {
		errs = append(errs, e.origin.Close())
	}
	if e.ownDir {
		errs = append(errs, os.RemoveAll(e.dir))
	}
	return errors.Join(errs...)
}

func (e *FirewallEnv) addPath(p *Path) (*Path, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		p.Close()
		return nil, errors.New("bench: firewall env closed")
	}
	e.paths = append(e.paths, p)
	return p, nil
}

// Direct is the path without anything in between.
func (e *FirewallEnv) Direct() *Path {
	return &Path{Name: "direct", Addr: e.OriginAddr()}
}

// StartRelay starts a plain Go relay (two io.Copy, half-closing) in front
// of the origin: the floor of any userspace proxy.
func (e *FirewallEnv) StartRelay() (*Path, error) {
	r, err := StartRelay(e.OriginAddr())
	if err != nil {
		return nil, err
	}
	return e.addPath(&Path{Name: "go relay", Addr: r.Addr(), Note: "io.Copy both ways", stop: r.Close})
}

// StartPinwall starts pinwall's firewall in explicit-destination mode
// (ServeForward) in front of the origin, decrypting every session (its
// handshakes to the origin resumed, as ProxySG does) or splicing every
// session untouched.
func (e *FirewallEnv) StartPinwall(decrypt bool) (*Path, error) {
	return e.startPinwall(decrypt, true)
}

// NoResumptionPath names pinwall's decrypt path with a full handshake to
// the origin for every session (mitm.Config.UpstreamSessions zero, the
// firewall's default).
const NoResumptionPath = "pinwall decrypt, full upstream handshakes"

// StartPinwallNoResumption starts pinwall's decrypting firewall with every
// handshake to the origin a full one.
func (e *FirewallEnv) StartPinwallNoResumption() (*Path, error) {
	return e.startPinwall(true, false)
}

func (e *FirewallEnv) startPinwall(decrypt, resume bool) (*Path, error) {
	src, name := splicePolicy, "pinwall splice"
	if decrypt {
		src, name = decryptPolicy, "pinwall decrypt"
	}
	sessions := 1024
	if !resume {
		name, sessions = NoResumptionPath, 0
	}
	pol, err := policy.Parse("bench.yaml", []byte(src))
	if err != nil {
		return nil, err
	}
	fw, err := mitm.New(mitm.Config{
		Name:        "pinwall-bench",
		Outside:     hostnet.OS{},
		Policy:      pol,
		CA:          e.Enterprise,
		Roots:       e.Internet.Pool(),
		Resolver:    &resolve.Zone{},
		KeepRecords: 4096,
		// Resume the firewall's own handshakes to the origin, as ProxySG's
		// SSL origination session cache does (docs/sources.md): the
		// client-facing leg is unchanged.
		UpstreamSessions: sessions,
	})
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fw.Close()
		return nil, fmt.Errorf("bench: %s: %w", name, err)
	}
	done := make(chan error, 1)
	go func() { done <- fw.ServeForward(context.Background(), ln, e.OriginAddr()) }() // stopped by fw.Close
	note := ""
	if decrypt && resume {
		note = "handshakes to the origin resumed (mitm.Config.UpstreamSessions, as ProxySG's SSL origination session cache; docs/sources.md#firewall-upstream-session-resumption)"
	}
	p := &Path{Name: name, Addr: ln.Addr().(*net.TCPAddr).AddrPort(), Decrypts: decrypt, Note: note, stop: func() error {
		err := fw.Close()
		ln.Close()
		return errors.Join(err, <-done)
	}}
	return e.addPath(p)
}

// ColdNames issues certificates for n names never used before (signing them
// in parallel, before the measurement) and returns a source handing them
// out in turn; past n it hands out fresh names served by the wildcard.
func (e *FirewallEnv) ColdNames(n int) (func() string, error) {
	names := make([]string, n)
	for i := range names {
		names[i] = e.freshName()
	}
	errs := make([]error, n)
	var wg sync.WaitGroup
	work := make(chan int)
	for range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				c, err := e.Internet.Issue(pki.Leaf{
					Subject:  pkix.Name{CommonName: names[i], Organization: []string{"pinwall bench origin"}},
					DNSNames: []string{names[i]},
					Key:      e.leafKey,
				})
				if err != nil {
					errs[i] = err
					continue
				}
				e.certs.Store(names[i], c)
			}
		}()
	}
	for i := range names {
		work <- i
	}
	close(work)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	var next atomic.Int64
	return func() string {
		if i := next.Add(1) - 1; i < int64(len(names)) {
			return names[i]
		}
		return e.freshName()
	}, nil
}

// ForgetNames drops the per-name origin certificates (after a cold run).
func (e *FirewallEnv) ForgetNames() {
	e.certs.Clear()
}

func (e *FirewallEnv) freshName() string {
	return "c" + strconv.FormatUint(e.serial.Add(1), 10) + "." + OriginDomain
}

// WarmNames hands out WarmName every time.
func WarmNames() string { return WarmName }

// clientConfig is the measuring client: crypto/tls with ECDHE (X25519
// unless the path says otherwise; no post-quantum hybrid), verifying against
// the internet and enterprise CAs, no session resumption.
func (e *FirewallEnv) clientConfig(p *Path, sni string) *tls.Config {
	curves := []tls.CurveID{tls.X25519, tls.CurveP256}
	if p.Curve != 0 && p.Curve != tls.X25519 {
		curves = []tls.CurveID{p.Curve, tls.X25519}
	}
	return &tls.Config{
		ServerName:       sni,
		RootCAs:          e.trust,
		CurvePreferences: curves,
		MinVersion:       tls.VersionTLS12,
	}
}

// dial connects to p and completes the TLS handshake for sni. Go's TCP
// connections have TCP_NODELAY set.
func (e *FirewallEnv) dial(ctx context.Context, p *Path, sni string) (*tls.Conn, error) {
	d := net.Dialer{Timeout: dialTimeout}
	raw, err := d.DialContext(ctx, "tcp", p.Addr.String())
	if err != nil {
		return nil, err
	}
	tc := tls.Client(raw, e.clientConfig(p, sni))
	stop := context.AfterFunc(ctx, func() { _ = raw.SetDeadline(time.Now()) })
	if err := tc.HandshakeContext(ctx); err != nil {
		stop()
		raw.Close()
		return nil, fmt.Errorf("bench: %s: handshake for %s: %w", p.Name, sni, err)
	}
	stop()
	return tc, nil
}

// ConnSize is the response size of a connection op.
const ConnSize = 1 << 10

// ConnOp returns an op that opens a new connection through p (TCP connect,
// full TLS handshake for the next name of names), sends a request for
// ConnSize bytes and reads the whole response. Its latency is the time to
// the first byte of the response.
func (e *FirewallEnv) ConnOp(p *Path, names func() string) Op {
	return func(ctx context.Context) (Sample, error) {
		ctx, cancel := opContext(ctx)
		defer cancel()
		sni := names()
		t0 := time.Now()
		tc, err := e.dial(ctx, p, sni)
		if err != nil {
			return Sample{}, err
		}
		defer tc.Close()
		stop := context.AfterFunc(ctx, func() { _ = tc.SetDeadline(time.Now()) })
		defer stop()
		first, err := FetchBlob(tc, sni, ConnSize, true)
		if err != nil {
			return Sample{}, fmt.Errorf("bench: %s: %w", p.Name, err)
		}
		return Sample{Latency: first.Sub(t0)}, nil
	}
}

// BulkOp returns an op that opens a new connection through p and fetches
// size bytes on it.
func (e *FirewallEnv) BulkOp(p *Path, size int64) Op {
	return func(ctx context.Context) (Sample, error) {
		ctx, cancel := opContext(ctx)
		defer cancel()
		tc, err := e.dial(ctx, p, WarmName)
		if err != nil {
			return Sample{}, err
		}
		defer tc.Close()
		stop := context.AfterFunc(ctx, func() { _ = tc.SetDeadline(time.Now()) })
		defer stop()
		if _, err := FetchBlob(tc, WarmName, size, true); err != nil {
			return Sample{}, fmt.Errorf("bench: %s: %w", p.Name, err)
		}
		return Sample{Bytes: size}, nil
	}
}

// writeCAFiles writes the enterprise CA for the external tools: cert and
// key apart, and mitmproxy's key+cert bundle. It returns the paths.
func (e *FirewallEnv) writeCAFiles() (certFile, keyFile, bundle string, err error) {
	keyPEM, err := e.Enterprise.KeyPEM()
	if err != nil {
		return "", "", "", err
	}
	certPEM := e.Enterprise.CertPEM()
	certFile = filepath.Join(e.dir, "ca.crt")
	keyFile = filepath.Join(e.dir, "ca.key")
	bundle = filepath.Join(e.dir, "mitmproxy", "mitmproxy-ca.pem")
	if err := os.MkdirAll(filepath.Dir(bundle), 0o700); err != nil {
		return "", "", "", err
	}
	for _, f := range []struct {
		name string
		data []byte
	}{{certFile, certPEM}, {keyFile, keyPEM}, {bundle, append(append([]byte{}, keyPEM...), certPEM...)}} {
		if err := os.WriteFile(f.name, f.data, 0o600); err != nil {
			return "", "", "", err
		}
	}
	return certFile, keyFile, bundle, nil
}
