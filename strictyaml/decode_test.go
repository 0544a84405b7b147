package strictyaml

import (
	"encoding/json"
	"errors"
	"flag"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"go.yaml.in/yaml/v3"
)

var update = flag.Bool("update", false, "rewrite golden files")

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var actions = []string{"decrypt", "no-decrypt", "block", "allow"}

// lines joins its arguments with newlines, so that table inputs read like
// the files they stand for and line numbers are easy to count.
func lines(ls ...string) string { return strings.Join(ls, "\n") + "\n" }

func TestDecodeErrors(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		line    int
		col     int
		field   string
		msg     string
		choices []string
	}{
		{
			name: "enum value not among choices",
			in: lines(
				"rules:",
				"  - name: a",
				"    action: decypt"),
			line: 3, col: 13, field: "rules[0].action",
			msg:     `"decypt" is not one of: decrypt, no-decrypt, block, allow`,
			choices: actions,
		},
		{
			name: "enum given a list",
			in: lines(
				"rules:",
				"  - name: a",
				"    action: [block]"),
			line: 3, col: 13, field: "rules[0].action",
			msg:     `expected one of: decrypt, no-decrypt, block, allow; got a list`,
			choices: actions,
		},
		{
			name: "enum is case-sensitive",
			in: lines(
				"rules:",
				"  - {name: a, action: block, match: {proto: TCP}}"),
			line: 2, col: 45, field: "rules[0].match.proto",
			msg:     `"TCP" is not one of: tcp, udp, any`,
			choices: []string{"tcp", "udp", "any"},
		},
		{
			name: "unknown field in a list element",
			in: lines(
				"rules:",
				"  - name: a",
				"    action: block",
				"  - name: b",
				"    acton: block"),
			line: 5, col: 5, field: "rules[1]",
			msg:     `unknown field "acton" (valid: name, match, action, options)`,
			choices: []string{"name", "match", "action", "options"},
		},
		{
			name: "unknown field at the root lists inline and untagged fields",
			in:   "rulez: []\n",
			line: 1, col: 1, field: "",
			msg:     `unknown field "rulez" (valid: version, owner, rules, objects, gateway, labels, extra, raw, timeout, enabled)`,
			choices: []string{"version", "owner", "rules", "objects", "gateway", "labels", "extra", "raw", "timeout", "enabled"},
		},
		{
			name: "a yaml:\"-\" field is not a key",
			in:   "rules: []\nskipped: x\n",
			line: 2, col: 1, field: "",
			msg:     `unknown field "skipped" (valid: version, owner, rules, objects, gateway, labels, extra, raw, timeout, enabled)`,
			choices: []string{"version", "owner", "rules", "objects", "gateway", "labels", "extra", "raw", "timeout", "enabled"},
		},
		{
			name: "duplicate key in a struct",
			in: lines(
				"rules:",
				"  - name: a",
				"    name: b",
				"    action: block"),
			line: 3, col: 5, field: "rules[0]",
			msg: `duplicate key "name" (first at line 2)`,
		},
		{
			name: "duplicate key in a map",
			in: lines(
				"rules: []",
				"labels:",
				"  team: net",
				"  team: sec"),
			line: 4, col: 3, field: "labels",
			msg: `duplicate key "team" (first at line 3)`,
		},
		{
			name: "missing required field",
			in: lines(
				"rules:",
				"  - name: a"),
			line: 2, col: 5, field: "rules[0]",
			msg: `missing required field "action"`,
		},
		{
			name: "missing required field at the root",
			in:   "version: 1\n",
			line: 1, col: 1, field: "",
			msg: `missing required field "rules"`,
		},
		{
			name: "missing required field in a map value",
			in: lines(
				"rules: []",
				"objects:",
				"  gw:",
				"    max-ips: 3"),
			line: 4, col: 5, field: "objects.gw",
			msg: `missing required field "fqdn"`,
		},
		{
			name: "required field that is null",
			in: lines(
				"rules:",
				"  - name:",
				"    action: block"),
			line: 2, col: 5, field: "rules[0]",
			msg: `required field "name" has no value`,
		},
		{
			name: "int8 out of range",
			in: lines(
				"rules:",
				"  - name: a",
				"    action: allow",
				"    options: {retries: 300}"),
			line: 4, col: 24, field: "rules[0].options.retries",
			msg: `300 is out of range (-128 to 127)`,
		},
		{
			name: "uint32 negative",
			in: lines(
				"rules:",
				"  - name: a",
				"    action: allow",
				"    options:",
				"      max: -1"),
			line: 5, col: 12, field: "rules[0].options.max",
			msg: `-1 is out of range (0 to 4294967295)`,
		},
		{
			name: "not an integer",
			in: lines(
				"rules:",
				"  - name: a",
				"    action: allow",
				"    options: {retries: 1.5}"),
			line: 4, col: 24, field: "rules[0].options.retries",
			msg: `"1.5" is not an integer`,
		},
		{
			name: "not a number",
			in: lines(
				"rules:",
				"  - name: a",
				"    action: allow",
				"    options: {weight: inf}"),
			line: 4, col: 23, field: "rules[0].options.weight",
			msg: `"inf" is not a number`,
		},
		{
			name: "duration without a unit",
			in: lines(
				"rules:",
				"  - name: a",
				"    action: allow",
				"    options: {ttl: 30}"),
			line: 4, col: 20, field: "rules[0].options.ttl",
			msg: `30 is not a duration: it needs a unit (write 30s)`,
		},
		{
			name: "duration garbage",
			in:   "rules: []\ntimeout: soon\n",
			line: 2, col: 10, field: "timeout",
			msg: `"soon" is not a duration (write it like 30s, 1m30s or 12h)`,
		},
		{
			name: "yes is not a boolean",
			in:   "rules: []\nenabled: yes\n",
			line: 2, col: 10, field: "enabled",
			msg: `"yes" is not a boolean: write true`,
		},
		{
			name: "bad IP address",
			in:   "rules: []\ngateway: 300.1.1.1\n",
			line: 2, col: 10, field: "gateway",
			msg: `"300.1.1.1" is not an IP address`,
		},
		{
			name: "bad prefix",
			in: lines(
				"rules:",
				"  - name: a",
				"    action: allow",
				"    match:",
				"      dst: [10.0.0.0/8, 10.0.0.0/33]"),
			line: 5, col: 25, field: "rules[0].match.dst[1]",
			msg: `"10.0.0.0/33" is not a CIDR prefix or IP address`,
		},
		{
			name: "TextUnmarshaler returning *Error",
			in: lines(
				"rules:",
				"  - name: a",
				"    action: allow",
				"    match:",
				"      port:",
				"        - 443",
				"        - 0"),
			line: 7, col: 11, field: "rules[0].match.port[1]",
			msg: `bad port "0"`,
		},
		{
			name: "TextUnmarshaler returning a plain error, lone scalar as a list",
			in: lines(
				"rules:",
				"  - name: a",
				"    action: allow",
				"    match: {sni: \"a b\"}"),
			line: 4, col: 18, field: "rules[0].match.sni[0]",
			msg: `host "a b" has a space or a star`,
		},
		{
			name: "TextUnmarshaler given a mapping",
			in: lines(
				"rules:",
				"  - name: a",
				"    action: allow",
				"    match: {sni: [{a: b}]}"),
			line: 4, col: 19, field: "rules[0].match.sni[0]",
			msg: `expected a scalar, got a mapping`,
		},
		{
			name: "yaml.Unmarshaler error",
			in: lines(
				"rules:",
				"  - name: a",
				"    action: allow",
				"    options: {level: medium}"),
			line: 4, col: 22, field: "rules[0].options.level",
			msg: `level "medium" is neither low nor high`,
		},
		{
			name: "mapping where a list is wanted",
			in:   "rules: {name: a}\n",
			line: 1, col: 8, field: "rules",
			msg: `expected a list, got a mapping`,
		},
		{
			name: "a lone scalar does not stand for a list of mappings",
			in:   "rules: abc\n",
			line: 1, col: 8, field: "rules",
			msg: `expected a list, got "abc"`,
		},
		{
			name: "mapping where a string is wanted",
			in:   "rules: []\nowner: {a: b}\n",
			line: 2, col: 8, field: "owner",
			msg: `expected a string, got a mapping`,
		},
		{
			name: "list where a map is wanted",
			in:   "rules: []\nlabels: [a]\n",
			line: 2, col: 9, field: "labels",
			msg: `expected a mapping, got a list`,
		},
		{
			name: "Validate plain error is placed at the value",
			in: lines(
				"rules:",
				"  - name: a",
				"    action: allow",
				"    match: {proto: udp, sni: x}"),
			line: 4, col: 12, field: "rules[0].match",
			msg: `sni needs proto tcp`,
		},
		{
			name: "Validate *Error with a relative field is placed at that field",
			in: lines(
				"rules:",
				"  - name: a",
				"    action: block",
				"    options:",
				"      log: true",
				"      ttl: 1h"),
			line: 6, col: 12, field: "rules[0].options.ttl",
			msg: `ttl is meaningless on a block rule`,
		},
		{
			name: "root Validate points into a list",
			in: lines(
				"rules:",
				"  - name: a",
				"    action: block",
				"  - name: b",
				"    action: block",
				"  - action: block",
				"    name: a"),
			line: 7, col: 11, field: "rules[2].name",
			msg: `duplicate rule name "a" (first at rules[0])`,
		},
		{
			name: "root Validate points into a map with a quoted key",
			in: lines(
				"rules: []",
				"objects:",
				"  gw.eu:",
				"    fqdn: gw.eu.test",
				"    max-ips: -3"),
			line: 5, col: 14, field: `objects["gw.eu"].max-ips`,
			msg: `max-ips must not be negative`,
		},
		{
			name: "unsupported tag",
			in:   "rules: []\nowner: !foo bar\n",
			line: 2, col: 8, field: "owner",
			msg: `unsupported tag !foo`,
		},
		{
			name: "binary tag is not a string",
			in:   "rules: []\nowner: !!binary aGk=\n",
			line: 2, col: 8, field: "owner",
			msg: `unsupported tag !!binary`,
		},
		{
			name: "complex key",
			in:   "rules: []\nlabels:\n  ? [a]\n  : b\n",
			line: 3, col: 5, field: "labels",
			msg: `a key must be a string, got a list`,
		},
		{
			name: "null key",
			in:   "rules: []\nlabels: {~: b}\n",
			line: 2, col: 10, field: "labels",
			msg: `a key must be a string, got null`,
		},
		{
			name: "merge of a scalar",
			in:   "rules: []\nlabels:\n  <<: 3\n",
			line: 3, col: 7, field: "labels",
			msg: `a merge key (<<) needs a mapping or a list of mappings, got "3"`,
		},
		{
			name: "alias to an enum checks the target value",
			in: lines(
				"bad: &bad decypt",
				"rules:",
				"  - name: a",
				"    action: *bad"),
			line: 1, col: 1, field: "",
			msg:     `unknown field "bad" (valid: version, owner, rules, objects, gateway, labels, extra, raw, timeout, enabled)`,
			choices: []string{"version", "owner", "rules", "objects", "gateway", "labels", "extra", "raw", "timeout", "enabled"},
		},
		{
			name: "error inside a merged mapping is reported where it is written",
			in: lines(
				"rules:",
				"  - &base",
				"    name: a",
				"    action: allow",
				"    options: {ttl: 5}",
				"  - <<: *base",
				"    name: b"),
			line: 5, col: 20, field: "rules[0].options.ttl",
			msg: `5 is not a duration: it needs a unit (write 5s)`,
		},
		{
			name: "any decoded by the library",
			in:   "rules: []\nextra: &x [*x]\n",
			line: 2, col: 8, field: "extra",
			msg: `anchor 'x' value contains itself`,
		},
		{
			name: "empty input",
			in:   "",
			line: 1, msg: "empty document",
		},
		{
			name: "comments only",
			in:   "# nothing here\n\n",
			line: 1, msg: "empty document",
		},
		{
			name: "explicit null document",
			in:   "# header\n~\n",
			line: 2, col: 1, msg: "empty document",
		},
		{
			name: "two documents",
			in:   "rules: []\n---\nrules: []\n",
			line: 3, col: 1, msg: "a second YAML document; a file holds exactly one (remove the ---)",
		},
		{
			name: "syntax error in the second document",
			in:   "rules: []\n---\nrules: [\n",
			line: 3, msg: "syntax error: did not find expected node content",
		},
		{
			name: "syntax: mapping values in a scalar",
			in: lines(
				"rules:",
				"  - name: a: b"),
			line: 2, msg: "syntax error: mapping values are not allowed in this context",
		},
		{
			name: "syntax: bad indentation",
			in: lines(
				"rules:",
				"  - name: a",
				"    action: allow",
				"   match: {}"),
			line: 4, msg: "syntax error: did not find expected '-' indicator",
		},
		{
			name: "syntax: unterminated flow sequence",
			in:   "rules: [a, b\n",
			line: 1, msg: "syntax error: did not find expected ',' or ']'",
		},
		{
			name: "syntax: unterminated quote",
			in:   "rules: []\nowner: \"abc\n",
			line: 2, msg: "syntax error: found unexpected end of stream",
		},
		{
			name: "syntax: tab indentation",
			in:   "rules:\n\t- name: a\n",
			line: 2, msg: "syntax error: found character that cannot start any token",
		},
		{
			name: "syntax: tab on the first line",
			in:   "\trules: []\n",
			line: 1, msg: "syntax error: found character that cannot start any token",
		},
		{
			name: "syntax: unquoted wildcard",
			in: lines(
				"rules:",
				"  - name: a",
				"    action: allow",
				"    match: {sni: [*.sse.test]}"),
			line: 4, col: 19,
			msg: `syntax error: an unquoted * starts an alias; quote wildcards, as in "*.example.test"`,
		},
		{
			name: "syntax: unknown alias",
			in:   "rules: []\nowner: *who\n",
			line: 2, col: 8, msg: "syntax error: unknown alias *who",
		},
		{
			name: "invalid UTF-8",
			in:   "rules: []\nowner: caf\xe9\n",
			line: 2, col: 11, msg: "invalid UTF-8 byte 0xe9",
		},
		{
			name: "control character",
			in:   "rules: []\nowner: a\x00b\n",
			line: 2, col: 9, msg: "control character U+0000 is not allowed",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var doc testDoc
			err := Decode("t.yaml", []byte(tt.in), &doc)
			var e *Error
			require.ErrorAs(t, err, &e)
			assert.Equal(t, "t.yaml", e.File)
			assert.Equal(t, tt.line, e.Line, "line")
			assert.Equal(t, tt.col, e.Column, "column")
			assert.Equal(t, tt.field, e.Field, "field")
			assert.Equal(t, tt.msg, e.Msg, "msg")
			assert.Equal(t, tt.choices, e.Choices, "choices")
			assert.NotContains(t, err.Error(), "\n")
		})
	}
}

