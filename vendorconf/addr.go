package vendorconf

import (
	"fmt"
	"net/netip"
)

// RangePrefixes returns the fewest prefixes covering lo through hi, both
// included (PAN-OS ip-range, FortiOS iprange). lo and hi must be of the same
// family and lo <= hi.
func RangePrefixes(lo, hi netip.Addr) ([]netip.Prefix, error) {
	lo, hi = lo.Unmap(), hi.Unmap()
	if lo.Zone() != "" || hi.Zone() != "" {
		return nil, fmt.Errorf("range %s-%s has a zone", lo, hi)
	}
	if !lo.IsValid() || !hi.IsValid() || lo.Is4() != hi.Is4() {
		return nil, fmt.Errorf("range %s-%s mixes address families", lo, hi)
	}
	if hi.Less(lo) {
		return nil, fmt.Errorf("range %s-%s is backwards", lo, hi)
	}
	var out []netip.Prefix
	for {
		// The largest prefix starting at lo that does not pass hi.
		bits := lo.BitLen()
		for bits > 0 {
			p := netip.PrefixFrom(lo, bits-1).Masked()
			if p.Addr() != lo || lastAddr(p).Compare(hi) > 0 {
				break
			}
			bits--
		}
		p := netip.PrefixFrom(lo, bits)
		out = append(out, p)
		last := lastAddr(p)
		if last == hi || !last.IsValid() {
			return out, nil
		}
		lo = last.Next()
		if !lo.IsValid() || len(out) > 2*lo.BitLen() {
			return out, nil // cannot happen for a valid range; a guard against looping
		}
	}
}

// lastAddr returns the last address of p.
func lastAddr(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr().AsSlice()
	host := p.Addr().BitLen() - p.Bits()
	for i := len(a) - 1; i >= 0 && host > 0; i-- {
		if host >= 8 {
			a[i] = 0xff
			host -= 8
		} else {
			a[i] |= byte(1<<host - 1)
			host = 0
		}
	}
	out, _ := netip.AddrFromSlice(a)
	return out
}

// IntersectPrefixes returns the prefixes both lists hold (an empty list
// means any address): for each pair, the longer prefix when one contains
// the other.
func IntersectPrefixes(a, b []netip.Prefix) (out []netip.Prefix, empty bool) {
	switch {
	case len(a) == 0:
		return b, false
	case len(b) == 0:
		return a, false
	}
	for _, x := range a {
		for _, y := range b {
			switch {
			case x.Bits() >= y.Bits() && y.Contains(x.Addr()):
				out = appendUnique(out, x)
			case y.Bits() > x.Bits() && x.Contains(y.Addr()):
				out = appendUnique(out, y)
			}
		}
	}
	return out, len(out) == 0
}

func appendUnique(ps []netip.Prefix, p netip.Prefix) []netip.Prefix {
	for _, q := range ps {
		if q == p {
			return ps
		}
	}
	return append(ps, p)
}

// ContainsAddr reports whether a is in one of ps (an empty list holds every
// address).
func ContainsAddr(ps []netip.Prefix, a netip.Addr) bool {
	if len(ps) == 0 {
		return true
	}
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
