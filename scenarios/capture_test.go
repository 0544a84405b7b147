package scenarios_test

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
	"github.com/pinwall/pinwall/tunnel"
)

// lua is the repository's dissector, loaded by tshark.
var lua = filepath.Join("..", "wireshark", "pinwall.lua")

// captureRun runs one catalogue run in process with a capture and writes
// the capture to a file.
func captureRun(t *testing.T, id, variant string) (scenarios.Result, string) {
	t.Helper()
	all, err := scenarios.Catalogue()
	require.NoError(t, err)
	sel, err := scenarios.Find(all, id)
	require.NoError(t, err)
	runs, err := sel[0].Runs()
	require.NoError(t, err)
	i := slices.IndexFunc(runs, func(r scenarios.Run) bool { return string(r.Variant) == variant })
	require.GreaterOrEqual(t, i, 0, "no variant %s", variant)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res := scenarios.RunOne(ctx, harness.InProcess{Capture: true}, runs[i])
	require.Equal(t, scenarios.Pass, res.Verdict, "%s/%s: %s", id, variant, res.Error)
	require.NotNil(t, res.Capture)
	file := filepath.Join(t.TempDir(), "capture.pcapng")
	require.NoError(t, os.WriteFile(file, res.Capture.PCAPNG, 0o644))
	return res, file
}

// fieldsByLeg runs tshark and groups the values of field by interface.
func fieldsByLeg(t *testing.T, file, filter, field string, extra ...string) map[string][]string {
	t.Helper()
	args := append(append([]string{}, extra...), "-r", file, "-Y", filter, "-T", "fields", "-E", "occurrence=a", "-E", "aggregator=|", "-e", "frame.interface_name", "-e", field)
	out := map[string][]string{}
	for _, l := range capturetest.Lines(capturetest.Tshark(t, args...)) {
		leg, vals, _ := strings.Cut(l, "\t")
		for _, v := range strings.Split(vals, "|") {
			if v != "" {
				out[leg] = append(out[leg], v)
			}
		}
	}
	return out
}

func uniq(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return slices.Compact(s)
}

// sitesOf lists the "host:443" targets of a result's flows.
func sitesOf(res scenarios.Result) []string {
	var out []string
	for _, f := range res.Flows {
		out = append(out, f.Site+":443")
	}
	return uniq(out)
}

