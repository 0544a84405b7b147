package probe_test

import (
	"bufio"
	"context"
	"crypto"
	"encoding/json"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pinwall/pinwall/fieldgw"
	"github.com/pinwall/pinwall/harness"
	"github.com/pinwall/pinwall/hostnet"
	"github.com/pinwall/pinwall/pki"
	"github.com/pinwall/pinwall/probe"
)

// issued returns a signed bundle of a field gateway made in memory (not
// running), and its state.
func issued(t *testing.T) (*probe.Bundle, *fieldgw.State) {
	t.Helper()
	st, err := fieldgw.NewState(pki.Config{}, harness.PrimaryGateway, harness.BackupGateway, "control."+harness.PrimaryGateway)
	require.NoError(t, err)
	h, err := hostnet.NewSim(slog.New(slog.DiscardHandler)).AddHost("gw", netip.MustParseAddr("203.0.113.9"))
	require.NoError(t, err)
	srv, err := fieldgw.Start(context.Background(), fieldgw.Config{
		State:   st,
		Primary: fieldgw.Listener{Name: harness.PrimaryGateway, Stack: h, Listen: netip.MustParseAddrPort("203.0.113.9:443")},
	})
	require.NoError(t, err)
	t.Cleanup(func() { srv.Close() })
	b, err := srv.IssueBundle()
	require.NoError(t, err)
	return b, st
}

func TestBundleRefused(t *testing.T) {
	good, st := issued(t)
	key := st.Certificate.PrivateKey.(crypto.Signer)
	now := good.Created
	other, err := pki.NewCA(pki.Config{}, "other", "other")
	require.NoError(t, err)
	otherLeaf, err := other.Issue(pki.Leaf{DNSNames: []string{"x.test"}})
	require.NoError(t, err)
	for _, tc := range []struct {
		name string
		edit func(b *probe.Bundle) // nil: the file is missing
		raw  string                // the file's text instead of the bundle's
		at   time.Time
		want []string
	}{
		{name: "missing", want: []string{"no such file"}},
		{name: "not json", raw: "HTTP/1.1 200 OK\r\n", want: []string{"not a probe bundle"}},
		{name: "unknown field", raw: `{"schema":"pinwall.probe-bundle/v1","extra":1}`, want: []string{"unknown field", "extra"}},
		{name: "expired", edit: func(*probe.Bundle) {}, at: good.Expires.Add(time.Minute), want: []string{"field expires", "bundle expired"}},
		{name: "tampered address", edit: func(b *probe.Bundle) { b.Primary.Addr = netip.MustParseAddrPort("192.0.2.66:443") }, want: []string{"field signature", "changed after the gateway wrote it"}},
		{name: "tampered then re-signed with another key", edit: func(b *probe.Bundle) {
			require.NoError(t, b.Sign(otherLeaf.PrivateKey.(crypto.Signer)))
		}, want: []string{"field signature"}},
		{name: "wrong pin", edit: func(b *probe.Bundle) {
			b.Pin = pki.SPKIPin(otherLeaf.Leaf)
			require.NoError(t, b.Sign(key))
		}, want: []string{"field pin", "does not match the bundle's gateway certificate"}},
		{name: "no device key", edit: func(b *probe.Bundle) {
			b.DeviceKey = ""
			require.NoError(t, b.Sign(key))
		}, want: []string{"field device_cert"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "probe-bundle.json")
			switch {
			case tc.raw != "":
				require.NoError(t, os.WriteFile(file, []byte(tc.raw), 0o600))
			case tc.edit != nil:
				b := *good
				tc.edit(&b)
				data, err := b.Marshal()
				require.NoError(t, err)
				require.NoError(t, os.WriteFile(file, data, 0o600))
			}
			at := tc.at
			if at.IsZero() {
				at = now
			}
			_, _, err := probe.LoadBundle(file, at)
			require.Error(t, err)
			msg := err.Error()
			assert.NotContains(t, msg, "\n", "one line")
			assert.Contains(t, msg, file, "names the file")
			for _, w := range tc.want {
				assert.Contains(t, msg, w)
			}
		})
	}
	t.Run("good", func(t *testing.T) {
		data, err := good.Marshal()
		require.NoError(t, err)
		_, id, err := probe.ParseBundle(data, now)
		require.NoError(t, err)
		assert.Equal(t, pki.PinSet{good.Pin}, id.Pins)
	})
}

// network is a topology without a firewall and without gateways, where a
// test puts what answers at the gateway's address.
func network(t *testing.T) *harness.Topology {
	t.Helper()
	top, err := harness.StartInProcess(context.Background(), harness.Spec{ExtraHosts: []harness.HostSpec{{Name: "proxy", Addr: netip.MustParseAddr("10.10.10.5")}}},
		harness.Options{NoClient: true, NoGateways: true})
	require.NoError(t, err)
	t.Cleanup(func() { top.Close() })
	return top
}

