package node

import (
	"context"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/pinwall/pinwall/resolve"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestReadConfig(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte(text), 0o600))
		return p
	}
	tests := []struct {
		name    string
		file    string
		wantErr string
		want    Config
	}{
		{name: "good", file: write("good.json", `{"role":"gateway","name":"gw1","net":{"default_via":"10.10.10.254"}}`),
			want: Config{Role: RoleGateway, Name: "gw1"}},
		{name: "bad json", file: write("bad.json", `{"role":`), wantErr: "bad.json"},
		{name: "missing", file: filepath.Join(dir, "none.json"), wantErr: "none.json"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := ReadConfig(tt.file)
			if tt.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tt.wantErr, "the error names the file")
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want.Role, c.Role)
			assert.Equal(t, tt.want.Name, c.Name)
			assert.Equal(t, "10.10.10.254", c.Net.DefaultVia.String())
		})
	}
}

func TestRunUnknownRole(t *testing.T) {
	err := Run(t.Context(), Config{Role: "sideways", Out: t.TempDir()}, Signals{}, os.Stdout, os.Stderr)
	require.Error(t, err)
	assert.Contains(t, err.Error(), `unknown role "sideways"`)
}

func TestContainerEvidence(t *testing.T) {
	noEnv := func(string) string { return "" }
	tests := []struct {
		name   string
		files  []string
		env    map[string]string
		pid    int
		expect string
	}{
		{"docker", []string{".dockerenv"}, nil, 4242, "/.dockerenv exists"},
		{"podman", []string{"run/.containerenv"}, nil, 4242, "/run/.containerenv exists"},
		{"systemd convention", nil, map[string]string{"container": "systemd-nspawn"}, 4242, "container=systemd-nspawn in the environment"},
		{"entrypoint", nil, nil, 1, "running as PID 1"},
		{"a host", nil, nil, 4242, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			for _, f := range tt.files {
				p := filepath.Join(root, f)
				require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
				require.NoError(t, os.WriteFile(p, nil, 0o644))
			}
			getenv := noEnv
			if tt.env != nil {
				getenv = func(k string) string { return tt.env[k] }
			}
			assert.Equal(t, tt.expect, ContainerEvidence(root, getenv, tt.pid))
		})
	}
}

func TestZoneDNS(t *testing.T) {
	z, err := serveZoneDNS("127.0.0.1:0", []resolve.Record{
		{Name: "gateway-acme.sse.test", Addrs: []netip.Addr{netip.MustParseAddr("203.0.113.9"), netip.MustParseAddr("203.0.113.10")}},
	})
	require.NoError(t, err)
	defer z.Close()
	r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "udp", z.pc.LocalAddr().String())
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	got, err := r.LookupNetIP(ctx, "ip4", "Gateway-Acme.sse.test")
	require.NoError(t, err)
	assert.ElementsMatch(t, []netip.Addr{netip.MustParseAddr("203.0.113.9"), netip.MustParseAddr("203.0.113.10")}, got, "every address of the name")
	_, err = r.LookupNetIP(ctx, "ip4", "www.unknown.test")
	var de *net.DNSError
	require.ErrorAs(t, err, &de)
	assert.True(t, de.IsNotFound)
	_, err = serveZoneDNS("10.10.10.254:53", nil)
	require.ErrorContains(t, err, "loopback only")
	require.NoError(t, z.Close())
	require.NoError(t, z.Close(), "Close is idempotent")
}

func TestListening(t *testing.T) {
	file := filepath.Join(t.TempDir(), "tcp")
	// /proc/net/tcp: a socket listening on :15001 (3A99) and one established
	// from :443 (01BB).
	require.NoError(t, os.WriteFile(file, []byte(`  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:3A99 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0000000000000000 100 0 0 10 0
   1: 0A0A0AFE:01BB 640A0A0A:D3C2 01 00000000:00000000 00:00000000 00000000     0        0 2 1 0000000000000000 20 4 30 10 -1
`), 0o644))
	assert.True(t, listening(file, 15001))
	assert.False(t, listening(file, 443), "established, not listening")
	assert.False(t, listening(file, 8080))
	assert.False(t, listening(filepath.Join(t.TempDir(), "none"), 15001))
}

// FuzzParseConfig: any bytes in the configuration handed over in the
// environment (ConfigEnv) give a configuration or an error naming where
// they came from, never a panic.
func FuzzParseConfig(f *testing.F) {
	f.Add([]byte(`{"role": "origin", "name": "origins"}`))
	f.Add([]byte(`{"role":`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, err := ParseConfig("$"+ConfigEnv, b)
		if err != nil {
			assert.Contains(t, err.Error(), "$"+ConfigEnv)
		}
	})
}
