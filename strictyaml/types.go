package strictyaml

import (
	"encoding"
	"fmt"
	"net/netip"
	"reflect"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Enum is implemented by types whose YAML form must be one of a fixed set of
// strings. Decode checks the scalar against Choices before decoding it.
type Enum interface {
	Choices() []string
}

// Validator is implemented by types that check themselves after decoding.
// See the package documentation for how its error is positioned.
type Validator interface {
	Validate() error
}

var (
	durationType        = reflect.TypeFor[time.Duration]()
	addrType            = reflect.TypeFor[netip.Addr]()
	prefixType          = reflect.TypeFor[netip.Prefix]()
	nodeType            = reflect.TypeFor[yaml.Node]()
	textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()
	yamlUnmarshalerType = reflect.TypeFor[yaml.Unmarshaler]()
	enumType            = reflect.TypeFor[Enum]()
)

// implements reports whether t or *t implements iface.
func implements(t, iface reflect.Type) bool {
	return t.Implements(iface) || reflect.PointerTo(t).Implements(iface)
}

// custom reports whether t decodes itself from a node or a scalar.
func custom(t reflect.Type) bool {
	return implements(t, yamlUnmarshalerType) || implements(t, textUnmarshalerType)
}

// scalarType reports whether t (after pointers) is written as one YAML
// scalar, so that a lone scalar may stand for a one-element list of t.
func scalarType(t reflect.Type) bool {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t {
	case durationType, addrType, prefixType:
		return true
	case nodeType:
		return false
	}
	if implements(t, enumType) || implements(t, textUnmarshalerType) {
		return true
	}
	if implements(t, yamlUnmarshalerType) {
		return false
	}
	switch t.Kind() {
	case reflect.String, reflect.Bool,
		reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr,
		reflect.Float32, reflect.Float64:
		return true
	}
	return false
}

// fieldInfo is one key of a struct's mapping.
type fieldInfo struct {
	name     string
	index    []int
	required bool
}

// structInfo is the mapping shape of a struct type.
type structInfo struct {
	fields []fieldInfo
	byName map[string]int
	// line and column are the index paths of the position sinks, or nil.
	line, column []int
}

// names returns the valid keys in declaration order.
func (si *structInfo) names() []string {
	out := make([]string, len(si.fields))
	for i, f := range si.fields {
		out[i] = f.name
	}
	return out
}

// typeCache holds the struct shapes of one Decode call; it is not shared
// between calls, so the package keeps no mutable state.
type typeCache map[reflect.Type]*structInfo

// check verifies that t can be decoded into, recording struct shapes.
func (c typeCache) check(t reflect.Type) error {
	if _, seen := c[t]; seen {
		return nil
	}
	switch t {
	case durationType, addrType, prefixType, nodeType:
		return nil
	}
	if t.Kind() != reflect.Pointer && custom(t) {
		return nil
	}
	switch t.Kind() {
	case reflect.String, reflect.Bool,
		reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr,
		reflect.Float32, reflect.Float64:
		return nil
	case reflect.Pointer, reflect.Slice:
		return c.check(t.Elem())
	case reflect.Map:
		if t.Key().Kind() != reflect.String {
			return fmt.Errorf("strictyaml: unsupported map key type %s in %s (keys must be strings)", t.Key(), t)
		}
		return c.check(t.Elem())
	case reflect.Interface:
		if t.NumMethod() != 0 {
			return fmt.Errorf("strictyaml: unsupported interface type %s (only any)", t)
		}
		return nil
	case reflect.Struct:
		si := &structInfo{byName: map[string]int{}}
		c[t] = si // before recursing, for recursive types
		if err := c.addFields(si, t, nil); err != nil {
			return err
		}
		for _, f := range si.fields {
			if err := c.check(t.FieldByIndex(f.index).Type); err != nil {
				return err
			}
		}
		return nil
	}
	return fmt.Errorf("strictyaml: unsupported type %s", t)
}

func (c typeCache) addFields(si *structInfo, t reflect.Type, prefix []int) error {
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		index := append(append([]int(nil), prefix...), i)
		if pos, ok := sf.Tag.Lookup("strictyaml"); ok {
			if sf.Type.Kind() != reflect.Int || !sf.IsExported() {
				return fmt.Errorf("strictyaml: %s.%s: a strictyaml:%q field must be an exported int", t, sf.Name, pos)
			}
			switch pos {
			case "line":
				si.line = index
			case "column":
				si.column = index
			default:
				return fmt.Errorf("strictyaml: %s.%s: unknown strictyaml tag %q (want line or column)", t, sf.Name, pos)
			}
			continue
		}
		tag := sf.Tag.Get("yaml")
		name, opts, _ := strings.Cut(tag, ",")
		if tag == "-" || !sf.IsExported() && !(sf.Anonymous && strings.Contains(","+opts+",", ",inline,")) {
			continue
		}
		var required, inline bool
		for opts != "" {
			var opt string
			opt, opts, _ = strings.Cut(opts, ",")
			switch opt {
			case "required":
				required = true
			case "inline":
				inline = true
			case "omitempty", "flow":
			default:
				return fmt.Errorf("strictyaml: %s.%s: unknown yaml tag option %q", t, sf.Name, opt)
			}
		}
		if inline {
			if sf.Type.Kind() != reflect.Struct || name != "" || required {
				return fmt.Errorf("strictyaml: %s.%s: only an unnamed, optional struct field can be inline", t, sf.Name)
			}
			if err := c.addFields(si, sf.Type, index); err != nil {
				return err
			}
			continue
		}
		if name == "" {
			name = strings.ToLower(sf.Name)
		}
		if _, dup := si.byName[name]; dup {
			return fmt.Errorf("strictyaml: %s: two fields use the key %q", t, name)
		}
		si.byName[name] = len(si.fields)
		si.fields = append(si.fields, fieldInfo{name: name, index: index, required: required})
	}
	return nil
}
