package strictyaml

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// ErrEmptyDocument is wrapped by the *Error reported for input holding no
// YAML document, or a document holding only null.
var ErrEmptyDocument = errors.New("strictyaml: empty document")

// Error is a problem at one place in a YAML document.
type Error struct {
	// File is the name given to Decode; empty when unknown.
	File string
	// Line and Column are 1-based; zero when unknown. A Column of zero with a
	// non-zero Line means the YAML library reported only the line.
	Line, Column int
	// Field is the dotted path of the value concerned, with 0-based indexes
	// and quoted map keys where needed: `rules[1].match.sni[0]`,
	// `objects.fqdn["gw.eu"]`. Empty for the document root. For an unknown or
	// missing key it is the path of the mapping holding (or lacking) it.
	Field string
	// Msg is the complete human message, including any choices.
	Msg string
	// Choices are the valid values of an enumeration, or the valid keys of a
	// mapping that held an unknown key, in declaration order.
	Choices []string
	// Err is the underlying cause, if any: the error returned by a Validate,
	// UnmarshalText or UnmarshalYAML method, the YAML library's syntax error,
	// ErrEmptyDocument.
	Err error
}

// Error formats e on one line as "file:line:col: field: msg", leaving out
// the parts that are unknown.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		if b.Len() > 0 {
			b.WriteByte(':')
		}
		b.WriteString(strconv.Itoa(e.Line))
		if e.Column > 0 {
			b.WriteByte(':')
			b.WriteString(strconv.Itoa(e.Column))
		}
	}
	if b.Len() > 0 {
		b.WriteString(": ")
	}
	if e.Field != "" {
		b.WriteString(e.Field)
		b.WriteString(": ")
	}
	b.WriteString(oneLine(e.Msg))
	return b.String()
}

// Unwrap returns the underlying cause.
func (e *Error) Unwrap() error { return e.Err }

// Errorf returns an *Error for field, a path relative to the value being
// validated ("" for the value itself, "name", "match.sni[0]", "[2]"). It is
// meant for Validate, UnmarshalText and UnmarshalYAML methods: Decode makes
// the path absolute and fills in the file and position.
func Errorf(field, format string, args ...any) *Error {
	return &Error{Field: field, Msg: fmt.Sprintf(format, args...)}
}

// EnumError returns the *Error reporting that value is not among choices,
// with Choices set, in the form Decode uses:
// `"decypt" is not one of: decrypt, no-decrypt, block, allow`.
func EnumError(field, value string, choices []string) *Error {
	return &Error{
		Field:   field,
		Msg:     fmt.Sprintf("%q is not one of: %s", value, strings.Join(choices, ", ")),
		Choices: append([]string(nil), choices...),
	}
}

func oneLine(s string) string {
	if !strings.ContainsAny(s, "\r\n") {
		return s
	}
	return strings.Join(strings.Fields(s), " ")
}

// Field paths.

// Key returns the path of key in the mapping at parent.
func Key(parent, key string) string {
	seg := key
	if !simpleKey(key) {
		seg = "[" + strconv.Quote(key) + "]"
		return parent + seg
	}
	if parent == "" {
		return seg
	}
	return parent + "." + seg
}

// Index returns the path of element i of the list at parent.
func Index(parent string, i int) string {
	return parent + "[" + strconv.Itoa(i) + "]"
}

// Join returns the path rel relative to base, as Decode does for an *Error
// returned by a Validate method.
func Join(base, rel string) string {
	switch {
	case rel == "":
		return base
	case base == "":
		return rel
	case rel[0] == '[':
		return base + rel
	default:
		return base + "." + rel
	}
}

func simpleKey(k string) bool {
	if k == "" {
		return false
	}
	for _, r := range k {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_':
		default:
			return false
		}
	}
	return true
}

// parentPath returns the path of the value holding path, and false at the
// root. It understands the three segment forms Key and Index produce.
func parentPath(path string) (string, bool) {
	if path == "" {
		return "", false
	}
	if strings.HasSuffix(path, "\"]") {
		// A quoted key: find the `["` that starts a valid quoted string
		// ending here.
		for i := strings.LastIndex(path, "[\""); i >= 0; i = strings.LastIndex(path[:i], "[\"") {
			if _, err := strconv.Unquote(path[i+1 : len(path)-1]); err == nil {
				return path[:i], true
			}
		}
		return "", true
	}
	if strings.HasSuffix(path, "]") {
		if i := strings.LastIndexByte(path, '['); i >= 0 {
			return path[:i], true
		}
		return "", true
	}
	i := strings.LastIndexAny(path, ".]")
	switch {
	case i < 0:
		return "", true
	case path[i] == ']':
		return path[:i+1], true
	default:
		return path[:i], true
	}
}
