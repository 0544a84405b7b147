package bench

import (
	"bufio"
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/dtls/v3"
	dtlsnet "github.com/pion/dtls/v3/pkg/net"

	"github.com/pinwall/pinwall/accept"
	"github.com/pinwall/pinwall/gateway"
	"github.com/pinwall/pinwall/hostnet"
	"github.com/pinwall/pinwall/pki"
	"github.com/pinwall/pinwall/resolve"
	"github.com/pinwall/pinwall/tunnel"
)

// Pre-authentication floods: what the gateway's pre-authentication limits
// are for. An attacker on the in-process network holds idle TCP connections
// to the gateway, or sends DTLS ClientHellos each from a new source port,
// while devices on other addresses bring tunnels up and carry one flow each
// (its SHA-256 checked at both ends). Everything runs on loopback, bounded
// in count and time.

// Flood goals (issue 9): under either flood at least 95% of the legitimate
// tunnels come up and the gateway's RSS stays under 64 MB.
const (
	FloodLegitGoal = 0.95
	FloodRSSGoal   = 64 << 20
)

// FloodConfig sizes a flood. Zero values take the figures.
type FloodConfig struct {
	// IdleConns is the idle TCP connections held; zero means 4300.
	IdleConns int
	// Hellos is the DTLS ClientHellos sent; zero means 20000.
	Hellos int
	// Window is how long a flood lasts (idle connections held, hellos
	// spread over it) and legitimate tunnels are attempted; zero means 30s.
	Window time.Duration
	// Legit is the legitimate tunnels attempted, spread over Window; zero
	// means 40.
	Legit int
	// Attackers is the number of attacking addresses; zero means 1.
	Attackers int
	// LimitsOff runs the gateway as it was before its pre-authentication
	// limits (the reference they are measured against).
	LimitsOff bool
	// Child runs the gateway in a child process of its own (the report's
	// executable must call GatewayChild first), so that its resident set
	// is its own; otherwise it runs in this process.
	Child bool
}

func (c FloodConfig) withDefaults() FloodConfig {
	if c.IdleConns <= 0 {
		c.IdleConns = 4300
	}
	if c.Hellos <= 0 {
		c.Hellos = 20000
	}
	if c.Window <= 0 {
		c.Window = 30 * time.Second
	}
	if c.Legit <= 0 {
		c.Legit = 40
	}
	if c.Attackers <= 0 {
		c.Attackers = 1
	}
	return c
}

// FloodResult is what one flood did.
type FloodResult struct {
	// Legit tunnels attempted and Up those that came up and carried their
	// flow intact; Errors samples why the others failed.
	Legit, Up int
	Errors    []string
	// Sent counts the attacker's connection attempts or hellos.
	Sent int
	// BaseRSS and PeakRSS are the gateway process's resident set before
	// and during the flood; RSSAlone says whether that process holds the
	// gateway alone, or the attackers and devices too (an upper bound).
	BaseRSS, PeakRSS int64
	RSSAlone         bool
	// Stats is the gateway's counters at the end of the flood.
	Stats gateway.Stats
	// Duration is the flood's wall time.
	Duration time.Duration
}

// Ratio is Up over Legit.
func (r FloodResult) Ratio() float64 {
	if r.Legit == 0 {
		return 0
	}
	return float64(r.Up) / float64(r.Legit)
}

// Flood addresses, all real loopback: the gateway and the echo origin on
// 127.0.0.1, the devices on 127.0.10.x, the attackers on 127.0.66.x (so the
// gateway tells them apart by source address, as it would on the internet).
var (
	floodLocal    = netip.MustParseAddr("127.0.0.1")
	floodLaptops  = netip.MustParseAddr("127.0.10.1")
	floodAttacker = netip.MustParseAddr("127.0.66.1")
)

const (
	floodGatewayName = "gateway.flood.test"
	floodOriginName  = "echo.flood.test"
	floodPayload     = 4 << 10
	floodLaptopCount = 8
)

// floodEnv is a gateway, in process or in a child process of its own, with
// an echo origin.
type floodEnv struct {
	gw      floodGateway
	addr    netip.AddrPort
	pki     *pki.Set
	device  *tls.Certificate
	echo    *echoServer
	echoAt  netip.AddrPort
	laptops []netip.Addr
	attack  []netip.Addr
}

