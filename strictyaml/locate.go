package strictyaml

import (
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Locate returns the line and column of the value at path (as Key and Index
// write it: `variants[1].firewall.policy-file`) in the YAML document data,
// or of its nearest ancestor present in the document. ok is false when
// data does not parse or path is malformed.
func Locate(data []byte, path string) (line, col int, ok bool) {
	segs, ok := splitPath(path)
	if !ok {
		return 0, 0, false
	}
	var doc yaml.Node
	if err := safeDecode(yaml.NewDecoder(strings.NewReader(string(data))), &doc); err != nil || len(doc.Content) == 0 {
		return 0, 0, false
	}
	n := doc.Content[0]
	line, col = n.Line, n.Column
	for _, s := range segs {
		n = follow(n)
		next := child(n, s)
		if next == nil {
			break
		}
		n = next
		line, col = n.Line, n.Column
	}
	return line, col, true
}

// Place fills e's line and column from data when e has none, by its field
// path (see Locate), and returns e.
func (e *Error) Place(data []byte) *Error {
	if e.Line == 0 {
		if l, c, ok := Locate(data, e.Field); ok {
			e.Line, e.Column = l, c
		}
	}
	return e
}

// segment is one step of a field path: a mapping key or a list index.
type segment struct {
	key   string
	index int // -1 for a key
}

func splitPath(path string) ([]segment, bool) {
	var out []segment
	for path != "" {
		switch {
		case path[0] == '.':
			path = path[1:]
		case strings.HasPrefix(path, `["`):
			q, err := strconv.QuotedPrefix(path[1:])
			if err != nil || len(path) < len(q)+2 || path[1+len(q)] != ']' {
				return nil, false
			}
			k, _ := strconv.Unquote(q)
			out = append(out, segment{key: k, index: -1})
			path = path[len(q)+2:]
		case path[0] == '[':
			end := strings.IndexByte(path, ']')
			if end < 0 {
				return nil, false
			}
			i, err := strconv.Atoi(path[1:end])
			if err != nil {
				return nil, false
			}
			out = append(out, segment{index: i})
			path = path[end+1:]
		default:
			end := strings.IndexAny(path, ".[")
			if end < 0 {
				end = len(path)
			}
			out = append(out, segment{key: path[:end], index: -1})
			path = path[end:]
		}
	}
	return out, true
}

func follow(n *yaml.Node) *yaml.Node {
	for hops := 0; n.Kind == yaml.AliasNode && n.Alias != nil && hops < 1000; hops++ {
		n = n.Alias
	}
	return n
}

// child returns the node at s below n, or nil.
func child(n *yaml.Node, s segment) *yaml.Node {
	switch {
	case s.index >= 0 && n.Kind == yaml.SequenceNode && s.index < len(n.Content):
		return n.Content[s.index]
	case s.index < 0 && n.Kind == yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == s.key {
				return n.Content[i+1]
			}
		}
	}
	return nil
}
