package probe

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/pinwall/pinwall/capture"
	"github.com/pinwall/pinwall/client"
	"github.com/pinwall/pinwall/failure"
	"github.com/pinwall/pinwall/hostnet"
	"github.com/pinwall/pinwall/origin"
	"github.com/pinwall/pinwall/resolve"
	"github.com/pinwall/pinwall/tunnel"
)

// Defaults and bounds of a run.
const (
	// DefaultRate is the default pace: new connections a second.
	DefaultRate = 10
	// MaxLimit bounds a whole run.
	MaxLimit = 60 * time.Second
	// DefaultStepTimeout bounds one attempt.
	DefaultStepTimeout = 3 * time.Second
	// DefaultFlows is how many flows the tunnel carries.
	DefaultFlows = 4
	// DefaultLearnAttempts is how many repeated attempts look for learning.
	DefaultLearnAttempts = 4
)

// Config configures a run. Zero values take the documented defaults.
type Config struct {
	// Bundle and Identity are what LoadBundle or ParseBundle returned
	// (required).
	Bundle   *Bundle
	Identity *Identity
	// Stack is the laptop's network (required): hostnet.OS{} in the field.
	Stack hostnet.Stack
	// Proxy, if set, is an HTTP CONNECT proxy the TCP attempts and the TLS
	// tunnel go through (DTLS goes direct). Its host must be an IP
	// literal or ProxyAddr must be set.
	Proxy *url.URL
	// ProxyAddr is the proxy's address when Proxy names a host; zero
	// means Proxy's host, an IP literal.
	ProxyAddr netip.AddrPort
	// Label names the network measured ("ACME HQ, 3rd floor"); empty means
	// "an unnamed network".
	Label string
	// Rate bounds new connections a second; zero means DefaultRate.
	Rate float64
	// Limit bounds the whole run; zero (or more than MaxLimit) means
	// MaxLimit.
	Limit time.Duration
	// StepTimeout bounds one attempt; zero means DefaultStepTimeout.
	StepTimeout time.Duration
	// Flows is how many flows the tunnel carries; zero means DefaultFlows.
	Flows int
	// LearnAttempts bounds the repeated attempts of the learning step;
	// zero means DefaultLearnAttempts.
	LearnAttempts int
	// Logger receives operational messages; nil discards.
	Logger *slog.Logger
	// Progress, if set, is told each step as it ends.
	Progress func(step, summary string)
	// Now returns the time; nil means time.Now.
	Now func() time.Time
	// Capture, if set, records the probe's own connections (every TLS
	// attempt, every DTLS and TLS tunnel attempt, through the proxy when
	// there is one) on one leg, CaptureLeg, and the secrets of every TLS
	// and DTLS session the probe opens in its key log: what `probe
	// --capture` writes into the bundle. Nil records nothing.
	Capture *capture.Recorder
}

// CaptureLeg names the capture's one interface: the probe's connections as
// the laptop sent and received them, on the laptop's side of the network
// measured (the catalogue's laptop↔firewall leg).
const CaptureLeg = "laptop-firewall"

// DTLSResult is the DTLS handshake to one gateway.
type DTLSResult struct {
	Gateway string         `json:"gateway"`
	Addr    netip.AddrPort `json:"addr"`
	// Outcome is "passes", "dropped", "rejected" or "intercepted".
	Outcome string        `json:"outcome"`
	Leg     failure.Leg   `json:"leg,omitempty"`
	Cause   failure.Cause `json:"cause,omitempty"`
	Error   string        `json:"error,omitempty"`
	TookMS  int64         `json:"took_ms"`
}

// FlowResult is one flow through the tunnel.
type FlowResult struct {
	Seed      uint64 `json:"seed"`
	Bytes     int64  `json:"bytes"`
	Verified  bool   `json:"verified"`
	Transport string `json:"transport,omitempty"`
	Gateway   string `json:"gateway,omitempty"`
	SHA256    string `json:"sha256,omitempty"`
	Error     string `json:"error,omitempty"`
}