// floodGateway is the gateway under test, wherever it runs.
type floodGateway interface {
	Stats() gateway.Stats
	// RSS returns the resident set of the gateway's process now and at
	// its peak, and whether that process holds the gateway alone.
	RSS() (now, peak int64, alone bool)
	Close() error
}

func startFloodEnv(ctx context.Context, cfg FloodConfig, child bool) (_ *floodEnv, err error) {
	set, err := pki.NewSet(pki.Config{}, "acme")
	if err != nil {
		return nil, err
	}
	serverCert, err := set.ServerCert(floodGatewayName)
	if err != nil {
		return nil, err
	}
	device, err := set.DeviceCert("acme", "alice@acme.test", "LAPTOP-0001")
	if err != nil {
		return nil, err
	}
	e := &floodEnv{pki: set, device: device}
	defer func() {
		if err != nil {
			e.Close()
		}
	}()
	ln, err := net.Listen("tcp", netip.AddrPortFrom(floodLocal, 0).String())
	if err != nil {
		return nil, err
	}
	e.echo = serveEcho(ln)
	e.echoAt = netip.MustParseAddrPort(ln.Addr().String())
	for i := range floodLaptopCount {
		e.laptops = append(e.laptops, nthAddr(floodLaptops, i))
	}
	for i := range cfg.Attackers {
		e.attack = append(e.attack, nthAddr(floodAttacker, i))
	}
	gc := floodGatewayConfig{LimitsOff: cfg.LimitsOff, EchoAt: e.echoAt.String(), TenantCA: string(set.Tenant.CertPEM()), Chain: string(pki.ChainPEM(serverCert))}
	key, err := pki.KeyPEM(serverCert.PrivateKey.(crypto.Signer))
	if err != nil {
		return nil, err
	}
	gc.Key = string(key)
	if child {
		e.gw, e.addr, err = startGatewayChild(ctx, gc)
	} else {
		e.gw, e.addr, err = startGatewayHere(ctx, gc)
	}
	if err != nil {
		return nil, err
	}
	return e, nil
}

// nthAddr is base plus n in its last two bytes.
func nthAddr(base netip.Addr, n int) netip.Addr {
	b := base.As4()
	v := int(b[2])<<8 | int(b[3]) + n
	return netip.AddrFrom4([4]byte{b[0], b[1], byte(v >> 8), byte(v)})
}

func (e *floodEnv) Close() {
	if e.gw != nil {
		e.gw.Close()
	}
	if e.echo != nil {
		e.echo.Close()
	}
}

// dial connects from src to the gateway.
func (e *floodEnv) dial(ctx context.Context, network string, src netip.Addr) (net.Conn, error) {
	var local net.Addr = &net.TCPAddr{IP: src.AsSlice()}
	if network == "udp" {
		local = &net.UDPAddr{IP: src.AsSlice()}
	}
	d := net.Dialer{LocalAddr: local}
	return d.DialContext(ctx, network, e.addr.String())
}

// floodGatewayConfig is what a gateway under flood is started from, in
// process or sent to a child process as JSON.
type floodGatewayConfig struct {
	LimitsOff bool
	EchoAt    string
	TenantCA  string
	Chain     string
	Key       string
}

func (c floodGatewayConfig) gateway() (gateway.Config, error) {
	cert, err := tls.X509KeyPair([]byte(c.Chain), []byte(c.Key))
	if err != nil {
		return gateway.Config{}, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(c.TenantCA)) {
		return gateway.Config{}, errors.New("bench: no tenant CA")
	}
	echo, err := netip.ParseAddrPort(c.EchoAt)
	if err != nil {
		return gateway.Config{}, err
	}
	zone, err := resolve.NewZone(resolve.Record{Name: floodOriginName, Addrs: []netip.Addr{echo.Addr()}})
	if err != nil {
		return gateway.Config{}, err
	}
	gc := gateway.Config{Name: floodGatewayName, Certificate: &cert, ClientCAs: pool, Stack: hostnet.OS{}, Resolver: zone}
	if c.LimitsOff {
		limitsOff(&gc)
	}
	return gc, nil
}

