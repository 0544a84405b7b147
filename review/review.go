package review

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/pinwall/pinwall/client"
	"github.com/pinwall/pinwall/harness"
	"github.com/pinwall/pinwall/mitm/policy"
	"github.com/pinwall/pinwall/pki"
)

// Level grades an answer.
type Level int

// The levels, in increasing gravity.
const (
	// OK: the tunnel works as it should and nothing else rides the bypass.
	OK Level = iota
	// Warn: the tunnel works, but worse than it could (over TLS only) or by
	// luck (after a learned exclusion, through decryption), or the policy
	// has a rule that does not do what it says.
	Warn
	// Problem: the tunnel fails, or the bypass lets other traffic through.
	Problem
)

// String returns "OK", "WARN" or "PROBLEM".
func (l Level) String() string {
	switch l {
	case OK:
		return "OK"
	case Warn:
		return "WARN"
	}
	return "PROBLEM"
}

// MarshalText writes the level as String does.
func (l Level) MarshalText() ([]byte, error) { return []byte(l.String()), nil }

// Advice is one change that would turn an answer OK.
type Advice struct {
	// Say is the change in words, naming where it goes: `add this rule
	// before rule "block-quic" (line 7)`.
	Say string `json:"say"`
	// YAML is the rule to add, or the rule as it should read, in the
	// policy file's syntax (a list item under rules:); empty when the
	// words say it all.
	YAML string `json:"yaml,omitempty"`
}

// Answer is the answer to one question.
type Answer struct {
	// ID names the question: "dtls", "tls", "failover", "over-bypass",
	// "fqdn-drift" or "lint".
	ID string `json:"id"`
	// Topic is the question as a heading.
	Topic string `json:"topic"`
	Level Level  `json:"level"`
	// Summary is the answer in one line.
	Summary string `json:"summary"`
	// Details are what the run showed: the firewall's records, the
	// client's attempts, each probe.
	Details []string `json:"details,omitempty"`
	// Advice is empty when Level is OK.
	Advice []Advice `json:"advice,omitempty"`
	// Err is set when the question could not be answered (Level is then
	// Problem).
	Err error `json:"-"`
	// Took is how long the question took.
	Took time.Duration `json:"took_ns"`
}

// Input is what to review.
type Input struct {
	// Policy is the rule base (required).
	Policy *policy.Policy
	// Source names where the policy came from, for the report: a file name,
	// or "fw.xml (PAN-OS, translated)". Empty means Policy.File.
	Source string
	// Client configures the endpoint client; zero fields take the harness
	// defaults (auto transport, gateway pin, valid device certificate,
	// fail-close), and the review's own quicker timings: a fallback to TLS
	// after 500ms, a keepalive of 500ms.
	Client harness.ClientSpec
}

// Options tune Run.
type Options struct {
	// PKI is shared by every question's topology; nil means a new set.
	PKI *pki.Set
	// Logger receives the components' operational logs; nil discards.
	Logger *slog.Logger
	// Progress, if set, is called as each question ends, one call at a
	// time, with the number answered so far.
	Progress func(done, total int, a Answer)
	// Limit bounds each question, a safety net only: questions are
	// decided from signals. Zero means 30s.
	Limit time.Duration
}

// Report is the review of one policy.
type Report struct {
	// Source names the policy reviewed; Rules counts its rules.
	Source string `json:"source"`
	Rules  int    `json:"rules"`
	// Client describes the client the tunnel was tried with.
	Client string `json:"client"`
	// Answers in question order.
	Answers []Answer `json:"answers"`
	// Took is the review's wall-clock time.
	Took time.Duration `json:"took_ns"`
}

// Level is the gravest level among the answers.
func (r *Report) Level() Level {
	l := OK
	for _, a := range r.Answers {
		l = max(l, a.Level)
	}
	return l
}

// Count returns how many answers have level l.
func (r *Report) Count(l Level) int {
	n := 0
	for _, a := range r.Answers {
		if a.Level == l {
			n++
		}
	}
	return n
}

// question is one question and how to ask it.
type question struct {
	id, topic string
	ask       func(ctx context.Context, e *env) Answer
}

// Addresses of the review's topology besides the harness defaults: the LAN
// host without the client that sends the over-bypass probes.
var (
	rogueName = "probe-host"
	rogueAddr = netip.MustParseAddr("10.10.10.66")
)

// Run reviews in.Policy: it asks every question at once, each on its own
// topology, and returns the answers in question order. An error means the
// review could not start (a bad input); a question that could not be
// answered is an Answer with Err set.
func Run(ctx context.Context, in Input, opts Options) (*Report, error) {
	if in.Policy == nil {
		return nil, errors.New("review: no policy")
	}
	if err := in.Policy.Validate(); err != nil {
		return nil, fmt.Errorf("review: policy: %w", err)
	}
	start := time.Now()
	e, err := newEnv(in, opts)
	if err != nil {
		return nil, err
	}
	qs := e.questions()
	rep := &Report{Source: in.Source, Rules: len(in.Policy.Rules), Client: describeClient(e.base.Client), Answers: make([]Answer, len(qs))}
	if rep.Source == "" {
		rep.Source = in.Policy.File
	}
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		done    = make([]bool, len(qs))
		emitted = make([]bool, len(qs))
		n       int
	)
	// emit reports the answers whose grade is final: every answer but
	// the DTLS one, which waits for the TLS one (combine). mu is held.
	emit := func() {
		for i := range qs {
			if !done[i] || emitted[i] {
				continue
			}
			if dep := dependsOn(qs[i].id); dep != "" {
				j := slices.IndexFunc(qs, func(q question) bool { return q.id == dep })
				if j >= 0 && !done[j] {
					continue
				}
				if j >= 0 {
					combine(&rep.Answers[i], &rep.Answers[j], e.base.Client.Transport)
				}
			}
			emitted[i] = true
			n++
			if opts.Progress != nil {
				opts.Progress(n, len(qs), rep.Answers[i])
			}
		}
	}
	for i, q := range qs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			qctx, cancel := context.WithTimeout(ctx, e.limit)
			defer cancel()
			t0 := time.Now()
			qe := *e // the question's logs say which question they are about
			qe.log = e.log.With("question", q.id)
			a := q.ask(qctx, &qe)
			a.ID, a.Topic, a.Took = q.id, q.topic, time.Since(t0)
			if a.Err != nil {
				a.Level = Problem
				if a.Summary == "" {
					a.Summary = "could not be answered: " + a.Err.Error()
				}
			}
			mu.Lock()
			defer mu.Unlock()
			rep.Answers[i], done[i] = a, true
			emit()
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return rep, fmt.Errorf("review: %w", err)
	}
	rep.Took = time.Since(start)
	return rep, nil
}

// dependsOn names the question whose answer grades question id's, or "".
func dependsOn(id string) string {
	if id == "dtls" {
		return "tls"
	}
	return ""
}

// combine grades the DTLS answer by the TLS one: a DTLS tunnel that
// fails while TLS works is a warning (an auto-mode client falls back), not
// a problem.
func combine(dtls, tls *Answer, mode client.TransportMode) {
	if mode != client.TransportAuto || dtls.Level != Problem || dtls.Err != nil || tls.Level == Problem {
		return
	}
	dtls.Level = Warn
	dtls.Summary = "works over TLS only: " + dtls.Summary + "; the client falls back to TLS, slower and TCP-over-TCP"
}

func describeClient(c harness.ClientSpec) string {
	return fmt.Sprintf("transport %s, pin %s, device certificate %s, fail-%s", c.Transport, c.Pin, c.DeviceCert, c.FailMode)
}
