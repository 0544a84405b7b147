package gateway

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/pinwall/pinwall/failure"
)

// Event kinds.
const (
	EventTunnelOpen    = "tunnel-open"
	EventTunnelClose   = "tunnel-close"
	EventTunnelRefused = "tunnel-refused"
	EventFlow          = "flow"
	EventStreamRefused = "stream-refused"
)

// Events lists the event kinds.
var Events = []string{EventFlow, EventTunnelOpen, EventTunnelClose, EventTunnelRefused, EventStreamRefused}

// Results of a flow event (Event.Result) besides the tunnel status the
// gateway replied with when it could not connect the flow (tunnel.Status:
// dns-failure, refused, timeout, ...).
const (
	// ResultOK: the flow was relayed and ended cleanly.
	ResultOK = "ok"
	// ResultError: the relay ended with an error (Event.Error).
	ResultError = "error"
	// ResultTunnelClosed: the tunnel closed under the flow.
	ResultTunnelClosed = "tunnel-closed"
	// ResultClientGone: the client's stream was gone before the reply.
	ResultClientGone = "client-gone"
)

// Identity is an authenticated device.
type Identity struct {
	User   string `json:"user"`
	Device string `json:"device"`
	Tenant string `json:"tenant,omitempty"`
}

// CertInfo describes a certificate a peer presented.
type CertInfo struct {
	Subject string `json:"subject"`
	Issuer  string `json:"issuer"`
	SPKI    string `json:"spki_sha256"`
}

// Event is one line of the gateway log.
type Event struct {
	Time      time.Time `json:"time"`
	Event     string    `json:"event"`
	Gateway   string    `json:"gateway"`
	TunnelID  string    `json:"tunnel_id,omitempty"`
	Transport string    `json:"transport"`
	// Client is the tunnel's peer address as the gateway sees it (after any NAT).
	Client string    `json:"client"`
	Local  string    `json:"local,omitempty"`
	Device *Identity `json:"device,omitempty"`

	// Tunnel refusals.
	Presented *CertInfo     `json:"presented,omitempty"`
	Reason    string        `json:"reason,omitempty"`
	Cause     failure.Cause `json:"cause,omitempty"`

	// Flows.
	FlowID     uint64 `json:"flow_id,omitempty"`
	StreamID   uint32 `json:"stream_id,omitempty"`
	Host       string `json:"host,omitempty"`
	Port       uint16 `json:"port,omitempty"`
	Origin     string `json:"origin,omitempty"`
	BytesUp    int64  `json:"bytes_up,omitempty"`
	BytesDown  int64  `json:"bytes_down,omitempty"`
	DurationMS int64  `json:"duration_ms,omitempty"`
	Result     string `json:"result,omitempty"`
	Error      string `json:"error,omitempty"`

	// Tunnel close.
	Flows int `json:"flows,omitempty"`
}

// eventLog writes events as JSON lines and keeps the most recent in memory.
type eventLog struct {
	mu     sync.Mutex
	w      io.Writer
	keep   int
	events []Event
	total  int
}

func newEventLog(w io.Writer, keep int) *eventLog {
	if keep <= 0 {
		keep = 100000
	}
	return &eventLog{w: w, keep: keep}
}

func (l *eventLog) add(e Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.total++
	if len(l.events) >= l.keep {
		copy(l.events, l.events[1:])
		l.events = l.events[:len(l.events)-1]
	}
	l.events = append(l.events, e)
	if l.w != nil {
		b, err := json.Marshal(e)
		if err == nil {
			b = append(b, '\n')
			_, _ = l.w.Write(b)
		}
	}
}

func (l *eventLog) snapshot() []Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]Event(nil), l.events...)
}

// ReadEvents parses a gateway log written as JSON lines.
func ReadEvents(r io.Reader) ([]Event, error) {
	var out []Event
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	line := 0
	for sc.Scan() {
		line++
		if len(sc.Bytes()) == 0 {
			continue
		}
		var e Event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			return out, fmt.Errorf("gateway: events line %d: %w", line, err)
		}
		out = append(out, e)
	}
	return out, sc.Err()
}
