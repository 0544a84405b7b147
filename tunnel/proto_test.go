package tunnel

import (
	"bytes"
	"errors"
	"io"
	"net/netip"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pinwall/pinwall/failure"
)

func TestRequestRoundTrip(t *testing.T) {
	tests := []Request{
		{Host: "www.social.test", Port: 443, FlowID: 1},
		{Host: "192.0.2.10", Port: 80, FlowID: 1<<64 - 1},
		{Host: "2001:db8::1", Port: 8443},
		{Host: strings.Repeat("a", MaxHostLen), Port: 1},
	}
	for _, r := range tests {
		b, err := AppendRequest(nil, r)
		require.NoError(t, err)
		got, err := ReadRequest(io.MultiReader(bytes.NewReader(b), strings.NewReader("payload")))
		require.NoError(t, err)
		assert.Equal(t, r, got)
	}
	assert.Equal(t, "[2001:db8::1]:8443", tests[2].Destination())
	assert.Equal(t, "www.social.test:443", tests[0].Destination())
}

func TestRequestRejects(t *testing.T) {
	good, err := AppendRequest(nil, Request{Host: "x.test", Port: 443})
	require.NoError(t, err)
	set := func(i int, v byte) []byte { b := bytes.Clone(good); b[i] = v; return b }
	tests := map[string][]byte{
		"empty":        {},
		"magic":        set(0, 'X'),
		"version":      set(2, 9),
		"command":      set(3, 2),
		"port zero":    append(set(4, 0)[:5:5], append([]byte{0}, good[6:]...)...),
		"host len 254": set(6, 254),
		"truncated":    good[:len(good)-3],
		"control char": append(append(bytes.Clone(good[:7]), "x\n.test"[:6]...), good[13:]...),
	}
	for name, b := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := ReadRequest(bytes.NewReader(b))
			require.Error(t, err)
		})
	}
	_, err = AppendRequest(nil, Request{Host: "", Port: 443})
	assert.ErrorIs(t, err, ErrProtocol)
	_, err = AppendRequest(nil, Request{Host: strings.Repeat("a", 254), Port: 443})
	assert.ErrorIs(t, err, ErrProtocol)
	_, err = AppendRequest(nil, Request{Host: "a b", Port: 443})
	assert.ErrorIs(t, err, ErrProtocol)
}

func TestReplyRoundTrip(t *testing.T) {
	tests := []Reply{
		{Status: StatusOK, Addr: netip.MustParseAddrPort("192.0.2.10:443")},
		{Status: StatusOK, Addr: netip.MustParseAddrPort("[2001:db8::1]:443")},
		{Status: StatusDNSFailure, Message: "no such host nowhere.test"},
		{Status: StatusStreamLimit, Message: strings.Repeat("m", MaxMessageLen)},
	}
	for _, r := range tests {
		b := AppendReply(nil, r)
		got, err := ReadReply(io.MultiReader(bytes.NewReader(b), strings.NewReader("rest")))
		require.NoError(t, err)
		assert.Equal(t, r, got)
	}
	long := AppendReply(nil, Reply{Status: StatusRefused, Message: strings.Repeat("x", 1000)})
	got, err := ReadReply(bytes.NewReader(long))
	require.NoError(t, err)
	assert.Len(t, got.Message, MaxMessageLen)
}