func TestErrorFormat(t *testing.T) {
	tests := []struct {
		err  *Error
		want string
	}{
		{&Error{File: "policy.yaml", Line: 12, Column: 9, Field: "rules[1].action", Msg: `"decypt" is not one of: decrypt, no-decrypt, block, allow`},
			`policy.yaml:12:9: rules[1].action: "decypt" is not one of: decrypt, no-decrypt, block, allow`},
		{&Error{File: "p.yaml", Line: 3, Msg: "syntax error: x"}, "p.yaml:3: syntax error: x"},
		{&Error{File: "p.yaml", Msg: "m"}, "p.yaml: m"},
		{&Error{Field: "rules[0].name", Msg: "m"}, "rules[0].name: m"},
		{&Error{Line: 2, Column: 1, Msg: "two\nlines"}, "2:1: two lines"},
		{&Error{Msg: "m"}, "m"},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, tt.err.Error())
	}

	cause := errors.New("cause")
	assert.ErrorIs(t, &Error{Err: cause}, cause)
	e := EnumError("action", "x", actions)
	assert.Equal(t, `action: "x" is not one of: decrypt, no-decrypt, block, allow`, e.Error())
	assert.Equal(t, actions, e.Choices)
}

func TestPaths(t *testing.T) {
	assert.Equal(t, "rules", Key("", "rules"))
	assert.Equal(t, "rules[2].name", Key(Index("rules", 2), "name"))
	assert.Equal(t, `objects["gw.eu"].max-ips`, Key(Key("objects", "gw.eu"), "max-ips"))
	assert.Equal(t, `["a b"]`, Key("", "a b"))
	assert.Equal(t, "a.b", Join("a", "b"))
	assert.Equal(t, "a[1]", Join("a", "[1]"))
	assert.Equal(t, "b", Join("", "b"))
	assert.Equal(t, "a", Join("a", ""))

	for path, want := range map[string]string{
		"rules[2].name":          "rules[2]",
		"rules[2]":               "rules",
		"rules":                  "",
		`objects["gw.eu"]`:       "objects",
		`objects["a\"]"]`:        "objects",
		`objects["gw.eu"].fqdn`:  `objects["gw.eu"]`,
		`objects["x"][3]`:        `objects["x"]`,
		`["a.b"]`:                "",
		"rules[2].match.sni[10]": "rules[2].match.sni",
	} {
		got, ok := parentPath(path)
		assert.True(t, ok, path)
		assert.Equal(t, want, got, path)
	}
	_, ok := parentPath("")
	assert.False(t, ok)
}

