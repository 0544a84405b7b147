package vendorconf

import (
	"bytes"
	"net/netip"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/pinwall/pinwall/mitm/policy"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func prefixes(ss ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParsePrefix(s)
	}
	return out
}

func TestRangePrefixes(t *testing.T) {
	for _, tt := range []struct {
		lo, hi string
		want   []netip.Prefix
	}{
		{"203.0.113.40", "203.0.113.47", prefixes("203.0.113.40/29")},
		{"203.0.113.40", "203.0.113.40", prefixes("203.0.113.40/32")},
		{"10.0.0.1", "10.0.0.6", prefixes("10.0.0.1/32", "10.0.0.2/31", "10.0.0.4/31", "10.0.0.6/32")},
		{"0.0.0.0", "255.255.255.255", prefixes("0.0.0.0/0")},
		{"192.0.2.255", "192.0.3.0", prefixes("192.0.2.255/32", "192.0.3.0/32")},
		{"2001:db8::", "2001:db8::ffff", prefixes("2001:db8::/112")},
	} {
		got, err := RangePrefixes(netip.MustParseAddr(tt.lo), netip.MustParseAddr(tt.hi))
		require.NoError(t, err, tt.lo)
		assert.Equal(t, tt.want, got, "%s-%s", tt.lo, tt.hi)
	}
	_, err := RangePrefixes(netip.MustParseAddr("10.0.0.9"), netip.MustParseAddr("10.0.0.1"))
	assert.ErrorContains(t, err, "backwards")
	_, err = RangePrefixes(netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("2001:db8::1"))
	assert.ErrorContains(t, err, "families")
	_, err = RangePrefixes(netip.MustParseAddr("fe80::1%eth0"), netip.MustParseAddr("fe80::9%eth0"))
	assert.ErrorContains(t, err, "zone")
	got, err := RangePrefixes(netip.MustParseAddr("ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe"), netip.MustParseAddr("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"))
	require.NoError(t, err)
	assert.Equal(t, prefixes("ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe/127"), got)
}

func TestIntersect(t *testing.T) {
	tcp443 := Clause{Proto: policy.ProtoTCP, Ports: []policy.PortRange{policy.Port(443)}}
	tests := []struct {
		name string
		a, b Clause
		want Clause
		ok   bool
	}{
		{"any and tcp/443", Clause{}, tcp443, tcp443, true},
		{"tcp and udp", tcp443, Clause{Proto: policy.ProtoUDP}, Clause{}, false},
		{"port ranges", Clause{Ports: []policy.PortRange{{Lo: 400, Hi: 500}}}, Clause{Ports: []policy.PortRange{{Lo: 443, Hi: 8443}}},
			Clause{Ports: []policy.PortRange{{Lo: 443, Hi: 500}}}, true},
		{"disjoint ports", Clause{Ports: []policy.PortRange{policy.Port(80)}}, tcp443, Clause{}, false},
		{"nested prefixes", Clause{Dst: prefixes("203.0.113.0/24")}, Clause{Dst: prefixes("203.0.113.8/30", "192.0.2.0/24")},
			Clause{Dst: prefixes("203.0.113.8/30")}, true},
		{"disjoint prefixes", Clause{Dst: prefixes("203.0.113.0/24")}, Clause{Dst: prefixes("192.0.2.0/24")}, Clause{}, false},
		{"prefixes and FQDN objects both hold", Clause{Dst: prefixes("203.0.113.0/24")}, Clause{DstFQDN: []string{"gw"}},
			Clause{Dst: prefixes("203.0.113.0/24"), DstFQDN: []string{"gw"}}, true},
		{"apps on tcp keep tcp apps", Clause{Proto: policy.ProtoTCP}, Clause{App: []policy.App{policy.AppDTLS, policy.AppSSL}},
			Clause{Proto: policy.ProtoTCP, App: []policy.App{policy.AppSSL}}, true},
		{"udp apps on tcp", Clause{Proto: policy.ProtoTCP}, Clause{App: []policy.App{policy.AppDTLS}}, Clause{}, false},
		{"names from the narrower side", Clause{SNI: []policy.SNIPattern{"*.sse.test"}}, Clause{SNIRegex: []string{"x"}},
			Clause{SNIRegex: []string{"x"}}, true},
	}
	for _, tt := range tests {
		got, ok := Intersect(tt.a, tt.b)
		assert.Equal(t, tt.ok, ok, tt.name)
		if tt.ok {
			assert.Equal(t, tt.want, got, tt.name)
		}
	}
	assert.False(t, Clause{App: []policy.App{policy.AppQUIC}}.CouldBeTCP())
	assert.True(t, Clause{App: []policy.App{policy.AppQUIC, policy.AppSSL}}.CouldBeTCP())
	assert.False(t, Clause{Proto: policy.ProtoUDP}.CouldBeTCP())
}

