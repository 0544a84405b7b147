package bench

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/pinwall/pinwall/client"
	"github.com/pinwall/pinwall/harness"
	"github.com/pinwall/pinwall/resolve"
)

// The tunnel measurements' origin: a blob server on a host of its own in the
// in-process network, reached through the tunnel by name.
const (
	// BlobHost is the blob origin's name in the topology's zone.
	BlobHost = "blob.bench.test"
	// RawTLSHost is the name in the raw TLS baseline's certificate.
	RawTLSHost = "raw.bench.test"
)

// BlobAddr is the blob origin's logical address (not RFC 1918, so steered).
var BlobAddr = netip.MustParseAddr("192.0.2.99")

// Transports are the tunnel transports measured, in report order.
var Transports = []client.TransportMode{client.TransportTLS, client.TransportDTLS}

// TunnelEnv is an in-process topology of package harness (client side
// built on demand, no firewall) with a blob origin behind the gateways, and
// a raw TLS 1.3 blob server on loopback with a certificate of the same type
// as the gateway's, as the baseline. Close stops all of it.
type TunnelEnv struct {
	Topo *harness.Topology

	blob *BlobServer
	raw  *BlobServer
	// rawClient verifies the raw baseline like the client verifies a gateway.
	rawClient *tls.Config

	mu      sync.Mutex
	clients map[client.TransportMode]*client.Client
	flows   map[*Flow]struct{}
	closed  bool
}

// StartTunnelEnv starts the topology and both blob servers.
func StartTunnelEnv(ctx context.Context) (_ *TunnelEnv, err error) {
	topo, err := harness.StartInProcess(ctx, harness.Spec{}, harness.Options{NoClient: true})
	if err != nil {
		return nil, fmt.Errorf("bench: tunnel topology: %w", err)
	}
	e := &TunnelEnv{Topo: topo, clients: map[client.TransportMode]*client.Client{}, flows: map[*Flow]struct{}{}}
	defer func() {
		if err != nil {
			e.Close()
		}
	}()
	host, err := topo.Sim.AddHost("bench-origin", BlobAddr)
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	ln, err := host.Listen(ctx, "tcp", netip.AddrPortFrom(BlobAddr, 443).String())
	if err != nil {
		return nil, fmt.Errorf("bench: blob origin: %w", err)
	}
	e.blob = ServeBlob(ln, nil)
	if err := topo.Zone.Add(resolve.Record{Name: BlobHost, Addrs: []netip.Addr{BlobAddr}}); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}

	cert, err := topo.PKI.ServerCert(RawTLSHost)
	if err != nil {
		return nil, err
	}
	rl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("bench: raw tls: %w", err)
	}
	e.raw = ServeBlob(rl, &tls.Config{Certificates: []tls.Certificate{*cert}, MinVersion: tls.VersionTLS13})
	e.rawClient = &tls.Config{ServerName: RawTLSHost, RootCAs: topo.PKI.Internet.Pool(), MinVersion: tls.VersionTLS13}
	return e, nil
}

// Close closes the flows, the clients, the servers and the topology. It is
// idempotent.
func (e *TunnelEnv) Close() error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil
	}
	e.closed = true
	flows := e.flows
	clients := e.clients
	e.mu.Unlock()
	var errs []error
	for f := range flows {
		f.c.Close()
	}
	for _, c := range clients {
		errs = append(errs, c.Close())
	}
	if e.blob != nil {
		errs = append(errs, e.blob.Close())
	}
	if e.raw != nil {
		errs = append(errs, e.raw.Close())
	}
	errs = append(errs, e.Topo.Close())
	return errors.Join(errs...)
}

// clientConfig is the laptop's client configuration on transport tr.
func (e *TunnelEnv) clientConfig(tr client.TransportMode) (client.Config, error) {
	cfg, err := e.Topo.ClientConfig()
	if err != nil {
		return cfg, err
	}
	cfg.Transport = tr
	cfg.Gateways = cfg.Gateways[:1] // the primary: a setup is one handshake
	return cfg, nil
}

// Client returns the env's running client on transport tr, starting it and
// waiting for its tunnel the first time.
func (e *TunnelEnv) Client(ctx context.Context, tr client.TransportMode) (*client.Client, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return nil, errors.New("bench: tunnel env closed")
	}
	if c := e.clients[tr]; c != nil {
		return c, nil
	}
	cfg, err := e.clientConfig(tr)
	if err != nil {
		return nil, err
	}
	c, err := client.New(cfg)
	if err != nil {
		return nil, err
	}
	// The client serves the env's later ops: ctx bounds only the wait for
	// its tunnel, the env's Close stops it.
	if err := c.Start(context.Background()); err != nil {
		return nil, err
	}
	st, err := c.WaitUp(ctx)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("bench: %s tunnel: %w", tr, err)
	}
	if string(st.Transport) != string(tr) {
		c.Close()
		return nil, fmt.Errorf("bench: asked for a %s tunnel, got %s", tr, st.Transport)
	}
	e.clients[tr] = c
	return c, nil
}

// Flow is one long-lived connection (an inner flow, or the raw TLS
// baseline) carrying successive blob requests, one at a time.
type Flow struct {
	c    net.Conn
	host string
	env  *TunnelEnv
	mu   sync.Mutex
}