func TestDecodeGolden(t *testing.T) {
	data, err := os.ReadFile("testdata/full.yaml")
	require.NoError(t, err)
	var doc testDoc
	doc.Owner = "preset"    // overwritten
	doc.Version = 7         // kept: absent from the file
	doc.Timeout = time.Hour // kept: null in the file
	require.NoError(t, Decode("full.yaml", data, &doc))

	assert.Equal(t, 7, doc.Version)
	assert.Equal(t, time.Hour, doc.Timeout)
	assert.Equal(t, yaml.MappingNode, doc.Raw.Kind)
	assert.Equal(t, "kept as a node", doc.Raw.Content[1].Value)

	got, err := json.MarshalIndent(doc, "", "  ")
	require.NoError(t, err)
	golden := filepath.Join("testdata", "full.golden.json")
	if *update {
		require.NoError(t, os.WriteFile(golden, append(got, '\n'), 0o644))
	}
	want, err := os.ReadFile(golden)
	require.NoError(t, err)
	assert.JSONEq(t, string(want), string(got))
}

func TestDecodeScalars(t *testing.T) {
	type nums struct {
		I8  int8    `yaml:"i8"`
		I16 int16   `yaml:"i16"`
		I32 int32   `yaml:"i32"`
		I64 int64   `yaml:"i64"`
		I   int     `yaml:"i"`
		U8  uint8   `yaml:"u8"`
		U16 uint16  `yaml:"u16"`
		U64 uint64  `yaml:"u64"`
		F32 float32 `yaml:"f32"`
		F64 float64 `yaml:"f64"`
		B   bool    `yaml:"b"`
		S   string  `yaml:"s"`
	}
	ok := []struct {
		in   string
		want nums
	}{
		{"i8: -128\nu8: 255", nums{I8: -128, U8: 255}},
		{"i8: 127\nu16: 65535", nums{I8: 127, U16: 65535}},
		{"i64: -9223372036854775808\nu64: 18446744073709551615", nums{I64: math.MinInt64, U64: math.MaxUint64}},
		{"i: 0x1F\ni16: 0o17\ni32: 0b101", nums{I: 31, I16: 15, I32: 5}},
		{"i: 010", nums{I: 10}},
		{"i: +5\ni8: \"-3\"", nums{I: 5, I8: -3}},
		{"f32: 1.5\nf64: -2e3", nums{F32: 1.5, F64: -2000}},
		{"f64: 3", nums{F64: 3}},
		{"f64: .inf", nums{F64: math.Inf(1)}},
		{"b: true", nums{B: true}},
		{"b: False", nums{}},
		{"s: 443", nums{S: "443"}},
		{"s: true", nums{S: "true"}},
		{"s: ''", nums{}},
	}
	for _, tt := range ok {
		var got nums
		require.NoError(t, Decode("n.yaml", []byte(tt.in), &got), tt.in)
		assert.Equal(t, tt.want, got, tt.in)
	}
	bad := map[string]string{
		"i8: 128":                   "128 is out of range (-128 to 127)",
		"i8: -129":                  "-129 is out of range (-128 to 127)",
		"u8: 256":                   "256 is out of range (0 to 255)",
		"u64: 18446744073709551616": "18446744073709551616 is out of range (0 to 18446744073709551615)",
		"i: 1_000":                  `"1_000" is not an integer`,
		"i: 0x":                     `"0x" is not an integer`,
		"i: --1":                    `"--1" is not an integer`,
		"i: ''":                     `"" is not an integer`,
		"f32: 1e39":                 "1e39 is out of range for a 32-bit float",
		"f64: 0x1p3":                `"0x1p3" is not a number`,
		"b: on":                     `"on" is not a boolean: write true`,
		"b: no":                     `"no" is not a boolean: write false`,
		"b: 1":                      `"1" is not a boolean (true or false)`,
		"s: [a]":                    "expected a string, got a list",
	}
	for in, msg := range bad {
		var got nums
		err := Decode("n.yaml", []byte(in), &got)
		var e *Error
		require.ErrorAs(t, err, &e, in)
		assert.Equal(t, msg, e.Msg, in)
	}
}

