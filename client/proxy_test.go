package client_test

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pinwall/pinwall/client"
	"github.com/pinwall/pinwall/failure"
	"github.com/pinwall/pinwall/harness"
	"github.com/pinwall/pinwall/hostnet"
	"github.com/pinwall/pinwall/resolve"
	"github.com/pinwall/pinwall/tunnel"
)

// connectProxy is a plain HTTP CONNECT proxy on a real loopback listener,
// the shape of mitmproxy or squid without interception: it resolves a
// name with its own resolver (nil: names fail with 502, as a proxy that
// cannot resolve pinwall's names), dials what it gets, and relays.
type connectProxy struct {
	l       net.Listener
	resolve func(host string) (netip.Addr, bool)

	mu      sync.Mutex
	targets []string
	wg      sync.WaitGroup
}

func startConnectProxy(t *testing.T, resolve func(string) (netip.Addr, bool)) *connectProxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := &connectProxy{l: l, resolve: resolve}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			p.wg.Add(1)
			go func() {
				defer p.wg.Done()
				p.serve(c)
			}()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		p.wg.Wait()
	})
	return p
}

func (p *connectProxy) URL() *url.URL { return &url.URL{Scheme: "http", Host: p.l.Addr().String()} }

func (p *connectProxy) Targets() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.targets...)
}

func (p *connectProxy) serve(c net.Conn) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	req, err := http.ReadRequest(br)
	if err != nil || req.Method != http.MethodConnect {
		return
	}
	p.mu.Lock()
	p.targets = append(p.targets, req.Host)
	p.mu.Unlock()
	host, port, _ := net.SplitHostPort(req.Host)
	ip, err := netip.ParseAddr(host)
	if err != nil {
		ok := false
		if p.resolve != nil {
			ip, ok = p.resolve(host)
		}
		if !ok {
			_, _ = io.WriteString(c, "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
			return
		}
	}
	up, err := net.DialTimeout("tcp", net.JoinHostPort(ip.String(), port), 5*time.Second)
	if err != nil {
		_, _ = io.WriteString(c, "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
		return
	}
	defer up.Close()
	_ = c.SetDeadline(time.Time{})
	_, _ = io.WriteString(c, "HTTP/1.1 200 Connection established\r\n\r\n")
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = io.Copy(up, br)
		_ = up.(*net.TCPConn).CloseWrite()
	}()
	_, _ = io.Copy(c, up)
	c.Close()
	<-done
}

// A real proxy on this machine cannot reach the simulation's logical
// addresses nor resolve its names: the CONNECT names the real loopback
// socket standing in for the gateway (ProxyReach), or the gateway's name
// for a proxy that resolves it to that stand-in.
func TestUpstreamProxyConnectTarget(t *testing.T) {
	for _, mode := range []client.ProxyConnectMode{client.ProxyConnectAddr, client.ProxyConnectName} {
		t.Run(string(mode), func(t *testing.T) {
			ctx := testCtx(t, 30*time.Second)
			topo, err := harness.StartInProcess(ctx, harness.Spec{}, harness.Options{NoClient: true})
			require.NoError(t, err)
			t.Cleanup(func() { require.NoError(t, topo.Close()) })
			realOf := func(ap netip.AddrPort) (netip.AddrPort, bool) { return topo.Sim.RealAddr(hostnet.ProtoTCP, ap) }
			// The proxy's own resolver answers the gateway's name with the
			// stand-in's address, as pinwall's DNS server does.
			proxy := startConnectProxy(t, func(host string) (netip.Addr, bool) {
				ip, err := resolve.Addr(ctx, topo.Zone, host)
				if err != nil {
					return netip.Addr{}, false
				}
				r, ok := realOf(netip.AddrPortFrom(ip, 443))
				return r.Addr(), ok
			})

			cfg, err := topo.ClientConfig()
			require.NoError(t, err)
			cfg.Transport = client.TransportTLS
			cfg.UpstreamProxy = proxy.URL()
			cfg.ProxyConnect = mode
			cfg.ProxyReach = realOf
			c, err := client.New(cfg)
			require.NoError(t, err)
			require.NoError(t, c.Start(ctx))
			t.Cleanup(func() { c.Close() })
			st, err := c.WaitUp(ctx)
			require.NoError(t, err)
			assert.Equal(t, tunnel.TransportTLS, st.Transport)
			assert.Equal(t, proxy.URL().String(), st.Via, "the state says the tunnel goes through the proxy")

			targets := proxy.Targets()
			require.Len(t, targets, 1)
			real, ok := realOf(netip.MustParseAddrPort(st.Addr))
			require.True(t, ok)
			if mode == client.ProxyConnectAddr {
				assert.Equal(t, real.String(), targets[0], "the gateway's real address, reachable without a name")
			} else {
				assert.Equal(t, net.JoinHostPort(st.Gateway, strconv.Itoa(int(real.Port()))), targets[0], "the gateway's name, with the port the proxy reaches it on")
			}
			conn, err := c.Dial(ctx, "tcp", "www.social.test:443")
			require.NoError(t, err, "a flow through the proxied tunnel")
			conn.Close()
		})
	}
}

// A proxy that refuses the CONNECT is named, with what was asked and what
// came back; a gateway address without a stand-in fails before dialling.
func TestUpstreamProxyRefusals(t *testing.T) {
	ctx := testCtx(t, 30*time.Second)
	topo, err := harness.StartInProcess(ctx, harness.Spec{}, harness.Options{NoClient: true})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, topo.Close()) })

	tests := []struct {
		name   string
		mode   client.ProxyConnectMode
		reach  func(netip.AddrPort) (netip.AddrPort, bool)
		leg    failure.Leg
		cause  failure.Cause
		errHas []string
	}{
		{"a name the proxy cannot resolve", client.ProxyConnectName, nil, failure.LegClientFirewall, failure.CauseProxyRefused,
			[]string{"CONNECT gateway-acme.sse.test:443", "proxy answered 502 Bad Gateway"}},
		{"no stand-in for the gateway", client.ProxyConnectAddr, func(netip.AddrPort) (netip.AddrPort, bool) { return netip.AddrPort{}, false },
			failure.LegClientGateway, failure.CauseConnectionRefused, []string{"no stand-in the proxy can reach"}},
	}
	proxy := startConnectProxy(t, nil)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := topo.ClientConfig()
			require.NoError(t, err)
			cfg.Transport = client.TransportTLS
			cfg.UpstreamProxy = proxy.URL()
			cfg.ProxyConnect = tt.mode
			cfg.ProxyReach = tt.reach
			cfg.AttemptsPerGateway = 1
			c, err := client.New(cfg)
			require.NoError(t, err)
			require.NoError(t, c.Start(ctx))
			defer c.Close()
			_, err = c.WaitOutcome(ctx)
			require.Error(t, err)
			assert.Equal(t, tt.leg, failure.LegOf(err), "%v", err)
			assert.Equal(t, tt.cause, failure.CauseOf(err), "%v", err)
			for _, s := range tt.errHas {
				assert.Contains(t, err.Error(), s)
			}
		})
	}
}

func TestProxyConnectModeValidated(t *testing.T) {
	_, err := client.New(client.Config{Gateways: []string{"gw.test"}, InsecureSkipVerify: true, Stack: hostnet.OS{},
		Resolver: &resolve.Zone{}, ProxyConnect: "sideways"})
	require.Error(t, err)
	assert.Contains(t, err.Error(), `proxy CONNECT target "sideways" is not one of addr, name`)
}