// Fetch returns an op that fetches size bytes over the flow.
func (f *Flow) Fetch(size int64) Op {
	return func(ctx context.Context) (Sample, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		stop := context.AfterFunc(ctx, func() { _ = f.c.SetDeadline(time.Now()) })
		defer stop()
		if _, err := FetchBlob(f.c, f.host, size, false); err != nil {
			return Sample{}, err
		}
		return Sample{Bytes: size}, nil
	}
}

// Close closes the flow.
func (f *Flow) Close() error {
	f.env.mu.Lock()
	delete(f.env.flows, f)
	f.env.mu.Unlock()
	return f.c.Close()
}

func (e *TunnelEnv) track(c net.Conn, host string) (*Flow, error) {
	f := &Flow{c: c, host: host, env: e}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		c.Close()
		return nil, errors.New("bench: tunnel env closed")
	}
	e.flows[f] = struct{}{}
	return f, nil
}

// OpenFlow opens one inner flow to the blob origin through the tunnel on tr.
func (e *TunnelEnv) OpenFlow(ctx context.Context, tr client.TransportMode) (*Flow, error) {
	c, err := e.Client(ctx, tr)
	if err != nil {
		return nil, err
	}
	conn, err := c.Dial(ctx, "tcp", BlobHost+":443")
	if err != nil {
		return nil, fmt.Errorf("bench: %s flow: %w", tr, err)
	}
	if cc, ok := conn.(*client.Conn); !ok || cc.Route != client.RouteTunnel {
		conn.Close()
		return nil, fmt.Errorf("bench: the flow to %s did not take the tunnel", BlobHost)
	}
	return e.track(conn, BlobHost)
}

// OpenFlows opens n inner flows on tr.
func (e *TunnelEnv) OpenFlows(ctx context.Context, tr client.TransportMode, n int) ([]*Flow, error) {
	flows := make([]*Flow, 0, n)
	for range n {
		f, err := e.OpenFlow(ctx, tr)
		if err != nil {
			for _, f := range flows {
				f.Close()
			}
			return nil, err
		}
		flows = append(flows, f)
	}
	return flows, nil
}

// OpenRawTLS opens the baseline: one TLS 1.3 connection on loopback to a
// blob server holding a certificate of the gateway's type.
func (e *TunnelEnv) OpenRawTLS(ctx context.Context) (*Flow, error) {
	d := tls.Dialer{NetDialer: &net.Dialer{Timeout: dialTimeout}, Config: e.rawClient}
	c, err := d.DialContext(ctx, "tcp", e.raw.Addr().String())
	if err != nil {
		return nil, fmt.Errorf("bench: raw tls: %w", err)
	}
	return e.track(c, RawTLSHost)
}

// FetchAll returns an op fetching size bytes on every flow at once (one
// goroutine per flow); it reports the bytes of all of them.
func FetchAll(flows []*Flow, size int64) Op {
	return func(ctx context.Context) (Sample, error) {
		errs := make([]error, len(flows))
		var wg sync.WaitGroup
		for i, f := range flows {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, errs[i] = f.Fetch(size)(ctx)
			}()
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			return Sample{}, err
		}
		return Sample{Bytes: size * int64(len(flows))}, nil
	}
}

// FirstByteOp returns an op that opens a new flow on the established tunnel
// of tr (stream, request, the gateway's dial to the origin, its reply),
// sends a one-byte blob request and records the time to the first byte of
// the response.
func (e *TunnelEnv) FirstByteOp(tr client.TransportMode) Op {
	return func(ctx context.Context) (Sample, error) {
		c, err := e.Client(ctx, tr)
		if err != nil {
			return Sample{}, err
		}
		ctx, cancel := opContext(ctx)
		defer cancel()
		t0 := time.Now()
		conn, err := c.Dial(ctx, "tcp", BlobHost+":443")
		if err != nil {
			return Sample{}, err
		}
		defer conn.Close()
		stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Now()) })
		defer stop()
		first, err := FetchBlob(conn, BlobHost, 1, true)
		if err != nil {
			return Sample{}, err
		}
		return Sample{Latency: first.Sub(t0)}, nil
	}
}

// SetupOp returns an op that starts a new client on tr and records the
// time until its tunnel is up: resolving the gateway, the (D)TLS handshake
// with pin check and device certificate, the gateway's greeting and the
// multiplexer (yamux, or the SCTP association). The client is closed after.
func (e *TunnelEnv) SetupOp(tr client.TransportMode) Op {
	return func(ctx context.Context) (Sample, error) {
		cfg, err := e.clientConfig(tr)
		if err != nil {
			return Sample{}, err
		}
		c, err := client.New(cfg)
		if err != nil {
			return Sample{}, err
		}
		defer c.Close()
		ctx, cancel := opContext(ctx)
		defer cancel()
		t0 := time.Now()
		if err := c.Start(ctx); err != nil {
			return Sample{}, err
		}
		st, err := c.WaitUp(ctx)
		took := time.Since(t0)
		if err != nil {
			return Sample{}, err
		}
		if string(st.Transport) != string(tr) {
			return Sample{}, fmt.Errorf("bench: asked for a %s tunnel, got %s", tr, st.Transport)
		}
		return Sample{Latency: took}, nil
	}
}
