package origin

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/pinwall/pinwall/accept"
	"github.com/pinwall/pinwall/hostnet"
)

// Limits and defaults.
const (
	// MaxPayloadSize caps every size parameter (/payload size, /flow resp).
	MaxPayloadSize = 1 << 30
	// DefaultMaxBodySize is the request body cap of /flow and /echo.
	DefaultMaxBodySize = 64 << 20
	// DefaultRecentRecords is how many access records Records keeps.
	DefaultRecentRecords = 1024
	// hashCacheEntries bounds the cache of payload hashes.
	hashCacheEntries = 4096
)

// Header names of the flow protocol.
const (
	// HeaderSHA256 carries the hex SHA-256 of the message body it comes with.
	HeaderSHA256 = "X-Pinwall-Sha256"
	// HeaderRequestSHA256 carries, in a reply, the hex SHA-256 of the request
	// body as the origin received it.
	HeaderRequestSHA256 = "X-Pinwall-Request-Sha256"
	// HeaderSite names the site that answered.
	HeaderSite = "X-Pinwall-Site"
)

// Site is one simulated origin.
type Site struct {
	// Name is the site's DNS name (www.social.test); matched case-insensitively.
	Name string
	// Addrs are the logical addresses the site listens on. Required.
	Addrs []netip.Addr
	// HTTPPort is the plain-HTTP port: 0 means 80, -1 disables plain HTTP.
	HTTPPort int
	// HTTPSPort is the HTTPS port: 0 means 443, -1 disables HTTPS.
	HTTPSPort int
}

// Config configures a Server. Only Stack and Sites are required.
type Config struct {
	// Stack is the origin host's network; every listener is opened on it.
	Stack hostnet.Stack
	// Sites are the origins served. At least one.
	Sites []Site
	// Certificates returns the certificate of a site, called once per HTTPS
	// site by New (pki.Set.ServerCert fits; CertMap adapts a map). Required
	// when any site serves HTTPS.
	Certificates func(name string) (*tls.Certificate, error)
	// Logger receives operational messages (listeners, refused handshakes).
	// Nil discards.
	Logger *slog.Logger
	// KeyLogWriter, if set, receives the secrets of every (D)TLS session
	// an HTTPS site terminates in the NSS key log format (SSLKEYLOGFILE), for packet
	// captures that decrypt themselves (package capture). Nil logs none.
	KeyLogWriter io.Writer
	// AccessLog receives one JSON line (a Record) per request. Nil writes none;
	// Records keeps the recent ones either way.
	AccessLog io.Writer
	// Now stamps access records and measures their duration. Nil means time.Now.
	Now func() time.Time
	// MaxBodySize caps request bodies of /flow and /echo (larger: 413).
	// Zero means DefaultMaxBodySize.
	MaxBodySize int64
	// RecentRecords is how many access records Records keeps. Zero means
	// DefaultRecentRecords.
	RecentRecords int
}

// CertMap adapts a map from site name to certificate to Config.Certificates.
func CertMap(m map[string]*tls.Certificate) func(name string) (*tls.Certificate, error) {
	canon := make(map[string]*tls.Certificate, len(m))
	for k, v := range m {
		canon[canonicalName(k)] = v
	}
	return func(name string) (*tls.Certificate, error) {
		if c := canon[canonicalName(name)]; c != nil {
			return c, nil
		}
		return nil, fmt.Errorf("origin: no certificate for %q", name)
	}
}

// site is a validated Site.
type site struct {
	name string
	cert *tls.Certificate // nil without HTTPS
}

// listener is one listening socket, shared by every site on its address and port.
type listener struct {
	addr  netip.AddrPort
	tls   bool
	sites map[string]*site // by canonical name

	ln   net.Listener
	srv  *http.Server
	real netip.AddrPort
}

// Endpoint describes one listening socket of a started Server.
type Endpoint struct {
	// Addr is the logical address and port.
	Addr netip.AddrPort
	// Real is the kernel socket behind Addr (equal to Addr outside hostnet.Sim).
	Real netip.AddrPort
	// TLS reports an HTTPS listener.
	TLS bool
	// Sites names the sites served there, sorted.
	Sites []string
}

