package harness

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pinwall/pinwall/client"
	"github.com/pinwall/pinwall/failure"
	"github.com/pinwall/pinwall/origin"
)

// ByteSize is a size written like "64KiB", "16MiB", "1" or "1GB".
type ByteSize int64

// UnmarshalText parses a size.
func (b *ByteSize) UnmarshalText(text []byte) error {
	s := strings.TrimSpace(string(text))
	units := []struct {
		suffix string
		mult   int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"GB", 1e9}, {"MB", 1e6}, {"KB", 1e3}, {"kB", 1e3}, {"B", 1}}
	mult := int64(1)
	for _, u := range units {
		if rest, ok := strings.CutSuffix(s, u.suffix); ok {
			s, mult = strings.TrimSpace(rest), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return fmt.Errorf("size %q: want a non-negative number with an optional unit (B, KiB, MiB, GiB)", string(text))
	}
	*b = ByteSize(n * mult)
	return nil
}

// String formats a size with the largest exact binary unit.
func (b ByteSize) String() string {
	switch {
	case b >= 1<<30 && b%(1<<30) == 0:
		return fmt.Sprintf("%dGiB", b>>30)
	case b >= 1<<20 && b%(1<<20) == 0:
		return fmt.Sprintf("%dMiB", b>>20)
	case b >= 1<<10 && b%(1<<10) == 0:
		return fmt.Sprintf("%dKiB", b>>10)
	}
	return fmt.Sprintf("%dB", int64(b))
}

// MarshalText formats a size.
func (b ByteSize) MarshalText() ([]byte, error) { return []byte(b.String()), nil }

// Workload is the set of inner flows an application on the laptop opens.
type Workload struct {
	// Flows is how many flows to run; zero means 20.
	Flows int `yaml:"flows"`
	// Concurrency bounds flows in flight; zero means 10.
	Concurrency int `yaml:"concurrency"`
	// Sites are cycled through; nil means the first three origins.
	Sites []string `yaml:"sites"`
	// Sizes are the request and reply sizes, cycled; nil means [1KiB, 64KiB].
	Sizes []ByteSize `yaml:"sizes"`
	// Retries is how many times an application retries a flow whose tunnel
	// broke under it (connection reset, tunnel down); zero means 2,
	// negative means none.
	Retries int `yaml:"retries"`
	// Timeout bounds one flow attempt; zero means 30s.
	Timeout time.Duration `yaml:"timeout"`
	// Spacing waits this long between starting flows (to spread a workload
	// over events); zero starts them as fast as concurrency allows.
	Spacing time.Duration `yaml:"spacing"`
}

// WithDefaults fills the zero fields.
func (w Workload) WithDefaults(spec Spec) Workload {
	if w.Flows == 0 {
		w.Flows = 20
	}
	if w.Concurrency == 0 {
		w.Concurrency = 10
	}
	if w.Sites == nil {
		for i, o := range spec.Origins {
			if i == 3 {
				break
			}
			w.Sites = append(w.Sites, o.Name)
		}
	}
	if w.Sizes == nil {
		w.Sizes = []ByteSize{1 << 10, 64 << 10}
	}
	if w.Retries == 0 {
		w.Retries = 2
	}
	if w.Timeout == 0 {
		w.Timeout = 30 * time.Second
	}
	return w
}

// FlowOutcome is what became of one flow.
type FlowOutcome struct {
	Index     int          `json:"index"`
	Site      string       `json:"site"`
	Size      ByteSize     `json:"size"`
	Route     client.Route `json:"route,omitempty"`
	Why       string       `json:"why,omitempty"`
	Transport string       `json:"transport,omitempty"`
	TunnelID  string       `json:"tunnel_id,omitempty"`
	Attempts  int          `json:"attempts"`
	Verified  bool         `json:"verified"`
	// Gateway is the gateway whose tunnel carried the flow's last attempt.
	Gateway string `json:"gateway,omitempty"`
	// Reopened counts the times the client opened the flow again because
	// a tunnel broke before the gateway acknowledged it.
	Reopened int           `json:"reopened,omitempty"`
	Leg      failure.Leg   `json:"leg,omitempty"`
	Cause    failure.Cause `json:"cause,omitempty"`
	Error    string        `json:"error,omitempty"`
	Started  time.Time     `json:"started"`
	Duration time.Duration `json:"duration_ns"`
	// InFlight marks a lost flow that was in flight on a tunnel when that
	// tunnel went down: the gateway had acknowledged it, so no client can
	// move it to another gateway. Lost says in words why the flow was
	// lost (see ExplainLost).
	InFlight bool   `json:"in_flight,omitempty"`
	Lost     string `json:"lost,omitempty"`
	// Err is the typed failure (nil when verified).
	Err error `json:"-"`
}

