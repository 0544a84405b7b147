package fortios

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/pinwall/pinwall/mitm/policy"
	"github.com/pinwall/pinwall/vendorconf"
)

// FuzzTranslate checks that no input makes Translate panic, that every
// failure is a positioned *vendorconf.SyntaxError (never an invalid
// translated policy), and that every translation marshals to a policy that
// parses back.
func FuzzTranslate(f *testing.F) {
	files, err := filepath.Glob("testdata/*.conf")
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
	f.Add([]byte("config firewall policy\n edit 1\n  set action accept\n  set dstaddr \"x\"\n next\nend\nconfig firewall address\n edit \"x\"\n  set type iprange\n  set start-ip 10.0.0.9\n  set end-ip 10.0.0.1\n next\nend\n"))
	f.Add([]byte("config vdom\nedit root\nconfig firewall policy\nedit 1\nset action deny\nnext\nend\nnext\nend\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		tr, err := Translate("fuzz.conf", data, vendorconf.Options{})
		if err != nil {
			var se *vendorconf.SyntaxError
			if !errors.As(err, &se) {
				t.Fatalf("not a SyntaxError: %v", err)
			}
			return
		}
		out, err := tr.Policy.Marshal()
		if err != nil {
			t.Fatalf("marshal: %v", err)
		}
		back, err := policy.Parse("fuzz.yaml", out)
		if err != nil {
			t.Fatalf("the translated policy does not parse back: %v\n%s", err, out)
		}
		if len(back.Rules) != len(tr.Policy.Rules) {
			t.Fatalf("%d rules read back, %d written", len(back.Rules), len(tr.Policy.Rules))
		}
	})
}
