package strictyaml

import (
	"encoding"
	"errors"
	"fmt"
	"os"
	"reflect"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Decode decodes the single YAML document in data into out, which must be a
// non-nil pointer. file names the document in errors. Problems with the
// document are returned as *Error; on error out may be partly filled.
func Decode(file string, data []byte, out any) error {
	rv := reflect.ValueOf(out)
	if !rv.IsValid() || rv.Kind() != reflect.Pointer || rv.IsNil() {
		return fmt.Errorf("strictyaml: Decode needs a non-nil pointer, got %T", out)
	}
	types := typeCache{}
	if err := types.check(rv.Type().Elem()); err != nil {
		return err
	}
	root, err := parse(file, data)
	if err != nil {
		return err
	}
	d := &decoder{
		file:      file,
		types:     types,
		pos:       map[string]position{},
		active:    map[*yaml.Node]bool{},
		maxVisits: 10_000 + 64*len(data),
	}
	return d.value(root, rv.Elem(), "")
}

// DecodeFile reads the file at path and decodes it with Decode, naming it
// path in errors.
func DecodeFile(path string, out any) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("strictyaml: %w", err)
	}
	return Decode(path, data, out)
}

type position struct{ line, column int }

// decoder is the state of one Decode call.
type decoder struct {
	file  string
	types typeCache
	// pos maps every decoded field path to the position of its value, so
	// that Validate errors naming a field can be placed.
	pos map[string]position
	// active holds the collections being decoded, to catch alias cycles.
	active map[*yaml.Node]bool
	// visits counts decoded nodes, bounding alias expansion.
	visits, maxVisits int
}

// errAt returns an *Error at node n.
func (d *decoder) errAt(n *yaml.Node, path, format string, args ...any) *Error {
	return &Error{File: d.file, Line: n.Line, Column: n.Column, Field: path, Msg: fmt.Sprintf(format, args...)}
}

// hookError positions an error returned by a Validate, UnmarshalText or
// UnmarshalYAML method of the value at path, decoded from n.
func (d *decoder) hookError(err error, n *yaml.Node, path string) *Error {
	var ye *Error
	if !errors.As(err, &ye) {
		return &Error{File: d.file, Line: n.Line, Column: n.Column, Field: path, Msg: err.Error(), Err: err}
	}
	e := *ye
	e.Choices = append([]string(nil), ye.Choices...)
	e.Field = Join(path, ye.Field)
	if e.File == "" {
		e.File = d.file
	}
	if e.Line == 0 {
		p := d.lookup(e.Field, n)
		e.Line, e.Column = p.line, p.column
	}
	if e.Err == nil && ye != err {
		e.Err = err
	}
	return &e
}

// lookup returns the position of path, or of its nearest decoded ancestor,
// or of n.
func (d *decoder) lookup(path string, n *yaml.Node) position {
	for p, ok := path, true; ok; p, ok = parentPath(p) {
		if pos, found := d.pos[p]; found {
			return pos
		}
	}
	return position{n.Line, n.Column}
}

// resolve follows aliases.
func (d *decoder) resolve(n *yaml.Node, path string) (*yaml.Node, error) {
	for hops := 0; n.Kind == yaml.AliasNode; hops++ {
		if n.Alias == nil || hops > 1000 {
			return nil, d.errAt(n, path, "unknown alias *%s", n.Value)
		}
		n = n.Alias
	}
	return n, nil
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// describe names what a node holds, for "expected X, got Y" messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return fmt.Sprintf("%q", n.Value)
	}
	return "an unknown node"
}

// want describes what a type is written as.
func want(t reflect.Type) string {
	switch t {
	case durationType:
		return "a duration such as 30s"
	case addrType:
		return "an IP address"
	case prefixType:
		return "a CIDR prefix or IP address"
	}
	switch t.Kind() {
	case reflect.Struct, reflect.Map:
		return "a mapping"
	case reflect.Slice:
		return "a list"
	case reflect.Bool:
		return "a boolean (true or false)"
	case reflect.String:
		return "a string"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return "an integer"
	}
	return "a scalar"
}

var knownTags = map[string]bool{
	"!!str": true, "!!int": true, "!!float": true, "!!bool": true, "!!null": true,
	"!!map": true, "!!seq": true, "!!timestamp": true,
}