func TestDecodeNetip(t *testing.T) {
	var v struct {
		A  netip.Addr     `yaml:"a"`
		P  []netip.Prefix `yaml:"p"`
		PP *netip.Prefix  `yaml:"pp"`
	}
	in := "a: 2001:db8::1\np: [10.0.0.1, 10.0.0.0/8, '2001:db8::/32', '::1']\npp: 192.0.2.0/24\n"
	require.NoError(t, Decode("n.yaml", []byte(in), &v))
	assert.Equal(t, netip.MustParseAddr("2001:db8::1"), v.A)
	assert.Equal(t, []netip.Prefix{
		netip.MustParsePrefix("10.0.0.1/32"), netip.MustParsePrefix("10.0.0.0/8"),
		netip.MustParsePrefix("2001:db8::/32"), netip.MustParsePrefix("::1/128"),
	}, v.P)
	require.NotNil(t, v.PP)
	assert.Equal(t, netip.MustParsePrefix("192.0.2.0/24"), *v.PP)

	_, err := ParsePrefix("fe80::1%eth0")
	assert.Error(t, err)
}

func TestDecodeMergeAndAliases(t *testing.T) {
	in := lines(
		"base: &base",
		"  action: decrypt",
		"  options: {ttl: 1m}",
		"doc:",
		"  rules:",
		"    - <<: *base",
		"      name: a",
		"    - <<: [{name: ignored, action: allow}, *base]",
		"      name: b",
		"    - &c {name: c, action: block}",
		"    - *c",
	)
	var v struct {
		Base map[string]any `yaml:"base"`
		Doc  struct {
			Rules []testRule `yaml:"rules"`
		} `yaml:"doc"`
	}
	require.NoError(t, Decode("m.yaml", []byte(in), &v))
	rules := v.Doc.Rules
	require.Len(t, rules, 4)
	assert.Equal(t, "a", rules[0].Name)
	assert.Equal(t, testAction("decrypt"), rules[0].Action)
	assert.Equal(t, time.Minute, rules[0].Options.TTL)
	assert.Equal(t, "b", rules[1].Name)
	assert.Equal(t, testAction("allow"), rules[1].Action, "earlier merge sources win")
	assert.Equal(t, time.Minute, rules[1].Options.TTL)
	assert.Equal(t, rules[2], rules[3])
	assert.Equal(t, 10, rules[2].Line)
	assert.Equal(t, 7, rules[2].Column)
}