// TestCaptureDoubleDecrypt reads the capture of the double-decrypt run with
// tshark: the firewall intercepted the tunnel with a forged certificate
// and decrypted it; at the TLS layer both tunnel legs show only the
// gateway; inside (with pinwall's dissector) they carry every inner flow's
// target; the gateway's leg to the origins shows the sites' own TLS and
// their decrypted HTTP/2 requests. TCP analysis flags nothing.
func TestCaptureDoubleDecrypt(t *testing.T) {
	capturetest.RequireTshark(t)
	res, file := captureRun(t, "double-decrypt", "without-fix")
	c := res.Capture
	assert.Equal(t, []string{harness.LegLaptopFirewall, harness.LegFirewallGateway, harness.LegGatewayOrigins}, c.Legs)
	assert.Positive(t, c.KeyLines)
	assert.Zero(t, c.Dropped)

	assert.Empty(t, capturetest.AnalysisFlags(t, file), "Wireshark's TCP analysis flags nothing")
	assert.Empty(t, capturetest.BadChecksums(t, file))
	gateway := res.Roles.Gateways["gateway-acme.sse.test"]
	require.NotEmpty(t, gateway)

	// Without any option: the certificates of the tunnel's handshakes,
	// decrypted from the key log in the file. The laptop was shown the
	// firewall's forgery, the firewall the gateway's own certificate.
	issuers := fieldsByLeg(t, file, "tls.handshake.type == 11", "x509sat.printableString")
	assert.Contains(t, issuers[harness.LegLaptopFirewall], "pinwall Enterprise Forward Trust CA", "the forged certificate")
	assert.NotContains(t, issuers[harness.LegFirewallGateway], "pinwall Enterprise Forward Trust CA")
	assert.Contains(t, issuers[harness.LegFirewallGateway], "pinwall Internet Root CA")

	// The TLS layer of both tunnel legs names only the gateway.
	sni := fieldsByLeg(t, file, "tls.handshake.type == 1", "tls.handshake.extensions_server_name")
	assert.Equal(t, []string{"gateway-acme.sse.test"}, uniq(sni[harness.LegLaptopFirewall]))
	assert.Equal(t, []string{"gateway-acme.sse.test"}, uniq(sni[harness.LegFirewallGateway]))
	dsts := fieldsByLeg(t, file, "ip", "ip.dst")
	for _, leg := range []string{harness.LegLaptopFirewall, harness.LegFirewallGateway} {
		for _, d := range uniq(dsts[leg]) {
			assert.True(t, d == res.Roles.Laptop.String() || d == res.Roles.FirewallOut.String() || d == gateway[0].String(),
				"%s carries only the laptop's, the firewall's and the gateway's addresses, not %s", leg, d)
		}
	}
	// The ALPN is the tunnel's: the decrypted stream is pinwall's, not HTTP.
	alpn := fieldsByLeg(t, file, "tls.handshake.type == 2", "tls.handshake.extensions_alpn_str")
	assert.Equal(t, []string{"pinwall-tunnel/1"}, uniq(alpn[harness.LegLaptopFirewall]))

	// Inside, with pinwall's dissector: every inner flow's target, on both
	// tunnel legs (the firewall's decrypted view is the same as the
	// gateway's), never on the origins' leg.
	targets := fieldsByLeg(t, file, "pinwall.request", "pinwall.target", "-X", "lua_script:"+lua)
	sites := sitesOf(res)
	require.Len(t, res.Flows, 10)
	assert.Equal(t, sites, uniq(targets[harness.LegLaptopFirewall]))
	assert.Equal(t, sites, uniq(targets[harness.LegFirewallGateway]))
	assert.Len(t, targets[harness.LegLaptopFirewall], 10, "one Request per flow")
	assert.Empty(t, targets[harness.LegGatewayOrigins])
	replies := fieldsByLeg(t, file, "pinwall.reply.status", "pinwall.reply.status", "-X", "lua_script:"+lua)
	assert.Equal(t, []string{"0"}, uniq(replies[harness.LegLaptopFirewall]), "every flow answered ok")
	greetings := fieldsByLeg(t, file, "pinwall.greeting.tunnel_id", "pinwall.greeting.tunnel_id", "-X", "lua_script:"+lua)
	assert.Len(t, greetings[harness.LegLaptopFirewall], 1)

	// The gateway's side: the sites' own TLS and their HTTP/2 requests.
	originSNI := fieldsByLeg(t, file, "tls.handshake.type == 1", "tls.handshake.extensions_server_name")
	var named []string
	for _, n := range uniq(originSNI[harness.LegGatewayOrigins]) {
		named = append(named, n+":443")
	}
	assert.Equal(t, sites, named)
	auth := fieldsByLeg(t, file, "http2.headers.method", "http2.headers.authority")
	assert.Len(t, auth[harness.LegGatewayOrigins], 10, "one decrypted request per flow")
	assert.Empty(t, auth[harness.LegLaptopFirewall], "the inner TLS is end to end: nothing on the tunnel legs")
}