// Server serves a set of sites. Create it with New, run it with Start, stop it
// with Close.
type Server struct {
	stack     hostnet.Stack
	log       *slog.Logger
	now       func() time.Time
	maxBody   int64
	keyLog    io.Writer
	listeners []*listener
	access    *accessLog
	hashes    *hashCache

	mu      sync.Mutex
	started bool
	closed  bool
	cancel  context.CancelFunc
	wg      sync.WaitGroup // serving goroutines and the stopper
	active  tracker        // connections and handlers
}

// New validates cfg and prepares a Server; nothing listens until Start.
func New(cfg Config) (*Server, error) {
	if cfg.Stack == nil {
		return nil, errors.New("origin: Config.Stack is required")
	}
	if len(cfg.Sites) == 0 {
		return nil, errors.New("origin: Config.Sites is empty")
	}
	if cfg.MaxBodySize < 0 {
		return nil, fmt.Errorf("origin: Config.MaxBodySize %d is negative", cfg.MaxBodySize)
	}
	if cfg.RecentRecords < 0 {
		return nil, fmt.Errorf("origin: Config.RecentRecords %d is negative", cfg.RecentRecords)
	}
	s := &Server{
		stack:   cfg.Stack,
		log:     cfg.Logger,
		now:     cfg.Now,
		maxBody: cfg.MaxBodySize,
		keyLog:  cfg.KeyLogWriter,
		hashes:  newHashCache(hashCacheEntries),
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.maxBody == 0 {
		s.maxBody = DefaultMaxBodySize
	}
	keep := cfg.RecentRecords
	if keep == 0 {
		keep = DefaultRecentRecords
	}
	s.access = newAccessLog(cfg.AccessLog, keep, s.log)

	byAddr := make(map[netip.AddrPort]*listener)
	seen := make(map[string]bool)
	for i, cs := range cfg.Sites {
		name := canonicalName(cs.Name)
		if err := checkName(name); err != nil {
			return nil, fmt.Errorf("origin: Sites[%d]: %w", i, err)
		}
		if seen[name] {
			return nil, fmt.Errorf("origin: Sites[%d]: site %q listed twice", i, name)
		}
		seen[name] = true
		if len(cs.Addrs) == 0 {
			return nil, fmt.Errorf("origin: site %s has no address", name)
		}
		httpPort, err := port(cs.HTTPPort, 80)
		if err != nil {
			return nil, fmt.Errorf("origin: site %s: HTTPPort: %w", name, err)
		}
		httpsPort, err := port(cs.HTTPSPort, 443)
		if err != nil {
			return nil, fmt.Errorf("origin: site %s: HTTPSPort: %w", name, err)
		}
		if httpPort == 0 && httpsPort == 0 {
			return nil, fmt.Errorf("origin: site %s disables both HTTP and HTTPS", name)
		}
		st := &site{name: name}
		if httpsPort != 0 {
			if cfg.Certificates == nil {
				return nil, fmt.Errorf("origin: site %s serves HTTPS but Config.Certificates is nil", name)
			}
			cert, err := cfg.Certificates(name)
			if err != nil {
				return nil, fmt.Errorf("origin: certificate for %s: %w", name, err)
			}
			if cert == nil {
				return nil, fmt.Errorf("origin: certificate for %s: Certificates returned nil", name)
			}
			if cert.Leaf != nil {
				if err := cert.Leaf.VerifyHostname(name); err != nil {
					return nil, fmt.Errorf("origin: certificate for %s: %w", name, err)
				}
			}
			st.cert = cert
		}
		for _, a := range cs.Addrs {
			if !a.IsValid() {
				return nil, fmt.Errorf("origin: site %s has an invalid address", name)
			}
			a = a.Unmap()
			for _, p := range []struct {
				port uint16
				tls  bool
			}{{httpPort, false}, {httpsPort, true}} {
				if p.port == 0 {
					continue
				}
				ap := netip.AddrPortFrom(a, p.port)
				l := byAddr[ap]
				if l == nil {
					l = &listener{addr: ap, tls: p.tls, sites: make(map[string]*site)}
					byAddr[ap] = l
					s.listeners = append(s.listeners, l)
				}
				if l.tls != p.tls {
					return nil, fmt.Errorf("origin: %s is both an HTTP and an HTTPS port (site %s)", ap, name)
				}
				l.sites[name] = st
			}
		}
	}
	sort.Slice(s.listeners, func(i, j int) bool { return s.listeners[i].addr.Compare(s.listeners[j].addr) < 0 })
	return s, nil
}

func port(p int, def uint16) (uint16, error) {
	switch {
	case p == 0:
		return def, nil
	case p == -1:
		return 0, nil
	case p < -1 || p > 65535:
		return 0, fmt.Errorf("%d is not a port (0 for the default, -1 to disable)", p)
	}
	return uint16(p), nil
}

func canonicalName(name string) string {
	return strings.ToLower(strings.TrimSuffix(strings.TrimSpace(name), "."))
}

// checkName accepts a DNS name of letters, digits and hyphens.
func checkName(name string) error {
	if name == "" {
		return errors.New("site name is empty")
	}
	if len(name) > 253 {
		return fmt.Errorf("site name %q is longer than 253 bytes", name)
	}
	if _, err := netip.ParseAddr(name); err == nil {
		return fmt.Errorf("site name %q is an IP address, not a name", name)
	}
	for _, label := range strings.Split(name, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Errorf("site name %q has an invalid label %q", name, label)
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return fmt.Errorf("site name %q: invalid character %q", name, c)
			}
		}
	}
	return nil
}