type tree struct {
	Kids []tree `yaml:"kids"`
}

func TestDecodeAliasCycleAndBomb(t *testing.T) {
	var v tree
	err := Decode("c.yaml", []byte("kids: &x [{kids: *x}]\n"), &v)
	var e *Error
	require.ErrorAs(t, err, &e)
	assert.Equal(t, "alias cycle: a value contains itself", e.Msg)
	assert.Equal(t, "kids[0].kids", e.Field)
	assert.Equal(t, 1, e.Line)

	err = Decode("c.yaml", []byte("a: &a {b: 1}\nc: {<<: *a}\n"), &map[string]map[string]int{})
	require.NoError(t, err)
	err = Decode("c.yaml", []byte("a: &a {<<: *a}\n"), &map[string]map[string]int{})
	require.ErrorAs(t, err, &e)
	assert.Equal(t, "alias cycle: a value contains itself", e.Msg)

	var b strings.Builder
	b.WriteString("l0: &l0 {kids: [{}, {}, {}, {}, {}, {}, {}, {}, {}, {}]}\n")
	for i := 1; i < 9; i++ {
		b.WriteString("l" + string(rune('0'+i)) + ": &l" + string(rune('0'+i)) + " {kids: [")
		for j := 0; j < 10; j++ {
			if j > 0 {
				b.WriteString(", ")
			}
			b.WriteString("*l" + string(rune('0'+i-1)))
		}
		b.WriteString("]}\n")
	}
	start := time.Now()
	err = Decode("bomb.yaml", []byte(b.String()), &map[string]tree{})
	require.ErrorAs(t, err, &e)
	assert.Equal(t, "document expands to too many values (alias bomb?)", e.Msg)
	assert.Less(t, time.Since(start), 5*time.Second)
}

