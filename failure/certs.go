package failure

import (
	"fmt"
	"strings"
)

// PinMismatchError reports a server key that matched none of the pins. It is
// wrapped in an *Error with CausePinMismatch.
type PinMismatchError struct {
	// ServerName is the name the client asked for.
	ServerName string
	// Issuer is the presented leaf's issuer distinguished name.
	Issuer string
	// Presented holds the SPKI SHA-256 pins of every certificate presented, leaf first.
	Presented []string
	// Pins is the client's pin set.
	Pins []string
}

func (e *PinMismatchError) Error() string {
	return fmt.Sprintf("no pinned key for %s: chain issued by %q presented [%s], pins [%s]",
		e.ServerName, e.Issuer, strings.Join(e.Presented, " "), strings.Join(e.Pins, " "))
}

// CertificateError reports a chain that failed verification. It is wrapped in
// an *Error with CauseUnknownAuthority or CauseCertificateInvalid.
type CertificateError struct {
	ServerName string
	// Issuer and Subject describe the presented leaf.
	Issuer, Subject string
	// SPKI is the presented leaf's SPKI SHA-256 pin.
	SPKI string
	Err  error
}

func (e *CertificateError) Error() string {
	return fmt.Sprintf("certificate for %s (subject %q, issuer %q, spki %s): %v",
		e.ServerName, e.Subject, e.Issuer, e.SPKI, e.Err)
}

func (e *CertificateError) Unwrap() error { return e.Err }