// startGateway starts a gateway on 127.0.0.1 on a port free for both TCP
// and UDP.
func startGateway(ctx context.Context, gc gateway.Config) (*gateway.Gateway, error) {
	var last error
	for range 20 {
		l, err := net.Listen("tcp", netip.AddrPortFrom(floodLocal, 0).String())
		if err != nil {
			return nil, err
		}
		gc.Addr = netip.MustParseAddrPort(l.Addr().String())
		l.Close()
		g, err := gateway.New(gc)
		if err != nil {
			return nil, err
		}
		if last = g.Start(ctx); last == nil {
			return g, nil
		}
		g.Close()
	}
	return nil, fmt.Errorf("bench: no port free for the gateway: %w", last)
}

// hereGateway is a gateway in this process.
type hereGateway struct{ *gateway.Gateway }

func (g hereGateway) RSS() (now, peak int64, alone bool) {
	st := readStatus(os.Getpid())
	return st["VmRSS"], st["VmHWM"], false
}

func startGatewayHere(ctx context.Context, c floodGatewayConfig) (floodGateway, netip.AddrPort, error) {
	gc, err := c.gateway()
	if err != nil {
		return nil, netip.AddrPort{}, err
	}
	g, err := startGateway(ctx, gc)
	if err != nil {
		return nil, netip.AddrPort{}, err
	}
	return hereGateway{g}, g.Addr(), nil
}

// floodChildEnv marks a process started to run a gateway under flood.
const floodChildEnv = "PINWALL_BENCH_FLOOD_GATEWAY"

// childGateway is a gateway in a child process: the same executable, run
// by GatewayChild.
type childGateway struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *bufio.Scanner
	done  chan error
	stats gateway.Stats
}

func startGatewayChild(ctx context.Context, c floodGatewayConfig) (floodGateway, netip.AddrPort, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, netip.AddrPort{}, err
	}
	cmd := exec.CommandContext(ctx, exe)
	cmd.Env = append(os.Environ(), floodChildEnv+"=1")
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, netip.AddrPort{}, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, netip.AddrPort{}, err
	}
	if err := cmd.Start(); err != nil {
		return nil, netip.AddrPort{}, err
	}
	g := &childGateway{cmd: cmd, stdin: stdin, out: bufio.NewScanner(stdout), done: make(chan error, 1)}
	if err := json.NewEncoder(stdin).Encode(c); err != nil {
		g.Close()
		return nil, netip.AddrPort{}, err
	}
	var ready struct{ Addr string }
	if !g.out.Scan() {
		g.Close()
		return nil, netip.AddrPort{}, errors.New("bench: the gateway child exited before it was ready")
	}
	if err := json.Unmarshal(g.out.Bytes(), &ready); err != nil {
		g.Close()
		return nil, netip.AddrPort{}, fmt.Errorf("bench: gateway child: %w", err)
	}
	addr, err := netip.ParseAddrPort(ready.Addr)
	if err != nil {
		g.Close()
		return nil, netip.AddrPort{}, err
	}
	return g, addr, nil
}

// Stats asks the child for the gateway's counters.
func (g *childGateway) Stats() gateway.Stats {
	if _, err := io.WriteString(g.stdin, "stats\n"); err == nil && g.out.Scan() {
		_ = json.Unmarshal(g.out.Bytes(), &g.stats)
	}
	return g.stats
}

func (g *childGateway) RSS() (now, peak int64, alone bool) {
	st := readStatus(g.cmd.Process.Pid)
	return st["VmRSS"], st["VmHWM"], true
}

func (g *childGateway) Close() error {
	g.stdin.Close()
	return g.cmd.Wait()
}

// GatewayChild runs a gateway under flood when this process was started
// for it by the flood measurements (the report command calls it first):
// it reads its configuration as a JSON line on standard input, writes the
// gateway's address, answers "stats" lines with the gateway's counters,
// and stops at the end of its input. It returns false, doing nothing, in
// any other process.
func GatewayChild() bool {
	if os.Getenv(floodChildEnv) == "" {
		return false
	}
	if err := gatewayChild(os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "bench: gateway child:", err)
		os.Exit(1)
	}
	return true
}

func gatewayChild(in io.Reader, out io.Writer) error {
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	if !sc.Scan() {
		return errors.New("no configuration")
	}
	var c floodGatewayConfig
	if err := json.Unmarshal(sc.Bytes(), &c); err != nil {
		return err
	}
	gc, err := c.gateway()
	if err != nil {
		return err
	}
	g, err := startGateway(context.Background(), gc)
	if err != nil {
		return err
	}
	defer g.Close()
	enc := json.NewEncoder(out)
	if err := enc.Encode(struct{ Addr string }{g.Addr().String()}); err != nil {
		return err
	}
	for sc.Scan() {
		if sc.Text() == "stats" {
			if err := enc.Encode(g.Stats()); err != nil {
				return err
			}
		}
	}
	return nil
}