func TestDecodeNullKeepsValues(t *testing.T) {
	v := struct {
		S   string            `yaml:"s"`
		P   *int              `yaml:"p"`
		L   []string          `yaml:"l"`
		M   map[string]string `yaml:"m"`
		Any any               `yaml:"any"`
	}{S: "keep", L: []string{"keep"}, M: map[string]string{"k": "v"}, Any: "keep"}
	require.NoError(t, Decode("n.yaml", []byte("s:\np: ~\nl: null\nm: {x: y}\nany:\n"), &v))
	assert.Equal(t, "keep", v.S)
	assert.Nil(t, v.P)
	assert.Equal(t, []string{"keep"}, v.L)
	assert.Equal(t, map[string]string{"k": "v", "x": "y"}, v.M, "maps are merged into")
	assert.Equal(t, "keep", v.Any)
}

func TestDecodeProgrammingErrors(t *testing.T) {
	var notStruct int
	var e *Error
	for name, out := range map[string]any{
		"nil":           nil,
		"not a pointer": notStruct,
		"nil pointer":   (*testDoc)(nil),
		"int map keys":  &map[int]string{},
		"channel":       &struct{ C chan int }{},
		"array":         &struct{ A [2]int }{},
		"interface":     &struct{ E error }{},
		"bad option": &struct {
			A int `yaml:"a,bogus"`
		}{},
		"duplicate keys": &struct {
			A, B int `yaml:"a"`
		}{},
		"bad sink": &struct {
			L string `strictyaml:"line"`
		}{},
		"unknown sink": &struct {
			L int `strictyaml:"offset"`
		}{},
		"named inline": &struct {
			C testCommon `yaml:"c,inline"`
		}{},
	} {
		err := Decode("x.yaml", []byte("a: 1\n"), out)
		require.Error(t, err, name)
		assert.False(t, errors.As(err, &e), name)
		assert.True(t, strings.HasPrefix(err.Error(), "strictyaml: "), name)
	}
}

