package panos

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
	files, err := filepath.Glob("testdata/*.xml")
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
	f.Add([]byte(`<config><devices><entry><vsys><entry name="v"><rulebase><security><rules><entry name="r"><action>allow</action><destination><member>1.2.3.4-1.2.3.1</member></destination></entry></rules></security></rulebase></entry></vsys></entry></devices></config>`))
	f.Add([]byte(`<response><result><config><shared><pre-rulebase/></shared></config></result></response>`))
	f.Fuzz(func(t *testing.T, data []byte) {
		tr, err := Translate("fuzz.xml", data, vendorconf.Options{})
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