func TestReplyErrAttribution(t *testing.T) {
	require.NoError(t, Reply{Status: StatusOK}.Err("x:1"))
	tests := []struct {
		status Status
		leg    failure.Leg
		cause  failure.Cause
	}{
		{StatusDNSFailure, failure.LegGatewayOrigin, failure.CauseDNS},
		{StatusRefused, failure.LegGatewayOrigin, failure.CauseConnectionRefused},
		{StatusTimeout, failure.LegGatewayOrigin, failure.CauseTimeout},
		{StatusPolicyDenied, failure.LegGatewayOrigin, failure.CausePolicyBlock},
		{StatusStreamLimit, failure.LegClientGateway, failure.CauseStreamLimit},
		{StatusBadRequest, failure.LegClientGateway, failure.CauseProtocol},
		{StatusUnreachable, failure.LegGatewayOrigin, failure.CauseConnectionRefused},
	}
	for _, tt := range tests {
		err := Reply{Status: tt.status, Message: "m"}.Err("www.social.test:443")
		fe, ok := failure.As(err)
		require.True(t, ok)
		assert.Equal(t, tt.leg, fe.Leg, tt.status.String())
		assert.Equal(t, tt.cause, fe.Cause, tt.status.String())
		var se *StatusError
		require.True(t, errors.As(err, &se))
		assert.Equal(t, tt.status, se.Status)
		if tt.status != StatusUnreachable {
			assert.Equal(t, tt.status, StatusFor(tt.cause), "StatusFor inverts Cause for %s", tt.status)
		}
	}
	assert.Equal(t, "status(99)", Status(99).String())
}

func TestReplyRejects(t *testing.T) {
	good := AppendReply(nil, Reply{Status: StatusOK, Addr: netip.MustParseAddrPort("192.0.2.1:443"), Message: "hi"})
	set := func(i int, v byte) []byte { b := bytes.Clone(good); b[i] = v; return b }
	for name, b := range map[string][]byte{
		"magic":   set(1, 'Q'),
		"version": set(2, 0),
		"status":  set(3, 200),
		"family":  set(4, 5),
		"msglen":  set(11, 250),
		"short":   good[:8],
	} {
		_, err := ReadReply(bytes.NewReader(b))
		assert.Error(t, err, name)
	}
}

func FuzzReadRequest(f *testing.F) {
	b, _ := AppendRequest(nil, Request{Host: "www.social.test", Port: 443, FlowID: 7})
	f.Add(b)
	f.Add([]byte("PW\x01\x01\x01\xbb\xff"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := ReadRequest(bytes.NewReader(data))
		if err != nil {
			return
		}
		enc, err := AppendRequest(nil, r)
		if err != nil {
			t.Fatalf("decoded request does not re-encode: %v", err)
		}
		if !bytes.Equal(enc, data[:len(enc)]) {
			t.Fatalf("re-encoding differs")
		}
	})
}

func FuzzReadReply(f *testing.F) {
	f.Add(AppendReply(nil, Reply{Status: StatusOK, Addr: netip.MustParseAddrPort("192.0.2.10:443")}))
	f.Add(AppendReply(nil, Reply{Status: StatusDNSFailure, Message: "nope"}))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := ReadReply(bytes.NewReader(data))
		if err != nil {
			return
		}
		if len(r.Message) > MaxMessageLen {
			t.Fatalf("message of %d bytes accepted", len(r.Message))
		}
		if _, err := ReadReply(bytes.NewReader(AppendReply(nil, r))); err != nil {
			t.Fatalf("re-encoded reply fails: %v", err)
		}
	})
}

func TestGreetingRoundTrip(t *testing.T) {
	g := Greeting{TunnelID: [16]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}}
	b := AppendGreeting(nil, g)
	require.Len(t, b, GreetingLen)
	got, err := ReadGreeting(bytes.NewReader(b))
	require.NoError(t, err)
	assert.Equal(t, g, got)
	assert.Equal(t, "0102030405060708090a0b0c0d0e0f10", got.TunnelIDString())
	bad := bytes.Clone(b)
	bad[4] = 9
	_, err = ReadGreeting(bytes.NewReader(bad))
	assert.ErrorIs(t, err, ErrProtocol)
	_, err = ReadGreeting(bytes.NewReader(b[:10]))
	assert.ErrorIs(t, err, io.ErrUnexpectedEOF)
}

func FuzzReadGreeting(f *testing.F) {
	f.Add(AppendGreeting(nil, Greeting{}))
	f.Fuzz(func(t *testing.T, data []byte) {
		g, err := ReadGreeting(bytes.NewReader(data))
		if err == nil && !bytes.Equal(AppendGreeting(nil, g), data[:GreetingLen]) {
			t.Fatal("greeting does not round-trip")
		}
	})
}