// TunnelResult is a tunnel brought up by the client package.
type TunnelResult struct {
	// Gateways are the gateways the client was given, in order.
	Gateways  []string            `json:"gateways"`
	Up        bool                `json:"up"`
	Transport tunnel.Transport    `json:"transport,omitempty"`
	Gateway   string              `json:"gateway,omitempty"`
	Via       string              `json:"via,omitempty"`
	FailMode  client.FailMode     `json:"fail_mode"`
	Flows     []FlowResult        `json:"flows,omitempty"`
	History   []client.Transition `json:"history,omitempty"`
	Leg       failure.Leg         `json:"leg,omitempty"`
	Cause     failure.Cause       `json:"cause,omitempty"`
	Error     string              `json:"error,omitempty"`
}

// Verified counts the flows verified.
func (t TunnelResult) Verified() int {
	n := 0
	for _, f := range t.Flows {
		if f.Verified {
			n++
		}
	}
	return n
}

// Observations are the raw measurements of a run.
type Observations struct {
	DTLS     []DTLSResult `json:"dtls"`
	TLS      []Attempt    `json:"tls"`
	Learning []Attempt    `json:"learning,omitempty"`
	Tunnel   TunnelResult `json:"tunnel"`
	// Backup is the tunnel with the backup gateway alone (nil without one).
	Backup *TunnelResult `json:"backup,omitempty"`
	// Record is the gateway's record of the run, fetched over the tunnel;
	// RecordError says why there is none.
	Record      *Record `json:"record,omitempty"`
	RecordError string  `json:"record_error,omitempty"`
	// Connections counts the new connections and sockets the probe opened.
	Connections int `json:"connections"`
}

// Result is a run: what was measured and what it shows.
type Result struct {
	Run      string          `json:"run"`
	Label    string          `json:"label"`
	BundleID string          `json:"bundle"`
	Primary  Endpoint        `json:"primary"`
	Backup   *Endpoint       `json:"backup,omitempty"`
	Decoy    *netip.AddrPort `json:"decoy,omitempty"`
	Proxy    string          `json:"proxy,omitempty"`
	Started  time.Time       `json:"started"`
	Took     time.Duration   `json:"took_ns"`
	Observed Observations    `json:"observations"`
	// Answers, Findings and Questions are drawn from Observed (Conclude).
	Answers   []Answer   `json:"answers"`
	Findings  []Finding  `json:"findings"`
	Questions []Question `json:"questions"`
}

type runner struct {
	cfg       Config
	b         *Bundle
	id        *Identity
	guard     *guard
	proxy     *url.URL
	proxyAddr netip.AddrPort
	zone      *resolve.Zone
	log       *slog.Logger
	// keyLog receives the secrets of every session (nil: none).
	keyLog io.Writer
}

func (r *runner) now() time.Time { return r.cfg.Now() }