// value decodes n into v, whose path is path.
func (d *decoder) value(n *yaml.Node, v reflect.Value, path string) error {
	if n.Kind == yaml.AliasNode {
		d.pos[path] = position{n.Line, n.Column}
	}
	n, err := d.resolve(n, path)
	if err != nil {
		return err
	}
	if _, seen := d.pos[path]; !seen {
		d.pos[path] = position{n.Line, n.Column}
	}
	if d.visits++; d.visits > d.maxVisits {
		return d.errAt(n, path, "document expands to too many values (alias bomb?)")
	}
	if tag := n.ShortTag(); !knownTags[tag] {
		return d.errAt(n, path, "unsupported tag %s", tag)
	}
	if isNull(n) {
		return nil
	}
	t := v.Type()
	if t.Kind() == reflect.Pointer {
		if v.IsNil() {
			v.Set(reflect.New(t.Elem()))
		}
		return d.value(n, v.Elem(), path)
	}
	if n.Kind == yaml.MappingNode || n.Kind == yaml.SequenceNode {
		if d.active[n] {
			return d.errAt(n, path, "alias cycle: a value contains itself")
		}
		d.active[n] = true
		defer delete(d.active, n)
	}
	if e, ok := as[Enum](v); ok {
		choices := e.Choices()
		if n.Kind != yaml.ScalarNode {
			err := EnumError(path, "", choices)
			err.File, err.Line, err.Column = d.file, n.Line, n.Column
			err.Msg = fmt.Sprintf("expected one of: %s; got %s", strings.Join(choices, ", "), describe(n))
			return err
		}
		if !contains(choices, n.Value) {
			err := EnumError(path, n.Value, choices)
			err.File, err.Line, err.Column = d.file, n.Line, n.Column
			return err
		}
	}
	if err := d.decode(n, v, path); err != nil {
		return err
	}
	if val, ok := as[Validator](v); ok {
		if err := val.Validate(); err != nil {
			return d.hookError(err, n, path)
		}
	}
	return nil
}

// as returns v (or its address) as an I.
func as[I any](v reflect.Value) (I, bool) {
	var zero I
	it := reflect.TypeFor[I]()
	if v.CanInterface() && v.Type().Implements(it) {
		return v.Interface().(I), true
	}
	if v.CanAddr() && v.Addr().CanInterface() && v.Addr().Type().Implements(it) {
		return v.Addr().Interface().(I), true
	}
	return zero, false
}

func contains(list []string, s string) bool {
	for _, c := range list {
		if c == s {
			return true
		}
	}
	return false
}

// decode decodes a resolved, non-null node into v, which is not a pointer.
func (d *decoder) decode(n *yaml.Node, v reflect.Value, path string) error {
	t := v.Type()
	switch t {
	case nodeType:
		v.Set(reflect.ValueOf(*n))
		return nil
	case durationType, addrType, prefixType:
		return d.scalar(n, v, path)
	}
	if u, ok := as[yaml.Unmarshaler](v); ok {
		if err := u.UnmarshalYAML(n); err != nil {
			return d.hookError(err, n, path)
		}
		return nil
	}
	if u, ok := as[encoding.TextUnmarshaler](v); ok {
		if n.Kind != yaml.ScalarNode {
			return d.errAt(n, path, "expected a scalar, got %s", describe(n))
		}
		if err := u.UnmarshalText([]byte(n.Value)); err != nil {
			return d.hookError(err, n, path)
		}
		return nil
	}
	switch t.Kind() {
	case reflect.Struct:
		return d.structValue(n, v, path)
	case reflect.Map:
		return d.mapValue(n, v, path)
	case reflect.Slice:
		return d.sliceValue(n, v, path)
	case reflect.Interface:
		var x any
		if err := n.Decode(&x); err != nil {
			return d.errAt(n, path, "%s", strings.TrimPrefix(err.Error(), "yaml: "))
		}
		if x != nil {
			v.Set(reflect.ValueOf(x))
		}
		return nil
	}
	return d.scalar(n, v, path)
}

func (d *decoder) sliceValue(n *yaml.Node, v reflect.Value, path string) error {
	t := v.Type()
	switch {
	case n.Kind == yaml.SequenceNode:
		s := reflect.MakeSlice(t, len(n.Content), len(n.Content))
		for i, c := range n.Content {
			if err := d.value(c, s.Index(i), Index(path, i)); err != nil {
				return err
			}
		}
		v.Set(s)
		return nil
	case n.Kind == yaml.ScalarNode && scalarType(t.Elem()):
		// A lone scalar is a list of one.
		s := reflect.MakeSlice(t, 1, 1)
		if err := d.value(n, s.Index(0), Index(path, 0)); err != nil {
			return err
		}
		v.Set(s)
		return nil
	}
	return d.errAt(n, path, "expected a list, got %s", describe(n))
}

// pair is one key of a mapping, after merge keys are expanded.
type pair struct {
	name     string
	key, val *yaml.Node
}

// pairs returns the entries of mapping n: its own keys in order, then keys
// merged in with "<<" that it does not set itself. Duplicate own keys are
// errors.
func (d *decoder) pairs(n *yaml.Node, path string) ([]pair, error) {
	var own, merged []pair
	seen := map[string]*yaml.Node{}
	if d.visits += len(n.Content) / 2; d.visits > d.maxVisits {
		return nil, d.errAt(n, path, "document expands to too many values (alias bomb?)")
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, err := d.resolve(n.Content[i], path)
		if err != nil {
			return nil, err
		}
		val := n.Content[i+1]
		if k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge" {
			m, err := d.merge(val, path)
			if err != nil {
				return nil, err
			}
			merged = append(merged, m...)
			continue
		}
		if k.Kind != yaml.ScalarNode || isNull(k) {
			return nil, d.errAt(k, path, "a key must be a string, got %s", describeKey(k))
		}
		if prev, dup := seen[k.Value]; dup {
			return nil, d.errAt(k, path, "duplicate key %q (first at line %d)", k.Value, prev.Line)
		}
		seen[k.Value] = k
		own = append(own, pair{name: k.Value, key: k, val: val})
	}
	for _, p := range merged {
		if _, dup := seen[p.name]; !dup {
			seen[p.name] = p.key
			own = append(own, p)
		}
	}
	return own, nil
}

