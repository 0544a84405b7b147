package fieldgw

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pinwall/pinwall/internal/syncbuf"

	"github.com/pinwall/pinwall/gateway"
	"github.com/pinwall/pinwall/hostnet"
	"github.com/pinwall/pinwall/origin"
	"github.com/pinwall/pinwall/pki"
	"github.com/pinwall/pinwall/probe"
	"github.com/pinwall/pinwall/resolve"
)

// The built-in test origins (names under .test, addresses of TEST-NET-1;
// they exist only inside the gateway).
const (
	OriginName = probe.OriginName
	RecordName = probe.RecordName
)

var (
	originAddr = netip.MustParseAddr("192.0.2.1")
	recordAddr = netip.MustParseAddr("192.0.2.2")
)

// Listener is one address the server serves a gateway on.
type Listener struct {
	// Name is the gateway's name (a SAN of the certificate).
	Name string
	// Stack is the network to listen on (hostnet.OS{} on a real host).
	Stack hostnet.Stack
	// Listen is the address to listen on, TCP and UDP on one port.
	Listen netip.AddrPort
	// Advertise is the address the bundle gives the probe; zero means
	// Listen (which must then name an IP, not the unspecified address).
	Advertise netip.AddrPort
}

// Advertised is the address the bundle gives the probe.
func (l Listener) Advertised() netip.AddrPort {
	if l.Advertise.IsValid() {
		return l.Advertise
	}
	return l.Listen
}

// Config configures a Server.
type Config struct {
	// State is the gateway's identity (required).
	State *State
	// Primary is the primary gateway (required).
	Primary Listener
	// Backup, if its Stack is set, is the backup gateway.
	Backup Listener
	// Decoy, if its Stack is set, serves the same gateway on an address
	// that is not one of the gateway addresses (the spoofing check).
	Decoy Listener
	// ControlName is the name answered without a client-certificate
	// request (gateway.Config.ProbeNames); empty means "control." plus
	// the primary's name.
	ControlName string
	// Log receives the gateways' events as JSON lines; nil keeps them in
	// memory only.
	Log io.Writer
	// RunLog receives one JSON line per probe run that fetched its record;
	// nil logs none.
	RunLog io.Writer
	// BundleTTL is how long a bundle is valid; zero means 7 days.
	BundleTTL time.Duration
	// Gateway tunes the gateways (limits, timeouts); its Name, Addr,
	// Certificate, ClientCAs, Stack, Resolver, Log and ProbeNames are set
	// by the server.
	Gateway gateway.Config
	// Origins are destinations beyond the built-in test origins that
	// the gateway serves inner flows to, each explicitly allowed by name
	// and address; nil serves the built-in origins only (the default: a
	// field gateway on the open internet relays nothing else).
	Origins []Origin
	// OriginStack is the network Origins are dialled on; nil means
	// Primary.Stack.
	OriginStack hostnet.Stack
	// Logger receives operational messages; nil discards.
	Logger *slog.Logger
	// Now returns the time; nil means time.Now.
	Now func() time.Time
}

// Origin is a destination the gateway may serve inner flows to: the name
// a flow asks for resolves to Addr's IP (the gateway resolves no name
// itself), and a flow reaches Addr's IP and port only.
type Origin struct {
	Name string
	Addr netip.AddrPort
}

// ParseOrigin parses NAME=IP:PORT, as `serve gateway --origin` takes it.
func ParseOrigin(s string) (Origin, error) {
	name, addr, ok := strings.Cut(s, "=")
	if !ok {
		return Origin{}, fmt.Errorf("fieldgw: origin %q: want NAME=IP:PORT", s)
	}
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return Origin{}, fmt.Errorf("fieldgw: origin %q: %s is not IP:PORT (the gateway resolves no name): %w", s, addr, err)
	}
	o := Origin{Name: strings.ToLower(strings.TrimSuffix(name, ".")), Addr: netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())}
	return o, o.check()
}

