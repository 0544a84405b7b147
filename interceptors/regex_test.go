package interceptors

import (
	"net/netip"
	"regexp"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/pinwall/pinwall/mitm/policy"
)

// TestAddrRegexIsExact checks that the regular expression of a prefix
// matches exactly its addresses, around its edges.
func TestAddrRegexIsExact(t *testing.T) {
	for _, p := range []string{"203.0.113.0/24", "203.0.113.8/30", "203.0.113.136/29", "10.0.0.0/8", "198.51.100.7/32", "172.16.0.0/12", "0.0.0.0/0"} {
		pre := netip.MustParsePrefix(p)
		re := regexp.MustCompile(addrRegex(pre))
		first := pre.Masked().Addr()
		probes := []netip.Addr{first, first.Next()}
		last := first
		for a := first; pre.Contains(a) && a.IsValid(); a = a.Next() {
			last = a
			if a.As4()[3] == 255 && pre.Bits() < 16 {
				break // enough of a large prefix
			}
		}
		probes = append(probes, last, last.Next(), first.Prev())
		for _, a := range probes {
			if !a.IsValid() {
				continue
			}
			assert.Equal(t, pre.Contains(a), re.MatchString(a.String()), "%s against %s (%s)", a, p, re)
		}
	}
}

func TestSNIRegexMatchesOneLabel(t *testing.T) {
	re := regexp.MustCompile(sniRegex(policy.SNIPattern("*.sse.test")))
	assert.True(t, re.MatchString("gateway-acme.sse.test"))
	assert.False(t, re.MatchString("gateway-acme.eu.sse.test"))
	assert.False(t, re.MatchString("sse.test"))
	assert.False(t, re.MatchString("gateway-acmexsse.test"))
	exact := regexp.MustCompile(sniRegex(policy.SNIPattern("gateway-acme.sse.test")))
	assert.True(t, exact.MatchString("gateway-acme.sse.test"))
	assert.False(t, exact.MatchString("xgateway-acme.sse.test"))
	assert.False(t, exact.MatchString("gateway-acme.sse.test.evil.test"))
}
