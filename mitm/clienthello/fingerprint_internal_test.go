package clienthello

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

// The strings and hashes below are those of FoxIO's JA4.md.
func TestJA4HashSpecStrings(t *testing.T) {
	assert.Equal(t, "8daaf6152771", ja4Hash("002f,0035,009c,009d,1301,1302,1303,c013,c014,c02b,c02c,c02f,c030,cca8,cca9"))
	assert.Equal(t, "e5627efa2ab1", ja4Hash("0005,000a,000b,000d,0012,0015,0017,001b,0023,002b,002d,0033,4469,ff01_0403,0804,0401,0503,0805,0501,0806,0601"))
	assert.Equal(t, "6d807ffa2a79", ja4Hash("0005,000a,000b,000d,0012,0015,0017,001b,0023,002b,002d,0033,4469,ff01"))
	assert.Equal(t, "000000000000", ja4Hash(""))
}

func TestJA4ALPN(t *testing.T) {
	tests := []struct {
		alpn []string
		want string
	}{
		{nil, "00"},
		{[]string{""}, "00"},
		{[]string{"h2", "http/1.1"}, "h2"},
		{[]string{"http/1.1"}, "h1"},
		{[]string{"h3"}, "h3"},
		{[]string{"x"}, "xx"},
		{[]string{"pinwall-tunnel"}, "pl"},
		// JA4.md's non-alphanumeric examples.
		{[]string{"\xab"}, "ab"},
		{[]string{"\xab\xcd"}, "ad"},
		{[]string{"\x30\xab"}, "3b"},
		{[]string{"\x30\x31\xab\xcd"}, "3d"},
		{[]string{"\x30\xab\xcd\x31"}, "01"},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, ja4ALPN(tt.alpn), "%q", tt.alpn)
	}
}

func TestJA4EdgeCases(t *testing.T) {
	many := make([]uint16, 150)
	for i := range many {
		many[i] = uint16(0x1000 + i)
	}
	info := &Info{Record: RecordQUIC, LegacyVersion: 0x0303, SupportedVersions: []uint16{0x0304}, CipherSuites: many, Extensions: many}
	assert.Equal(t, "q13i9999", info.JA4()[:8], "counts cap at 99")

	empty := &Info{Record: RecordTLS, LegacyVersion: 0x7f00}
	assert.Equal(t, "t00i000000_000000000000_000000000000", empty.JA4())
	assert.Equal(t, "32512,,,,", empty.JA3())

	onlySNIAndALPN := &Info{Record: RecordTLS, LegacyVersion: 0x0303, CipherSuites: []uint16{0x0a0a, 0x1301}, Extensions: []uint16{0, 16}, HasSNI: true, ALPN: []string{"h2"}}
	assert.Equal(t, "t12d0102h2_", onlySNIAndALPN.JA4()[:11])
	assert.Equal(t, "000000000000", onlySNIAndALPN.JA4()[24:], "no extensions left to hash")

	grease := &Info{LegacyVersion: 0x0303, SupportedVersions: []uint16{0x0a0a}, SignatureAlgorithms: []uint16{0x0a0a, 0x0403}, Extensions: []uint16{13}}
	assert.Equal(t, uint16(0x0303), grease.MaxVersion(), "a GREASE-only supported_versions falls back to legacy_version")
	assert.Equal(t, "t12i000100__000d_0403", grease.JA4Raw(), "GREASE signature algorithms are dropped")
}