// readStatus reads the kB figures of /proc/PID/status, in bytes.
func readStatus(pid int) map[string]int64 {
	out := map[string]int64{}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return out
	}
	for line := range strings.Lines(string(b)) {
		k, v, ok := strings.Cut(line, ":")
		f := strings.Fields(v)
		if !ok || len(f) != 2 || f[1] != "kB" {
			continue
		}
		if n, err := strconv.ParseInt(f[0], 10, 64); err == nil {
			out[k] = n << 10
		}
	}
	return out
}

// legit brings one tunnel up from laptop over tr, carries one flow of
// floodPayload random bytes through it to the echo origin and checks the
// SHA-256 of what came back.
func (e *floodEnv) legit(ctx context.Context, laptop netip.Addr, tr tunnel.Transport) error {
	sess, err := e.bringUp(ctx, laptop, e.device, tr)
	if err != nil {
		return err
	}
	defer sess.Close()
	return e.checkFlow(ctx, sess)
}

// bringUp brings a tunnel up over tr from laptop with device's certificate:
// handshake, greeting, multiplexer. The caller closes the session.
func (e *floodEnv) bringUp(ctx context.Context, laptop netip.Addr, device *tls.Certificate, tr tunnel.Transport) (tunnel.Session, error) {
	var (
		conn net.Conn
		sess tunnel.Session
		err  error
	)
	switch tr {
	case tunnel.TransportTLS:
		raw, err := e.dial(ctx, "tcp", laptop)
		if err != nil {
			return nil, fmt.Errorf("dial: %w", err)
		}
		tc := tls.Client(raw, &tls.Config{ServerName: floodGatewayName, RootCAs: e.pki.Internet.Pool(),
			Certificates: []tls.Certificate{*device}, MinVersion: tls.VersionTLS13, NextProtos: []string{tunnel.ALPN}})
		conn = tc
		if err := tc.HandshakeContext(ctx); err != nil {
			tc.Close()
			return nil, fmt.Errorf("tls handshake: %w", err)
		}
	case tunnel.TransportDTLS:
		uc, err := e.dial(ctx, "udp", laptop)
		if err != nil {
			return nil, fmt.Errorf("dial: %w", err)
		}
		// As the client does: pion/dtls's handshake, then the record path.
		rp := tunnel.NewRecordPath(dtlsnet.PacketConnFromConn(uc))
		dc, err := dtls.ClientWithOptions(rp, uc.RemoteAddr(),
			dtls.WithServerName(floodGatewayName), dtls.WithRootCAs(e.pki.Internet.Pool()),
			dtls.WithCertificates(*device), dtls.WithExtendedMasterSecret(dtls.RequireExtendedMasterSecret),
			dtls.WithSupportedProtocols(tunnel.ALPN))
		if err != nil {
			uc.Close()
			return nil, err
		}
		if err := dc.HandshakeContext(ctx); err != nil {
			dc.Close()
			return nil, fmt.Errorf("dtls handshake: %w", err)
		}
		if conn, err = rp.Attach(dc, nil); err != nil {
			dc.Close()
			return nil, fmt.Errorf("dtls record path: %w", err)
		}
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Now()) })
	defer stop()
	if _, err := tunnel.ReadGreeting(conn); err != nil {
		conn.Close()
		return nil, fmt.Errorf("greeting: %w", err)
	}
	if tr == tunnel.TransportTLS {
		sess, err = tunnel.NewTLSSession(ctx, conn, tunnel.RoleClient, tunnel.Config{})
	} else {
		sess, err = tunnel.NewDTLSSession(ctx, conn, tunnel.RoleClient, tunnel.Config{})
	}
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("session: %w", err)
	}
	return sess, nil
}

