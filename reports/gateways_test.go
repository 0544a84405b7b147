package reports

import (
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestGatewaysExample(t *testing.T) {
	g, err := LoadGateways("../docs/gateways-example.yaml")
	require.NoError(t, err)
	require.NotEmpty(t, g.Gateways)
	assert.Equal(t, "../docs/gateways-example.yaml", g.File)
	backup := false
	for _, gw := range g.Gateways {
		backup = backup || gw.Backup
		assert.NotEmpty(t, gw.PortList())
	}
	assert.True(t, backup, "the example shows a backup gateway")
}

// Every error names the file, the line and the field.
func TestGatewaysErrors(t *testing.T) {
	for _, tc := range []struct{ name, text, want string }{
		{"empty", "", "gw.yaml"},
		{"no gateways", "vendor: x\n", "gateways"},
		{"unknown field", "gateways:\n  - { name: a.example, addresses: [192.0.2.0/24], weight: 1 }\n", "gw.yaml:2"},
		{"bad range", "gateways:\n  - name: a.example\n    addresses: [192.0.2.300/24]\n", "gw.yaml:3"},
		{"host bits", "gateways:\n  - name: a.example\n    addresses: [192.0.2.1/24]\n", "gateways[0].addresses[0]: 192.0.2.1/24 has host bits set (the range is 192.0.2.0/24)"},
		{"wildcard", "gateways:\n  - { name: '*.example', addresses: [192.0.2.0/24] }\n", "gateways[0].name"},
		{"not fqdn", "gateways:\n  - { name: localhost, addresses: [192.0.2.0/24] }\n", "not a fully qualified name"},
		{"duplicate", "gateways:\n  - { name: a.example, addresses: [192.0.2.0/24] }\n  - { name: A.example, addresses: [192.0.2.0/24] }\n", "gw.yaml:3"},
		{"bad port", "gateways:\n  - { name: a.example, addresses: [192.0.2.0/24], ports: [sctp/443] }\n", "gateways[0].ports[0]"},
		{"port zero", "gateways:\n  - { name: a.example, addresses: [192.0.2.0/24], ports: [tcp/0] }\n", "gateways[0].ports[0]"},
		{"only backups", "gateways:\n  - { name: a.example, addresses: [192.0.2.0/24], backup: true }\n", "every gateway is a backup"},
		{"no addresses", "gateways:\n  - { name: a.example, addresses: [] }\n", "gateways[0].addresses"},
		{"bad endpoints", "endpoints: [nope]\ngateways:\n  - { name: a.example, addresses: [192.0.2.0/24] }\n", "gw.yaml:1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseGateways("gw.yaml", []byte(tc.text))
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
			assert.Contains(t, err.Error(), "gw.yaml")
		})
	}
}

// FuzzParseGateways: any input parses or fails with an error naming the
// file; what parses validates and renders both vendors' commands.
func FuzzParseGateways(f *testing.F) {
	if data, err := os.ReadFile("../docs/gateways-example.yaml"); err == nil {
		f.Add(data)
	}
	f.Add([]byte("gateways:\n  - { name: a.example, addresses: [192.0.2.0/24, '2001:db8::/32'], ports: [tcp/443, udp/4500] }\n"))
	f.Add([]byte("endpoints: [10.0.0.0/8]\ngateways: [{name: b.example, addresses: [198.51.100.7], backup: false}]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		g, err := ParseGateways("fuzz.yaml", data)
		if err != nil {
			if !assert.Contains(t, err.Error(), "fuzz.yaml") {
				t.FailNow()
			}
			return
		}
		require.NoError(t, g.Validate())
		require.NotEmpty(t, PANOSSetCommands(g))
		require.NotEmpty(t, FortiOSCLI(g))
	})
}
