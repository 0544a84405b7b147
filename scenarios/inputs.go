package scenarios

import (
	"path/filepath"
	"slices"

	"go.yaml.in/yaml/v3"
)

// InputFile is one file a scenario was made from: the scenario file itself
// or a policy file it names.
type InputFile struct {
	// Path is where the file was read from: "scenarios/NAME" for the
	// catalogue's files, else the path on disk as resolved.
	Path string
	Data []byte
}

// Inputs returns the scenario file and every policy file it names (in
// its firewall section, its variants and its events), in order of first
// mention, each once. A policy file that cannot be read is left out: the
// scenario did not load in that case, so callers never see one. A scenario
// built in code (no file text) has no inputs.
func (s *Scenario) Inputs() []InputFile {
	if len(s.data) == 0 {
		return nil
	}
	out := []InputFile{{Path: filepath.ToSlash(s.File), Data: s.data}}
	var doc yaml.Node
	if err := yaml.Unmarshal(s.data, &doc); err != nil {
		return out
	}
	var names []string
	var walk func(n *yaml.Node)
	walk = func(n *yaml.Node) {
		if n.Kind == yaml.MappingNode {
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, v := n.Content[i], n.Content[i+1]
				if k.Value == "policy-file" && v.Kind == yaml.ScalarNode && v.Value != "" && !slices.Contains(names, v.Value) {
					names = append(names, v.Value)
				}
			}
		}
		for _, c := range n.Content {
			walk(c)
		}
	}
	walk(&doc)
	seen := map[string]bool{out[0].Path: true}
	for _, n := range names {
		p, data, err := s.readFile(n)
		if err != nil {
			continue
		}
		p = filepath.ToSlash(p)
		if seen[p] {
			continue
		}
		seen[p] = true
		out = append(out, InputFile{Path: p, Data: data})
	}
	return out
}
