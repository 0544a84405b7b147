package fwlog

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"
)

// Logger receives session records. Implementations are safe for concurrent
// use.
type Logger interface {
	Log(r Record) error
}

// Writer writes records to an io.Writer in one format, one line per record
// (two for some FortiOS records). It is safe for concurrent use; lines are
// never interleaved.
type Writer struct {
	mu  sync.Mutex
	w   io.Writer
	enc Encoder
}

// Option configures a Writer.
type Option func(*Writer)

// WithDevice sets the device values vendor formats write (serial, zones,
// interfaces…); without it the defaults documented on Device apply.
func WithDevice(d Device) Option { return func(w *Writer) { w.enc.Device = d } }

// NewWriter returns a Writer of format f to w. An unknown format is reported
// by every Log.
func NewWriter(w io.Writer, f Format, opts ...Option) *Writer {
	wr := &Writer{w: w, enc: Encoder{Format: f}}
	for _, o := range opts {
		o(wr)
	}
	return wr
}

// Format returns the writer's format.
func (w *Writer) Format() Format { return w.enc.Format }

// Log marshals r and writes it followed by a newline. A record that has no
// line in the format (pan-decryption-csv without a Decryption) writes
// nothing.
func (w *Writer) Log(r Record) error {
	line, err := w.enc.Marshal(r)
	if err != nil {
		return err
	}
	if line == nil {
		return nil
	}
	line = append(line, '\n')
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, err := w.w.Write(line); err != nil {
		return fmt.Errorf("fwlog: write %s: %w", w.enc.Format, err)
	}
	return nil
}

// DefaultKeep is how many records a Log keeps in memory when LogConfig.Keep
// is 0.
const DefaultKeep = 10000

// LogConfig configures a Log. The zero value keeps DefaultKeep records in
// memory and writes nowhere.
type LogConfig struct {
	// Writers receive every record, in order; nil entries are skipped.
	Writers []Logger
	// Keep bounds the records kept in memory, oldest dropped first. 0 means
	// DefaultKeep; negative keeps none.
	Keep int
	// Now stamps records whose Time is zero. nil means time.Now.
	Now func() time.Time
	// Logger reports writer failures. nil discards.
	Logger *slog.Logger
}

// Log is the firewall's session log: a Logger that writes each record to
// several writers and keeps the most recent records in memory for the
// harness to query. It is safe for concurrent use; every writer sees the
// records in the same order.
type Log struct {
	mu      sync.Mutex
	writers []Logger
	now     func() time.Time
	log     *slog.Logger
	keep    int
	ring    []Record // circular once full
	next    int      // index of the oldest record once the ring is full
	dropped uint64
	total   uint64
}

// NewLog returns a Log configured by cfg.
func NewLog(cfg LogConfig) *Log {
	l := &Log{now: cfg.Now, log: cfg.Logger, keep: cfg.Keep}
	for _, w := range cfg.Writers {
		if w != nil {
			l.writers = append(l.writers, w)
		}
	}
	if l.now == nil {
		l.now = time.Now
	}
	if l.log == nil {
		l.log = slog.New(slog.DiscardHandler)
	}
	if l.keep == 0 {
		l.keep = DefaultKeep
	}
	return l
}

// Log stamps r.Time if it is zero, keeps r and writes it to every writer. A
// record that fails validation is neither kept nor written. Writer failures
// are joined into the returned error; the other writers still get the
// record.
func (l *Log) Log(r Record) error {
	if r.Time.IsZero() {
		r.Time = l.now()
	}
	if err := r.Validate(); err != nil {
		return err
	}
	r.Decryption = cloneDecryption(r.Decryption)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.total++
	l.remember(r)
	var errs []error
	for _, w := range l.writers {
		if err := w.Log(r); err != nil {
			l.log.Warn("fwlog: writer failed", "session_id", r.SessionID, "err", err)
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (l *Log) remember(r Record) {
	switch {
	case l.keep < 0:
		l.dropped++
	case len(l.ring) < l.keep:
		l.ring = append(l.ring, r)
	default:
		l.ring[l.next] = r
		l.next = (l.next + 1) % l.keep
		l.dropped++
	}
}

// Records returns the kept records, oldest first. The slice and its
// Decryption values are copies.
func (l *Log) Records() []Record { return l.Filter(nil) }

// Filter returns the kept records for which keep returns true (all of them
// when keep is nil), oldest first, as copies.
func (l *Log) Filter(keep func(Record) bool) []Record {
	l.mu.Lock()
	ordered := make([]Record, 0, len(l.ring))
	ordered = append(ordered, l.ring[l.next:]...)
	ordered = append(ordered, l.ring[:l.next]...)
	l.mu.Unlock()
	out := ordered[:0]
	for _, r := range ordered {
		if keep == nil || keep(r) {
			r.Decryption = cloneDecryption(r.Decryption)
			out = append(out, r)
		}
	}
	return out
}

// Len returns the number of records kept.
func (l *Log) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.ring)
}

// Total returns the number of records logged; Dropped how many of them are
// no longer kept in memory.
func (l *Log) Total() (total, dropped uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total, l.dropped
}

func cloneDecryption(d *Decryption) *Decryption {
	if d == nil {
		return nil
	}
	c := *d
	return &c
}

// maxLine bounds a firewall.jsonl line.
const maxLine = 1 << 20

// ReadJSONL reads records in the native JSON-lines format. Blank lines are
// skipped; unknown fields, trailing data and invalid records are errors
// naming the line.
func ReadJSONL(r io.Reader) ([]Record, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), maxLine)
	var out []Record
	n := 0
	for sc.Scan() {
		n++
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		dec := json.NewDecoder(bytes.NewReader(line))
		dec.DisallowUnknownFields()
		var rec Record
		if err := dec.Decode(&rec); err != nil {
			return out, fmt.Errorf("fwlog: line %d: %w", n, err)
		}
		if _, err := dec.Token(); err != io.EOF {
			return out, fmt.Errorf("fwlog: line %d: trailing data after the record", n)
		}
		if err := rec.validate(); err != nil {
			return out, fmt.Errorf("fwlog: line %d: invalid record: %w", n, err)
		}
		out = append(out, rec)
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return out, fmt.Errorf("fwlog: line %d: longer than %d bytes: %w", n+1, maxLine, err)
		}
		return out, fmt.Errorf("fwlog: line %d: %w", n+1, err)
	}
	return out, nil
}