// serveLines answers every TCP connection on l with reply, after reading
// the request's head.
func serveLines(t *testing.T, l net.Listener, reply string) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			br := bufio.NewReader(c)
			for {
				line, err := br.ReadString('\n')
				if err != nil || line == "\r\n" || strings.HasPrefix(line, "\x16") {
					break
				}
			}
			_, _ = c.Write([]byte(reply))
			c.Close()
		}
	}()
	t.Cleanup(func() { l.Close(); <-done })
}

func TestRunUnreachable(t *testing.T) {
	b, st := issued(t)
	data, err := b.Marshal()
	require.NoError(t, err)
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, top *harness.Topology, cfg *probe.Config)
		want  []string
	}{
		{name: "nothing listens", setup: func(*testing.T, *harness.Topology, *probe.Config) {},
			want: []string{"tried TLS to 203.0.113.9:443 and DTLS to 203.0.113.9:443", "came back"}},
		{name: "captive portal", setup: func(t *testing.T, top *harness.Topology, _ *probe.Config) {
			l, err := top.Hosts[harness.PrimaryGateway].Listen(context.Background(), "tcp", "203.0.113.9:443")
			require.NoError(t, err)
			serveLines(t, l, "HTTP/1.1 302 Found\r\nLocation: http://portal.test/\r\nContent-Length: 0\r\n\r\n")
		}, want: []string{"tried TLS to 203.0.113.9:443", "not TLS", `"HTTP/"`, "captive portal"}},
		{name: "proxy wants credentials", setup: func(t *testing.T, top *harness.Topology, cfg *probe.Config) {
			l, err := top.Hosts["proxy"].Listen(context.Background(), "tcp", "10.10.10.5:3128")
			require.NoError(t, err)
			serveLines(t, l, "HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"corp\"\r\nContent-Length: 0\r\n\r\n")
			cfg.Proxy = &url.URL{Scheme: "http", Host: "10.10.10.5:3128"}
		}, want: []string{"proxy http://10.10.10.5:3128 refused CONNECT 203.0.113.9:443", "407 Proxy Authentication Required", "credentials"}},
		{name: "wrong pin", setup: func(t *testing.T, top *harness.Topology, cfg *probe.Config) {
			// The gateway at the address is another one: another key.
			other, err := fieldgw.NewState(pki.Config{}, harness.PrimaryGateway, "control."+harness.PrimaryGateway)
			require.NoError(t, err)
			other.DeviceCA = st.DeviceCA
			srv, err := fieldgw.Start(context.Background(), fieldgw.Config{State: other,
				Primary: fieldgw.Listener{Name: harness.PrimaryGateway, Stack: top.Hosts[harness.PrimaryGateway], Listen: netip.MustParseAddrPort("203.0.113.9:443")}})
			require.NoError(t, err)
			t.Cleanup(func() { srv.Close() })
		}, want: []string{"203.0.113.9:443", "a key the bundle does not pin", "DTLS"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			top := network(t)
			pb, id, err := probe.ParseBundle(data, b.Created)
			require.NoError(t, err)
			cfg := probe.Config{Bundle: pb, Identity: id, Stack: top.LaptopStack(), StepTimeout: 500 * time.Millisecond, Rate: 100}
			tc.setup(t, top, &cfg)
			res, err := probe.Run(context.Background(), cfg)
			require.NoError(t, err)
			err = probe.Unreachable(res)
			require.Error(t, err, "%+v", res.Observed)
			assert.ErrorIs(t, err, probe.ErrUnreachable)
			assert.NotContains(t, err.Error(), "\n")
			for _, w := range tc.want {
				assert.Contains(t, err.Error(), w)
			}
			ev, err := json.Marshal(res)
			require.NoError(t, err)
			assert.NotEmpty(t, ev)
		})
	}
}

// FuzzParseBundle: no input makes the bundle parser panic, and whatever it
// accepts is signed by its own gateway certificate's key.
func FuzzParseBundle(f *testing.F) {
	st, err := fieldgw.NewState(pki.Config{}, "gw.test", "control.gw.test")
	if err != nil {
		f.Fatal(err)
	}
	b := &probe.Bundle{Schema: probe.BundleSchema, ID: "x", Created: time.Unix(0, 0).UTC(), Expires: time.Unix(1<<32, 0).UTC(),
		Primary: probe.Endpoint{Name: "gw.test", Addr: netip.MustParseAddrPort("192.0.2.1:443")}, ControlName: "control.gw.test",
		ServerNames: []string{"gw.test", "control.gw.test"}, Pin: pki.SPKIPin(st.Certificate.Leaf), GatewayCert: string(pki.CertPEM(st.Certificate.Leaf))}
	require.NoError(f, b.Sign(st.Certificate.PrivateKey.(crypto.Signer)))
	data, err := b.Marshal()
	require.NoError(f, err)
	f.Add(data)
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"schema":"pinwall.probe-bundle/v1","primary":{"name":"a","addr":"1.2.3.4:0"}}`))
	f.Add([]byte("null"))
	f.Fuzz(func(t *testing.T, in []byte) {
		got, id, err := probe.ParseBundle(in, time.Unix(1000, 0))
		if err != nil {
			return
		}
		require.NotNil(t, got)
		require.NotNil(t, id.Gateway)
	})
}