func TestBuilderNames(t *testing.T) {
	b := NewBuilder("x.conf")
	for _, n := range []string{"allow web", "allow web", "allow web", "default", "a/b*c", strings.Repeat("x", 80)} {
		b.Add(policy.Rule{Name: n, Action: policy.ActionAllow}, "")
	}
	b.Add(policy.Rule{Name: "decrypt-all", Action: policy.ActionDecrypt}, "allow-internet")
	b.Add(policy.Rule{Name: "decrypt-all", Action: policy.ActionDecrypt}, "allow-internet")
	var names []string
	for _, r := range b.Policy.Rules {
		names = append(names, r.Name)
	}
	assert.Equal(t, []string{"allow web", "allow web 2", "allow web 3", "rule-default", "a-b-c", strings.Repeat("x", 63),
		"decrypt-all", "decrypt-all via allow-internet"}, names)
	require.NoError(t, b.Policy.Validate(), "every name is a valid policy rule name")

	assert.Equal(t, "gw", b.FQDN("gw", "gateway-acme.sse.test", 3))
	assert.Equal(t, "gw", b.FQDN("gw", "gateway-acme.sse.test", 9), "the same object is reused")
	assert.Equal(t, "gw-2", b.FQDN("gw", "other.sse.test", 4), "a different name gets another object")
}

func TestOnPath(t *testing.T) {
	o := Options{From: []string{"trust"}, To: []string{"untrust"}}
	assert.True(t, o.OnPath([]string{"trust"}, []string{"untrust", "dmz"}))
	assert.True(t, o.OnPath([]string{"any"}, []string{"any"}))
	assert.True(t, o.OnPath(nil, nil))
	assert.False(t, o.OnPath([]string{"dmz"}, []string{"untrust"}))
	assert.True(t, Options{}.OnPath([]string{"dmz"}, []string{"x"}), "no path: every rule applies")
	assert.Equal(t, DefaultLaptop, Options{}.WithDefaults().Laptop)
}

func TestReportAndErrors(t *testing.T) {
	tr := &Translation{
		Vendor: FortiOS, File: "fw.conf", Scope: "VDOM root", Read: "1 firewall policy read",
		Policy:     &policy.Policy{Rules: []policy.Rule{{Name: "internet", ID: 3, Action: policy.ActionAllow, Comment: "fw.conf:12 firewall policy 3"}}, DefaultAction: policy.ActionBlock},
		DefaultWhy: "FortiOS implicit deny (policy 0)",
		Notes:      []Note{{Line: 40, What: "ssl-exempt 2 fortiguard-category 31", Why: "a category", Assumption: "none"}},
	}
	var b bytes.Buffer
	require.NoError(t, tr.Report(&b))
	out := b.String()
	assert.Contains(t, out, "fw.conf: FortiOS configuration, VDOM root: 1 firewall policy read; translated to 1 pinwall rules.")
	assert.Regexp(t, `1\s+internet\s+allow\s+any\s+fw.conf:12 firewall policy 3`, out)
	assert.Regexp(t, `-\s+default\s+block\s+any\s+FortiOS implicit deny`, out)
	assert.Contains(t, out, "fw.conf:40  ssl-exempt 2 fortiguard-category 31\n      a category\n      -> none")
	assert.Equal(t, "fw.conf:7: bad", Errorf("fw.conf", 7, "bad").Error())
	assert.Equal(t, "fw.conf: bad", Errorf("fw.conf", 0, "bad").Error())
}