// TestCaptureDTLS reads the visibility run, a DTLS tunnel the firewall
// does not decrypt: every datagram decrypts from the key log, the SCTP
// association inside carries every flow's Request.
func TestCaptureDTLS(t *testing.T) {
	capturetest.RequireTshark(t)
	res, file := captureRun(t, "visibility", "baseline")
	assert.Empty(t, capturetest.AnalysisFlags(t, file))
	assert.Empty(t, capturetest.BadChecksums(t, file))
	targets := fieldsByLeg(t, file, "pinwall.request", "pinwall.target", "-X", "lua_script:"+lua)
	assert.Equal(t, sitesOf(res), uniq(targets[harness.LegLaptopFirewall]))
	// One Request per flow, on both legs (the same datagrams, relayed); an
	// SCTP retransmission carries a Request again, so count flow ids.
	flowIDs := fieldsByLeg(t, file, "pinwall.request", "pinwall.request.flow_id", "-X", "lua_script:"+lua)
	assert.Len(t, uniq(flowIDs[harness.LegLaptopFirewall]), len(res.Flows))
	assert.Len(t, uniq(flowIDs[harness.LegFirewallGateway]), len(res.Flows), "the same datagrams, relayed")
	assert.Equal(t, uniq(flowIDs[harness.LegLaptopFirewall]), uniq(flowIDs[harness.LegFirewallGateway]))
	// Without the dissector: DTLS 1.2 naming only the gateway.
	sni := fieldsByLeg(t, file, "dtls.handshake.type == 1", "dtls.handshake.extensions_server_name")
	assert.Equal(t, []string{"gateway-acme.sse.test"}, uniq(sni[harness.LegLaptopFirewall]))
	// The SCTP packets fill the path (tunnel.PathMTUPacket): in process
	// every hop is loopback, so the gateway's records carry packets beyond
	// the 1,200-byte default, and none beyond the 8,144 pion/dtls reads in
	// one datagram (the record adds 8 of nonce and 16 of tag).
	for _, leg := range []string{harness.LegLaptopFirewall, harness.LegFirewallGateway} {
		lens := fieldsByLeg(t, file, "dtls.record.content_type == 23", "dtls.record.length")[leg]
		require.NotEmpty(t, lens, leg)
		largest := 0
		for _, l := range lens {
			n, err := strconv.Atoi(l)
			require.NoError(t, err)
			largest = max(largest, n)
		}
		assert.Greater(t, largest, 1200+24, "%s: the largest record", leg)
		assert.LessOrEqual(t, largest, 8144+24, "%s: the largest record", leg)
	}
	// The tunnel's application data records are the record path's
	// (tunnel.RecordPath), numbered from tunnel.RecordSeqBase in both
	// directions, and they are the ones that decrypted into the Requests
	// above. Records below it are pion/dtls's: the handshake's and alerts.
	for _, leg := range []string{harness.LegLaptopFirewall, harness.LegFirewallGateway} {
		var path, pion int
		for _, s := range fieldsByLeg(t, file, "pinwall.request", "dtls.record.sequence_number", "-X", "lua_script:"+lua)[leg] {
			n, err := strconv.ParseUint(s, 10, 64)
			require.NoError(t, err)
			if n >= tunnel.RecordSeqBase {
				path++
			} else {
				pion++
			}
		}
		assert.Positive(t, path, "%s: Requests in record-path records", leg)
		assert.Zero(t, pion, "%s: Requests in pion/dtls's records", leg)
	}
	// The Greeting too, the tunnel's first application data record.
	for _, leg := range []string{harness.LegLaptopFirewall, harness.LegFirewallGateway} {
		seqs := fieldsByLeg(t, file, "pinwall.greeting", "dtls.record.sequence_number", "-X", "lua_script:"+lua)[leg]
		require.Len(t, seqs, 1, "%s: one Greeting", leg)
		n, err := strconv.ParseUint(seqs[0], 10, 64)
		require.NoError(t, err)
		assert.Equal(t, uint64(tunnel.RecordSeqBase), n, "%s: the gateway's first record-path record", leg)
	}
}

// TestCaptureCatalogueClean captures every run of the catalogue in process
// and has Wireshark check each: its TCP analysis flags nothing (no lost,
// unseen, retransmitted or out-of-order segment, no window trouble, no
// port reuse) and every IP, TCP and UDP checksum is right. Synthesized
// packets that confused it would be false evidence.
func TestCaptureCatalogueClean(t *testing.T) {
	if testing.Short() {
		t.Skip("the whole catalogue: skipped with -short")
	}
	capturetest.RequireTshark(t)
	all, err := scenarios.Catalogue()
	require.NoError(t, err)
	runs, err := scenarios.AllRuns(all)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	results := scenarios.Execute(ctx, runs, scenarios.ExecOptions{Runner: harness.InProcess{Capture: true}, Parallel: 2})
	dir := t.TempDir()
	for _, res := range results {
		if !assert.NotNil(t, res.Capture, res.Key()) {
			continue
		}
		assert.Positive(t, res.Capture.Packets, res.Key())
		file := filepath.Join(dir, strings.ReplaceAll(res.Key(), "/", "_")+".pcapng")
		require.NoError(t, os.WriteFile(file, res.Capture.PCAPNG, 0o644))
		assert.Empty(t, capturetest.AnalysisFlags(t, file), "%s: TCP analysis", res.Key())
		assert.Empty(t, capturetest.BadChecksums(t, file), "%s: checksums", res.Key())
	}
}
