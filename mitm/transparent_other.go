//go:build !linux

package mitm

import (
	"context"
	"errors"
	"fmt"
	"net"
)

// errTransparent is returned by the transparent listeners off Linux: they
// rest on netfilter's REDIRECT and TPROXY.
var errTransparent = fmt.Errorf("mitm: transparent interception needs Linux (SO_ORIGINAL_DST, TPROXY): %w", errors.ErrUnsupported)

// ListenTransparentTCP is Linux only; elsewhere it returns an error
// wrapping errors.ErrUnsupported.
func ListenTransparentTCP(ctx context.Context, address string) (net.Listener, error) {
	return nil, errTransparent
}

// ListenTransparentUDP is Linux only; elsewhere it returns an error
// wrapping errors.ErrUnsupported.
func ListenTransparentUDP(ctx context.Context, address string) (*net.UDPConn, error) {
	return nil, errTransparent
}

// ServeTransparent is Linux only; elsewhere it returns an error wrapping
// errors.ErrUnsupported at once.
func (f *Firewall) ServeTransparent(ctx context.Context, l net.Listener) error {
	return errTransparent
}

// ServeUDPTransparent is Linux only; elsewhere it returns an error
// wrapping errors.ErrUnsupported at once.
func (f *Firewall) ServeUDPTransparent(ctx context.Context, pc *net.UDPConn) error {
	return errTransparent
}
