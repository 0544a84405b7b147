package client

import (
	"context"
	"fmt"
	"net"
	"strconv"

	"github.com/pinwall/pinwall/failure"
	"github.com/pinwall/pinwall/socks5"
)

// ServeSOCKS serves SOCKS5 CONNECT requests on l, sending each flow through
// Dial (steered into the tunnel, or direct), until ctx is done or the client
// closes. The client owns the listener from the call on: ServeSOCKS always
// closes l, and Close stops it and waits for its connections to end.
//
// It returns nil when ctx ends, ErrClosed when the client is (or gets)
// closed, and the accept error if l fails. Each refused request is logged by
// the client's Logger with its SOCKS reply and failure cause; the refused
// steered flows are also counted in State().Refused.
func (c *Client) ServeSOCKS(ctx context.Context, l net.Listener) error {
	c.mu.Lock()
	if c.ctx.Err() != nil {
		c.mu.Unlock()
		l.Close()
		return ErrClosed
	}
	// Registered under mu, as Close cancels c.ctx before waiting on c.wg.
	c.wg.Add(1)
	c.mu.Unlock()
	defer c.wg.Done()

	srv := &socks5.Server{
		Dial:   c.socksDial,
		Logger: c.cfg.Logger.With("listener", "socks5", "addr", l.Addr().String()),
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(c.ctx, cancel)
	defer stop()
	c.cfg.Logger.Info("client: socks5 listening", "addr", l.Addr().String())
	err := srv.Serve(ctx, l)
	if c.ctx.Err() != nil {
		return ErrClosed
	}
	return err
}

// socksDial is Dial behind Config.SOCKSDestinations.
func (c *Client) socksDial(ctx context.Context, network, address string) (net.Conn, error) {
	if vet := c.cfg.SOCKSDestinations; vet != nil {
		host, portStr, err := net.SplitHostPort(address)
		if err != nil {
			return nil, fmt.Errorf("client: socks5 %q: %w", address, err)
		}
		port, err := strconv.ParseUint(portStr, 10, 16)
		if err != nil {
			return nil, fmt.Errorf("client: socks5 %q: bad port", address)
		}
		if err := vet(host, uint16(port)); err != nil {
			return nil, failure.New(failure.LegClientOrigin, failure.CausePolicyBlock, "socks5", address, err)
		}
	}
	return c.Dial(ctx, network, address)
}
