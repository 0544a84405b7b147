// Package yamldoc writes the field reference of a YAML file format from the
// Go types it decodes into (package strictyaml's rules: yaml tags, required
// fields, enumerations with Choices) and their doc comments, so that the
// reference in docs/ cannot drift from the code: a test regenerates it and
// compares.
//
// Fields walks a type by reflection and returns one Field per YAML key,
// nested keys as dotted paths; ReadComments reads the doc comments of the
// types' fields from their Go source (go/parser); Table renders
// the fields as a Markdown table; Splice replaces the generated part of a
// hand-written document between two markers.
package yamldoc

import (
	"encoding"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Field is one key of a YAML format.
type Field struct {
	// Path is the key's dotted path: "firewall.policy-file",
	// "variants[].client"; "[]" marks list elements, "<name>" map keys.
	Path string
	// Type says how the value is written.
	Type string
	// Required is true for keys that must be present.
	Required bool
	// Doc is the Go field's doc comment, in one paragraph.
	Doc string
	// Owner is the Go field, "pkgpath.Type.Field", for messages.
	Owner string
}

// Comments maps "pkgpath.Type.Field" to the field's doc comment.
type Comments map[string]string

// Options tune Fields.
type Options struct {
	// Names describes types written in a form of their own (a
	// TextUnmarshaler such as a port range): the description replaces
	// the walk.
	Names map[reflect.Type]string
	// Stop describes types documented elsewhere (a policy inside a
	// scenario): the key is listed, its fields are not.
	Stop map[reflect.Type]string
	// Values spells out Go identifiers the doc comments use for defaults
	// ("DefaultMaxIPs" becomes "DefaultMaxIPs (32)"), from the constants
	// themselves so that the values cannot drift.
	Values map[string]string
}

var (
	durationType = reflect.TypeFor[time.Duration]()
	addrType     = reflect.TypeFor[netip.Addr]()
	prefixType   = reflect.TypeFor[netip.Prefix]()
	nodeType     = reflect.TypeFor[yaml.Node]()
	textType     = reflect.TypeFor[encoding.TextUnmarshaler]()
)

// Fields lists the YAML keys of t (a struct type) and, recursively, of its
// struct-valued keys, with their documentation from cs.
// A struct type met a second time is not expanded again: its key says it
// has the keys of the first.
func Fields(t reflect.Type, cs Comments, o Options) []Field {
	w := &walker{cs: cs, o: o, seen: map[reflect.Type]string{}}
	w.walk(t, "")
	return w.out
}

type walker struct {
	cs   Comments
	o    Options
	out  []Field
	seen map[reflect.Type]string // struct type -> the path it was expanded at
}

func (w *walker) walk(t reflect.Type, prefix string) {
	cs, o := w.cs, w.o
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		tag := sf.Tag.Get("yaml")
		name, opts, _ := strings.Cut(tag, ",")
		if tag == "-" || !sf.IsExported() && !sf.Anonymous {
			continue
		}
		if _, isPos := sf.Tag.Lookup("strictyaml"); isPos {
			continue
		}
		if strings.Contains(","+opts+",", ",inline,") {
			w.walk(sf.Type, prefix)
			continue
		}
		if name == "" {
			name = strings.ToLower(sf.Name)
		}
		path := name
		if prefix != "" {
			path = prefix + "." + name
		}
		owner := t.PkgPath() + "." + t.Name() + "." + sf.Name
		f := Field{Path: path, Type: describe(sf.Type, o), Required: strings.Contains(","+opts+",", ",required,"), Doc: spell(cs[owner], o.Values), Owner: owner}
		sub, elem := nested(sf.Type, o)
		if first, ok := w.seen[sub]; ok && sub != nil {
			f.Type += fmt.Sprintf(", with the keys of `%s`", first)
			sub = nil
		}
		w.out = append(w.out, f)
		if sub != nil {
			w.seen[sub] = path + elem
			w.walk(sub, path+elem)
		}
	}
}

// nested returns the struct type whose keys live below a field of type t
// (through pointers, lists and maps), and the path suffix that leads there.
func nested(t reflect.Type, o Options) (reflect.Type, string) {
	suffix := ""
	for {
		if _, ok := o.Names[t]; ok {
			return nil, ""
		}
		if _, ok := o.Stop[t]; ok {
			return nil, ""
		}
		switch t.Kind() {
		case reflect.Pointer:
			t = t.Elem()
			continue
		case reflect.Slice:
			t, suffix = t.Elem(), suffix+"[]"
			continue
		case reflect.Map:
			t, suffix = t.Elem(), suffix+".<name>"
			continue
		case reflect.Struct:
			if t == addrType || t == prefixType || t == nodeType || custom(t) {
				return nil, ""
			}
			return t, suffix
		}
		return nil, ""
	}
}

// spell appends each identifier's value after it in doc.
func spell(doc string, values map[string]string) string {
	keys := make([]string, 0, len(values))
	for k := range values {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return len(keys[i]) > len(keys[j]) })
	for _, k := range keys {
		doc = replaceWord(doc, k, k+" ("+values[k]+")")
	}
	return doc
}

// replaceWord replaces old in s where it is a whole word.
func replaceWord(s, old, repl string) string {
	var b strings.Builder
	for {
		i := strings.Index(s, old)
		if i < 0 {
			b.WriteString(s)
			return b.String()
		}
		end := i + len(old)
		whole := (i == 0 || !isWordByte(s[i-1])) && (end == len(s) || !isWordByte(s[end]))
		b.WriteString(s[:i])
		if whole {
			b.WriteString(repl)
		} else {
			b.WriteString(old)
		}
		s = s[end:]
	}
}

