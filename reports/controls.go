package reports

import (
	"fmt"
	"os"
	"strings"

	"github.com/pinwall/pinwall/scenarios"
	"github.com/pinwall/pinwall/strictyaml"
)

// Controls maps catalogue rows to an organisation's own control IDs, so
// that a report lists, for each control, the runs that bear on it and
// whether they came out as expected. pinwall claims no control of its own:
// the mapping is the organisation's (docs/controls-template.yaml).
type Controls struct {
	// Organisation names whose controls these are; "" leaves it out.
	Organisation string `yaml:"organisation" json:"organisation,omitempty"`
	// Controls are the mapped controls, in the order the report lists them.
	Controls []Control `yaml:"controls,required" json:"controls"`
	// File is where the mapping was read from.
	File string `yaml:"-" json:"file,omitempty"`
	// data is the file's text, copied into the bundle's inputs/.
	data []byte
}

// Control is one of the organisation's controls and the catalogue rows
// that bear on it.
type Control struct {
	// ID is the organisation's control ID ("NET-07").
	ID string `yaml:"id,required" json:"id"`
	// Title is the control's title, as the organisation writes it.
	Title string `yaml:"title" json:"title,omitempty"`
	// Rows are catalogue rows: a scenario id ("bypass-narrow") stands for
	// every run of it, "id/variant" for the runs of one variant.
	Rows []string `yaml:"rows,required" json:"rows"`
}

// Validate checks what the schema cannot: IDs unique and non-empty, rows
// well formed.
func (c *Controls) Validate() error {
	if len(c.Controls) == 0 {
		return strictyaml.Errorf("controls", "lists no control")
	}
	seen := map[string]bool{}
	for i, ctl := range c.Controls {
		f := strictyaml.Index("controls", i)
		if strings.TrimSpace(ctl.ID) == "" {
			return strictyaml.Errorf(strictyaml.Key(f, "id"), "is empty")
		}
		if seen[ctl.ID] {
			return strictyaml.Errorf(strictyaml.Key(f, "id"), "%q is listed twice", ctl.ID)
		}
		seen[ctl.ID] = true
		if len(ctl.Rows) == 0 {
			return strictyaml.Errorf(strictyaml.Key(f, "rows"), "names no catalogue row")
		}
		for j, r := range ctl.Rows {
			if r == "" || strings.ContainsAny(r, " \t") || strings.HasPrefix(r, "/") || strings.HasSuffix(r, "/") {
				return strictyaml.Errorf(strictyaml.Index(strictyaml.Key(f, "rows"), j), "%q is not a scenario id or id/variant", r)
			}
		}
	}
	return nil
}

// ParseControls parses a control mapping; errors name the file, line and
// field.
func ParseControls(file string, data []byte) (*Controls, error) {
	var c Controls
	if err := strictyaml.Decode(file, data, &c); err != nil {
		return nil, err
	}
	c.File, c.data = file, data
	return &c, nil
}

// LoadControls reads and parses a control mapping file.
func LoadControls(path string) (*Controls, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("controls: %w", err)
	}
	return ParseControls(path, data)
}

// matches says whether a control's row names result r.
func rowMatches(row string, r scenarios.Result) bool {
	return row == r.ID || row == r.ID+"/"+r.Variant || row == r.Key()
}

// controlSection lists the organisation's controls with the runs that bear
// on them, or says that none were mapped.
func controlSection(meta Meta, results []scenarios.Result) frameSection {
	sec := frameSection{Anchor: "controls", Title: "Control mapping"}
	c := meta.Controls
	if c == nil {
		sec.Paras = []string{"No control mapping was given. pinwall claims no control of its own; an organisation maps catalogue rows to its control IDs with `pinwall run --controls FILE` (template: docs/controls-template.yaml)."}
		return sec
	}
	who := "the organisation's"
	if c.Organisation != "" {
		who = c.Organisation + "'s"
	}
	sec.Paras = []string{fmt.Sprintf("The mapping below is %s (`%s`), not pinwall's: it says which runs bear on each control; whether they satisfy it is the organisation's judgement.", who, c.File)}
	for _, ctl := range c.Controls {
		var runs []string
		asExpected := 0
		for _, r := range results {
			for _, row := range ctl.Rows {
				if rowMatches(row, r) {
					runs = append(runs, "`"+r.Key()+"`")
					if r.Verdict == scenarios.Pass {
						asExpected++
					}
					break
				}
			}
		}
		label := ctl.ID
		if ctl.Title != "" {
			label += " — " + ctl.Title
		}
		text := "no run of " + strings.Join(quoteAll(ctl.Rows), ", ") + " in this bundle"
		if len(runs) > 0 {
			text = fmt.Sprintf("%d of %d as expected: %s", asExpected, len(runs), strings.Join(runs, ", "))
		}
		sec.Rows = append(sec.Rows, [2]string{label, text})
	}
	return sec
}

func quoteAll(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = "`" + s + "`"
	}
	return out
}
