package scenarios

import (
	"fmt"
	"strconv"
	"strings"
)

// Count is an expected number, written "all", "none", "3", ">0", ">=2",
// "<5", "<=1" or "=0". "all" compares against a total the check supplies.
type Count struct {
	op  string // "=", ">", ">=", "<", "<=", "all"
	n   int
	src string
}

// UnmarshalText parses a count.
func (c *Count) UnmarshalText(b []byte) error {
	s := strings.TrimSpace(string(b))
	c.src = s
	switch s {
	case "all":
		c.op = "all"
		return nil
	case "none":
		c.op, c.n = "=", 0
		return nil
	}
	for _, op := range []string{">=", "<=", ">", "<", "="} {
		if rest, ok := strings.CutPrefix(s, op); ok {
			n, err := strconv.Atoi(strings.TrimSpace(rest))
			if err != nil || n < 0 {
				return fmt.Errorf("count %q: want all, none, N, >N, >=N, <N, <=N or =N", s)
			}
			c.op, c.n = op, n
			return nil
		}
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return fmt.Errorf("count %q: want all, none, N, >N, >=N, <N, <=N or =N", s)
	}
	c.op, c.n = "=", n
	return nil
}

// MarshalText writes the count as written.
func (c Count) MarshalText() ([]byte, error) { return []byte(c.String()), nil }

// String is the count as written.
func (c Count) String() string {
	if c.src != "" {
		return c.src
	}
	if c.op == "" {
		return ""
	}
	if c.op == "all" {
		return "all"
	}
	return c.op + strconv.Itoa(c.n)
}

// IsZero reports an unset count.
func (c Count) IsZero() bool { return c.op == "" }

// Holds reports whether got satisfies the count; total is what "all" means.
func (c Count) Holds(got, total int) bool {
	switch c.op {
	case "all":
		return got == total
	case "=":
		return got == c.n
	case ">":
		return got > c.n
	case ">=":
		return got >= c.n
	case "<":
		return got < c.n
	case "<=":
		return got <= c.n
	}
	return true
}

// MustCount parses a count or panics (for expectations built in code).
func MustCount(s string) Count {
	var c Count
	if err := c.UnmarshalText([]byte(s)); err != nil {
		panic(err)
	}
	return c
}

// Fraction is an expected ratio, written ">0", "=0", "<0.5", ">=0.25".
type Fraction struct {
	op  string
	v   float64
	src string
}

// UnmarshalText parses a fraction bound.
func (f *Fraction) UnmarshalText(b []byte) error {
	s := strings.TrimSpace(string(b))
	f.src = s
	for _, op := range []string{">=", "<=", ">", "<", "="} {
		if rest, ok := strings.CutPrefix(s, op); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			if err != nil || v < 0 || v > 1 {
				return fmt.Errorf("fraction %q: want an operator (>, >=, <, <=, =) and a number in 0..1", s)
			}
			f.op, f.v = op, v
			return nil
		}
	}
	return fmt.Errorf("fraction %q: want an operator (>, >=, <, <=, =) and a number in 0..1", s)
}

// MarshalText writes the bound as written.
func (f Fraction) MarshalText() ([]byte, error) { return []byte(f.src), nil }

// String is the bound as written.
func (f Fraction) String() string { return f.src }

// IsZero reports an unset bound.
func (f Fraction) IsZero() bool { return f.op == "" }

// Holds reports whether x satisfies the bound.
func (f Fraction) Holds(x float64) bool {
	switch f.op {
	case "=":
		return x == f.v
	case ">":
		return x > f.v
	case ">=":
		return x >= f.v
	case "<":
		return x < f.v
	case "<=":
		return x <= f.v
	}
	return true
}