// Start opens every listener through the Stack and serves them until ctx is
// done or Close is called. If any listener fails, those already opened are
// closed and the error returned. Start may be called once.
func (s *Server) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closed:
		return errors.New("origin: Start after Close")
	case s.started:
		return errors.New("origin: Start called twice")
	}
	ctx, cancel := context.WithCancel(ctx)
	for i, l := range s.listeners {
		ln, err := s.stack.Listen(ctx, "tcp", l.addr.String())
		if err != nil {
			for _, opened := range s.listeners[:i] {
				opened.ln.Close()
				opened.ln = nil
			}
			cancel()
			return fmt.Errorf("origin: listen on %s: %w", l.addr, err)
		}
		l.ln = ln
		l.real, _ = hostnet.RealAddr(ln)
		if !l.real.IsValid() {
			if ta, ok := ln.Addr().(*net.TCPAddr); ok {
				l.real = ta.AddrPort()
			}
		}
		l.srv = s.httpServer(ctx, l)
	}
	s.started = true
	s.cancel = cancel
	for _, l := range s.listeners {
		s.wg.Add(1)
		go s.serve(l)
		s.log.Info("origin: listening", "addr", l.addr.String(), "real", l.real.String(), "tls", l.tls, "sites", l.siteNames())
	}
	s.wg.Add(1)
	go s.stopWhenDone(ctx)
	return nil
}

func (l *listener) siteNames() []string {
	names := make([]string, 0, len(l.sites))
	for n := range l.sites {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

func (s *Server) httpServer(ctx context.Context, l *listener) *http.Server {
	srv := &http.Server{
		Handler:           http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { s.serveHTTP(l, w, r) }),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return ctx },
		ConnState: func(_ net.Conn, state http.ConnState) {
			switch state {
			case http.StateNew:
				s.active.add()
			case http.StateHijacked, http.StateClosed:
				s.active.done()
			}
		},
	}
	if l.tls {
		srv.TLSConfig = &tls.Config{
			MinVersion:     tls.VersionTLS12,
			GetCertificate: s.certificateFor(l),
			KeyLogWriter:   s.keyLog,
		}
	}
	return srv
}

