package tunnel_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pinwall/pinwall/tunnel"
)

// protocolDoc is the byte-level description of the protocol whose hex
// examples TestProtocolDocHex keeps honest.
const protocolDoc = "../docs/protocol.md"

// docWireBlocks returns the fenced blocks of docs/protocol.md that follow a
// "<!-- wire: NAME -->" marker, by NAME.
func docWireBlocks(t *testing.T) map[string]string {
	t.Helper()
	f, err := os.Open(protocolDoc)
	require.NoError(t, err)
	defer f.Close()
	blocks := map[string]string{}
	sc := bufio.NewScanner(f)
	line := 0
	for sc.Scan() {
		line++
		text := strings.TrimSpace(sc.Text())
		name, ok := strings.CutPrefix(text, "<!-- wire:")
		if !ok {
			continue
		}
		name = strings.TrimSpace(strings.TrimSuffix(name, "-->"))
		require.True(t, sc.Scan(), "%s:%d: marker %q at end of file", protocolDoc, line, name)
		line++
		require.True(t, strings.HasPrefix(sc.Text(), "```"), "%s:%d: marker %q not followed by a fenced block", protocolDoc, line, name)
		var b strings.Builder
		for sc.Scan() {
			line++
			if strings.HasPrefix(sc.Text(), "```") {
				break
			}
			b.WriteString(sc.Text() + "\n")
		}
		_, dup := blocks[name]
		require.False(t, dup, "%s:%d: marker %q appears twice", protocolDoc, line, name)
		blocks[name] = b.String()
	}
	require.NoError(t, sc.Err())
	return blocks
}

// recorder keeps a copy of everything written through a connection.
type recorder struct {
	net.Conn
	mu  sync.Mutex
	buf bytes.Buffer
}

func (r *recorder) Write(p []byte) (int, error) {
	r.mu.Lock()
	r.buf.Write(p)
	r.mu.Unlock()
	return r.Conn.Write(p)
}

func (r *recorder) bytes() []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return bytes.Clone(r.buf.Bytes())
}

// yamuxOpen opens one stream over a real yamux session pair and returns
// what each side wrote for it: the client's stream open and request, the
// gateway's acknowledgement and reply, as yamux frames them inside TLS.
func yamuxOpen(t *testing.T, req tunnel.Request, reply tunnel.Reply) (clientBytes, gatewayBytes []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, g := net.Pipe()
	cr, gr := &recorder{Conn: c}, &recorder{Conn: g}
	cs, err := tunnel.NewTLSSession(ctx, cr, tunnel.RoleClient, tunnel.Config{})
	require.NoError(t, err)
	defer cs.Close()
	gs, err := tunnel.NewTLSSession(ctx, gr, tunnel.RoleGateway, tunnel.Config{})
	require.NoError(t, err)
	defer gs.Close()

	st, err := cs.Open(ctx)
	require.NoError(t, err)
	enc, err := tunnel.AppendRequest(nil, req)
	require.NoError(t, err)
	_, err = st.Write(enc)
	require.NoError(t, err)

	gst, err := gs.Accept(ctx)
	require.NoError(t, err)
	got, err := tunnel.ReadRequest(gst)
	require.NoError(t, err)
	require.Equal(t, req, got)
	_, err = gst.Write(tunnel.AppendReply(nil, reply))
	require.NoError(t, err)
	gotReply, err := tunnel.ReadReply(st)
	require.NoError(t, err)
	require.Equal(t, reply, gotReply)
	// Both sides have written and read everything of the exchange; nothing
	// else is due before the first keepalive (5 s), so the recordings are
	// exactly the stream open.
	return cr.bytes(), gr.bytes()
}

// TestProtocolDocHex checks every hex example of docs/protocol.md against
// the bytes the real encoders (and yamux) produce, so the document cannot
// drift from the code.
func TestProtocolDocHex(t *testing.T) {
	req := tunnel.Request{Host: "www.social.test", Port: 443, FlowID: 1}
	ok := tunnel.Reply{Status: tunnel.StatusOK, Addr: netip.MustParseAddrPort("192.0.2.10:443")}
	refused := tunnel.Reply{Status: tunnel.StatusDNSFailure, Message: "no such host"}
	greeting := tunnel.Greeting{TunnelID: [16]byte{0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef}}

	reqBytes, err := tunnel.AppendRequest(nil, req)
	require.NoError(t, err)
	yClient, yGateway := yamuxOpen(t, req, ok)

	want := map[string][]byte{
		"greeting":      tunnel.AppendGreeting(nil, greeting),
		"request":       reqBytes,
		"reply-ok":      tunnel.AppendReply(nil, ok),
		"reply-refused": tunnel.AppendReply(nil, refused),
		"yamux-client":  yClient,
		"yamux-gateway": yGateway,
	}
	blocks := docWireBlocks(t)
	for name, b := range want {
		doc, found := blocks[name]
		if assert.True(t, found, "%s has no <!-- wire: %s --> block", protocolDoc, name) {
			assert.Equal(t, hex.Dump(b), doc, "%s: block %q differs from the bytes the code produces", protocolDoc, name)
		}
	}
	for name := range blocks {
		_, known := want[name]
		assert.True(t, known, "%s: block %q is not checked by this test", protocolDoc, name)
	}
}
