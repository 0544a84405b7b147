package fieldgw

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pinwall/pinwall/gateway"
	"github.com/pinwall/pinwall/probe"
)

// recordServer is a Server with only what serveRecord needs: its events
// are the test's, its clock the test's.
type recordServer struct {
	*Server
	mu     sync.Mutex
	evs    []gateway.Event
	now    time.Time
	runLog bytes.Buffer
}

func newRecordServer(t0 time.Time) *recordServer {
	rs := &recordServer{now: t0}
	rs.Server = &Server{cfg: Config{Logger: slog.New(slog.DiscardHandler), Now: func() time.Time {
		rs.mu.Lock()
		defer rs.mu.Unlock()
		return rs.now
	}, RunLog: &rs.runLog}}
	rs.events = func() []gateway.Event {
		rs.mu.Lock()
		defer rs.mu.Unlock()
		return append([]gateway.Event(nil), rs.evs...)
	}
	return rs
}

// at adds an event at t0+d and moves the clock there.
func (rs *recordServer) at(d time.Duration, e gateway.Event, t0 time.Time) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	e.Time = t0.Add(d)
	rs.evs = append(rs.evs, e)
	rs.now = e.Time
}

func (rs *recordServer) fetch(t *testing.T, run, device string, since time.Time) (*probe.Record, int) {
	t.Helper()
	q := url.Values{"device": {device}, "run": {run}, "since": {strconv.FormatInt(since.UnixNano(), 10)}}
	w := httptest.NewRecorder()
	rs.serveRecord(w, httptest.NewRequest(http.MethodGet, "/record?"+q.Encode(), nil))
	if w.Code != http.StatusOK {
		return nil, w.Code
	}
	var rec probe.Record
	require.NoError(t, json.Unmarshal(w.Body.Bytes(), &rec))
	return &rec, w.Code
}

func kinds(rec *probe.Record) []string {
	var out []string
	for _, e := range rec.Events {
		out = append(out, e.Event+" "+e.TunnelID)
	}
	return out
}

// TestRecordKeyedByRun runs two probes of the same bundle from the same
// address 20 seconds apart, each window reaching back a minute: each run's
// record holds its own refusals and tunnels only, the first run's tunnel
// that closed after its fetch included; a second fetch of a run returns
// the same record; another device cannot fetch it; another device behind
// the same address is not in either.
func TestRecordKeyedByRun(t *testing.T) {
	t0 := time.Date(2026, 12, 7, 9, 30, 0, 0, time.UTC)
	rs := newRecordServer(t0)
	dev := &gateway.Identity{User: "probe", Device: "D1"}
	other := &gateway.Identity{User: "probe", Device: "D2"}
	const src, src2 = "198.51.100.9:40000", "198.51.100.9:40001"

	// Run 1: a refusal without a device certificate (the firewall's
	// upstream leg), then a tunnel; another device's tunnel from the same
	// address.
	rs.at(1*time.Second, gateway.Event{Event: "tunnel-refused", Client: src, Cause: "client-certificate-required"}, t0)
	rs.at(2*time.Second, gateway.Event{Event: "tunnel-open", TunnelID: "t1", Client: src, Device: dev}, t0)
	rs.at(3*time.Second, gateway.Event{Event: "tunnel-open", TunnelID: "x1", Client: src2, Device: other}, t0)
	rec1, code := rs.fetch(t, "run-1", "D1", t0.Add(-time.Minute))
	require.Equal(t, http.StatusOK, code)
	assert.Equal(t, []string{"tunnel-refused ", "tunnel-open t1"}, kinds(rec1))
	// Run 1's tunnel closes after its fetch.
	rs.at(5*time.Second, gateway.Event{Event: "tunnel-close", TunnelID: "t1", Client: src, Device: dev}, t0)

	// Run 2, 20 s later, its window reaching back before run 1.
	rs.at(20*time.Second, gateway.Event{Event: "tunnel-refused", Client: src, Cause: "client-certificate-required"}, t0)
	rs.at(21*time.Second, gateway.Event{Event: "tunnel-open", TunnelID: "t2", Client: src, Device: dev}, t0)
	rec2, code := rs.fetch(t, "run-2", "D1", t0.Add(20*time.Second-time.Minute))
	require.Equal(t, http.StatusOK, code)
	assert.Equal(t, []string{"tunnel-refused ", "tunnel-open t2"}, kinds(rec2), "run 2 holds none of run 1's events")
	assert.Equal(t, 3, rec2.Earlier, "run 1's refusal, tunnel open and close are left out")
	assert.Equal(t, "run-2", rec2.Run)

	again, code := rs.fetch(t, "run-1", "D1", t0.Add(-time.Minute))
	require.Equal(t, http.StatusOK, code)
	assert.Equal(t, kinds(rec1), kinds(again), "a run's record is kept under its id")
	_, code = rs.fetch(t, "run-1", "D2", t0.Add(-time.Minute))
	assert.Equal(t, http.StatusConflict, code, "another device cannot read a run's record")
	_, code = rs.fetch(t, "", "D1", t0)
	assert.Equal(t, http.StatusBadRequest, code)
	assert.Equal(t, 2, bytes.Count(rs.runLog.Bytes(), []byte("\n")), "each run logged once, under its id")
	assert.Contains(t, rs.runLog.String(), `"run":"run-2"`)
}