// checkFlow carries one flow of floodPayload random bytes to the echo
// origin over sess and checks its SHA-256 back.
func (e *floodEnv) checkFlow(ctx context.Context, sess tunnel.Session) error {
	st, err := sess.Open(ctx)
	if err != nil {
		return fmt.Errorf("open flow: %w", err)
	}
	defer st.Close()
	stopSt := context.AfterFunc(ctx, func() { _ = st.SetDeadline(time.Now()) })
	defer stopSt()
	req, err := tunnel.AppendRequest(nil, tunnel.Request{Host: floodOriginName, Port: e.echoAt.Port(), FlowID: 1})
	if err != nil {
		return err
	}
	payload := make([]byte, floodPayload)
	_, _ = rand.Read(payload)
	if _, err := st.Write(append(req, payload...)); err != nil {
		return fmt.Errorf("flow write: %w", err)
	}
	if err := st.CloseWrite(); err != nil {
		return fmt.Errorf("flow close write: %w", err)
	}
	rep, err := tunnel.ReadReply(st)
	if err != nil {
		return fmt.Errorf("flow reply: %w", err)
	}
	if rep.Status != tunnel.StatusOK {
		return rep.Err(floodOriginName)
	}
	got, err := io.ReadAll(st)
	if err != nil {
		return fmt.Errorf("flow read: %w", err)
	}
	if sha256.Sum256(got) != sha256.Sum256(payload) {
		return fmt.Errorf("flow: SHA-256 of %d bytes back differs from the %d sent", len(got), len(payload))
	}
	return nil
}

// runLegit attempts n tunnels over tr spread evenly over window, each from
// the next laptop address, and counts those that came up and carried their
// flow.
func (e *floodEnv) runLegit(ctx context.Context, tr tunnel.Transport, n int, window time.Duration) (up int, errs []string) {
	var (
		wg  sync.WaitGroup
		mu  sync.Mutex
		ups atomic.Int64
	)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t := time.NewTimer(time.Duration(i) * window / time.Duration(n))
			defer t.Stop()
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			actx, cancel := context.WithTimeout(ctx, 15*time.Second)
			defer cancel()
			if err := e.legit(actx, e.laptops[i%len(e.laptops)], tr); err != nil {
				mu.Lock()
				if len(errs) < 5 {
					errs = append(errs, err.Error())
				}
				mu.Unlock()
				return
			}
			ups.Add(1)
		}()
	}
	wg.Wait()
	return int(ups.Load()), errs
}

// flood runs attack for cfg.Window while legitimate tunnels over tr are
// brought up, watching the gateway's resident set.
func flood(ctx context.Context, cfg FloodConfig, tr tunnel.Transport, attack func(ctx context.Context, e *floodEnv, start time.Time) int) (FloodResult, error) {
	cfg = cfg.withDefaults()
	e, err := startFloodEnv(ctx, cfg, cfg.Child)
	if err != nil {
		return FloodResult{}, fmt.Errorf("bench: flood: %w", err)
	}
	defer e.Close()
	res := FloodResult{Legit: cfg.Legit}
	mem := watchRSS(e.gw)
	res.BaseRSS = mem.base
	start := time.Now()
	actx, cancel := context.WithCancel(ctx)
	defer cancel()
	sent := make(chan int, 1)
	go func() { sent <- attack(actx, e, start) }()
	res.Up, res.Errors = e.runLegit(ctx, tr, cfg.Legit, cfg.Window)
	if d := cfg.Window - time.Since(start); d > 0 {
		select {
		case <-ctx.Done():
		case <-time.After(d):
		}
	}
	res.Stats = e.gw.Stats()
	res.PeakRSS, res.RSSAlone = mem.stop()
	cancel()
	res.Sent = <-sent
	res.Duration = time.Since(start)
	return res, ctx.Err()
}

