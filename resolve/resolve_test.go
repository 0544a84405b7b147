package resolve

import (
	"context"
	"net"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func addrs(ss ...string) []netip.Addr {
	out := make([]netip.Addr, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParseAddr(s)
	}
	return out
}

func TestZoneRotation(t *testing.T) {
	z, err := NewZone(
		Record{Name: "gw.sse.test.", Addrs: addrs("203.0.113.1", "203.0.113.2", "203.0.113.3"), Answer: 2, Rotate: true},
		Record{Name: "www.social.test", Addrs: addrs("192.0.2.10")},
	)
	require.NoError(t, err)
	ctx := context.Background()

	tests := []struct {
		host string
		want []netip.Addr
	}{
		{"GW.sse.test", addrs("203.0.113.1", "203.0.113.2")},
		{"gw.sse.test", addrs("203.0.113.3", "203.0.113.1")},
		{"gw.sse.test", addrs("203.0.113.2", "203.0.113.3")},
		{"www.social.test", addrs("192.0.2.10")},
		{"192.0.2.99", addrs("192.0.2.99")},
	}
	for _, tt := range tests {
		ans, err := z.Lookup(ctx, tt.host)
		require.NoError(t, err, tt.host)
		assert.Equal(t, tt.want, ans.Addrs, tt.host)
		assert.Equal(t, DefaultTTL, ans.TTL)
	}
	assert.Equal(t, 3, z.Queries("gw.sse.test"))

	_, err = z.Lookup(ctx, "facebook.com")
	var dnsErr *net.DNSError
	require.ErrorAs(t, err, &dnsErr)
	assert.True(t, dnsErr.IsNotFound)
}

func TestZoneRejectsBadRecords(t *testing.T) {
	_, err := NewZone(Record{Name: "", Addrs: addrs("192.0.2.1")})
	assert.Error(t, err)
	_, err = NewZone(Record{Name: "x.test"})
	assert.Error(t, err)
	_, err = NewZone(Record{Name: "x.test", Addrs: addrs("192.0.2.1"), Answer: -1})
	assert.Error(t, err)
}
