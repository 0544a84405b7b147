package review

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// Heading is the line a review opens with.
func (r *Report) Heading() string {
	return fmt.Sprintf("Reviewing %s (%d rules) against the tunnel of an endpoint client (%s).", r.Source, r.Rules, r.Client)
}

// Write prints every answer — level, topic, summary, what the run showed
// and the advice with its YAML — then the closing line.
func (r *Report) Write(w io.Writer) error {
	var b strings.Builder
	for _, a := range r.Answers {
		writeAnswer(&b, a)
	}
	b.WriteString(r.Closing() + "\n")
	_, err := io.WriteString(w, b.String())
	return err
}

const indent = "         "

func writeAnswer(b *strings.Builder, a Answer) {
	fmt.Fprintf(b, "%-8s %s\n", a.Level, a.Topic)
	fmt.Fprintf(b, "%s%s\n", indent, a.Summary)
	for _, d := range a.Details {
		fmt.Fprintf(b, "%s- %s\n", indent, d)
	}
	for _, adv := range a.Advice {
		fmt.Fprintf(b, "%sFix: %s", indent, adv.Say)
		if adv.YAML == "" {
			b.WriteString("\n")
			continue
		}
		b.WriteString(":\n")
		for _, line := range strings.Split(strings.TrimRight(adv.YAML, "\n"), "\n") {
			fmt.Fprintf(b, "%s    %s\n", indent, line)
		}
	}
	b.WriteString("\n")
}

// Progress is the one line a caller prints as an answer arrives.
func Progress(done, total int, a Answer) string {
	return fmt.Sprintf("check: [%d/%d] %-7s %s (%.1fs)", done, total, a.Level, a.Topic, a.Took.Seconds())
}

// Closing is the review's last line: the level and the counts.
func (r *Report) Closing() string {
	lvl := r.Level()
	counts := fmt.Sprintf("%d OK, %d warning(s), %d problem(s) in %d answers (%s)",
		r.Count(OK), r.Count(Warn), r.Count(Problem), len(r.Answers), r.Took.Round(100*time.Millisecond))
	switch lvl {
	case OK:
		return "OK: " + counts + ". The tunnel survives on both transports and through failover, and nothing else rides the bypass."
	case Warn:
		return "WARN: " + counts + ". The tunnel works; apply the fixes above to make it work as it should."
	}
	return "PROBLEM: " + counts + ". Apply the fixes above."
}