// Run measures the network the laptop is on and concludes. The error is
// for a run that could not start (a bad configuration); what the network
// does, failures included, is in the Result.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	r, err := newRunner(cfg)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, r.cfg.Limit)
	defer cancel()
	b := r.b
	res := &Result{Run: newRunID(), Label: r.cfg.Label, BundleID: b.ID, Primary: b.Primary, Backup: b.Backup, Decoy: b.Decoy, Started: r.now()}
	if r.proxy != nil {
		res.Proxy = r.proxy.Redacted()
	}
	start := time.Now()
	obs := &res.Observed
	progress := func(step, s string) {
		r.log.Info("probe: "+step, "result", s)
		if r.cfg.Progress != nil {
			r.cfg.Progress(step, s)
		}
	}

	// 1. UDP/443: DTLS to each gateway.
	for _, e := range r.gateways() {
		d := r.dtls(ctx, e)
		obs.DTLS = append(obs.DTLS, d)
		progress("dtls", fmt.Sprintf("%s %s: %s", e.Name, e.Addr, d.Outcome))
	}
	// 2. TLS: the chain at the primary.
	p := b.Primary
	tlsStep := func(key, what string, addr netip.AddrPort, sni string) {
		a := r.tlsAttempt(ctx, key, what, addr, sni)
		obs.TLS = append(obs.TLS, a)
		progress("tls", fmt.Sprintf("%s %s sni=%q: %s %s", a.Key, a.Addr, a.SNI, a.Outcome, a.Cause))
	}
	tlsStep("A", "primary's address, primary's name", p.Addr, p.Name)
	if err := Unreachable(res); err != nil {
		// Nothing reached a TLS server: the rest would only wait out
		// timeouts. The caller reports the error.
		obs.Connections = r.guard.Dials()
		res.Took = time.Since(start)
		Conclude(res)
		return res, nil
	}
	// 5. Learning: after a failure at the primary, does a later attempt
	// pass? Asked before the bypass attempts, whose refused forgeries
	// could teach a firewall that learns from them what the tunnel's own
	// attempts never would.
	if first := obs.TLS[0]; !first.Passed() {
		for i := range r.cfg.LearnAttempts {
			if ctx.Err() != nil {
				break
			}
			a := r.tlsAttempt(ctx, "A"+strconv.Itoa(i+2), "primary's address, primary's name, again", p.Addr, p.Name)
			obs.Learning = append(obs.Learning, a)
			progress("learning", fmt.Sprintf("%s: %s %s", a.Key, a.Outcome, a.Cause))
			if a.Passed() {
				break
			}
		}
	}
	// 6. The real tunnel, for the same reason before the bypass attempts;
	// it stays up to fetch the gateway's record at the end (step 3).
	names := []string{p.Name}
	if b.Backup != nil {
		names = append(names, b.Backup.Name)
	}
	main := r.tunnel(ctx, names, r.cfg.Flows)
	defer main.close()
	progress("tunnel", fmt.Sprintf("up=%v %s %s, %d/%d flows verified", main.res.Up, main.res.Transport, main.res.Gateway, main.res.Verified(), len(main.res.Flows)))
	// 4. What the bypass is keyed on.
	tlsStep("C", "primary's address, no server name", p.Addr, "")
	tlsStep("B", "primary's address, control name (no client certificate asked)", p.Addr, b.ControlName)
	if bk := b.Backup; bk != nil {
		tlsStep("D", "backup's address, backup's name", bk.Addr, bk.Name)
		tlsStep("E", "backup's address, primary's name", bk.Addr, p.Name)
	}
	if d := b.Decoy; d != nil {
		tlsStep("F", "decoy address (no gateway address, its own certificate), primary's name", *d, p.Name)
		tlsStep("H", "decoy address (no gateway address, its own certificate), control name", *d, b.ControlName)
	}
	// 6, failover: the backup alone.
	var bt *tunnelRun
	if b.Backup != nil {
		bt = r.tunnel(ctx, []string{b.Backup.Name}, 1)
		defer bt.close()
		progress("failover", fmt.Sprintf("backup alone: up=%v %s, %d/%d flows verified", bt.res.Up, bt.res.Transport, bt.res.Verified(), len(bt.res.Flows)))
	}
	// 3. The gateway's record of the run, through a tunnel.
	switch {
	case main.res.Up:
		obs.Record, err = fetchRecord(ctx, main.hc, r.id, res.Run, res.Started)
	case bt != nil && bt.res.Up:
		obs.Record, err = fetchRecord(ctx, bt.hc, r.id, res.Run, res.Started)
	default:
		err = errors.New("no tunnel came up to fetch it through")
	}
	if err != nil {
		obs.RecordError = err.Error()
	}
	main.close()
	obs.Tunnel = main.res
	if bt != nil {
		bt.close()
		obs.Backup = &bt.res
	}
	obs.Connections = r.guard.Dials()
	res.Took = time.Since(start)
	Conclude(res)
	return res, nil
}

