package strictyaml_test

import (
	"errors"
	"fmt"
	"time"

	"github.com/pinwall/pinwall/strictyaml"
)

type Action string

func (Action) Choices() []string { return []string{"decrypt", "no-decrypt", "block", "allow"} }

type Rule struct {
	Name   string   `yaml:"name,required"`
	Port   []uint16 `yaml:"port"`
	Action Action   `yaml:"action,required"`
	Line   int      `yaml:"-" strictyaml:"line"`
}

type Policy struct {
	Rules   []Rule        `yaml:"rules,required"`
	Timeout time.Duration `yaml:"timeout"`
}

func (p *Policy) Validate() error {
	for i, r := range p.Rules {
		if r.Action == "block" && len(r.Port) > 0 {
			return strictyaml.Errorf(strictyaml.Index("rules", i)+".port", "a block rule needs no ports")
		}
	}
	return nil
}

func ExampleDecode() {
	var p Policy
	err := strictyaml.Decode("policy.yaml", []byte(`
rules:
  - name: web
    port: 443          # a lone scalar is a list of one
    action: decrypt
timeout: 1m30s
`), &p)
	fmt.Println(err, p.Rules[0].Port, p.Rules[0].Line, p.Timeout)
	// Output: <nil> [443] 3 1m30s
}

func ExampleDecode_errors() {
	for _, doc := range []string{
		"rules:\n  - name: web\n    action: decypt\n",
		"rules:\n  - name: web\n    acton: block\n",
		"rules:\n  - name: web\n    port: 70000\n    action: allow\n",
		"rules: []\ntimeout: 30\n",
		"rules:\n  - name: web\n    port: 443\n    action: block\n",
	} {
		err := strictyaml.Decode("policy.yaml", []byte(doc), &Policy{})
		fmt.Println(err)
		var e *strictyaml.Error
		if errors.As(err, &e) && len(e.Choices) > 0 {
			fmt.Println("  choices:", e.Choices)
		}
	}
	// Output:
	// policy.yaml:3:13: rules[0].action: "decypt" is not one of: decrypt, no-decrypt, block, allow
	//   choices: [decrypt no-decrypt block allow]
	// policy.yaml:3:5: rules[0]: unknown field "acton" (valid: name, port, action)
	//   choices: [name port action]
	// policy.yaml:3:11: rules[0].port[0]: 70000 is out of range (0 to 65535)
	// policy.yaml:2:10: timeout: 30 is not a duration: it needs a unit (write 30s)
	// policy.yaml:3:11: rules[0].port: a block rule needs no ports
}
