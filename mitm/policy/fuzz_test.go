package policy

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/pinwall/pinwall/strictyaml"
)

// FuzzParse checks that no policy file makes Parse panic, that every
// failure is a positioned *strictyaml.Error, and that every policy Parse
// accepts can be used, described and marshalled back to itself.
func FuzzParse(f *testing.F) {
	files, err := filepath.Glob("testdata/*.yaml")
	if err != nil {
		f.Fatal(err)
	}
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte("rules:\n  - name: a\n    action: decypt\n"))
	f.Add([]byte("rules:\n  - {name: a, action: allow, match: {port: 70000}}\n"))
	f.Add([]byte("rules:\n  - {name: a, action: block, options: {client-cert: bypass}}\n"))
	f.Add([]byte("rules:\n  - &r {name: a, action: allow}\n  - {<<: *r, name: b}\n"))
	sessions := []Session{
		tls("203.0.113.7:443", "gateway-acme.sse.test"),
		tls("192.0.2.10:8080", ""),
		udp("203.0.113.7:443"),
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse("fuzz.yaml", data)
		if err != nil {
			var e *strictyaml.Error
			if !errors.As(err, &e) {
				t.Fatalf("not a *strictyaml.Error: %v", err)
			}
			if e.Line < 1 || e.File != "fuzz.yaml" {
				t.Fatalf("unpositioned error: %v", err)
			}
			return
		}
		e, err := NewEngine(p, EngineConfig{Resolver: emptyResolver{}})
		if err != nil {
			t.Fatalf("parsed policy refused by NewEngine: %v", err)
		}
		for _, s := range sessions {
			d := e.Decide(context.Background(), s)
			if d.Rule == nil || d.RuleName == "" || d.Options.Log == nil {
				t.Fatalf("incomplete decision %+v", d)
			}
		}
		_ = p.Describe()
		out, err := p.Marshal()
		if err != nil {
			t.Fatalf("marshal: %v", err)
		}
		back, err := Parse("marshalled.yaml", out)
		if err != nil {
			t.Fatalf("marshalled policy does not parse: %v\n%s", err, out)
		}
		if !reflect.DeepEqual(normalized(p), normalized(back)) {
			t.Fatalf("round trip changed the policy:\n%s", out)
		}
		again, err := back.Marshal()
		if err != nil || string(again) != string(out) {
			t.Fatalf("marshal is not a fixed point:\n%s\n---\n%s", out, again)
		}
	})
}
