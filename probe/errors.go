package probe

import (
	"errors"
	"fmt"
	"strings"

	"github.com/pinwall/pinwall/failure"
)

// ErrUnreachable is a run whose measurements are void: nothing it sent
// reached a TLS server (the gateway unreachable, a captive portal, a proxy
// that refused every CONNECT).
var ErrUnreachable = errors.New("probe: the gateway was not reached")

// Unreachable returns an error naming what was tried and what came back
// when the run's measurements are void, nil otherwise: a proxy that refused
// the probe's CONNECT (407: it wants credentials), every TCP attempt
// answered by something that is not TLS (a captive portal), or nothing
// answering at all (no DTLS, every TCP attempt refused or timed out).
func Unreachable(res *Result) error {
	o := res.Observed
	if len(o.TLS) == 0 {
		return nil
	}
	for _, a := range o.TLS {
		if a.Cause == failure.CauseProxyRefused {
			return fmt.Errorf("%w: tried %s through the proxy; it answered: %s", ErrUnreachable, a.Addr, a.Error)
		}
	}
	for _, d := range o.DTLS {
		if d.Gateway == res.Primary.Name && d.Outcome == "intercepted" {
			return fmt.Errorf("%w: tried DTLS to %s: it presented a key the bundle does not pin, over DTLS, which firewalls do not decrypt: the bundle is not this gateway's (was its --dir made anew?): %s",
				ErrUnreachable, d.Addr, d.Error)
		}
	}
	notTLS, silent := 0, 0
	var tried []string
	for _, a := range o.TLS {
		tried = append(tried, a.Addr.String())
		switch {
		case a.Outcome != Failed:
			return nil
		case a.Cause == failure.CauseProtocol && strings.Contains(a.Error, "not TLS"):
			notTLS++
		case a.Cause == failure.CauseConnectionRefused || a.Cause == failure.CauseTimeout || a.Cause == failure.CauseHandshakeTimeout:
			silent++
		}
	}
	for _, d := range o.DTLS {
		if d.Outcome == "passes" || d.Outcome == "intercepted" {
			return nil
		}
	}
	first := o.TLS[0]
	switch {
	case notTLS == len(o.TLS):
		return fmt.Errorf("%w: tried TLS to %s; every answer was not TLS: %s", ErrUnreachable, strings.Join(dedupe(tried), ", "), first.Error)
	case silent == len(o.TLS):
		return fmt.Errorf("%w: tried TLS to %s and DTLS to %s; came back: %s (%s)", ErrUnreachable, strings.Join(dedupe(tried), ", "), dtlsTried(o), first.Cause, first.Error)
	}
	return nil
}

func dtlsTried(o Observations) string {
	var s []string
	for _, d := range o.DTLS {
		s = append(s, fmt.Sprintf("%s (%s)", d.Addr, d.Outcome))
	}
	return strings.Join(s, ", ")
}

func dedupe(s []string) []string {
	var out []string
	seen := map[string]bool{}
	for _, x := range s {
		if !seen[x] {
			seen[x] = true
			out = append(out, x)
		}
	}
	return out
}
