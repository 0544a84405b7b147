package failure

import (
	"crypto/tls"
	"errors"
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
