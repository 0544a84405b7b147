package reports

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"path"

	"github.com/pinwall/pinwall/capture"
	"github.com/pinwall/pinwall/client"
	"github.com/pinwall/pinwall/gateway"
	"github.com/pinwall/pinwall/mitm/fwlog"
	"github.com/pinwall/pinwall/scenarios"
)

// SchemaV2 is the schema identifier of evidence.json. v2 changed from v1:
// a tunnel's transport is absent (not null) when it is down; a result's
// variant is its free label with its role beside it (v1's "case" is part
// of the label); the three questions' answers are in "answers".
const SchemaV2 = "pinwall.evidence/v2"

// evidenceSchema is the JSON Schema (2020-12) of evidence.json v2. It is
// written into every bundle as evidence.schema.json.
//
//go:embed evidence.schema.json
var evidenceSchema string

// Schema returns the JSON Schema of evidence.json v2.
func Schema() []byte { return []byte(evidenceSchema) }

// Evidence is the document evidence.json holds.
type Evidence struct {
	// Schema is SchemaV2.
	Schema  string          `json:"schema"`
	Meta    Meta            `json:"meta"`
	Summary EvidenceSummary `json:"summary"`
	// Answers are the three questions answered from this run's results,
	// as report.md and report.html open with them.
	Answers []Answer `json:"answers"`
	// Scenarios describe the scenarios that were run, in catalogue order.
	Scenarios []ScenarioInfo `json:"scenarios"`
	// Results are one per scenario × variant × case, in run order.
	Results []EvidenceResult `json:"results"`
	// Reproducible is what reproduces from run to run (ReproducibleParts)
	// and its digest (ReproducibleDigest).
	Reproducible EvidenceReproducible `json:"reproducible"`
}

// EvidenceReproducible is the reproducible part of a bundle.
type EvidenceReproducible struct {
	Digest string         `json:"digest"`
	Runs   []Reproducible `json:"runs"`
}

// Answer is one of the three questions users bring, answered from the
// results: the answer in a sentence or two, the evidence behind it, and
// what the run lacked. Text marks names and addresses with `backticks`.
type Answer struct {
	// N numbers the question (1, 2, 3); Question is its text.
	N        int    `json:"n"`
	Question string `json:"question"`
	Answer   string `json:"answer"`
	// Points are the evidence, each naming the run it comes from.
	Points []string `json:"points"`
	// Table is an optional table of the runs behind the answer: Head the
	// column names, Rows one row per run.
	Table *AnswerTable `json:"table,omitempty"`
	// Missing names the scenarios the answer needed and the run lacked;
	// Absent those that would add to it.
	Missing []string `json:"missing"`
	Absent  []string `json:"absent"`
}

// AnswerTable is an answer's table.
type AnswerTable struct {
	Head []string   `json:"head"`
	Rows [][]string `json:"rows"`
}

// EvidenceSummary counts the verdicts.
type EvidenceSummary struct {
	Passed int `json:"passed"`
	Total  int `json:"total"`
	// ByVerdict counts every verdict, zero ones included.
	ByVerdict map[scenarios.Verdict]int `json:"by_verdict"`
}

// ScenarioInfo is what evidence.json says about a scenario.
type ScenarioInfo struct {
	ID      string   `json:"id"`
	Title   string   `json:"title"`
	Summary string   `json:"summary"`
	Explain string   `json:"explain,omitempty"`
	Setting string   `json:"setting,omitempty"`
	Fix     string   `json:"fix,omitempty"`
	Sources []string `json:"sources,omitempty"`
}

// EvidenceResult is a scenarios.Result, field for field under its own JSON
// names, plus where its logs are in the bundle. In evidence.json every list
// is an array (never null) and a run that produced no observation reports
// its tunnel "down".
type EvidenceResult struct {
	scenarios.Result
	// Logs is the result's directory in the bundle ("logs/id__variant").
	Logs string `json:"logs"`
	// Capture describes the run's packet capture, when it was captured.
	Capture *CaptureInfo `json:"capture,omitempty"`
}