func (o Origin) check() error {
	switch {
	case !validName(o.Name):
		return fmt.Errorf("fieldgw: origin %q: not a host name", o.Name)
	case o.Name == OriginName || o.Name == RecordName:
		return fmt.Errorf("fieldgw: origin %q: the name of a built-in origin", o.Name)
	case !o.Addr.IsValid() || o.Addr.Port() == 0 || o.Addr.Addr().IsUnspecified():
		return fmt.Errorf("fieldgw: origin %s: want an IP address and a port", o.Name)
	}
	return nil
}

func validName(n string) bool {
	if n == "" || len(n) > 253 {
		return false
	}
	for _, l := range strings.Split(n, ".") {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for _, c := range l {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

// Server runs the field gateway.
type Server struct {
	cfg      Config
	mem      *memStack
	gateways []*gateway.Gateway
	origins  *origin.Server
	record   *http.Server
	recordL  net.Listener
	wg       sync.WaitGroup
	once     sync.Once
	// events returns the gateways' events (Events; a test's own).
	events func() []gateway.Event

	// The record of each probe run, keyed by its id (serveRecord).
	runMu sync.Mutex
	runs  map[string]*probe.Record
	order []string // run ids, oldest first (at most maxRuns kept)
	// claimed are the tunnels a recorded run owns; deviceMark and
	// sourceMark the time a device's or a source's last run was recorded:
	// a later run's record starts after it.
	claimed    map[string]string
	deviceMark map[string]time.Time
	sourceMark map[netip.Addr]time.Time
}

// maxRuns bounds the run records a server keeps (the oldest go first).
const maxRuns = 1024

// Start starts the gateways and the built-in origins. ctx bounds the
// server's life: when it ends the server closes as if Close were called.
func Start(ctx context.Context, cfg Config) (_ *Server, err error) {
	if cfg.State == nil || cfg.State.Certificate == nil || cfg.State.DeviceCA == nil {
		return nil, errors.New("fieldgw: config: field State is required")
	}
	if cfg.Decoy.Stack != nil && cfg.State.Decoy == nil {
		return nil, errors.New("fieldgw: config: a Decoy needs State.Decoy, its own certificate")
	}
	if cfg.Primary.Stack == nil || cfg.Primary.Name == "" || !cfg.Primary.Listen.IsValid() {
		return nil, errors.New("fieldgw: config: Primary needs Name, Stack and Listen")
	}
	if cfg.ControlName == "" {
		cfg.ControlName = "control." + cfg.Primary.Name
	}
	if cfg.BundleTTL <= 0 {
		cfg.BundleTTL = 7 * 24 * time.Hour
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &Server{cfg: cfg, mem: newMemStack()}
	s.events = s.Events
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	zone, err := resolve.NewZone(
		resolve.Record{Name: OriginName, Addrs: []netip.Addr{originAddr}},
		resolve.Record{Name: RecordName, Addrs: []netip.Addr{recordAddr}},
	)
	if err != nil {
		return nil, err
	}
	allowed := map[netip.AddrPort]bool{}
	for _, o := range cfg.Origins {
		if err := o.check(); err != nil {
			return nil, err
		}
		if err := zone.Add(resolve.Record{Name: o.Name, Addrs: []netip.Addr{o.Addr.Addr()}}); err != nil {
			return nil, fmt.Errorf("fieldgw: origin %s: %w", o.Name, err)
		}
		allowed[o.Addr] = true
		cfg.Logger.Info("fieldgw: inner flows allowed", "origin", o.Name, "addr", o.Addr)
	}
	originStack := cfg.OriginStack
	if originStack == nil {
		originStack = cfg.Primary.Stack
	}
	if err := s.startOrigins(ctx); err != nil {
		return nil, err
	}
	var log io.Writer
	if cfg.Log != nil {
		log = syncbuf.NewWriter(cfg.Log)
	}
	for i, l := range []Listener{cfg.Primary, cfg.Backup, cfg.Decoy} {
		if l.Stack == nil {
			continue
		}
		gc := cfg.Gateway
		gc.Name, gc.Addr = l.Name, l.Listen
		gc.Certificate = cfg.State.Certificate
		if i == 2 {
			gc.Certificate = cfg.State.Decoy
		}
		gc.ClientCAs = cfg.State.DeviceCA.Pool()
		gc.AllowAnonymous = false
		gc.Stack = gatewayStack{outer: l.Stack, inner: s.mem, origins: originStack, allowed: allowed}
		gc.Resolver = zone
		gc.Log = log
		gc.ProbeNames = []string{cfg.ControlName}
		gc.Logger = cfg.Logger.With("gateway", l.Name)
		gc.Now = cfg.Now
		g, err := gateway.New(gc)
		if err != nil {
			return nil, fmt.Errorf("fieldgw: %s: %w", l.Name, err)
		}
		if err := g.Start(ctx); err != nil {
			return nil, fmt.Errorf("fieldgw: %s: %w", l.Name, err)
		}
		s.gateways = append(s.gateways, g)
	}
	return s, nil
}

func (s *Server) startOrigins(ctx context.Context) error {
	ca, err := pki.NewCA(pki.Config{}, "pinwall field origins CA", "pinwall field probe")
	if err != nil {
		return err
	}
	srv, err := origin.New(origin.Config{
		Stack: s.mem,
		Sites: []origin.Site{{Name: OriginName, Addrs: []netip.Addr{originAddr}, HTTPSPort: -1}},
		Certificates: func(name string) (*tls.Certificate, error) {
			return ca.Issue(pki.Leaf{Subject: pkix.Name{CommonName: name}, DNSNames: []string{name}})
		},
		Logger: s.cfg.Logger.With("component", "origins"),
	})
	if err != nil {
		return fmt.Errorf("fieldgw: origins: %w", err)
	}
	if err := srv.Start(ctx); err != nil {
		return fmt.Errorf("fieldgw: origins: %w", err)
	}
	s.origins = srv
	l, err := s.mem.Listen(ctx, "tcp", netip.AddrPortFrom(recordAddr, 80).String())
	if err != nil {
		return err
	}
	s.recordL = l
	mux := http.NewServeMux()
	mux.HandleFunc("GET /record", s.serveRecord)
	s.record = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		_ = s.record.Serve(l)
	}()
	return nil
}

// Close stops every gateway and origin; it is idempotent.
func (s *Server) Close() error {
	s.once.Do(func() {
		for _, g := range s.gateways {
			g.Close()
		}
		if s.record != nil {
			s.record.Close()
		}
		if s.recordL != nil {
			s.recordL.Close()
		}
		if s.origins != nil {
			s.origins.Close()
		}
		s.wg.Wait()
	})
	return nil
}

// Gateways returns the running gateways: the primary, then the backup and
// the decoy when configured.
func (s *Server) Gateways() []*gateway.Gateway { return s.gateways }

// Events returns every gateway's events, oldest first.
func (s *Server) Events() []gateway.Event {
	var out []gateway.Event
	for _, g := range s.gateways {
		out = append(out, g.Events()...)
	}
	slices.SortStableFunc(out, func(a, b gateway.Event) int { return a.Time.Compare(b.Time) })
	return out
}

// ControlName is the name answered without a client-certificate request.
func (s *Server) ControlName() string { return s.cfg.ControlName }

// IssueBundle issues a new device certificate and returns the bundle
// holding it, signed with the gateway's key.
func (s *Server) IssueBundle() (*probe.Bundle, error) {
	o := BundleOptions{
		Primary:     probe.Endpoint{Name: s.cfg.Primary.Name, Addr: s.cfg.Primary.Advertised()},
		ControlName: s.cfg.ControlName, TTL: s.cfg.BundleTTL, Now: s.cfg.Now(),
	}
	if s.cfg.Backup.Stack != nil {
		o.Backup = &probe.Endpoint{Name: s.cfg.Backup.Name, Addr: s.cfg.Backup.Advertised()}
	}
	if s.cfg.Decoy.Stack != nil {
		d := s.cfg.Decoy.Advertised()
		o.Decoy = &d
	}
	return NewBundle(s.cfg.State, o)
}

// BundleOptions say what a bundle points the probe at.
type BundleOptions struct {
	Primary Endpoint
	// Backup and Decoy are optional; a Decoy needs State.Decoy.
	Backup *Endpoint
	Decoy  *netip.AddrPort
	// ControlName is the name the gateways answer without a certificate
	// request (required).
	ControlName string
	// TTL is the bundle's validity; zero means 7 days.
	TTL time.Duration
	// Now is the time of issue; zero means time.Now().
	Now time.Time
}

// Endpoint is probe.Endpoint.
type Endpoint = probe.Endpoint

// NewBundle issues a device certificate from st's device CA and returns
// the bundle holding it, signed with st's gateway key. A server that
// serves the bundle's addresses with st issues the same (Server.IssueBundle);
// the container runner, which starts the gateways in their own
// containers, calls it directly.
func NewBundle(st *State, o BundleOptions) (*probe.Bundle, error) {
	now := o.Now
	if now.IsZero() {
		now = time.Now()
	}
	if o.TTL <= 0 {
		o.TTL = 7 * 24 * time.Hour
	}
	if o.Decoy != nil && st.Decoy == nil {
		return nil, errors.New("fieldgw: a bundle with a decoy needs State.Decoy")
	}
	id := newID(8)
	dev, err := st.DeviceCA.Issue(pki.Leaf{
		Subject:  pkix.Name{CommonName: "probe-" + id, SerialNumber: id, Organization: []string{"pinwall field probe"}, OrganizationalUnit: []string{"probes"}},
		Usage:    pki.ClientAuth,
		NotAfter: now.Add(o.TTL),
	})
	if err != nil {
		return nil, err
	}
	signer, ok := st.Certificate.PrivateKey.(crypto.Signer)
	if !ok {
		return nil, errors.New("fieldgw: the gateway key cannot sign")
	}
	devKey, err := pki.KeyPEM(dev.PrivateKey.(crypto.Signer))
	if err != nil {
		return nil, err
	}
	leaf := st.Certificate.Leaf
	b := &probe.Bundle{
		Schema: probe.BundleSchema, ID: id, Created: now.UTC(), Expires: now.Add(o.TTL).UTC(),
		Primary:     o.Primary,
		ControlName: o.ControlName,
		ServerNames: []string{o.Primary.Name},
		Pin:         pki.SPKIPin(leaf),
		GatewayCert: string(pki.CertPEM(leaf)),
		DeviceCert:  string(pki.CertPEM(dev.Leaf)),
		DeviceKey:   string(devKey),
	}
	if o.Backup != nil {
		bk := *o.Backup
		b.Backup = &bk
		b.ServerNames = append(b.ServerNames, bk.Name)
	}
	if o.Decoy != nil {
		d := *o.Decoy
		b.Decoy = &d
		b.DecoyPin = pki.SPKIPin(st.Decoy.Leaf)
	}
	b.ServerNames = append(b.ServerNames, o.ControlName)
	if err := b.Sign(signer); err != nil {
		return nil, err
	}
	return b, nil
}

// serveRecord answers GET /record?device=ID&since=UNIXNANO&run=ID with
// the gateway's record of that probe run (probe.Record), keyed by the
// run's id: the device's events and those of the sources its tunnels came
// from, since the run began, less what an earlier run's record holds.
//
// The first fetch of a run makes its record: the events since `since`
// (the probe's start, less a minute for clock skew) and since the
// device's and each source's last recorded run, without the tunnels an
// earlier run claimed. The run then claims its tunnels (a tunnel that
// closes after the fetch stays its own) and marks its device and sources,
// so two runs one after the other, however close, do not mix. A later
// fetch of the same run returns the same record. Two probes behind the
// same address at the same time still share the refusals no identity
// tells apart (the firewall's upstream leg presents none).
func (s *Server) serveRecord(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	device, run := q.Get("device"), q.Get("run")
	sinceNS, err := strconv.ParseInt(q.Get("since"), 10, 64)
	if device == "" || run == "" || len(run) > 128 || err != nil {
		http.Error(w, "want device, run and since (unix nanoseconds)", http.StatusBadRequest)
		return
	}
	rec, fresh, err := s.recordRun(run, device, time.Unix(0, sinceNS))
	if err != nil {
		http.Error(w, err.Error(), http.StatusConflict)
		return
	}
	if fresh {
		s.cfg.Logger.Info("fieldgw: probe run", "run", run, "device", device, "events", len(rec.Events), "earlier", rec.Earlier)
		if s.cfg.RunLog != nil {
			line, _ := json.Marshal(struct {
				Time    time.Time    `json:"time"`
				Run     string       `json:"run"`
				Device  string       `json:"device"`
				Since   time.Time    `json:"since"`
				Sources []netip.Addr `json:"sources"`
				Events  int          `json:"events"`
				Earlier int          `json:"earlier_runs_events"`
			}{s.cfg.Now(), run, device, rec.Since, rec.Sources, len(rec.Events), rec.Earlier})
			s.runMu.Lock()
			_, _ = s.cfg.RunLog.Write(append(line, '\n'))
			s.runMu.Unlock()
		}
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(rec)
}

// errRunDevice refuses a run id fetched by another device.
var errRunDevice = errors.New("fieldgw: that run was recorded for another device")

// recordRun returns run's record, making it on the first fetch (fresh).
func (s *Server) recordRun(run, device string, since time.Time) (_ *probe.Record, fresh bool, _ error) {
	s.runMu.Lock()
	defer s.runMu.Unlock()
	if s.runs == nil {
		s.runs, s.claimed = map[string]*probe.Record{}, map[string]string{}
		s.deviceMark, s.sourceMark = map[string]time.Time{}, map[netip.Addr]time.Time{}
	}
	if rec, ok := s.runs[run]; ok {
		if rec.Device != device {
			return nil, false, errRunDevice
		}
		return rec, false, nil
	}
	now := s.cfg.Now()
	rec := &probe.Record{Run: run, Device: device, Since: since}
	evs := s.events()
	// another says whether e is an earlier run's: a tunnel it claimed, or
	// before its mark on the device or the source.
	another := func(e gateway.Event, src netip.Addr) bool {
		if e.TunnelID != "" && s.claimed[e.TunnelID] != "" {
			return true
		}
		if m, ok := s.deviceMark[device]; ok && e.Device != nil && !e.Time.After(m) {
			return true
		}
		m, ok := s.sourceMark[src]
		return ok && !e.Time.After(m)
	}
	sources := map[netip.Addr]bool{}
	for _, e := range evs {
		if e.Time.Before(since) || e.Device == nil || e.Device.Device != device {
			continue
		}
		src := sourceOf(e)
		if another(e, src) {
			continue
		}
		sources[src] = true
	}
	delete(sources, netip.Addr{})
	for _, e := range evs {
		if e.Time.Before(since) {
			continue
		}
		src := sourceOf(e)
		if !(e.Device != nil && e.Device.Device == device) && !sources[src] {
			continue
		}
		if e.Device != nil && e.Device.Device != device {
			continue // another device's, from the same source
		}
		if another(e, src) {
			rec.Earlier++
			continue
		}
		rec.Events = append(rec.Events, e)
	}
	for a := range sources {
		rec.Sources = append(rec.Sources, a)
		s.sourceMark[a] = now
	}
	slices.SortFunc(rec.Sources, netip.Addr.Compare)
	s.deviceMark[device] = now
	for _, e := range rec.Events {
		if e.TunnelID != "" {
			s.claimed[e.TunnelID] = run
		}
	}
	s.runs[run] = rec
	s.order = append(s.order, run)
	if len(s.order) > maxRuns {
		old := s.order[0]
		s.order = s.order[1:]
		delete(s.runs, old)
		for id, r := range s.claimed {
			if r == old {
				delete(s.claimed, id)
			}
		}
	}
	return rec, true, nil
}

func sourceOf(e gateway.Event) netip.Addr {
	ap, err := netip.ParseAddrPort(e.Client)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}