func TestDecodeEmptyIsErrEmptyDocument(t *testing.T) {
	for _, in := range []string{"", "\n", "# c\n", "---\n", "null\n"} {
		err := Decode("e.yaml", []byte(in), &testDoc{})
		assert.ErrorIs(t, err, ErrEmptyDocument, "%q", in)
	}
}

func TestDecodeFile(t *testing.T) {
	var doc testDoc
	require.NoError(t, DecodeFile("testdata/full.yaml", &doc))
	err := DecodeFile("testdata/missing.yaml", &doc)
	assert.ErrorIs(t, err, os.ErrNotExist)

	path := filepath.Join(t.TempDir(), "bad.yaml")
	require.NoError(t, os.WriteFile(path, []byte("rules: {}\n"), 0o644))
	err = DecodeFile(path, &doc)
	var e *Error
	require.ErrorAs(t, err, &e)
	assert.Equal(t, path, e.File)
}

func TestDecodeWrongShapeNamesTheType(t *testing.T) {
	var v struct {
		D time.Duration `yaml:"d"`
		A netip.Addr    `yaml:"a"`
		P netip.Prefix  `yaml:"p"`
		B bool          `yaml:"b"`
		I int           `yaml:"i"`
		F float64       `yaml:"f"`
		M map[string]int
	}
	for in, msg := range map[string]string{
		"d: [1s]":   "expected a duration such as 30s, got a list",
		"a: {x: 1}": "expected an IP address, got a mapping",
		"p: [a]":    "expected a CIDR prefix or IP address, got a list",
		"b: [true]": "expected a boolean (true or false), got a list",
		"i: {}":     "expected an integer, got a mapping",
		"f: []":     "expected a number, got a list",
		"m: 3":      `expected a mapping, got "3"`,
	} {
		err := Decode("w.yaml", []byte(in), &v)
		var e *Error
		require.ErrorAs(t, err, &e, in)
		assert.Equal(t, msg, e.Msg, in)
	}
}

func TestDecodeNodeOverridesDefaults(t *testing.T) {
	type inner struct {
		A string `yaml:"a"`
		B int    `yaml:"b"`
	}
	type doc struct {
		Base      inner     `yaml:"base"`
		Overrides yaml.Node `yaml:"overrides"`
	}
	var d doc
	require.NoError(t, Decode("f.yaml", []byte("base: {a: x, b: 1}\noverrides: {b: 2}\n"), &d))
	got := d.Base
	require.NoError(t, DecodeNode("f.yaml", &d.Overrides, "overrides", &got))
	assert.Equal(t, inner{A: "x", B: 2}, got)

	require.NoError(t, Decode("f.yaml", []byte("base: {a: x}\noverrides: {c: 2}\n"), &d))
	err := DecodeNode("f.yaml", &d.Overrides, "variants[0].overrides", &got)
	var se *Error
	require.ErrorAs(t, err, &se)
	assert.Equal(t, 2, se.Line)
	assert.Equal(t, "variants[0].overrides", se.Field)
	assert.Contains(t, se.Error(), `unknown field "c"`)
}
