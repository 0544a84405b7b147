package reports

import (
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"
)

// schemaValidator checks a decoded JSON document against the subset of
// JSON Schema 2020-12 that evidence.schema.json uses: $ref to $defs, type,
// enum, const, required, properties, additionalProperties, items, pattern
// and minimum. Formats are annotations and are not checked.
type schemaValidator struct {
	root map[string]any
}

func (v schemaValidator) validate(schema map[string]any, doc any, at string) []string {
	if ref, ok := schema["$ref"].(string); ok {
		name, found := strings.CutPrefix(ref, "#/$defs/")
		if !found {
			return []string{at + ": unsupported $ref " + ref}
		}
		def, ok := v.root["$defs"].(map[string]any)[name].(map[string]any)
		if !ok {
			return []string{at + ": unknown $ref " + ref}
		}
		return v.validate(def, doc, at)
	}
	var errs []string
	if t, ok := schema["type"]; ok && !typeMatches(t, doc) {
		return []string{fmt.Sprintf("%s: %s is not of type %v", at, jsonType(doc), t)}
	}
	if c, ok := schema["const"]; ok && c != doc {
		errs = append(errs, fmt.Sprintf("%s: %v is not %v", at, doc, c))
	}
	if enum, ok := schema["enum"].([]any); ok && !slices.Contains(enum, doc) {
		errs = append(errs, fmt.Sprintf("%s: %v is not one of %v", at, doc, enum))
	}
	switch d := doc.(type) {
	case map[string]any:
		if req, ok := schema["required"].([]any); ok {
			for _, k := range req {
				if _, ok := d[k.(string)]; !ok {
					errs = append(errs, fmt.Sprintf("%s: missing required %q", at, k))
				}
			}
		}
		props, _ := schema["properties"].(map[string]any)
		extra, _ := schema["additionalProperties"].(map[string]any)
		keys := make([]string, 0, len(d))
		for k := range d {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if p, ok := props[k].(map[string]any); ok {
				errs = append(errs, v.validate(p, d[k], at+"."+k)...)
			} else if extra != nil {
				errs = append(errs, v.validate(extra, d[k], at+"."+k)...)
			}
		}
	case []any:
		if items, ok := schema["items"].(map[string]any); ok {
			for i, x := range d {
				errs = append(errs, v.validate(items, x, fmt.Sprintf("%s[%d]", at, i))...)
			}
		}
	case string:
		if p, ok := schema["pattern"].(string); ok && !regexp.MustCompile(p).MatchString(d) {
			errs = append(errs, fmt.Sprintf("%s: %q does not match %s", at, d, p))
		}
	case float64:
		if m, ok := schema["minimum"].(float64); ok && d < m {
			errs = append(errs, fmt.Sprintf("%s: %v is below %v", at, d, m))
		}
	}
	return errs
}

func jsonType(doc any) string {
	switch d := doc.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case string:
		return "string"
	case float64:
		if d == float64(int64(d)) {
			return "integer"
		}
		return "number"
	case []any:
		return "array"
	case map[string]any:
		return "object"
	}
	return fmt.Sprintf("%T", doc)
}

func typeMatches(t any, doc any) bool {
	got := jsonType(doc)
	one := func(want string) bool { return want == got || (want == "number" && got == "integer") }
	switch t := t.(type) {
	case string:
		return one(t)
	case []any:
		for _, x := range t {
			if s, ok := x.(string); ok && one(s) {
				return true
			}
		}
	}
	return false
}
