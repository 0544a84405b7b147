package fortios

import (
	"fmt"
	"strings"

	"github.com/pinwall/pinwall/vendorconf"
)

// Limits on a configuration, so that no input exhausts memory.
const (
	maxDepth      = 32
	maxStatements = 2_000_000
	maxValueBytes = 1 << 20
)

// block is a "config" or "edit" block of the CLI configuration, or the file
// itself (kind root).
type block struct {
	kind string // "root", "config", "edit"
	name string // config path ("firewall policy") or edit name
	line int
	sets []setting
	kids []*block
}

// setting is a "set key values..." (or "unset key") statement.
type setting struct {
	key    string
	values []string
	line   int
	unset  bool
}

// statement is one tokenised line.
type statement struct {
	words []string
	line  int
}

// parseCLI reads FortiOS "show full-configuration" text. Errors are
// *vendorconf.SyntaxError at the offending line.
func parseCLI(file string, data []byte) (*block, error) {
	if len(data) > vendorconf.MaxFileBytes {
		return nil, vendorconf.Errorf(file, 0, "file is %d bytes, more than the %d a configuration may have", len(data), vendorconf.MaxFileBytes)
	}
	stmts, err := tokenize(file, data)
	if err != nil {
		return nil, err
	}
	root := &block{kind: "root", line: 1}
	stack := []*block{root}
	for _, st := range stmts {
		cur := stack[len(stack)-1]
		verb := st.words[0]
		switch verb {
		case "config":
			if len(st.words) < 2 {
				return nil, vendorconf.Errorf(file, st.line, "config without a path (write config firewall policy)")
			}
			if len(stack) > maxDepth {
				return nil, vendorconf.Errorf(file, st.line, "blocks nested more than %d deep", maxDepth)
			}
			b := &block{kind: "config", name: strings.Join(st.words[1:], " "), line: st.line}
			cur.kids = append(cur.kids, b)
			stack = append(stack, b)
		case "edit":
			if cur.kind != "config" {
				return nil, vendorconf.Errorf(file, st.line, "edit outside a config block")
			}
			if len(st.words) != 2 {
				return nil, vendorconf.Errorf(file, st.line, "edit takes one name or number, got %d words", len(st.words)-1)
			}
			b := &block{kind: "edit", name: st.words[1], line: st.line}
			cur.kids = append(cur.kids, b)
			stack = append(stack, b)
		case "next":
			if cur.kind != "edit" {
				return nil, vendorconf.Errorf(file, st.line, "next without an open edit%s", openHint(cur))
			}
			stack = stack[:len(stack)-1]
		case "end":
			if cur.kind != "config" {
				if cur.kind == "edit" {
					return nil, vendorconf.Errorf(file, st.line, "end while edit %s (line %d) is open: a next is missing", cur.name, cur.line)
				}
				return nil, vendorconf.Errorf(file, st.line, "end without an open config")
			}
			stack = stack[:len(stack)-1]
		case "set", "unset", "append", "select", "unselect", "clear":
			if cur.kind == "root" {
				return nil, vendorconf.Errorf(file, st.line, "%s outside a config block", verb)
			}
			if len(st.words) < 2 {
				return nil, vendorconf.Errorf(file, st.line, "%s without a setting name", verb)
			}
			s := setting{key: st.words[1], values: st.words[2:], line: st.line, unset: verb == "unset"}
			if verb == "append" || verb == "select" {
				if prev := cur.setting(s.key); prev != nil {
					prev.values = append(prev.values, s.values...)
					continue
				}
			}
			if verb == "unselect" {
				continue
			}
			cur.sets = append(cur.sets, s)
		default:
			return nil, vendorconf.Errorf(file, st.line, "unexpected %q: a FortiOS configuration line starts with config, edit, set, unset, next or end", verb)
		}
	}
	if len(stack) > 1 {
		open := stack[len(stack)-1]
		return nil, vendorconf.Errorf(file, open.line, "%s %s is never closed (the file ends before its %s)", open.kind, open.name, closer(open))
	}
	return root, nil
}

func openHint(b *block) string {
	if b.kind == "config" {
		return fmt.Sprintf(" (config %s, line %d, is open)", b.name, b.line)
	}
	return ""
}

func closer(b *block) string {
	if b.kind == "edit" {
		return "next"
	}
	return "end"
}

// tokenize splits the text into statements of words. Double- or
// single-quoted words may hold spaces, escaped quotes (\") and backslashes
// (\\), and line breaks (a certificate); a line whose first word starts
// with # is a comment.
func tokenize(file string, data []byte) ([]statement, error) {
	lx := lexer{file: file, data: data, line: 1}
	for lx.i = 0; lx.i < len(data); lx.i++ {
		var err error
		if lx.quote != 0 {
			err = lx.quoted()
		} else {
			err = lx.bare()
		}
		if err != nil {
			return nil, err
		}
	}
	if lx.quote != 0 {
		return nil, vendorconf.Errorf(file, lx.qLine, "a quoted value (%c) is never closed", lx.quote)
	}
	if err := lx.flushStmt(); err != nil {
		return nil, err
	}
	return lx.out, nil
}