// certificateFor picks the certificate of the site named by the SNI among the
// sites of l; any other name (or none) fails the handshake.
func (s *Server) certificateFor(l *listener) func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
		if st := l.sites[canonicalName(hello.ServerName)]; st != nil && st.cert != nil {
			return st.cert, nil
		}
		peer := ""
		if hello.Conn != nil {
			peer = hello.Conn.RemoteAddr().String()
		}
		s.log.Warn("origin: TLS handshake refused: unknown SNI", "sni", hello.ServerName, "peer", peer,
			"local", l.addr.String(), "sites", l.siteNames())
		if hello.ServerName == "" {
			return nil, fmt.Errorf("origin: no SNI on %s (serving %s)", l.addr, strings.Join(l.siteNames(), ", "))
		}
		return nil, fmt.Errorf("origin: no site %q on %s", hello.ServerName, l.addr)
	}
}

func (s *Server) serve(l *listener) {
	defer s.wg.Done()
	// net/http retries temporary accept errors itself; accept.Listener does
	// it first so that every pinwall listener logs and counts them alike.
	ln := accept.Wrap(l.ln, accept.Config{Name: "origin " + l.addr.String(), Logger: s.log})
	var err error
	if l.tls {
		err = l.srv.ServeTLS(ln, "", "")
	} else {
		err = l.srv.Serve(ln)
	}
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		s.log.Error("origin: serving stopped", "addr", l.addr.String(), "err", err)
	}
}

// stopWhenDone closes every listener and connection once ctx is done.
func (s *Server) stopWhenDone(ctx context.Context) {
	defer s.wg.Done()
	<-ctx.Done()
	for _, l := range s.listeners {
		l.srv.Close()
	}
}

// Close stops the server: it closes the listeners and every connection, then
// waits for the serving goroutines, connections and handlers to end. It is
// idempotent, safe before Start, and returns nil.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	cancel := s.cancel
	s.mu.Unlock()
	if cancel == nil {
		return nil
	}
	cancel()
	s.wg.Wait()
	// Serve has returned everywhere, so no connection can be added any more;
	// close again any accepted while the first Close ran, then wait for all.
	for _, l := range s.listeners {
		l.srv.Close()
	}
	s.active.wait()
	return nil
}

// Endpoints lists the listening sockets, sorted by address; empty before Start.
func (s *Server) Endpoints() []Endpoint {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.started {
		return nil
	}
	out := make([]Endpoint, 0, len(s.listeners))
	for _, l := range s.listeners {
		out = append(out, Endpoint{Addr: l.addr, Real: l.real, TLS: l.tls, Sites: l.siteNames()})
	}
	return out
}

// RealAddrs maps each logical listening address to the kernel socket behind
// it (a loopback address and ephemeral port on hostnet.Sim), so that real
// programs such as curl can reach the server. Empty before Start.
func (s *Server) RealAddrs() map[netip.AddrPort]netip.AddrPort {
	out := make(map[netip.AddrPort]netip.AddrPort)
	for _, e := range s.Endpoints() {
		out[e.Addr] = e.Real
	}
	return out
}

// Records returns the most recent access records (at most
// Config.RecentRecords), oldest first.
func (s *Server) Records() []Record { return s.access.records() }

// Requests counts every request served since New.
func (s *Server) Requests() int64 { return s.access.total() }

// tracker counts live connections and handlers, and waits for them to end.
type tracker struct {
	mu   sync.Mutex
	n    int
	zero chan struct{} // closed when n drops to zero while waited on
}

func (t *tracker) add() {
	t.mu.Lock()
	t.n++
	t.mu.Unlock()
}

func (t *tracker) done() {
	t.mu.Lock()
	t.n--
	if t.n == 0 && t.zero != nil {
		close(t.zero)
		t.zero = nil
	}
	t.mu.Unlock()
}

func (t *tracker) wait() {
	t.mu.Lock()
	if t.n == 0 {
		t.mu.Unlock()
		return
	}
	if t.zero == nil {
		t.zero = make(chan struct{})
	}
	ch := t.zero
	t.mu.Unlock()
	<-ch
}