// FloodIdleTCP holds cfg.IdleConns idle TCP connections to the gateway
// (never a byte sent) for cfg.Window while cfg.Legit TLS tunnels are
// brought up from other addresses. Connections the gateway resets are not
// re-dialled.
func FloodIdleTCP(ctx context.Context, cfg FloodConfig) (FloodResult, error) {
	cfg = cfg.withDefaults()
	return flood(ctx, cfg, tunnel.TransportTLS, func(ctx context.Context, e *floodEnv, _ time.Time) int {
		var (
			wg    sync.WaitGroup
			mu    sync.Mutex
			conns []net.Conn
			sent  atomic.Int64
		)
		const workers = 32
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				src := e.attack[w%len(e.attack)]
				for i := w; i < cfg.IdleConns && ctx.Err() == nil; i += workers {
					sent.Add(1)
					c, err := e.dial(ctx, "tcp", src)
					if err != nil {
						continue // reset by the gateway before the dial returned
					}
					mu.Lock()
					conns = append(conns, c)
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		<-ctx.Done() // hold them to the end of the window
		for _, c := range conns {
			c.Close()
		}
		return int(sent.Load())
	})
}

// FloodDTLSHellos sends cfg.Hellos DTLS ClientHellos to the gateway, each
// from a new source port, spread over cfg.Window, while cfg.Legit DTLS
// tunnels are brought up from other addresses.
func FloodDTLSHellos(ctx context.Context, cfg FloodConfig) (FloodResult, error) {
	cfg = cfg.withDefaults()
	hello := dtlsClientHello()
	return flood(ctx, cfg, tunnel.TransportDTLS, func(ctx context.Context, e *floodEnv, start time.Time) int {
		var (
			wg   sync.WaitGroup
			sent atomic.Int64
		)
		const workers = 8
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				src := e.attack[w%len(e.attack)]
				for i := w; i < cfg.Hellos; i += workers {
					// Pace: hello i leaves at i/Hellos of the window.
					if d := time.Until(start.Add(time.Duration(i) * cfg.Window / time.Duration(cfg.Hellos))); d > 0 {
						select {
						case <-ctx.Done():
							return
						case <-time.After(d):
						}
					}
					c, err := e.dial(ctx, "udp", src)
					if err != nil {
						continue
					}
					if _, err := c.Write(hello); err == nil {
						sent.Add(1)
					}
					c.Close()
				}
			}()
		}
		wg.Wait()
		return int(sent.Load())
	})
}

// dtlsClientHello is a minimal DTLS 1.2 ClientHello record without a
// cookie (RFC 6347 section 4.2.1): enough for a server to answer with a
// HelloVerifyRequest, and to start a handshake state in one that keeps
// state before the cookie.
func dtlsClientHello() []byte {
	body := []byte{0xfe, 0xfd}                          // client_version DTLS 1.2
	body = append(body, bytes.Repeat([]byte{7}, 32)...) // random
	body = append(body, 0)                              // session_id
	body = append(body, 0)                              // cookie
	body = append(body, 0, 2, 0xc0, 0x2b)               // cipher_suites: ECDHE_ECDSA_AES_128_GCM_SHA256
	body = append(body, 1, 0)                           // compression_methods: null
	body = append(body, 0, 0)                           // extensions
	n := len(body)
	hs := []byte{1, byte(n >> 16), byte(n >> 8), byte(n), 0, 0, 0, 0, 0, byte(n >> 16), byte(n >> 8), byte(n)}
	hs = append(hs, body...)
	rec := []byte{22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, byte(len(hs) >> 8), byte(len(hs))}
	return append(rec, hs...)
}

// rssWatch samples the gateway process's resident set until stopped.
type rssWatch struct {
	gw    floodGateway
	base  int64
	alone bool
	peak  atomic.Int64
	done  chan struct{}
	wg    sync.WaitGroup
}

func watchRSS(gw floodGateway) *rssWatch {
	runtime.GC()
	w := &rssWatch{gw: gw, done: make(chan struct{})}
	w.base, _, w.alone = gw.RSS()
	w.peak.Store(w.base)
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-w.done:
				return
			case <-t.C:
				if v, _, _ := gw.RSS(); v > w.peak.Load() {
					w.peak.Store(v)
				}
			}
		}
	}()
	return w
}

// stop returns the peak: sampled, or the process's own high-water mark when
// the process holds the gateway alone.
func (w *rssWatch) stop() (peak int64, alone bool) {
	close(w.done)
	w.wg.Wait()
	now, hwm, alone := w.gw.RSS()
	peak = max(w.peak.Load(), now)
	if alone {
		peak = max(peak, hwm)
	}
	return peak, alone
}

// echoServer echoes each connection until the peer half-closes.
type echoServer struct {
	l  *accept.Listener
	wg sync.WaitGroup

	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

func serveEcho(l net.Listener) *echoServer {
	s := &echoServer{l: accept.Wrap(l, accept.Config{Name: "bench echo"}), conns: map[net.Conn]struct{}{}}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := s.l.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns[c] = struct{}{}
			s.mu.Unlock()
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer func() {
					s.mu.Lock()
					delete(s.conns, c)
					s.mu.Unlock()
					c.Close()
				}()
				if _, err := io.Copy(c, c); err == nil {
					if cw, ok := c.(interface{ CloseWrite() error }); ok {
						_ = cw.CloseWrite()
					}
				}
			}()
		}
	}()
	return s
}

