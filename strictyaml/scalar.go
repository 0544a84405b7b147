package strictyaml

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"reflect"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// scalar decodes a scalar node into a value of a basic kind, a
// time.Duration, a netip.Addr or a netip.Prefix.
func (d *decoder) scalar(n *yaml.Node, v reflect.Value, path string) error {
	t := v.Type()
	if n.Kind != yaml.ScalarNode {
		return d.errAt(n, path, "expected %s, got %s", want(t), describe(n))
	}
	s := n.Value
	switch t {
	case durationType:
		dur, err := parseDuration(s)
		if err != nil {
			return d.errAt(n, path, "%s", err)
		}
		v.SetInt(int64(dur))
		return nil
	case addrType:
		a, err := netip.ParseAddr(strings.TrimSpace(s))
		if err != nil {
			e := d.errAt(n, path, "%q is not an IP address", s)
			e.Err = err
			return e
		}
		v.Set(reflect.ValueOf(a))
		return nil
	case prefixType:
		p, err := ParsePrefix(s)
		if err != nil {
			e := d.errAt(n, path, "%q is not a CIDR prefix or IP address", s)
			e.Err = err
			return e
		}
		v.Set(reflect.ValueOf(p))
		return nil
	}
	switch t.Kind() {
	case reflect.String:
		v.SetString(s)
		return nil
	case reflect.Bool:
		b, err := parseBool(s)
		if err != nil {
			return d.errAt(n, path, "%s", err)
		}
		v.SetBool(b)
		return nil
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		i, err := parseInt(s, t.Bits())
		if err != nil {
			return d.errAt(n, path, "%s", err)
		}
		v.SetInt(i)
		return nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		u, err := parseUint(s, t.Bits())
		if err != nil {
			return d.errAt(n, path, "%s", err)
		}
		v.SetUint(u)
		return nil
	case reflect.Float32, reflect.Float64:
		f, err := parseFloat(s, t.Bits())
		if err != nil {
			return d.errAt(n, path, "%s", err)
		}
		v.SetFloat(f)
		return nil
	}
	return fmt.Errorf("strictyaml: unsupported type %s at %s", t, path)
}

// ParsePrefix parses a CIDR prefix, or a bare address as a host prefix (/32
// for IPv4, /128 for IPv6), as Decode does for netip.Prefix.
func ParsePrefix(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, err
		}
		if a.Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("strictyaml: address %q has a zone", s)
		}
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	return netip.ParsePrefix(s)
}

func parseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if _, err := strconv.ParseFloat(s, 64); err == nil {
		return 0, fmt.Errorf("%s is not a duration: it needs a unit (write %ss)", s, s)
	}
	dur, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration (write it like 30s, 1m30s or 12h)", s)
	}
	return dur, nil
}

func parseBool(s string) (bool, error) {
	switch s {
	case "true", "True", "TRUE":
		return true, nil
	case "false", "False", "FALSE":
		return false, nil
	}
	switch strings.ToLower(s) {
	case "yes", "y", "on":
		return false, fmt.Errorf("%q is not a boolean: write true", s)
	case "no", "n", "off":
		return false, fmt.Errorf("%q is not a boolean: write false", s)
	}
	return false, fmt.Errorf("%q is not a boolean (true or false)", s)
}

// intBase returns the digits of a YAML integer and their base: decimal, or
// 0x, 0o and 0b prefixed.
func intBase(s string) (sign, digits string, base int) {
	s = strings.TrimSpace(s)
	if s != "" && (s[0] == '+' || s[0] == '-') {
		sign, s = s[:1], s[1:]
	}
	if len(s) > 2 && s[0] == '0' {
		switch s[1] {
		case 'x', 'X':
			return sign, s[2:], 16
		case 'o', 'O':
			return sign, s[2:], 8
		case 'b', 'B':
			return sign, s[2:], 2
		}
	}
	return sign, s, 10
}

func parseInt(s string, bits int) (int64, error) {
	sign, digits, base := intBase(s)
	u, err := strconv.ParseUint(digits, base, 64)
	if err != nil && !errors.Is(err, strconv.ErrRange) || strings.HasPrefix(digits, "+") || strings.HasPrefix(digits, "-") {
		return 0, fmt.Errorf("%q is not an integer", s)
	}
	lo, hi := int64(-1)<<(bits-1), int64(1)<<(bits-1)-1
	outOfRange := fmt.Errorf("%s is out of range (%d to %d)", strings.TrimSpace(s), lo, hi)
	if err != nil {
		return 0, outOfRange
	}
	if sign == "-" {
		if u > uint64(hi)+1 {
			return 0, outOfRange
		}
		return -int64(u), nil // u == hi+1 wraps to lo, as intended
	}
	if u > uint64(hi) {
		return 0, outOfRange
	}
	return int64(u), nil
}

func parseUint(s string, bits int) (uint64, error) {
	sign, digits, base := intBase(s)
	u, err := strconv.ParseUint(digits, base, 64)
	if err != nil && !errors.Is(err, strconv.ErrRange) || strings.HasPrefix(digits, "+") || strings.HasPrefix(digits, "-") {
		return 0, fmt.Errorf("%q is not an integer", s)
	}
	hi := uint64(math.MaxUint64) >> (64 - bits)
	if err != nil || sign == "-" && u != 0 || u > hi {
		return 0, fmt.Errorf("%s is out of range (0 to %d)", strings.TrimSpace(s), hi)
	}
	return u, nil
}

func parseFloat(s string, bits int) (float64, error) {
	t := strings.TrimSpace(s)
	switch t {
	case ".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF":
		return math.Inf(1), nil
	case "-.inf", "-.Inf", "-.INF":
		return math.Inf(-1), nil
	case ".nan", ".NaN", ".NAN":
		return math.NaN(), nil
	}
	// strconv accepts forms YAML does not (inf, nan, hex, underscores).
	for _, r := range t {
		if !strings.ContainsRune("0123456789+-.eE", r) {
			return 0, fmt.Errorf("%q is not a number", s)
		}
	}
	f, err := strconv.ParseFloat(t, bits)
	if err != nil {
		if errors.Is(err, strconv.ErrRange) {
			return 0, fmt.Errorf("%s is out of range for a %d-bit float", t, bits)
		}
		return 0, fmt.Errorf("%q is not a number", s)
	}
	return f, nil
}
