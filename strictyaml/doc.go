// Package strictyaml decodes YAML configuration strictly, with errors a person
// can act on.
//
// Decode parses one YAML document with go.yaml.in/yaml/v3 into a *yaml.Node
// tree and walks that tree with reflection against the target value. Every
// problem comes back as an *Error naming the file, the line and column, the
// field path (such as "rules[1].match.sni[0]", with 0-based indexes) and,
// for enumerations and unknown keys, the valid choices:
//
//	policy.yaml:12:9: rules[1].action: "decypt" is not one of: decrypt, no-decrypt, block, allow
//
// # What is strict
//
//   - Unknown keys are errors that list the valid keys; duplicate keys are
//     errors; keys tagged `yaml:"name,required"` must be present and not null.
//   - Scalars must parse as the target type: integers are range-checked
//     against the field's size, a time.Duration must carry a unit ("30s", not
//     30), booleans are true or false (not yes/no).
//   - A type with a Choices() []string method (an Enum) accepts only those
//     exact strings.
//   - An empty document, a document holding only null, and a stream of more
//     than one document are errors.
//
// # What is convenient
//
//   - A slice whose elements are scalars accepts a single scalar as a list of
//     one: "port: 443" decodes like "port: [443]". A slice of mappings or of
//     lists does not.
//   - netip.Prefix accepts a bare address as a host prefix (/32 or /128).
//   - Anchors, aliases and merge keys ("<<: *defaults") work; alias cycles and
//     alias bombs are errors.
//   - A null value (an empty value, "~" or "null") is treated as if the key
//     were absent: the target keeps its current value, so callers may preset
//     defaults before calling Decode. Likewise a mapping decoded into a
//     non-nil map adds its keys to that map.
//
// # Supported targets
//
// Structs (keys from `yaml:"name"` tags; `yaml:"-"` skips a field; untagged
// exported fields use the lower-cased field name; `yaml:",inline"` promotes
// the fields of an embedded struct), pointers, slices, maps with string keys,
// strings, bools, signed and unsigned integers, floats, time.Duration,
// netip.Addr, netip.Prefix, yaml.Node (the raw node), any (decoded by the
// YAML library without strictness), types implementing yaml.Unmarshaler and
// types implementing encoding.TextUnmarshaler. An int field tagged
// `strictyaml:"line"` or `strictyaml:"column"` receives the position of the
// mapping its struct was decoded from.
//
// # Validation hooks
//
// After a value is decoded, Decode calls its Validate() error method, if it
// has one (value or pointer receiver). A plain error is reported at the
// value's position with the value's field path. An *Error (for example one
// made by Errorf) has its Field taken relative to the value, and its position
// is looked up from that field, so a root-level Validate can point at
// "rules[3].name" and the report carries the line of that name. The same rule
// applies to errors returned by UnmarshalText and UnmarshalYAML.
//
// Errors about the target itself (a nil pointer, an unsupported field type, a
// malformed struct tag) are programming errors: they are plain errors
// prefixed "strictyaml:", not *Error, and are reported whatever the document
// holds.
package strictyaml
