package scenarios_test

import (
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pinwall/pinwall/harness"
	"github.com/pinwall/pinwall/internal/yamldoc"
	"github.com/pinwall/pinwall/mitm/policy"
	"github.com/pinwall/pinwall/scenarios"
)

const (
	fieldsBegin = "<!-- fields: generated from the Go types by go test ./scenarios -run TestScenarioFormatDoc -update; do not edit -->"
	fieldsEnd   = "<!-- end of fields -->"
)

// yamlBlocks are the ```yaml blocks of a Markdown document.
var yamlBlocks = regexp.MustCompile("(?s)```yaml\n(.*?)```")

// TestScenarioFormatDoc keeps docs/scenario-format.md's field reference in
// step with the types a scenario file decodes into (every key, how it is
// written, whether it is required, its doc comment with its default), and
// checks that every example in it loads.
func TestScenarioFormatDoc(t *testing.T) {
	cs, err := yamldoc.ReadComments(map[string]string{
		".":          "github.com/pinwall/pinwall/scenarios",
		"../harness": "github.com/pinwall/pinwall/harness",
		"../fault":   "github.com/pinwall/pinwall/fault",
	})
	require.NoError(t, err)
	fields := yamldoc.Fields(reflect.TypeFor[scenarios.Scenario](), cs, yamldoc.Options{
		Names: map[reflect.Type]string{
			reflect.TypeFor[harness.ByteSize]():   "size (1KiB, 64KiB, 16MiB)",
			reflect.TypeFor[netip.AddrPort]():     "address:port (192.0.2.10:443)",
			reflect.TypeFor[scenarios.Count]():    "count: N, =N, >N, >=N, <N, <=N, all, none",
			reflect.TypeFor[scenarios.Fraction](): "bound: >F, >=F, <F, <=F, =F with F in 0..1",
			reflect.TypeFor[scenarios.Selector](): "laptop, firewall, gateways, origins, a host or gateway name, an address or CIDR",
		},
		Stop: map[reflect.Type]string{
			reflect.TypeFor[policy.Policy](): "a policy, as in a policy file ([policy-format.md](policy-format.md))",
		},
	})
	for _, f := range fields {
		assert.NotEmpty(t, f.Doc, "%s (%s) has no doc comment: document it (the generated reference shows it)", f.Path, f.Owner)
	}
	const path = "../docs/scenario-format.md"
	old, err := os.ReadFile(path)
	require.NoError(t, err)
	doc, err := yamldoc.Splice(string(old), fieldsBegin, fieldsEnd, yamldoc.Table(fields))
	require.NoError(t, err)
	if *update {
		require.NoError(t, os.WriteFile(path, []byte(doc), 0o644))
	}
	require.Equal(t, doc, string(old), "docs/scenario-format.md is stale: go test ./scenarios -run TestScenarioFormatDoc -update")

	examples := yamlBlocks.FindAllStringSubmatch(doc, -1)
	require.NotEmpty(t, examples)
	dir := t.TempDir()
	for i, m := range examples {
		file := filepath.Join(dir, "example.yaml")
		require.NoError(t, os.WriteFile(file, []byte(m[1]), 0o644))
		_, err := scenarios.Load(file)
		assert.NoError(t, err, "example %d of docs/scenario-format.md:\n%s", i+1, m[1])
	}
	for _, key := range []string{"id", "variants", "variants[].variant", "variants[].role", "firewall.policy-file", "expect.firewall[].each.outcome"} {
		assert.Contains(t, doc, "| `"+key+"` |", "the reference lists %s", key)
	}
	assert.NotContains(t, strings.ToLower(doc), "case:", "no undocumented case: key")
}
