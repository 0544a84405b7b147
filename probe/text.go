package probe

import (
	"fmt"
	"io"
	"strings"
)

// WriteText writes the one-screen verdict: the answers, the three
// questions, the findings and the overall level.
func (r *Result) WriteText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "pinwall probe — Observed on %s, run %s (bundle %s)\n", r.Label, r.Run, r.BundleID)
	fmt.Fprintf(&b, "  gateway %s at %s", r.Primary.Name, r.Primary.Addr)
	if r.Backup != nil {
		fmt.Fprintf(&b, ", backup %s at %s", r.Backup.Name, r.Backup.Addr)
	}
	if r.Decoy != nil {
		fmt.Fprintf(&b, ", decoy %s", *r.Decoy)
	}
	if r.Proxy != "" {
		fmt.Fprintf(&b, ", through the proxy %s", r.Proxy)
	}
	fmt.Fprintf(&b, "\n  %.1fs, %d connections opened\n\n", r.Took.Seconds(), r.Observed.Connections)
	for _, a := range r.Answers {
		fmt.Fprintf(&b, "%-8s %-12s %s\n", a.Level, a.ID, a.Summary)
		fmt.Fprintf(&b, "%-8s %-12s (from %s)\n", "", "", strings.Join(a.From, "; "))
	}
	b.WriteString("\n")
	for _, q := range r.Questions {
		fmt.Fprintf(&b, "%d. %s\n   %s\n", q.N, q.Title, q.Answer)
	}
	if len(r.Findings) > 0 {
		b.WriteString("\nFindings:\n")
		for _, f := range r.Findings {
			fmt.Fprintf(&b, "  %s: %s (from %s)\n", f.ID, f.Detail, strings.Join(f.From, ", "))
		}
	}
	fmt.Fprintf(&b, "\nVerdict: %s\n", r.Level())
	_, err := io.WriteString(w, b.String())
	return err
}
