package mitm

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"time"

	"github.com/pinwall/pinwall/resolve"
)

// maxProxyRequest bounds a CONNECT request's head.
const maxProxyRequest = 8 << 10

// ServeProxy serves an explicit HTTP proxy: CONNECT host:port is resolved
// with the firewall's resolver, answered 200, and the tunnelled bytes take
// the same path as intercepted traffic (peek, policy, splice or decrypt).
// Other methods get 405. It returns when ctx is done, l closes or the
// firewall does.
func (f *Firewall) ServeProxy(ctx context.Context, l net.Listener) error {
	return f.serve(ctx, l, "proxy", f.acceptConnect)
}

func (f *Firewall) acceptConnect(c net.Conn) (net.Conn, origin, error) {
	_ = c.SetReadDeadline(time.Now().Add(f.cfg.PeekTimeout))
	br := bufio.NewReaderSize(io.LimitReader(c, maxProxyRequest), 4096)
	req, err := http.ReadRequest(br)
	_ = c.SetReadDeadline(time.Time{})
	if err != nil {
		return nil, origin{}, fmt.Errorf("proxy request: %w", err)
	}
	if req.Method != http.MethodConnect {
		_, _ = io.WriteString(c, "HTTP/1.1 405 Method Not Allowed\r\nAllow: CONNECT\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
		return nil, origin{}, fmt.Errorf("proxy method %s refused", req.Method)
	}
	host, portStr, err := net.SplitHostPort(req.Host)
	port, perr := strconv.ParseUint(portStr, 10, 16)
	if err != nil || perr != nil || port == 0 {
		_, _ = io.WriteString(c, "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
		return nil, origin{}, fmt.Errorf("proxy CONNECT target %q", req.Host)
	}
	ctx, cancel := context.WithTimeout(f.ctx, f.cfg.DialTimeout)
	ip, err := resolve.Addr(ctx, f.cfg.Resolver, host)
	cancel()
	if err != nil {
		_, _ = io.WriteString(c, "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
		return nil, origin{}, fmt.Errorf("proxy CONNECT %s: %w", host, err)
	}
	if br.Buffered() > 0 {
		return nil, origin{}, fmt.Errorf("proxy CONNECT %s: client sent data before the 200", host)
	}
	if _, err := io.WriteString(c, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
		return nil, origin{}, err
	}
	o := origin{src: addrPortOf(c.RemoteAddr()), dst: netip.AddrPortFrom(ip, uint16(port))}
	if _, err := netip.ParseAddr(host); err != nil {
		o.hint = host
	}
	return c, o, nil
}
