package failure

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"reflect"
)

// RemoteAlert returns the description of the fatal TLS or DTLS alert the
// peer sent, if err carries one: a crypto/tls AlertError, crypto/tls's
// "remote error" (a *net.OpError around its unexported alert type, a
// uint8), or a pion/dtls alert.
func RemoteAlert(err error) (uint8, bool) {
	var ae tls.AlertError
	if errors.As(err, &ae) {
		return uint8(ae), true
	}
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Op == "remote error" && oe.Err != nil {
		v := reflect.ValueOf(oe.Err)
		if t := v.Type(); t.PkgPath() == "crypto/tls" && t.Kind() == reflect.Uint8 {
			return uint8(v.Uint()), true
		}
	}
	var pa interface {
		IsFatalOrCloseNotify() bool
		Marshal() ([]byte, error)
	}
	if errors.As(err, &pa) {
		if b, merr := pa.Marshal(); merr == nil && len(b) == 2 {
			return b[1], true
		}
	}
	return 0, false
}

// alertNames are the TLS alert descriptions of RFC 8446 section 6 (and the
// RFC 5246 ones DTLS 1.2 still uses), by code.
var alertNames = map[uint8]string{
	0: "close_notify", 10: "unexpected_message", 20: "bad_record_mac", 22: "record_overflow",
	40: "handshake_failure", 41: "no_certificate", 42: "bad_certificate", 43: "unsupported_certificate",
	44: "certificate_revoked", 45: "certificate_expired", 46: "certificate_unknown", 47: "illegal_parameter",
	48: "unknown_ca", 49: "access_denied", 50: "decode_error", 51: "decrypt_error", 70: "protocol_version",
	71: "insufficient_security", 80: "internal_error", 86: "inappropriate_fallback", 90: "user_canceled",
	109: "missing_extension", 110: "unsupported_extension", 112: "unrecognized_name",
	113: "bad_certificate_status_response", 115: "unknown_psk_identity", 116: "certificate_required",
	120: "no_application_protocol",
}

// AlertName is the RFC 8446 name of alert description desc
// ("handshake_failure"), or "alert(N)" for a code it does not know.
func AlertName(desc uint8) string {
	if n, ok := alertNames[desc]; ok {
		return n
	}
	return fmt.Sprintf("alert(%d)", desc)
}

// CertificateAlert reports whether the alert named name says "I do not
// accept your certificate" (bad_certificate, unknown_ca, ...).
func CertificateAlert(name string) bool {
	switch name {
	case "bad_certificate", "unsupported_certificate", "certificate_revoked", "certificate_expired",
		"certificate_unknown", "unknown_ca", "access_denied":
		return true
	}
	return false
}
