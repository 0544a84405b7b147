package mitm_test

import (
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pinwall/pinwall/accept/accepttest"
	"github.com/pinwall/pinwall/mitm/fwlog"
)

// TestFirewallSurvivesDescriptorExhaustion runs the firewall out of file
// descriptors while a client waits to be accepted: the listener used to
// return the error (and `pinwall serve firewall` to exit 1); now it waits,
// logs, and decrypts again once descriptors are free.
func TestFirewallSurvivesDescriptorExhaustion(t *testing.T) {
	if !accepttest.InChild(t, 256) {
		return
	}
	fl := startForwardLab(t, nil)

	fill := accepttest.Exhaust(t)
	fill.Release(1) // the client's socket; none left for the firewall's accept
	waiting, err := net.Dial("tcp", fl.addr)
	require.NoError(t, err)
	require.Eventually(t, func() bool { return fl.fw.AcceptFailures() >= 2 }, 10*time.Second, time.Millisecond,
		"the firewall's accept never failed with no descriptor left")
	fill.ReleaseAll()
	waiting.Close()
	// The waiting client is accepted once descriptors are free, and logged
	// as the session it was: it sent nothing before it hung up.
	recs := waitRecords(t, fl.fw, 1)
	assert.Equal(t, fwlog.AppIncomplete, recs[0].App)
	assert.Equal(t, fwlog.EndTCPFin, recs[0].EndReason)

	for range 3 {
		fl.requireGoodSession(t)
	}
	assert.Positive(t, fl.logs.count("accept failed, retrying"))
	assert.Positive(t, fl.logs.count("accept recovered"))
}