// lexer is tokenize's state: the statements so far, the words of the
// current one, the word being read and, inside quotes, the quote character
// and the line it opened on.
type lexer struct {
	file  string
	data  []byte
	i     int // the byte being read
	out   []statement
	words []string
	word  strings.Builder
	inW   bool
	quote byte
	qLine int
	line  int
	start int // the current statement's first line
}

func (lx *lexer) flushWord() {
	if lx.inW {
		lx.words = append(lx.words, lx.word.String())
		lx.word.Reset()
		lx.inW = false
	}
}

func (lx *lexer) flushStmt() error {
	lx.flushWord()
	if len(lx.words) > 0 {
		if len(lx.out) >= maxStatements {
			return vendorconf.Errorf(lx.file, lx.start, "more than %d statements", maxStatements)
		}
		lx.out = append(lx.out, statement{words: lx.words, line: lx.start})
		lx.words = nil
	}
	return nil
}

// atStatementStart reports whether no word of a statement has begun.
func (lx *lexer) atStatementStart() bool { return len(lx.words) == 0 && !lx.inW }

// quoted reads one byte inside quotes.
func (lx *lexer) quoted() error {
	c := lx.data[lx.i]
	switch {
	case c == '\\' && lx.i+1 < len(lx.data):
		lx.i++
		if lx.data[lx.i] == '\n' {
			lx.line++
		}
		lx.word.WriteByte(lx.data[lx.i])
	case c == lx.quote:
		lx.quote = 0
	default:
		if c == '\n' {
			lx.line++
		}
		lx.word.WriteByte(c)
	}
	if lx.word.Len() > maxValueBytes {
		return vendorconf.Errorf(lx.file, lx.qLine, "a quoted value longer than %d bytes", maxValueBytes)
	}
	return nil
}

// bare reads one byte outside quotes.
func (lx *lexer) bare() error {
	c := lx.data[lx.i]
	switch c {
	case '\n':
		if err := lx.flushStmt(); err != nil {
			return err
		}
		lx.line++
	case ' ', '\t', '\r':
		lx.flushWord()
	case '#':
		if lx.atStatementStart() {
			// A comment line: skip to its end.
			for lx.i < len(lx.data) && lx.data[lx.i] != '\n' {
				lx.i++
			}
			lx.i--
			return nil
		}
		lx.word.WriteByte(c)
		lx.inW = true
	case '"', '\'':
		if lx.atStatementStart() {
			lx.start = lx.line
		}
		lx.quote, lx.qLine, lx.inW = c, lx.line, true
	default:
		if lx.atStatementStart() {
			lx.start = lx.line
		}
		if c == '\\' && lx.i+1 < len(lx.data) && lx.data[lx.i+1] != '\n' {
			lx.i++
			c = lx.data[lx.i]
		}
		lx.word.WriteByte(c)
		lx.inW = true
		if lx.word.Len() > maxValueBytes {
			return vendorconf.Errorf(lx.file, lx.line, "a word longer than %d bytes", maxValueBytes)
		}
	}
	return nil
}

// setting returns the last "set key" of b, or nil.
func (b *block) setting(key string) *setting {
	if b == nil {
		return nil
	}
	for i := len(b.sets) - 1; i >= 0; i-- {
		if b.sets[i].key == key {
			if b.sets[i].unset {
				return nil
			}
			return &b.sets[i]
		}
	}
	return nil
}

// get returns the first value of "set key", or "".
func (b *block) get(key string) string {
	if s := b.setting(key); s != nil && len(s.values) > 0 {
		return s.values[0]
	}
	return ""
}

// values returns the values of "set key".
func (b *block) values(key string) []string {
	if s := b.setting(key); s != nil {
		return s.values
	}
	return nil
}

// lineOf returns the line of "set key", or the block's.
func (b *block) lineOf(key string) int {
	if s := b.setting(key); s != nil {
		return s.line
	}
	if b == nil {
		return 0
	}
	return b.line
}

// config returns the child config block named name, or nil.
func (b *block) config(name string) *block {
	if b == nil {
		return nil
	}
	for _, k := range b.kids {
		if k.kind == "config" && k.name == name {
			return k
		}
	}
	return nil
}

// edits returns the edit children of a config block.
func (b *block) edits() []*block {
	if b == nil {
		return nil
	}
	var out []*block
	for _, k := range b.kids {
		if k.kind == "edit" {
			out = append(out, k)
		}
	}
	return out
}

// edit returns the edit child named name, or nil.
func (b *block) edit(name string) *block {
	for _, e := range b.edits() {
		if e.name == name {
			return e
		}
	}
	return nil
}