// CaptureInfo is what evidence.json says about a run's capture.
type CaptureInfo = capture.Info

func captureInfo(r scenarios.Result, dir string) *CaptureInfo {
	c := r.Capture
	if c == nil {
		return nil
	}
	legs := c.Legs
	if legs == nil {
		legs = []string{}
	}
	return &CaptureInfo{File: path.Join(dir, CaptureFile), KeyLog: path.Join(dir, KeyLogFile), Packets: c.Packets, Dropped: c.Dropped,
		KeyLines: c.KeyLines, SnapLen: c.SnapLen, Legs: legs, Source: c.Source}
}

func buildEvidence(meta Meta, ss []*scenarios.Scenario, results []scenarios.Result, dirs []string) Evidence {
	ev := Evidence{Schema: SchemaV2, Meta: meta, Scenarios: []ScenarioInfo{}, Results: make([]EvidenceResult, 0, len(results))}
	for _, q := range answers(ss, results) {
		a := Answer{N: q.N, Question: q.Title, Answer: q.Answer, Points: nonNil(q.Points), Missing: nonNil(q.Missing), Absent: nonNil(q.Absent)}
		if len(q.TableHead) > 0 {
			a.Table = &AnswerTable{Head: q.TableHead, Rows: q.Table}
			if a.Table.Rows == nil {
				a.Table.Rows = [][]string{}
			}
		}
		ev.Answers = append(ev.Answers, a)
	}
	ev.Summary.Passed, ev.Summary.Total = Summary(results)
	ev.Reproducible = EvidenceReproducible{Digest: ReproducibleDigest(results), Runs: ReproducibleParts(results)}
	ev.Summary.ByVerdict = map[scenarios.Verdict]int{scenarios.Pass: 0, scenarios.Fail: 0, scenarios.Error: 0, scenarios.Incomplete: 0}
	for _, r := range results {
		ev.Summary.ByVerdict[r.Verdict]++
	}
	for _, s := range ss {
		ev.Scenarios = append(ev.Scenarios, ScenarioInfo{ID: s.ID, Title: s.Title, Summary: s.Summary, Explain: s.Explain,
			Setting: s.Setting, Fix: s.Fix, Sources: s.Sources})
	}
	for i, r := range results {
		n := normalize(r)
		n.Interceptor = slimInterceptor(r.Interceptor, dirs[i])
		ev.Results = append(ev.Results, EvidenceResult{Result: n, Logs: dirs[i], Capture: captureInfo(r, dirs[i])})
	}
	return ev
}

func nonNil(xs []string) []string {
	if xs == nil {
		return []string{}
	}
	return xs
}

// normalize makes nil lists and maps empty and an unobserved tunnel down,
// so that evidence.json always has the fields its schema requires.
func normalize(r scenarios.Result) scenarios.Result {
	if r.Observed.Tunnel.State == "" {
		r.Observed.Tunnel.State = "down"
	}
	if r.Checks == nil {
		r.Checks = []scenarios.Check{}
	}
	if r.Findings == nil {
		r.Findings = []scenarios.Finding{}
	}
	if r.FirewallLog == nil {
		r.FirewallLog = []fwlog.Record{}
	}
	if r.GatewayLog == nil {
		r.GatewayLog = []gateway.Event{}
	}
	if r.ClientHistory == nil {
		r.ClientHistory = []client.Transition{}
	}
	if r.Roles.Gateways == nil {
		r.Roles.Gateways = map[string][]netip.Addr{}
	}
	if r.Roles.Origins == nil {
		r.Roles.Origins = map[string]netip.Addr{}
	}
	return r
}

// ReadEvidence decodes an evidence.json and checks its schema identifier.
func ReadEvidence(rd io.Reader) (*Evidence, error) {
	var ev Evidence
	if err := json.NewDecoder(rd).Decode(&ev); err != nil {
		return nil, fmt.Errorf("reports: evidence: %w", err)
	}
	if ev.Schema != SchemaV2 {
		return nil, fmt.Errorf("reports: evidence: schema %q, want %q", ev.Schema, SchemaV2)
	}
	return &ev, nil
}
