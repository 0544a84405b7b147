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
	// EventRefusalSummary counts, per source, transport and interval, the
	// refused tunnel attempts beyond those logged one by one.
	EventRefusalSummary = "refusal-summary"
)

// Events lists the event kinds.
var Events = []string{EventFlow, EventTunnelOpen, EventTunnelClose, EventTunnelRefused, EventStreamRefused, EventRefusalSummary}

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
	// Alert is the fatal alert the peer sent to end a refused handshake,
	// by its RFC 8446 name ("bad_certificate": the peer refused the
	// gateway's certificate).
	Alert string `json:"alert,omitempty"`

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

	// Refusal summaries: how many attempts were refused in the interval
	// (DurationMS), and how many for each reason (a failure cause or a
	// limit: source-limit, handshake-limit, tunnel-limit, unverified-limit,
	// peer-limit, backlog-full, not-dtls).
	Count  int            `json:"count,omitempty"`
	Causes map[string]int `json:"causes,omitempty"`
	// Sampled is how many of Count were also logged one by one as
	// tunnel-refused events.
	Sampled int `json:"sampled,omitempty"`
}

// Refusals counts the tunnel attempts events record as refused: each
// tunnel-refused event, and those a refusal-summary counts beyond them.
func Refusals(evs []Event) int {
	n := 0
	for _, e := range evs {
		switch e.Event {
		case EventTunnelRefused:
			n++
		case EventRefusalSummary:
			n += e.Count - e.Sampled
		}
	}
	return n
}

// DefaultKeepEvents is how many events a gateway keeps in memory when
// Config.KeepEvents is zero.
const DefaultKeepEvents = 10000

// eventLog writes events as JSON lines and keeps the most recent in memory,
// in a ring of at most keep events.
type eventLog struct {
	mu    sync.Mutex
	w     io.Writer
	keep  int
	ring  []Event // circular once len(ring) == keep
	next  int     // oldest event (the next to overwrite) once full
	total int
}

func newEventLog(w io.Writer, keep int) *eventLog {
	if keep <= 0 {
		keep = DefaultKeepEvents
	}
	return &eventLog{w: w, keep: keep}
}

func (l *eventLog) add(e Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.total++
	if len(l.ring) < l.keep {
		l.ring = append(l.ring, e)
	} else {
		l.ring[l.next] = e
		l.next = (l.next + 1) % l.keep
	}
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
	out := make([]Event, 0, len(l.ring))
	out = append(out, l.ring[l.next:]...)
	return append(out, l.ring[:l.next]...)
}

// counts returns how many events were logged in all and how many are kept.
func (l *eventLog) counts() (logged, kept int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total, len(l.ring)
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
