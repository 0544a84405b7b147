package clienthello

import (
	"errors"
	"fmt"
)

// Sentinel errors. Every error Parse, ParseDTLS and Peek return matches at
// most one of ErrIncomplete, ErrNotTLS, ErrMalformed and ErrTooLarge under
// errors.Is; Peek's I/O errors wrap what the connection returned instead
// (io.EOF, io.ErrUnexpectedEOF, os.ErrDeadlineExceeded, ...).
var (
	// ErrIncomplete means the input is a plausible prefix of a ClientHello
	// and more bytes are needed. Parse and ParseDTLS return it as an
	// *IncompleteError.
	ErrIncomplete = errors.New("clienthello: incomplete ClientHello")

	// ErrNotTLS means the input does not start with a (D)TLS handshake
	// record: plain HTTP, SSH, an SSLv2-compatible hello, or an encrypted
	// record.
	ErrNotTLS = errors.New("clienthello: not a TLS handshake record")

	// ErrMalformed means the input starts like a TLS handshake but breaks
	// the record or ClientHello structure. Parse and ParseDTLS return it as
	// a *ParseError.
	ErrMalformed = errors.New("clienthello: malformed ClientHello")

	// ErrTooLarge means the ClientHello declares (or the peer sends) more
	// bytes than MaxHelloSize, or than PeekOptions.MaxBytes allows.
	ErrTooLarge = errors.New("clienthello: ClientHello too large")
)

// IncompleteError is the ErrIncomplete that Parse and ParseDTLS return.
type IncompleteError struct {
	// Need is a lower bound, at least 1, of how many more bytes must follow
	// the input before it can parse. For ParseDTLS it is how many bytes of
	// the handshake message the datagram's fragment lacks.
	Need int
}

func (e *IncompleteError) Error() string {
	return fmt.Sprintf("%v: need at least %d more bytes", ErrIncomplete, e.Need)
}

// Is reports whether target is ErrIncomplete.
func (e *IncompleteError) Is(target error) bool { return target == ErrIncomplete }

// ParseError describes malformed input. It matches ErrMalformed.
type ParseError struct {
	// Offset is where in the input the offending field starts, counting
	// from the first byte given to Parse or ParseDTLS (record headers
	// included).
	Offset int
	// Field names the field, as the RFCs spell it ("cipher_suites",
	// "server_name", "record length", ...).
	Field string
	// Err says what was wrong with it.
	Err error
}

func (e *ParseError) Error() string {
	return fmt.Sprintf("%v: %s at offset %d: %v", ErrMalformed, e.Field, e.Offset, e.Err)
}

// Unwrap returns e.Err.
func (e *ParseError) Unwrap() error { return e.Err }

// Is reports whether target is ErrMalformed.
func (e *ParseError) Is(target error) bool { return target == ErrMalformed }

// Details carried by ParseError.Err.
var (
	errOverrun  = errors.New("runs past the end of its container")
	errTrailing = errors.New("trailing bytes after the field")
	errEmpty    = errors.New("must not be empty")
	errOddLen   = errors.New("length must be even")
)

func notTLS(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrNotTLS}, args...)...)
}

func tooLarge(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrTooLarge}, args...)...)
}
