package policy

import (
	"os"
	"reflect"
	"regexp"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pinwall/pinwall/internal/yamldoc"
)

const (
	fieldsBegin = "<!-- fields: generated from the Go types by go test ./mitm/policy -run TestPolicyFormatDoc -update; do not edit -->"
	fieldsEnd   = "<!-- end of fields -->"
)

var yamlBlocks = regexp.MustCompile("(?s)```yaml\n(.*?)```")

// TestPolicyFormatDoc keeps docs/policy-format.md's field reference in
// step with the Policy type and its doc comments, and checks that every
// example in it parses.
func TestPolicyFormatDoc(t *testing.T) {
	cs, err := yamldoc.ReadComments(map[string]string{".": "github.com/pinwall/pinwall/mitm/policy"})
	require.NoError(t, err)
	fields := yamldoc.Fields(reflect.TypeFor[Policy](), cs, yamldoc.Options{
		Names: map[reflect.Type]string{
			reflect.TypeFor[PortRange]():  "port or range (443, 8000-8080)",
			reflect.TypeFor[SNIPattern](): `server name, "*" labels matching one label each ("*.sse.test")`,
		},
		Values: map[string]string{
			"DefaultMaxIPs":         strconv.Itoa(DefaultMaxIPs),
			"DefaultMinRefresh":     formatDuration(DefaultMinRefresh),
			"DefaultExclusionTTL":   formatDuration(DefaultExclusionTTL),
			"DefaultUDPIdleTimeout": formatDuration(DefaultUDPIdleTimeout),
			"DefaultTCPIdleTimeout": formatDuration(DefaultTCPIdleTimeout),
		},
	})
	for _, f := range fields {
		assert.NotEmpty(t, f.Doc, "%s (%s) has no doc comment: document it (the generated reference shows it)", f.Path, f.Owner)
	}
	const path = "../../docs/policy-format.md"
	old, err := os.ReadFile(path)
	require.NoError(t, err)
	doc, err := yamldoc.Splice(string(old), fieldsBegin, fieldsEnd, yamldoc.Table(fields))
	require.NoError(t, err)
	if *update {
		require.NoError(t, os.WriteFile(path, []byte(doc), 0o644))
	}
	require.Equal(t, doc, string(old), "docs/policy-format.md is stale: go test ./mitm/policy -run TestPolicyFormatDoc -update")
	examples := yamlBlocks.FindAllStringSubmatch(doc, -1)
	require.NotEmpty(t, examples)
	for i, m := range examples {
		_, err := Parse("example.yaml", []byte(m[1]))
		assert.NoError(t, err, "example %d of docs/policy-format.md:\n%s", i+1, m[1])
	}
	for _, key := range []string{"rules[].match.sni", "rules[].options.client-cert", "objects.fqdn.<name>.max-ips", "default-action"} {
		assert.Contains(t, doc, "| `"+key+"` |")
	}
}