func newRunner(cfg Config) (*runner, error) {
	if cfg.Bundle == nil || cfg.Identity == nil {
		return nil, errors.New("probe: config: Bundle and Identity are required")
	}
	if cfg.Stack == nil {
		return nil, errors.New("probe: config: Stack is required")
	}
	if err := proxyURL(cfg.Proxy); err != nil {
		return nil, err
	}
	if cfg.Rate <= 0 {
		cfg.Rate = DefaultRate
	}
	if cfg.Limit <= 0 || cfg.Limit > MaxLimit {
		cfg.Limit = MaxLimit
	}
	if cfg.StepTimeout <= 0 {
		cfg.StepTimeout = DefaultStepTimeout
	}
	if cfg.Flows <= 0 {
		cfg.Flows = DefaultFlows
	}
	if cfg.LearnAttempts <= 0 {
		cfg.LearnAttempts = DefaultLearnAttempts
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Label == "" {
		cfg.Label = "an unnamed network"
	}
	b := cfg.Bundle
	if b.Backup != nil && b.Backup.Addr.Port() != b.Primary.Addr.Port() {
		return nil, fmt.Errorf("probe: the bundle's gateways listen on ports %d and %d: the client uses one port for both", b.Primary.Addr.Port(), b.Backup.Addr.Port())
	}
	r := &runner{cfg: cfg, b: b, id: cfg.Identity, log: cfg.Logger, proxy: cfg.Proxy, zone: &resolve.Zone{}}
	allowed := []netip.AddrPort{b.Primary.Addr}
	for _, e := range r.gateways() {
		allowed = append(allowed, e.Addr)
		if err := r.zone.Add(resolve.Record{Name: e.Name, Addrs: []netip.Addr{e.Addr.Addr()}}); err != nil {
			return nil, err
		}
	}
	if b.Decoy != nil {
		allowed = append(allowed, *b.Decoy)
	}
	if cfg.Proxy != nil {
		r.proxyAddr = cfg.ProxyAddr
		if !r.proxyAddr.IsValid() {
			ip, err := netip.ParseAddr(cfg.Proxy.Hostname())
			if err != nil {
				return nil, fmt.Errorf("probe: proxy %s: the host must be an IP address (or resolved by the caller)", cfg.Proxy.Redacted())
			}
			port, _ := strconv.Atoi(cfg.Proxy.Port())
			r.proxyAddr = netip.AddrPortFrom(ip, uint16(port))
		}
		allowed = append(allowed, r.proxyAddr)
		if _, err := netip.ParseAddr(cfg.Proxy.Hostname()); err != nil {
			if err := r.zone.Add(resolve.Record{Name: cfg.Proxy.Hostname(), Addrs: []netip.Addr{r.proxyAddr.Addr()}}); err != nil {
				return nil, err
			}
		}
	}
	r.guard = newGuard(cfg.Stack, cfg.Rate, allowed)
	if cfg.Capture != nil {
		r.guard.leg = cfg.Capture.Leg(CaptureLeg, "the probe's own connections, as the laptop sent and received them")
		r.keyLog = cfg.Capture.KeyLog()
	}
	return r, nil
}

func (r *runner) gateways() []Endpoint {
	out := []Endpoint{r.b.Primary}
	if r.b.Backup != nil {
		out = append(out, *r.b.Backup)
	}
	return out
}

func newRunID() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return time.Now().UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(b)
}

// clientConfig is the pinwall client with the bundle's identity, fail-close,
// steering only the built-in origins' port.
func (r *runner) clientConfig(gws []string, mode client.TransportMode) client.Config {
	cfg := client.Config{
		Name: "probe", Tenant: "probe", Gateways: gws, Port: r.b.Primary.Addr.Port(),
		Transport: mode, FallbackTimeout: r.cfg.StepTimeout / 2, HandshakeTimeout: r.cfg.StepTimeout,
		Pins: r.id.Pins, DeviceCert: r.id.Device, FailMode: client.FailClose,
		Steering:           client.Steering{Ports: []uint16{80}, ExceptCIDRs: []netip.Prefix{}},
		AttemptsPerGateway: 1, BackoffMin: 100 * time.Millisecond, BackoffMax: 500 * time.Millisecond,
		TunnelWait: 2 * r.cfg.StepTimeout, DialTimeout: 2 * r.cfg.StepTimeout,
		Stack: r.guard, Resolver: r.zone, Logger: r.log.With("component", "client"), Now: r.cfg.Now,
		KeyLogWriter: r.keyLog,
	}
	if r.proxy != nil {
		cfg.UpstreamProxy = r.proxy
		cfg.ProxyConnect = client.ProxyConnectAddr
	}
	return cfg
}

