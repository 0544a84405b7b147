package strictyaml

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// parse reads the one document in data and returns its root node.
func parse(file string, data []byte) (*yaml.Node, error) {
	if e := checkText(file, data); e != nil {
		return nil, e
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := safeDecode(dec, &doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &Error{File: file, Line: 1, Msg: "empty document", Err: ErrEmptyDocument}
		}
		return nil, syntaxError(file, data, err)
	}
	var next yaml.Node
	switch err := safeDecode(dec, &next); {
	case errors.Is(err, io.EOF):
	case err != nil:
		return nil, syntaxError(file, data, err)
	default:
		line, col := next.Line, next.Column
		if len(next.Content) > 0 {
			line, col = next.Content[0].Line, next.Content[0].Column
		}
		return nil, &Error{File: file, Line: max(line, 1), Column: col,
			Msg: "a second YAML document; a file holds exactly one (remove the ---)"}
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 {
		return nil, &Error{File: file, Line: 1, Msg: "empty document", Err: ErrEmptyDocument}
	}
	root := doc.Content[0]
	if isNull(root) {
		return nil, &Error{File: file, Line: max(root.Line, 1), Column: root.Column,
			Msg: "empty document", Err: ErrEmptyDocument}
	}
	return root, nil
}

// safeDecode turns a panic inside the YAML library into an error, so that
// no input can crash the caller.
func safeDecode(dec *yaml.Decoder, n *yaml.Node) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("yaml: internal error: %v", r)
		}
	}()
	return dec.Decode(n)
}

// checkText rejects bytes YAML does not allow, with their exact position;
// the YAML library reports these without a line.
func checkText(file string, data []byte) *Error {
	line, col := 1, 1
	for i := 0; i < len(data); {
		r, size := utf8.DecodeRune(data[i:])
		switch {
		case r == utf8.RuneError && size <= 1:
			return &Error{File: file, Line: line, Column: col, Msg: fmt.Sprintf("invalid UTF-8 byte 0x%02x", data[i])}
		case r == '\n':
			line, col = line+1, 0
		case r == '\t', r == '\r', r == 0x85, r == 0xFEFF && i == 0:
		case r < 0x20, r == 0x7f, r >= 0x80 && r < 0xa0, r == 0xFFFE, r == 0xFFFF, r == 0xFEFF:
			return &Error{File: file, Line: line, Column: col, Msg: fmt.Sprintf("control character %U is not allowed", r)}
		}
		i += size
		col++
	}
	return nil
}

// The YAML library reports syntax errors as text: "yaml: line 3: did not
// find expected key". This is the one place that reads that text.
var (
	libLineRE   = regexp.MustCompile(`^line (\d+): (.*)$`)
	libAnchorRE = regexp.MustCompile(`^unknown anchor '(.*)' referenced$`)
)

// libParserProblems are the messages of the library's parser stage, which
// reports 0-based lines (its scanner stage reports 1-based ones).
var libParserProblems = []string{
	"did not find expected <stream-start>",
	"did not find expected <document start>",
	"found undefined tag handle",
	"did not find expected node content",
	"did not find expected '-' indicator",
	"did not find expected key",
	"did not find expected ',' or ']'",
	"did not find expected ',' or '}'",
	"found duplicate %YAML directive",
	"found incompatible YAML document",
	"found duplicate %TAG directive",
}

// syntaxError converts the library's error into an *Error.
func syntaxError(file string, data []byte, err error) *Error {
	msg := strings.TrimPrefix(oneLine(err.Error()), "yaml: ")
	line, col := 0, 0
	if m := libLineRE.FindStringSubmatch(msg); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = m[2]
	}
	lines := strings.Split(string(data), "\n")
	if contains(libParserProblems, msg) {
		// The parser stage reports the 0-based line where the enclosing
		// collection starts; the problem is there or further down.
		line = refineLine(lines, msg, line+1)
	}
	if last := lastContentLine(lines); line > last {
		line = last
	}
	line = max(line, 1)
	switch {
	case libAnchorRE.MatchString(msg):
		name := libAnchorRE.FindStringSubmatch(msg)[1]
		msg = fmt.Sprintf("unknown alias *%s", name)
		if l, c, ok := find(lines, "*"+name); ok {
			line, col = l, c
		}
		if strings.HasPrefix(name, ".") {
			msg += wildcardHint
		}
	case msg == "did not find expected alphabetic or numeric character":
		// An anchor (&) or alias (*) with no name; most often an unquoted
		// wildcard such as *.example.test.
		text := lines[line-1]
		if i := strings.IndexAny(text, "*&"); i >= 0 {
			col = utf8.RuneCountInString(text[:i]) + 1
			if text[i] == '*' {
				msg = "an unquoted * starts an alias" + wildcardHint
			}
		}
	}
	return &Error{File: file, Line: line, Column: col, Msg: "syntax error: " + msg, Err: err}
}

// refineLine finds the first line at or after from where a prefix of the
// document fails with the same problem: the line the problem is on. It
// gives up, returning from, after scanning refineBudget bytes.
func refineLine(lines []string, problem string, from int) int {
	const refineBudget = 1 << 20
	scanned := 0
	for l := max(from, 1); l <= len(lines); l++ {
		prefix := strings.Join(lines[:l], "\n") + "\n"
		if scanned += len(prefix); scanned > refineBudget {
			break
		}
		err := parseAll(prefix)
		if err == nil {
			continue
		}
		msg := strings.TrimPrefix(oneLine(err.Error()), "yaml: ")
		if m := libLineRE.FindStringSubmatch(msg); m != nil {
			msg = m[2]
		}
		if msg == problem {
			return l
		}
	}
	return from
}

// parseAll parses every document in s.
func parseAll(s string) error {
	dec := yaml.NewDecoder(strings.NewReader(s))
	for {
		var n yaml.Node
		if err := safeDecode(dec, &n); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
}

const wildcardHint = `; quote wildcards, as in "*.example.test"`

// lastContentLine returns the 1-based number of the last line holding
// anything but white space, or 1.
func lastContentLine(lines []string) int {
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.TrimSpace(lines[i]) != "" {
			return i + 1
		}
	}
	return 1
}

// find returns the 1-based line and column of the first s in lines.
func find(lines []string, s string) (line, col int, ok bool) {
	for i, l := range lines {
		if j := strings.Index(l, s); j >= 0 {
			return i + 1, utf8.RuneCountInString(l[:j]) + 1, true
		}
	}
	return 0, 0, false
}