// retryable reports causes an application would retry: the tunnel broke.
func retryable(c failure.Cause) bool {
	switch c {
	case failure.CauseConnectionReset, failure.CauseTunnelDown, failure.CauseClosed, failure.CauseTimeout:
		return true
	}
	return false
}

// AppTrust is the pool an application on the laptop verifies origins with.
func (t *Topology) AppTrust() *x509.CertPool {
	pool := x509.NewCertPool()
	for _, tr := range t.Spec.Client.Trust {
		switch tr {
		case TrustInternet:
			pool.AddCert(t.PKI.Internet.Cert)
		case TrustEnterprise:
			pool.AddCert(t.PKI.Enterprise.Cert)
		}
	}
	return pool
}

// RunWorkload runs w's flows through the endpoint client and returns one
// outcome per flow, in order. Each flow is a fresh HTTPS connection
// (a new inner flow), whose payloads are checked by SHA-256 at both ends.
func (t *Topology) RunWorkload(ctx context.Context, w Workload) []FlowOutcome {
	return RunWorkload(ctx, t.Client, t.AppTrust(), w.WithDefaults(t.Spec))
}

// RunWorkload runs a defaulted workload through c.
func RunWorkload(ctx context.Context, c *client.Client, trust *x509.CertPool, w Workload) []FlowOutcome {
	out := make([]FlowOutcome, w.Flows)
	sem := make(chan struct{}, w.Concurrency)
	var wg sync.WaitGroup
	for i := 0; i < w.Flows; i++ {
		if w.Spacing > 0 && i > 0 {
			select {
			case <-time.After(w.Spacing):
			case <-ctx.Done():
			}
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			// Interrupted: the flows not started are reported, not lost.
			for j := i; j < w.Flows; j++ {
				out[j] = FlowOutcome{Index: j, Site: w.Sites[j%len(w.Sites)], Size: w.Sizes[j%len(w.Sizes)],
					Leg: failure.LegClientGateway, Cause: failure.CauseClosed, Error: "run interrupted before the flow started"}
			}
			break
		}
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			out[i] = runFlow(ctx, c, trust, w, i)
		}(i)
	}
	wg.Wait()
	return out
}

func runFlow(ctx context.Context, c *client.Client, trust *x509.CertPool, w Workload, i int) (o FlowOutcome) {
	site := w.Sites[i%len(w.Sites)]
	size := w.Sizes[i%len(w.Sizes)]
	start := time.Now()
	o = FlowOutcome{Index: i, Site: site, Size: size, Started: start}
	defer func() { o.Duration = time.Since(start) }()
	for attempt := 0; attempt <= max(w.Retries, 0); attempt++ {
		o.Attempts = attempt + 1
		var conn *client.Conn
		tr := &http.Transport{
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				nc, err := c.Dial(ctx, network, addr)
				if err == nil {
					conn = nc.(*client.Conn)
				}
				return nc, err
			},
			TLSClientConfig:   &tls.Config{RootCAs: trust},
			DisableKeepAlives: true,
			ForceAttemptHTTP2: true,
		}
		fctx, cancel := context.WithTimeout(ctx, w.Timeout)
		_, err := origin.RunFlow(fctx, &http.Client{Transport: tr}, origin.Flow{
			Site: site, ReqSize: int64(size), RespSize: int64(size), Seed: uint64(i)*7919 + uint64(attempt),
		})
		cancel()
		tr.CloseIdleConnections()
		if conn != nil {
			o.Route, o.Transport, o.TunnelID, o.Why, o.Gateway = conn.Route, string(conn.Transport), conn.TunnelID, conn.Why, conn.Gateway
			o.Reopened += conn.Reopened
		}
		if err == nil {
			o.Verified, o.Err, o.Error, o.Leg, o.Cause = true, nil, "", "", ""
			return o
		}
		err = tunnelEnded(ctx, conn, err)
		o.Err, o.Error = err, err.Error()
		o.Leg, o.Cause = failure.LegOf(err), failure.CauseOf(err)
		if conn != nil && conn.Route == client.RouteDirect && o.Leg == failure.LegClientGateway {
			o.Leg = failure.LegClientOrigin
		}
		if !retryable(o.Cause) || ctx.Err() != nil || attempt >= w.Retries {
			// Not retried, or no retry left: no pause before a retry that
			// will not come.
			return o
		}
		select {
		case <-time.After(time.Duration(attempt+1) * 100 * time.Millisecond):
		case <-ctx.Done():
			return o
		}
	}
	return o
}

