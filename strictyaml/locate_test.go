package strictyaml

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestLocate(t *testing.T) {
	doc := lines(
		"id: x",
		"firewall:",
		"  policy-file: ../p.yaml",
		"variants:",
		"  - variant: a",
		"  - variant: b",
		"    firewall: { policy-file: q.yaml }",
		`objects: { "gw.eu": { fqdn: a.test } }`)
	tests := []struct {
		path      string
		line, col int
	}{
		{"", 1, 1},
		{"firewall.policy-file", 3, 16},
		{"variants[1].firewall.policy-file", 7, 30},
		{"variants[1]", 6, 5},
		{"variants[9].variant", 5, 3},
		{"firewall.nope", 3, 3},
		{`objects["gw.eu"].fqdn`, 8, 29},
	}
	for _, tt := range tests {
		l, c, ok := Locate([]byte(doc), tt.path)
		assert.True(t, ok, tt.path)
		assert.Equal(t, [2]int{tt.line, tt.col}, [2]int{l, c}, tt.path)
	}
	_, _, ok := Locate([]byte(doc), "a[x]")
	assert.False(t, ok, "malformed path")
	_, _, ok = Locate([]byte("a: [\n"), "a")
	assert.False(t, ok, "bad YAML")
	e := (&Error{File: "s.yaml", Field: "firewall.policy-file", Msg: "cannot read"}).Place([]byte(doc))
	assert.Equal(t, "s.yaml:3:16: firewall.policy-file: cannot read", e.Error())
}
