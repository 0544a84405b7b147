package containers_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pinwall/pinwall/capture/capturetest"
	"github.com/pinwall/pinwall/harness"
	"github.com/pinwall/pinwall/scenarios"
)

// TestContainersCapture captures the double-decrypt run (TLS tunnel, the
// firewall decrypting both legs) and the visibility run (DTLS tunnel
// relayed undecrypted) on the containers' interfaces and reads them with
// tshark: every leg is there, the inner flows' targets inside the tunnel
// on both tunnel legs, the sites' requests on the gateways' side.
func TestContainersCapture(t *testing.T) {
	r := containerRunner(t)
	r.Capture = true
	all, err := scenarios.Catalogue()
	require.NoError(t, err)
	for _, tc := range []struct{ id, variant string }{{"double-decrypt", "without-fix"}, {"visibility", "baseline"}} {
		t.Run(tc.id, func(t *testing.T) {
			sel, err := scenarios.Find(all, tc.id)
			require.NoError(t, err)
			runs, err := sel[0].Runs()
			require.NoError(t, err)
			i := slices.IndexFunc(runs, func(r scenarios.Run) bool { return string(r.Variant) == tc.variant })
			require.GreaterOrEqual(t, i, 0)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			res := scenarios.RunOne(ctx, r, runs[i])
			require.Equal(t, scenarios.Pass, res.Verdict, res.Error)
			c := res.Capture
			require.NotNil(t, c)
			assert.Equal(t, harness.CaptureSniffed, c.Source)
			assert.Equal(t, []string{harness.LegLaptopFirewall, harness.LegFirewallGateway, harness.LegGatewayOrigins}, c.Legs)
			assert.Positive(t, c.KeyLines)
			file := filepath.Join(t.TempDir(), "capture.pcapng")
			require.NoError(t, os.WriteFile(file, c.PCAPNG, 0o644))

			capturetest.RequireTshark(t)
			var sites []string
			for _, f := range res.Flows {
				sites = append(sites, f.Site+":443")
			}
			slices.Sort(sites)
			sites = slices.Compact(sites)
			lua := "lua_script:" + filepath.Join("..", "..", "wireshark", "pinwall.lua")
			out := capturetest.Tshark(t, "-X", lua, "-o", "sctp.tsn_analysis:FALSE", "-r", file, "-Y", "pinwall.request",
				"-T", "fields", "-E", "occurrence=a", "-E", "aggregator=|", "-e", "frame.interface_name", "-e", "pinwall.target")
			targets := map[string][]string{}
			for _, l := range capturetest.Lines(out) {
				leg, vals, _ := strings.Cut(l, "\t")
				targets[leg] = append(targets[leg], strings.Split(vals, "|")...)
			}
			// A DTLS tunnel's SCTP may retransmit a DATA chunk (a late SACK
			// on a loaded machine); with TSN analysis off, tshark dissects
			// the copy again. Count the retransmitted chunks per leg with
			// TSN analysis on: a Request may appear once more for each.
			retx := map[string]int{}
			for _, l := range capturetest.Lines(capturetest.Tshark(t, "-X", lua, "-o", "sctp.tsn_analysis:TRUE", "-r", file, "-Y", "sctp.retransmission",
				"-T", "fields", "-E", "occurrence=a", "-E", "aggregator=|", "-e", "frame.interface_name", "-e", "sctp.retransmission")) {
				leg, vals, _ := strings.Cut(l, "\t")
				retx[leg] += len(strings.Split(vals, "|"))
			}
			for _, leg := range []string{harness.LegLaptopFirewall, harness.LegFirewallGateway} {
				got := slices.Clone(targets[leg])
				assert.GreaterOrEqual(t, len(got), len(res.Flows), "%s: a Request for every flow", leg)
				assert.LessOrEqual(t, len(got), len(res.Flows)+retx[leg], "%s: one Request per flow, and one more only for each retransmitted SCTP chunk (%d)", leg, retx[leg])
				slices.Sort(got)
				assert.Equal(t, sites, slices.Compact(got), leg)
			}
			assert.Empty(t, targets[harness.LegGatewayOrigins])
			if tc.id == "visibility" {
				// The SCTP packets fill the topology's path, no more: the
				// VXLAN overlay's 1,450 bytes (netsetup's default), which
				// leave 1,385 for an SCTP packet (tunnel.PathMTUPacket)
				// and so 1,430 for the UDP datagram, where the 1,200-byte
				// default made 1,245. pion/sctp pads its chunks to 4 bytes
				// within the MTU, so the largest may fall short by up to 3.
				for _, leg := range []string{harness.LegLaptopFirewall, harness.LegFirewallGateway} {
					largest := 0
					for _, l := range capturetest.Lines(capturetest.Tshark(t, "-r", file, "-Y", "udp.port == 443 && frame.interface_name == \""+leg+"\"", "-T", "fields", "-e", "udp.length")) {
						n, err := strconv.Atoi(l)
						require.NoError(t, err)
						largest = max(largest, n)
					}
					assert.LessOrEqual(t, largest, 1450-20, "%s: the largest UDP datagram (header and payload)", leg)
					assert.GreaterOrEqual(t, largest, 1450-20-3, "%s: the largest UDP datagram (header and payload)", leg)
				}
			}
			auth := capturetest.Lines(capturetest.Tshark(t, "-r", file, "-Y", "http2.headers.method", "-T", "fields", "-e", "frame.interface_name"))
			assert.Len(t, auth, len(res.Flows), "one decrypted request per flow")
			for _, l := range auth {
				assert.Equal(t, harness.LegGatewayOrigins, l)
			}
		})
	}
}