// tunnelEndGrace bounds the wait, after a tunnelled flow failed with a
// protocol error, for its tunnel to be declared dead.
const tunnelEndGrace = time.Second

// tunnelEnded attributes a tunnelled flow's protocol error to its tunnel
// when that tunnel ended under it: the application saw only a symptom (an
// HTTP/2 connection that "could not be established"); the cause is the
// tunnel, a connection reset on the client-gateway leg, which an
// application retries.
func tunnelEnded(ctx context.Context, conn *client.Conn, err error) error {
	if conn == nil || conn.Route != client.RouteTunnel || failure.CauseOf(err) != failure.CauseProtocol {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, tunnelEndGrace)
	defer cancel()
	terr := conn.TunnelEnded(wctx)
	if terr == nil {
		return err
	}
	return failure.New(failure.LegClientGateway, failure.CauseConnectionReset, "flow", conn.RemoteAddr().String(),
		fmt.Errorf("the tunnel carrying it ended (%w) under: %w", terr, err))
}

// Summary counts a workload's outcomes.
type Summary struct {
	Attempted int `json:"attempted"`
	Completed int `json:"completed"`
	Verified  int `json:"verified"`
	Tunnelled int `json:"tunnelled"`
	Direct    int `json:"direct"`
	// FailOpen counts steered flows sent direct because no tunnel was up.
	FailOpen int `json:"fail_open"`
}

// Summarize counts outcomes.
func Summarize(outs []FlowOutcome) Summary {
	s := Summary{Attempted: len(outs)}
	for _, o := range outs {
		if o.Verified {
			s.Completed++
			s.Verified++
		}
		switch o.Route {
		case client.RouteTunnel:
			s.Tunnelled++
		case client.RouteDirect:
			s.Direct++
			if o.Why == "fail-open" {
				s.FailOpen++
			}
		}
	}
	return s
}

// ExplainLost says, for every flow not verified, why it was lost: in
// flight on a tunnel when that tunnel went down (the gateway had
// acknowledged the flow; a client cannot move an open flow to another
// gateway, only the application can retry it), or how it failed
// otherwise. history is the client's. Both runners call it on their
// observation.
func ExplainLost(flows []FlowOutcome, history []client.Transition) {
	downs := map[string]client.Transition{}
	for _, h := range history {
		if h.Event == "down" && h.TunnelID != "" {
			if _, seen := downs[h.TunnelID]; !seen {
				downs[h.TunnelID] = h
			}
		}
	}
	for i := range flows {
		f := &flows[i]
		f.InFlight, f.Lost = false, ""
		if f.Verified {
			continue
		}
		cause := fmt.Sprintf("%s on %s", orUnknown(string(f.Cause)), orUnknown(string(f.Leg)))
		down, wentDown := downs[f.TunnelID]
		switch {
		case f.TunnelID != "" && wentDown && !f.Started.After(down.Time):
			f.InFlight = true
			why := ""
			if down.Error != "" {
				why = " (" + down.Error + ")"
			}
			f.Lost = fmt.Sprintf("in flight on tunnel %s to %s over %s when that tunnel went down %v after the flow started%s: "+
				"the gateway had acknowledged the flow, so the client cannot move it to another gateway; only the application can retry it (%s)",
				short(f.TunnelID), orUnknown(f.Gateway), orUnknown(f.Transport), down.Time.Sub(f.Started).Round(time.Millisecond), why, cause)
		case f.TunnelID != "":
			f.Lost = fmt.Sprintf("failed on tunnel %s to %s: %s", short(f.TunnelID), orUnknown(f.Gateway), cause)
		case f.Route == client.RouteDirect:
			f.Lost = "failed on its direct path: " + cause
		default:
			f.Lost = "no tunnel took it: " + cause
		}
	}
}

func short(id string) string { return id[:min(len(id), 8)] }

func orUnknown(s string) string {
	if s == "" {
		return "(unknown)"
	}
	return s
}