func (s *echoServer) Close() error {
	err := s.l.Close()
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}

// limitsOff is the gateway as it was before its pre-authentication limits:
// 4,096 peers in progress at most, whatever their source or cookie, a 10 s
// handshake deadline and 100,000 events in memory. It is the reference the
// limits are measured against.
func limitsOff(c *gateway.Config) {
	c.MaxHandshakesPerSource, c.MaxHandshakes, c.MaxUnverified = 4096, 4096, 4096
	c.HandshakeTimeout, c.CookieTimeout = 10*time.Second, 10*time.Second
	c.KeepEvents = 100000
}

// FloodSection measures both floods at the figures (4,300 idle
// connections held 30 s; 20,000 ClientHellos over 30 s; 40 legitimate
// tunnels each) against the gateway as configured by default and, side by
// side, with its pre-authentication limits off.
func FloodSection(cfg FloodConfig) SectionFunc {
	return func(ctx context.Context, log io.Writer) (Section, error) {
		sec := Section{Title: "Gateway under pre-authentication floods (loopback; the gateway in a process of its own)"}
		type flood struct {
			name string
			run  func(context.Context, FloodConfig) (FloodResult, error)
			tr   string
		}
		floods := []flood{
			{"idle TCP connections", FloodIdleTCP, "TLS"},
			{"DTLS ClientHellos", FloodDTLSHellos, "DTLS"},
		}
		c := cfg.withDefaults()
		for _, f := range floods {
			for _, off := range []bool{false, true} {
				if err := ctx.Err(); err != nil {
					return sec, err
				}
				variant := "limits on"
				if off {
					variant = "limits off"
				}
				if log != nil {
					fmt.Fprintf(log, "bench: flood %s, %s ...\n", f.name, variant)
				}
				fc := c
				fc.LimitsOff = off
				res, err := f.run(ctx, fc)
				label := fmt.Sprintf("%s, %s", f.name, variant)
				if err != nil {
					sec.Add(Missing(label, UnitPercent, err.Error()))
					continue
				}
				up := Figure(fmt.Sprintf("%s: legitimate %s tunnels up", label, f.tr), 100*res.Ratio(), UnitPercent).
					WithNote(fmt.Sprintf("%d/%d, flow SHA-256 checked; %s sent", res.Up, res.Legit, thousands(res.Sent)))
				whose := "gateway process"
				if !res.RSSAlone {
					whose = "process (gateway, attackers, devices)"
				}
				rss := Figure(fmt.Sprintf("%s: %s RSS peak", label, whose), float64(res.PeakRSS)/(1<<20), UnitMiB).
					WithNote(fmt.Sprintf("%.1f MiB before; %s events logged, %s kept; %s datagrams refused",
						float64(res.BaseRSS)/(1<<20), thousands(res.Stats.EventsLogged), thousands(res.Stats.EventsKept), thousands(int(res.Stats.UDPRefused))))
				if !off {
					up = up.AtLeast(100*FloodLegitGoal, "goal ≥ 95%")
					rss = rss.AtMost(float64(FloodRSSGoal)/(1<<20), "goal < 64 MiB")
				}
				if len(res.Errors) > 0 {
					up = up.WithNote("first errors: " + strings.Join(res.Errors, " | "))
				}
				sec.Add(up, rss)
			}
		}
		sec.Notes = append(sec.Notes,
			fmt.Sprintf("%s idle connections held %v; %s ClientHellos, each from a new source port, spread over %v; %d legitimate tunnels spread over the same window from 8 other addresses",
				thousands(c.IdleConns), c.Window, thousands(c.Hellos), c.Window, c.Legit),
			"the gateway runs in a process of its own (RSS: VmHWM of that process) when the report can start one",
			"limits off: the gateway as before issue 9 (4,096 handshakes in progress whatever their source or cookie, 10 s deadlines, 100,000 events in memory), measured in the same run")
		return sec, nil
	}
}

// thousands writes n with comma separators.
func thousands(n int) string {
	s := strconv.Itoa(n)
	if n < 0 || len(s) <= 3 {
		return s
	}
	var b strings.Builder
	for i, r := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(r)
	}
	return b.String()
}
