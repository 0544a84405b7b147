package bench

import (
	"fmt"
	"io"
	"math"
	"strings"
	"text/tabwriter"
	"time"
)

// Verdict is a row's standing against its goal.
type Verdict string

// Verdicts. A row without a goal has none.
const (
	Pass Verdict = "pass"
	Miss Verdict = "miss"
)

// Units of row values.
const (
	UnitMiBps   = "MiB/s"
	UnitPerSec  = "conn/s"
	UnitMs      = "ms"
	UnitSeconds = "s"
	UnitPercent = "%"
	UnitMiB     = "MiB"
)

// Row is one figure of the report.
type Row struct {
	// Figure names what was measured.
	Figure string
	// Value is the measurement in Unit; NaN when it could not be taken.
	Value float64
	Unit  string
	// Ref describes the reference or the goal the value is held against.
	Ref string
	// Ratio is Value over the reference or goal value; NaN for none.
	Ratio float64
	// Verdict is pass or miss against a goal; empty without one.
	Verdict Verdict
	// Note qualifies the figure (sample count, errors, why it is missing).
	Note string
}

// Section is a titled group of rows with notes printed under it.
type Section struct {
	Title string
	Rows  []Row
	Notes []string
}

// Add appends rows to the section.
func (s *Section) Add(rows ...Row) { s.Rows = append(s.Rows, rows...) }

// Figure starts a row with a value and no reference.
func Figure(name string, value float64, unit string) Row {
	return Row{Figure: name, Value: value, Unit: unit, Ratio: math.NaN()}
}

// Missing is a row whose figure could not be taken, and why.
func Missing(name, unit, why string) Row {
	return Row{Figure: name, Value: math.NaN(), Unit: unit, Ratio: math.NaN(), Note: why}
}

// WallTime is a row for a duration measured elsewhere (the scenario
// catalogue's wall time, say), held against goal when goal > 0.
func WallTime(name string, d, goal time.Duration) Row {
	r := Figure(name, d.Seconds(), UnitSeconds)
	if goal > 0 {
		r = r.AtMost(goal.Seconds(), "goal ≤ "+goal.String())
	}
	return r
}

// Versus sets a reference the value is compared with, without a goal.
func (r Row) Versus(ref float64, text string) Row {
	r.Ref = text
	r.Ratio = ratio(r.Value, ref)
	return r
}

// AtLeast sets a goal the value must reach.
func (r Row) AtLeast(goal float64, text string) Row {
	r = r.Versus(goal, text)
	r.Verdict = verdict(r.Value, goal, func(v, g float64) bool { return v >= g })
	return r
}

// AtMost sets a goal the value must not exceed.
func (r Row) AtMost(goal float64, text string) Row {
	r = r.Versus(goal, text)
	r.Verdict = verdict(r.Value, goal, func(v, g float64) bool { return v <= g })
	return r
}

// RatioAtLeast compares the value with ref and sets the goal that the
// ratio value/ref reaches min.
func (r Row) RatioAtLeast(ref, min float64, text string) Row {
	r = r.Versus(ref, text)
	r.Verdict = verdict(r.Ratio, min, func(v, g float64) bool { return v >= g })
	return r
}

// RatioAtMost compares the value with ref and sets the goal that the
// ratio value/ref does not exceed max.
func (r Row) RatioAtMost(ref, max float64, text string) Row {
	r = r.Versus(ref, text)
	r.Verdict = verdict(r.Ratio, max, func(v, g float64) bool { return v <= g })
	return r
}

// WithNote appends to the row's note.
func (r Row) WithNote(note string) Row {
	if note == "" {
		return r
	}
	if r.Note != "" {
		r.Note += "; "
	}
	r.Note += note
	return r
}

func ratio(v, ref float64) float64 {
	if math.IsNaN(v) || math.IsNaN(ref) || ref == 0 {
		return math.NaN()
	}
	return v / ref
}

func verdict(v, goal float64, ok func(v, g float64) bool) Verdict {
	if math.IsNaN(v) || math.IsNaN(goal) {
		return ""
	}
	if ok(v, goal) {
		return Pass
	}
	return Miss
}

// FormatValue writes a value in its unit with a precision that suits it.
func FormatValue(v float64, unit string) string {
	if math.IsNaN(v) {
		return "n/a"
	}
	switch unit {
	case UnitMiBps:
		return fmt.Sprintf("%.0f MiB/s", v)
	case UnitPerSec:
		return fmt.Sprintf("%.0f/s", v)
	case UnitMs:
		switch a := math.Abs(v); {
		case a < 1:
			return fmt.Sprintf("%.0f µs", v*1000)
		case a < 10:
			return fmt.Sprintf("%.2f ms", v)
		default:
			return fmt.Sprintf("%.1f ms", v)
		}
	case UnitSeconds:
		return fmt.Sprintf("%.1f s", v)
	case UnitPercent:
		return fmt.Sprintf("%.1f%%", v)
	case UnitMiB:
		return fmt.Sprintf("%.1f MiB", v)
	}
	return fmt.Sprintf("%.3g %s", v, unit)
}

func formatRatio(r float64) string {
	if math.IsNaN(r) || math.IsInf(r, 0) {
		return ""
	}
	return fmt.Sprintf("%.2f×", r)
}

// WriteTable prints sections as aligned text tables: figure, value,
// reference or goal, ratio, pass/miss, note.
func WriteTable(w io.Writer, sections ...Section) error {
	for i, s := range sections {
		if i > 0 {
			if _, err := fmt.Fprintln(w); err != nil {
				return err
			}
		}
		if _, err := fmt.Fprintf(w, "== %s\n", s.Title); err != nil {
			return err
		}
		if len(s.Rows) == 0 {
			if err := writeNotes(w, s.Notes); err != nil {
				return err
			}
			continue
		}
		var buf strings.Builder
		tw := tabwriter.NewWriter(&buf, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "figure\tvalue\treference / goal\tratio\tresult\tnote")
		fmt.Fprintln(tw, "------\t-----\t----------------\t-----\t------\t----")
		for _, r := range s.Rows {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.Figure, FormatValue(r.Value, r.Unit), r.Ref, formatRatio(r.Ratio), r.Verdict, r.Note)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		for _, line := range strings.SplitAfter(buf.String(), "\n") {
			if line == "" {
				continue
			}
			if _, err := io.WriteString(w, strings.TrimRight(line, " \n")+"\n"); err != nil {
				return err
			}
		}
		if err := writeNotes(w, s.Notes); err != nil {
			return err
		}
	}
	return nil
}

func writeNotes(w io.Writer, notes []string) error {
	for _, n := range notes {
		if _, err := fmt.Fprintf(w, "  * %s\n", n); err != nil {
			return err
		}
	}
	return nil
}

// Tally counts the rows with each verdict.
func Tally(sections ...Section) (pass, miss int) {
	for _, s := range sections {
		for _, r := range s.Rows {
			switch r.Verdict {
			case Pass:
				pass++
			case Miss:
				miss++
			}
		}
	}
	return pass, miss
}

// FormatSize writes a byte count with the largest binary unit that divides it.
func FormatSize(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d B", n)
}

// ms converts a duration to milliseconds.
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// plural formats a count with a noun.
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, strings.TrimSuffix(noun, "s"))
}