func isWordByte(c byte) bool {
	return c == '_' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

func custom(t reflect.Type) bool {
	return t.Implements(textType) || reflect.PointerTo(t).Implements(textType)
}

type chooser interface{ Choices() []string }

// describe says how a value of type t is written.
func describe(t reflect.Type, o Options) string {
	if d, ok := o.Names[t]; ok {
		return d
	}
	if d, ok := o.Stop[t]; ok {
		return d
	}
	if c, ok := reflect.Zero(t).Interface().(chooser); ok && t.Kind() == reflect.String {
		return "one of: " + strings.Join(c.Choices(), ", ")
	}
	switch t {
	case durationType:
		return "duration (30s, 500ms)"
	case addrType:
		return "IP address"
	case prefixType:
		return "CIDR prefix or address"
	case nodeType:
		return "override (see the description)"
	}
	switch t.Kind() {
	case reflect.Pointer:
		return describe(t.Elem(), o)
	case reflect.Slice:
		return "list of " + describe(t.Elem(), o)
	case reflect.Map:
		return "mapping of name to " + describe(t.Elem(), o)
	case reflect.Struct:
		return "mapping"
	case reflect.Bool:
		return "boolean"
	case reflect.String:
		return "string"
	case reflect.Float32, reflect.Float64:
		return "number"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "integer"
	}
	return t.String()
}

// ReadComments reads the doc comments of every struct field declared in
// the Go packages in the directories of pkgPath, which maps each directory
// to its import path (test files left out).
func ReadComments(pkgPath map[string]string) (Comments, error) {
	cs := Comments{}
	dirs := make([]string, 0, len(pkgPath))
	for d := range pkgPath {
		dirs = append(dirs, d)
	}
	sort.Strings(dirs)
	for _, dir := range dirs {
		if err := readDir(cs, dir, pkgPath[dir], false); err != nil {
			return nil, err
		}
	}
	return cs, nil
}

// readDir adds the field comments of the package in dir to cs.
func readDir(cs Comments, dir, pkg string, tests bool) error {
	fset := token.NewFileSet()
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	var files []*ast.File
	for _, e := range entries {
		n := e.Name()
		if !strings.HasSuffix(n, ".go") || strings.HasSuffix(n, "_test.go") != tests {
			continue
		}
		f, err := parser.ParseFile(fset, filepath.Join(dir, n), nil, parser.ParseComments)
		if err != nil {
			return err
		}
		files = append(files, f)
	}
	for _, f := range files {
		for _, d := range f.Decls {
			gd, ok := d.(*ast.GenDecl)
			if !ok || gd.Tok != token.TYPE {
				continue
			}
			for _, spec := range gd.Specs {
				if ts, ok := spec.(*ast.TypeSpec); ok {
					if st, ok := ts.Type.(*ast.StructType); ok {
						fieldComments(cs, fset, pkg+"."+ts.Name.Name, st)
					}
				}
			}
		}
	}
	return nil
}

// fieldComments records each field's doc comment. A comment above a run
// of fields on consecutive lines that names them ("ExceptDomains and
// ExceptCIDRs go direct") documents the fields it names that have none of
// their own.
func fieldComments(cs Comments, fset *token.FileSet, typ string, st *ast.StructType) {
	shared, prevEnd := "", -1
	for _, f := range st.Fields.List {
		line := fset.Position(f.Pos()).Line
		if f.Doc != nil || line != prevEnd+1 {
			shared = ""
		}
		prevEnd = fset.Position(f.End()).Line
		text := ""
		if f.Doc != nil {
			text = oneParagraph(f.Doc.Text())
			shared = text
		} else if f.Comment != nil {
			text = oneParagraph(f.Comment.Text())
		}
		for _, n := range f.Names {
			own := text
			if own == "" && replaceWord(shared, n.Name, "") != shared {
				own = shared
			}
			cs[typ+"."+n.Name] = own
		}
		if len(f.Names) == 0 {
			if id := embeddedName(f.Type); id != "" {
				cs[typ+"."+id] = text
			}
		}
	}
}

func embeddedName(e ast.Expr) string {
	switch x := e.(type) {
	case *ast.Ident:
		return x.Name
	case *ast.SelectorExpr:
		return x.Sel.Name
	case *ast.StarExpr:
		return embeddedName(x.X)
	}
	return ""
}

func oneParagraph(s string) string { return strings.Join(strings.Fields(s), " ") }

// Table renders fields as a Markdown table: key, how it is written,
// whether it is required, and what it means (with its default).
func Table(fields []Field) string {
	var b strings.Builder
	b.WriteString("| key | written as | required | meaning and default |\n|---|---|---|---|\n")
	for _, f := range fields {
		req := ""
		if f.Required {
			req = "yes"
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s |\n", f.Path, cell(f.Type), req, cell(f.Doc))
	}
	return b.String()
}

func cell(s string) string { return strings.ReplaceAll(s, "|", `\|`) }

// Splice returns document with the text between the lines begin and end
// replaced by content.
func Splice(document, begin, end, content string) (string, error) {
	i := strings.Index(document, begin+"\n")
	j := strings.Index(document, end)
	if i < 0 || j < i {
		return "", fmt.Errorf("yamldoc: markers %q and %q not found in order", begin, end)
	}
	return document[:i+len(begin)+1] + content + document[j:], nil
}
