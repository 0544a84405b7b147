package harness_test

import (
	"context"
	"encoding/json"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pinwall/pinwall/harness"
	"github.com/pinwall/pinwall/hostnet"
)

// The lab support: real sockets for the simulated servers, the zone over
// real DNS answering them, and the files a person needs.
func TestLabSupport(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dir := t.TempDir()
	topo, err := harness.StartInProcess(ctx, harness.Spec{}, harness.Options{Dir: dir, NoClient: true})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, topo.Close()) })

	gws, origins := topo.Servers()
	require.Len(t, gws, 2)
	require.NotEmpty(t, origins)
	primary := gws[0]
	assert.Equal(t, harness.PrimaryGateway, primary.Name)
	require.Len(t, primary.TCP, 1, "a gateway's addresses share one host")
	require.Len(t, primary.UDP, 1)
	assert.Equal(t, "127.0.113.9", primary.TCP[0].Addr().String())
	real, ok := topo.RealAddr(hostnet.ProtoTCP, netip443(primary.Addrs[1].String()))
	require.True(t, ok)
	assert.Equal(t, primary.TCP[0], real)
	c, err := net.DialTimeout("tcp", primary.TCP[0].String(), 5*time.Second)
	require.NoError(t, err, "a program on this machine reaches the gateway there")
	c.Close()

	dns, err := topo.ServeDNS(ctx, "127.0.0.1:0")
	require.NoError(t, err)
	r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "udp", dns.Addr().String())
	}}
	ips, err := r.LookupHost(ctx, primary.Name)
	require.NoError(t, err)
	assert.Equal(t, []string{primary.TCP[0].Addr().String()}, ips)

	cfg, err := topo.ClientConfig()
	require.NoError(t, err)
	info := harness.LabInfo{DNS: dns.Addr().String(), Gateways: gws, Origins: origins}
	require.NoError(t, topo.WriteLabFiles(cfg, &info))
	fi, err := os.Stat(filepath.Join(dir, harness.LabDeviceKey))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	assert.Equal(t, harness.LabDeviceKey, info.Files["device key"])
	b, err := os.ReadFile(filepath.Join(dir, harness.LabJSON))
	require.NoError(t, err)
	var back harness.LabInfo
	require.NoError(t, json.Unmarshal(b, &back))
	assert.Equal(t, gws, back.Gateways)
	assert.Equal(t, cfg.Pins.Strings(), back.Pins)
	hosts, err := os.ReadFile(filepath.Join(dir, harness.LabHosts))
	require.NoError(t, err)
	assert.Contains(t, string(hosts), "127.0.113.137\tgateway-backup-acme.sse.test\n")

	require.NoError(t, topo.WriteClientHistory(nil))
	b, err = os.ReadFile(filepath.Join(dir, harness.LabClientHistory))
	require.NoError(t, err)
	assert.Equal(t, "[]\n", string(b))

	obs := topo.Snapshot(nil)
	assert.Equal(t, "inproc", obs.Mode)
	assert.Equal(t, harness.DefaultLaptop, obs.Roles.Laptop)
}

func netip443(a string) netip.AddrPort { return netip.AddrPortFrom(netip.MustParseAddr(a), 443) }
