package reports

import (
	"encoding/xml"
	"fmt"
	"strings"
	"time"

	"github.com/pinwall/pinwall/scenarios"
)

// The JUnit XML shape CI systems read (the Ant/Surefire dialect).
type junitSuites struct {
	XMLName  xml.Name     `xml:"testsuites"`
	Name     string       `xml:"name,attr"`
	Tests    int          `xml:"tests,attr"`
	Failures int          `xml:"failures,attr"`
	Errors   int          `xml:"errors,attr"`
	Skipped  int          `xml:"skipped,attr"`
	Time     string       `xml:"time,attr"`
	Suites   []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name       string          `xml:"name,attr"`
	Tests      int             `xml:"tests,attr"`
	Failures   int             `xml:"failures,attr"`
	Errors     int             `xml:"errors,attr"`
	Skipped    int             `xml:"skipped,attr"`
	Time       string          `xml:"time,attr"`
	Timestamp  string          `xml:"timestamp,attr,omitempty"`
	Properties []junitProperty `xml:"properties>property,omitempty"`
	Cases      []junitCase     `xml:"testcase"`
}

type junitProperty struct {
	Name  string `xml:"name,attr"`
	Value string `xml:"value,attr"`
}

type junitCase struct {
	Name       string          `xml:"name,attr"`
	Classname  string          `xml:"classname,attr"`
	Time       string          `xml:"time,attr"`
	Properties []junitProperty `xml:"properties>property,omitempty"`
	Failure    *junitMessage   `xml:"failure,omitempty"`
	Error      *junitMessage   `xml:"error,omitempty"`
	Skipped    *junitMessage   `xml:"skipped,omitempty"`
	SystemOut  string          `xml:"system-out,omitempty"`
}

type junitMessage struct {
	Message string `xml:"message,attr"`
	Type    string `xml:"type,attr,omitempty"`
	Text    string `xml:",chardata"`
}

func seconds(ms int64) string { return fmt.Sprintf("%.3f", float64(ms)/1000) }

// junit renders one testcase per result, named "id/variant[/case]", in a
// testsuite named "pinwall": <failure> lists the failed checks, <error>
// carries the error, <skipped> marks an incomplete run. A passing case
// passed as expected, which may be a tunnel that is down: every case
// carries the observed outcome (junit_observed.go).
func junit(meta Meta, results []scenarios.Result) ([]byte, error) {
	s := junitSuite{Name: "pinwall", Tests: len(results)}
	if !meta.Started.IsZero() {
		s.Timestamp = meta.Started.UTC().Format("2006-01-02T15:04:05")
	}
	s.Properties = []junitProperty{
		{Name: "pinwall.version", Value: meta.Version},
		{Name: "pinwall.commit", Value: meta.Commit},
		{Name: "mode", Value: meta.Mode},
		{Name: "go", Value: meta.GoVersion},
	}
	var total int64
	for _, r := range results {
		total += r.DurationMS
		c := junitCase{Name: r.Key(), Classname: "pinwall." + r.ID, Time: seconds(r.DurationMS),
			Properties: observedProps(r),
			SystemOut:  fmt.Sprintf("%s\n%s: %s; failing leg / cause: %s", observedLine(r), r.Title, outcome(r), failureText(r))}
		switch r.Verdict {
		case scenarios.Fail:
			s.Failures++
			failed := failedChecks(r)
			var b strings.Builder
			for _, ch := range failed {
				fmt.Fprintf(&b, "%s: expected %s; observed %s\n", ch.Name, ch.Expected, ch.Observed)
			}
			c.Failure = &junitMessage{Message: fmt.Sprintf("%d of %d checks failed; %s", len(failed), len(r.Checks), observedLine(r)), Type: "expectation", Text: b.String()}
		case scenarios.Error:
			s.Errors++
			c.Error = &junitMessage{Message: r.Error, Type: "error", Text: r.Error}
		case scenarios.Incomplete:
			s.Skipped++
			c.Skipped = &junitMessage{Message: orDash(r.Error)}
		}
		s.Cases = append(s.Cases, c)
	}
	s.Time = seconds(total)
	if !meta.Started.IsZero() && meta.Ended.After(meta.Started) {
		s.Time = fmt.Sprintf("%.3f", meta.Ended.Sub(meta.Started).Round(time.Millisecond).Seconds())
	}
	doc := junitSuites{Name: "pinwall", Tests: s.Tests, Failures: s.Failures, Errors: s.Errors, Skipped: s.Skipped, Time: s.Time, Suites: []junitSuite{s}}
	out, err := xml.MarshalIndent(doc, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("reports: junit: %w", err)
	}
	return append(append([]byte(xml.Header), out...), '\n'), nil
}
