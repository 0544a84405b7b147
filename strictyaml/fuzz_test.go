package strictyaml

import (
	"errors"
	"os"
	"strings"
	"testing"
)

// FuzzDecode checks that no input makes Decode panic or hang, and that every
// failure is an *Error with a line.
func FuzzDecode(f *testing.F) {
	full, err := os.ReadFile("testdata/full.yaml")
	if err != nil {
		f.Fatal(err)
	}
	for _, seed := range []string{
		string(full),
		"",
		"rules: []\n",
		"rules:\n  - name: a\n    action: decypt\n",
		"rules:\n  - {name: a, action: allow, match: {port: [443, 8000-8080], dst: 10.0.0.0/8}}\n",
		"rules:\n  - &r {name: a, action: block}\n  - <<: *r\n    name: b\n",
		"kids: &x [{kids: *x}]\n",
		"rules: []\nextra: &x [*x]\n",
		"rules: []\n---\nrules: []\n",
		"rules: [*.x]\n",
		"rules: []\nobjects: {gw: {fqdn: x, max-ips: -1}}\n",
		"rules: []\nlabels: {<<: [{a: b}, {c: d}]}\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var doc testDoc
		err := Decode("fuzz.yaml", data, &doc)
		if err == nil {
			return
		}
		var e *Error
		if !errors.As(err, &e) {
			t.Fatalf("not an *Error: %v", err)
		}
		if e.Line < 1 {
			t.Fatalf("no line: %v", err)
		}
		if e.File != "fuzz.yaml" {
			t.Fatalf("file %q: %v", e.File, err)
		}
		if strings.ContainsAny(err.Error(), "\r\n") {
			t.Fatalf("multi-line error: %q", err.Error())
		}
	})
}

// FuzzLocate checks that no document or field path makes Locate panic or
// hang, and that a position it finds lies within the document (or on the
// line after it, where the YAML library puts an empty document's node).
func FuzzLocate(f *testing.F) {
	f.Add([]byte("a:\n  b: [1, {c: 2}]\n"), "a.b[1].c")
	f.Add([]byte(`objects: { "gw.eu": { fqdn: x } }`), `objects["gw.eu"].fqdn`)
	f.Add([]byte("x: &a [*a]\n"), "x[0][0]")
	f.Add([]byte("- a\n"), "[")
	f.Fuzz(func(t *testing.T, data []byte, path string) {
		line, col, ok := Locate(data, path)
		if !ok {
			return
		}
		// YAML breaks lines at \n, \r\n and a lone \r; an empty document's
		// node sits on the line after the last.
		breaks := strings.Count(strings.ReplaceAll(string(data), "\r\n", "\n"), "\n") + strings.Count(strings.ReplaceAll(string(data), "\r\n", ""), "\r")
		if line < 0 || col < 0 || line > breaks+2 {
			t.Fatalf("Locate(%q, %q) = %d:%d, outside the document", data, path, line, col)
		}
	})
}
