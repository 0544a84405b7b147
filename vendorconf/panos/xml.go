package panos

import (
	"bytes"
	"encoding/xml"
	"errors"
	"io"
	"strings"

	"github.com/pinwall/pinwall/vendorconf"
)

// Limits on a configuration tree, so that no input exhausts memory.
const (
	maxDepth = 64
	maxNodes = 2_000_000
)

// node is one XML element with the line of its start tag.
type node struct {
	name  string
	attrs map[string]string
	text  string
	line  int
	kids  []*node
}

// parseXML reads data into a tree of elements. Errors are
// *vendorconf.SyntaxError at the line where reading stopped.
func parseXML(file string, data []byte) (*node, error) {
	if len(data) > vendorconf.MaxFileBytes {
		return nil, vendorconf.Errorf(file, 0, "file is %d bytes, more than the %d a configuration may have", len(data), vendorconf.MaxFileBytes)
	}
	dec := xml.NewDecoder(bytes.NewReader(data))
	dec.Strict = true
	var (
		root  *node
		stack []*node
		text  strings.Builder
		count int
		// line tracking: the line of offset off.
		off  int64
		line = 1
	)
	lineAt := func(o int64) int {
		if o > int64(len(data)) {
			o = int64(len(data))
		}
		if o > off {
			line += bytes.Count(data[off:o], []byte{'\n'})
			off = o
		}
		return line
	}
	for {
		start := dec.InputOffset()
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			var se *xml.SyntaxError
			if errors.As(err, &se) {
				return nil, vendorconf.Errorf(file, se.Line, "malformed XML: %s", se.Msg)
			}
			return nil, vendorconf.Errorf(file, lineAt(dec.InputOffset()), "malformed XML: %v", err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			count++
			l := lineAt(start)
			if count > maxNodes {
				return nil, vendorconf.Errorf(file, l, "more than %d elements", maxNodes)
			}
			if len(stack) >= maxDepth {
				return nil, vendorconf.Errorf(file, l, "elements nested more than %d deep", maxDepth)
			}
			n := &node{name: t.Name.Local, line: l}
			for _, a := range t.Attr {
				if n.attrs == nil {
					n.attrs = map[string]string{}
				}
				n.attrs[a.Name.Local] = a.Value
			}
			if len(stack) == 0 {
				if root != nil {
					return nil, vendorconf.Errorf(file, l, "a second top-level element <%s> after </%s>", n.name, root.name)
				}
				root = n
			} else {
				p := stack[len(stack)-1]
				p.kids = append(p.kids, n)
			}
			stack = append(stack, n)
			text.Reset()
		case xml.EndElement:
			n := stack[len(stack)-1]
			if len(n.kids) == 0 {
				n.text = strings.TrimSpace(text.String())
			}
			text.Reset()
			stack = stack[:len(stack)-1]
		case xml.CharData:
			if len(stack) > 0 && text.Len() < 1<<20 {
				text.Write(t)
			}
		}
	}
	if root == nil {
		return nil, vendorconf.Errorf(file, lineAt(int64(len(data))), "no XML element found: is this a PAN-OS configuration?")
	}
	return root, nil
}

// child returns the first child named name, or nil.
func (n *node) child(name string) *node {
	if n == nil {
		return nil
	}
	for _, k := range n.kids {
		if k.name == name {
			return k
		}
	}
	return nil
}

// path follows child names; nil when any is missing.
func (n *node) path(names ...string) *node {
	for _, name := range names {
		n = n.child(name)
	}
	return n
}

// entries returns the <entry> children.
func (n *node) entries() []*node {
	if n == nil {
		return nil
	}
	var out []*node
	for _, k := range n.kids {
		if k.name == "entry" {
			out = append(out, k)
		}
	}
	return out
}

// entry returns the <entry name="name"> child, or nil.
func (n *node) entry(name string) *node {
	for _, e := range n.entries() {
		if e.attrs["name"] == name {
			return e
		}
	}
	return nil
}

// name returns the element's name attribute.
func (n *node) nameAttr() string {
	if n == nil {
		return ""
	}
	return n.attrs["name"]
}

// member is a <member> value with its line.
type member struct {
	value string
	line  int
}

// members returns the <member> children of the child named name; a child
// with text but no members (an old single-value form) counts as one member.
func (n *node) members(name string) []member {
	c := n.child(name)
	if c == nil {
		return nil
	}
	var out []member
	for _, k := range c.kids {
		if k.name == "member" && k.text != "" {
			out = append(out, member{k.text, k.line})
		}
	}
	if len(c.kids) == 0 && c.text != "" {
		out = append(out, member{c.text, c.line})
	}
	return out
}

// textOf returns the text of the child named name.
func (n *node) textOf(name string) string {
	if c := n.child(name); c != nil {
		return c.text
	}
	return ""
}

// yes reports whether the child named name holds "yes".
func (n *node) yes(name string) bool { return n.textOf(name) == "yes" }

func values(ms []member) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.value
	}
	return out
}

func isAny(ms []member) bool {
	return len(ms) == 0 || len(ms) == 1 && ms[0].value == "any"
}
