package strictyaml

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestSyntaxErrorLines pins how the YAML library's syntax errors are turned
// into positions: the library reports 1-based lines from its scanner and
// 0-based context lines from its parser, which syntaxError refines.
func TestSyntaxErrorLines(t *testing.T) {
	tests := []struct {
		in   string
		line int
		col  int
		msg  string
	}{
		{"a:\n  - b\n c: d\n", 3, 0, "did not find expected key"},
		{"- a\nb: c\n", 2, 0, "did not find expected '-' indicator"},
		{"a:\n  - b\n  c: d\n", 3, 0, "did not find expected '-' indicator"},
		{"a: b\n- c\n", 2, 0, "did not find expected key"},
		{"a:\n  b: 1\n  c: 2\n d: 3\n", 4, 0, "did not find expected key"},
		{"rules:\n  - name: a\n    action: allow\n\n\n  x\n", 6, 0, "could not find expected ':'"},
		{"a: {x: 1,\n  y: 2\n  z: 3}\n", 3, 0, "did not find expected ',' or '}'"},
		{"a: [1,\n  2\n  3: 4]\n", 3, 0, "did not find expected ',' or ']'"},
		{"a: 'x\n\n\n", 1, 0, "found unexpected end of stream"},
		{"a: b\nc: !x!y d\n", 2, 0, "found undefined tag handle"},
		{"a: b\nc: d: e\n", 2, 0, "mapping values are not allowed in this context"},
		{"a: b\nc: @x\n", 2, 0, "found character that cannot start any token"},
		{"a: b\nc: [*.x.test]\n", 2, 5, `an unquoted * starts an alias; quote wildcards, as in "*.example.test"`},
		{"a: b\nc: *.x.test\n", 2, 4, `an unquoted * starts an alias; quote wildcards, as in "*.example.test"`},
		{"a: b\nc: & x\n", 2, 4, "did not find expected alphabetic or numeric character"},
		{"a: b\nc: [*gw]\n", 2, 5, "unknown alias *gw"},
	}
	for _, tt := range tests {
		var m map[string]any
		err := Decode("s.yaml", []byte(tt.in), &m)
		var e *Error
		require.ErrorAs(t, err, &e, "%q", tt.in)
		assert.Equal(t, tt.line, e.Line, "%q", tt.in)
		assert.Equal(t, tt.col, e.Column, "%q", tt.in)
		assert.Equal(t, "syntax error: "+tt.msg, e.Msg, "%q", tt.in)
		assert.NotNil(t, errors.Unwrap(e), "the library error is kept")
	}
}

func TestSyntaxErrorWithoutLine(t *testing.T) {
	e := syntaxError("f.yaml", []byte("a: b\n"), errors.New("yaml: something odd"))
	assert.Equal(t, &Error{File: "f.yaml", Line: 1, Msg: "syntax error: something odd", Err: e.Err}, e)
	e = syntaxError("f.yaml", []byte("a: b\n\n\n"), errors.New("yaml: line 40: found unexpected end of stream"))
	assert.Equal(t, 1, e.Line, "clamped to the last line with content")
}