func describeKey(k *yaml.Node) string {
	if isNull(k) {
		return "null"
	}
	return describe(k)
}

// merge returns the entries a "<<" key brings in: from one mapping, or from
// a list of mappings where earlier ones win.
func (d *decoder) merge(val *yaml.Node, path string) ([]pair, error) {
	val, err := d.resolve(val, path)
	if err != nil {
		return nil, err
	}
	if d.visits++; d.visits > d.maxVisits {
		return nil, d.errAt(val, path, "document expands to too many values (alias bomb?)")
	}
	one := func(m *yaml.Node) ([]pair, error) {
		if m.Kind != yaml.MappingNode {
			return nil, d.errAt(m, path, "a merge key (<<) needs a mapping or a list of mappings, got %s", describe(m))
		}
		if d.active[m] {
			return nil, d.errAt(m, path, "alias cycle: a value contains itself")
		}
		d.active[m] = true
		defer delete(d.active, m)
		return d.pairs(m, path)
	}
	if val.Kind != yaml.SequenceNode {
		return one(val)
	}
	var out []pair
	for _, c := range val.Content {
		c, err := d.resolve(c, path)
		if err != nil {
			return nil, err
		}
		m, err := one(c)
		if err != nil {
			return nil, err
		}
		out = append(out, m...)
	}
	return out, nil
}

func (d *decoder) mapValue(n *yaml.Node, v reflect.Value, path string) error {
	if n.Kind != yaml.MappingNode {
		return d.errAt(n, path, "expected a mapping, got %s", describe(n))
	}
	ps, err := d.pairs(n, path)
	if err != nil {
		return err
	}
	t := v.Type()
	if v.IsNil() {
		v.Set(reflect.MakeMapWithSize(t, len(ps)))
	}
	for _, p := range ps {
		elem := reflect.New(t.Elem()).Elem()
		if err := d.value(p.val, elem, Key(path, p.name)); err != nil {
			return err
		}
		v.SetMapIndex(reflect.ValueOf(p.name).Convert(t.Key()), elem)
	}
	return nil
}

func (d *decoder) structValue(n *yaml.Node, v reflect.Value, path string) error {
	if n.Kind != yaml.MappingNode {
		return d.errAt(n, path, "expected a mapping, got %s", describe(n))
	}
	si := d.types[v.Type()]
	ps, err := d.pairs(n, path)
	if err != nil {
		return err
	}
	present := map[string]*yaml.Node{}
	for _, p := range ps {
		i, ok := si.byName[p.name]
		if !ok {
			names := si.names()
			e := d.errAt(p.key, path, "unknown field %q (valid: %s)", p.name, strings.Join(names, ", "))
			e.Choices = names
			return e
		}
		present[p.name] = p.key
		if err := d.value(p.val, v.FieldByIndex(si.fields[i].index), Key(path, p.name)); err != nil {
			return err
		}
		if val, _ := d.resolve(p.val, path); val != nil && isNull(val) {
			delete(present, p.name)
			if si.fields[i].required {
				return d.errAt(p.key, path, "required field %q has no value", p.name)
			}
		}
	}
	for _, f := range si.fields {
		if f.required && present[f.name] == nil {
			return d.errAt(n, path, "missing required field %q", f.name)
		}
	}
	if si.line != nil {
		v.FieldByIndex(si.line).SetInt(int64(n.Line))
	}
	if si.column != nil {
		v.FieldByIndex(si.column).SetInt(int64(n.Column))
	}
	return nil
}

// DecodeNode decodes n, a node taken from a document of file (for example
// a yaml.Node field filled by Decode), into out. Fields absent from n keep
// the values out already holds, so a node can override a copy of defaults.
// path prefixes the field paths of errors ("variants[1].client").
func DecodeNode(file string, n *yaml.Node, path string, out any) error {
	rv := reflect.ValueOf(out)
	if !rv.IsValid() || rv.Kind() != reflect.Pointer || rv.IsNil() {
		return fmt.Errorf("strictyaml: DecodeNode needs a non-nil pointer, got %T", out)
	}
	types := typeCache{}
	if err := types.check(rv.Type().Elem()); err != nil {
		return err
	}
	if n == nil || n.Kind == 0 {
		return nil
	}
	d := &decoder{
		file:      file,
		types:     types,
		pos:       map[string]position{},
		active:    map[*yaml.Node]bool{},
		maxVisits: 1_000_000,
	}
	return d.value(n, rv.Elem(), path)
}