// dtls tries a DTLS-only tunnel to e once.
func (r *runner) dtls(ctx context.Context, e Endpoint) (d DTLSResult) {
	d = DTLSResult{Gateway: e.Name, Addr: e.Addr}
	start := time.Now()
	defer func() { d.TookMS = time.Since(start).Milliseconds() }()
	c, err := client.New(r.clientConfig([]string{e.Name}, client.TransportDTLS))
	if err != nil {
		d.Outcome, d.Error = "rejected", err.Error()
		return d
	}
	defer c.Close()
	wctx, cancel := context.WithTimeout(ctx, r.cfg.StepTimeout+time.Second)
	defer cancel()
	if err := c.Start(wctx); err != nil {
		d.Outcome, d.Error = "rejected", err.Error()
		return d
	}
	st, err := c.WaitOutcome(wctx)
	if err == nil && st.Up {
		d.Outcome = "passes"
		return d
	}
	d.Error = err.Error()
	d.Leg, d.Cause = failure.LegOf(err), failure.CauseOf(err)
	switch d.Cause {
	case failure.CausePinMismatch, failure.CauseUnknownAuthority:
		d.Outcome = "intercepted"
	case failure.CauseTimeout, failure.CauseHandshakeTimeout, failure.CauseUDPUnanswered, failure.CauseTunnelDown:
		d.Outcome = "dropped"
	default:
		d.Outcome = "rejected"
	}
	return d
}

// tunnelRun is a tunnel brought up, kept until close.
type tunnelRun struct {
	res  TunnelResult
	c    *client.Client
	hc   *http.Client
	once sync.Once
}

// close ends the tunnel and records the client's history; idempotent.
func (t *tunnelRun) close() {
	t.once.Do(func() {
		if t.c == nil {
			return
		}
		if t.hc != nil {
			t.hc.CloseIdleConnections()
		}
		t.c.Close()
		t.res.History = t.c.History()
	})
}

// tunnel brings the tunnel up over gws and carries n flows through it.
func (r *runner) tunnel(ctx context.Context, gws []string, n int) *tunnelRun {
	t := &tunnelRun{res: TunnelResult{Gateways: gws, FailMode: client.FailClose}}
	c, err := client.New(r.clientConfig(gws, client.TransportAuto))
	if err != nil {
		t.res.Error = err.Error()
		return t
	}
	if err := c.Start(ctx); err != nil {
		t.res.Error = err.Error()
		return t
	}
	t.c = c
	wctx, cancel := context.WithTimeout(ctx, time.Duration(2*len(gws)+1)*r.cfg.StepTimeout)
	st, err := c.WaitUp(wctx)
	cancel()
	if err != nil {
		t.res.Error = err.Error()
		t.res.Leg, t.res.Cause = failure.LegOf(err), failure.CauseOf(err)
		return t
	}
	t.res.Up, t.res.Transport, t.res.Gateway, t.res.Via = true, st.Transport, st.Gateway, st.Via
	t.hc = &http.Client{
		Transport: &http.Transport{DialContext: c.Dial, DisableKeepAlives: true},
		Timeout:   2 * r.cfg.StepTimeout,
	}
	for i := range n {
		f := origin.Flow{Site: OriginName, Scheme: "http", ReqSize: 32 << 10, RespSize: 64 << 10, Seed: uint64(i + 1), Leg: failure.LegClientGateway}
		fr, err := origin.RunFlow(ctx, t.hc, f)
		res := FlowResult{Seed: f.Seed, Bytes: f.ReqSize + f.RespSize, Verified: fr.Verified && err == nil, SHA256: fr.ResponseSHA256,
			Transport: string(st.Transport), Gateway: st.Gateway}
		if err != nil {
			res.Error = err.Error()
		}
		t.res.Flows = append(t.res.Flows, res)
	}
	return t
}

// fetchRecord asks the gateway, through the tunnel, for its record of
// this device's attempts since the run started.
func fetchRecord(ctx context.Context, hc *http.Client, id *Identity, run string, since time.Time) (*Record, error) {
	q := url.Values{"device": {id.Device.Leaf.Subject.SerialNumber}, "run": {run}, "since": {strconv.FormatInt(since.Add(-time.Minute).UnixNano(), 10)}}
	u := "http://" + net.JoinHostPort(RecordName, "80") + "/record?" + q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("the gateway's record: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("the gateway's record: GET %s: %s", u, resp.Status)
	}
	var rec Record
	if err := json.NewDecoder(http.MaxBytesReader(nil, resp.Body, 8<<20)).Decode(&rec); err != nil {
		return nil, fmt.Errorf("the gateway's record: %w", err)
	}
	return &rec, nil
}
