package fwlog

import (
	"bytes"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/pinwall/pinwall/failure"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var t0 = time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)

func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

func fp(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

const (
	gatewayIssuer  = "CN=pinwall Internet Root CA,O=pinwall simulated internet"
	gatewaySubject = "CN=gateway-acme.sse.test,O=pinwall simulated internet"
	clientJA3Hash  = "cd08e31494f9531f560d64c695473da9"
	clientJA4      = "t13d0512h2_8daaf6152771_e5627efa2ab1"
)

// testRecord is one representative session, named for its golden line.
type testRecord struct {
	name string
	rec  Record
}

// testRecords are the sessions the scenarios produce, on the default
// topology (docs/topology.md): laptop 10.10.10.100, firewall outside 198.51.100.1 (NAT
// source), gateways 203.0.113.x, origins 192.0.2.x.
func testRecords() []testRecord {
	return []testRecord{
		{"spliced-tunnel", Record{
			Time: t0.Add(300 * time.Second), Start: t0, DurationMS: 300_000,
			SessionID: 1001,
			Src:       ap("10.10.10.100:51000"), Dst: ap("203.0.113.10:443"), NATSrc: ap("198.51.100.1:40001"),
			Proto: ProtoTCP, App: AppSSL, SNI: "gateway-acme.sse.test",
			Rule: "sse-gateway-no-decrypt", Action: ActionAllow,
			Decryption: &Decryption{
				Outcome:     OutcomeNotDecrypted,
				Reason:      "no-decrypt rule sse-gateway-no-decrypt matched SNI",
				TLSVersion:  "TLS1.3",
				ChainStatus: ChainUninspected,
				ALPN:        "h2",
				JA3:         clientJA3Hash,
				JA4:         clientJA4,
			},
			EndReason: EndTCPFin,
			BytesSent: 1_482_113, BytesReceived: 9_876_543,
			SrcHost: "laptop", DstHost: "gateway-acme.sse.test",
		}},
		{"udp-443-deny", Record{
			Time: t0.Add(2 * time.Second), Start: t0.Add(2 * time.Second),
			SessionID: 1002,
			Src:       ap("10.10.10.100:52000"), Dst: ap("203.0.113.10:443"),
			Proto: ProtoUDP, App: AppNotApplicable,
			Rule: "block-udp-443", Action: ActionDeny,
			EndReason: EndPolicyDeny,
			BytesSent: 1200, PacketsSent: 1,
			SrcHost: "laptop", DstHost: "gateway-acme.sse.test",
		}},
		{"decrypt-cert-validation", Record{
			Time: t0.Add(5*time.Second + 250*time.Millisecond), Start: t0.Add(5 * time.Second), DurationMS: 250,
			SessionID: 1003,
			Src:       ap("10.10.10.100:51002"), Dst: ap("203.0.113.11:443"), NATSrc: ap("198.51.100.1:40003"),
			Proto: ProtoTCP, App: AppSSL, SNI: "gateway-acme.sse.test",
			Rule: "decrypt-all", Action: ActionAllow,
			Decryption: &Decryption{
				Outcome:             OutcomeFailed,
				Reason:              "client rejected the forged certificate: remote error: tls: bad certificate",
				Leg:                 failure.LegClientFirewall,
				Cause:               failure.CauseForgedCertRejected,
				TLSVersion:          "TLS1.3",
				ClientStage:         "client-firewall: certificate rejected",
				ServerStage:         "firewall-gateway: handshake completed",
				ForgedFingerprint:   fp("forged gateway-acme.sse.test"),
				UpstreamFingerprint: fp("gateway-acme.sse.test"),
				UpstreamIssuer:      gatewayIssuer,
				UpstreamSubject:     gatewaySubject,
				ChainStatus:         ChainTrusted,
				ErrorIndex:          ErrorIndexCertificate,
				JA3:                 clientJA3Hash,
				JA4:                 clientJA4,
			},
			EndReason: EndDecryptCertValidation,
			BytesSent: 517, BytesReceived: 2911,
			SrcHost: "laptop", DstHost: "gateway-acme.sse.test",
		}},
		{"decrypted", Record{
			Time: t0.Add(12 * time.Second), Start: t0.Add(10 * time.Second), DurationMS: 2000,
			SessionID: 1004,
			Src:       ap("10.10.10.100:51003"), Dst: ap("192.0.2.20:443"), NATSrc: ap("198.51.100.1:40004"),
			Proto: ProtoTCP, App: AppWebBrowsing, SNI: "www.social.test",
			Rule: "decrypt-all", Action: ActionAllow,
			Decryption: &Decryption{
				Outcome:             OutcomeDecrypted,
				TLSVersion:          "TLS1.3",
				ClientStage:         "client-firewall: handshake completed",
				ServerStage:         "firewall-origin: handshake completed",
				ForgedFingerprint:   fp("forged www.social.test"),
				UpstreamFingerprint: fp("www.social.test"),
				UpstreamIssuer:      gatewayIssuer,
				UpstreamSubject:     "CN=www.social.test,O=pinwall simulated internet",
				ChainStatus:         ChainTrusted,
				ALPN:                "http/1.1",
				JA3:                 clientJA3Hash,
				JA4:                 "t13d0512h1_8daaf6152771_e5627efa2ab1",
			},
			EndReason: EndTCPFin,
			BytesSent: 734, BytesReceived: 1_049_411,
			SrcHost: "laptop", DstHost: "www.social.test",
		}},
		{"excluded", Record{
			Time: t0.Add(61 * time.Second), Start: t0.Add(31 * time.Second), DurationMS: 30_000,
			SessionID: 1005,
			Src:       ap("10.10.10.100:51004"), Dst: ap("203.0.113.11:443"), NATSrc: ap("198.51.100.1:40005"),
			Proto: ProtoTCP, App: AppSSL, SNI: "gateway-acme.sse.test", HostnameHint: "gateway-acme.sse.test",
			Rule: "decrypt-all", Action: ActionAllow,
			Decryption: &Decryption{
				Outcome:     OutcomeExcluded,
				Reason:      "learned exclusion: 203.0.113.11 gateway-acme.sse.test required a client certificate",
				TLSVersion:  "TLS1.3",
				ChainStatus: ChainUninspected,
				JA3:         clientJA3Hash,
				JA4:         clientJA4,
			},
			EndReason: EndTCPFin,
			BytesSent: 88_123, BytesReceived: 301_777,
			SrcHost: "laptop", DstHost: "gateway-acme.sse.test",
		}},
	}
}

func records() []Record {
	var out []Record
	for _, tr := range testRecords() {
		out = append(out, tr.rec)
	}
	return out
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		require.NoError(t, os.WriteFile(path, got, 0o644))
		return
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err, "run go test -update to create %s", path)
	assert.Equal(t, string(want), string(got), "%s differs; run go test -update and review the diff", path)
}

func TestGoldenFormats(t *testing.T) {
	ext := map[Format]string{
		FormatJSON: "jsonl", FormatPANTraffic: "csv", FormatPANDecryption: "csv",
		FormatFortiOS: "log", FormatCEF: "cef",
	}
	for _, f := range Formats() {
		t.Run(string(f), func(t *testing.T) {
			var buf bytes.Buffer
			w := NewWriter(&buf, f)
			for _, tr := range testRecords() {
				require.NoError(t, w.Log(tr.rec), tr.name)
			}
			golden(t, "firewall."+string(f)+"."+ext[f], buf.Bytes())
		})
	}
}

func TestJSONRoundTripAndFieldNames(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf, FormatJSON)
	for _, r := range records() {
		require.NoError(t, w.Log(r))
	}
	got, err := ReadJSONL(&buf)
	require.NoError(t, err)
	require.Len(t, got, len(records()))
	for i, want := range records() {
		assert.True(t, want.Time.Equal(got[i].Time))
		got[i].Time, got[i].Start = want.Time, want.Start
		assert.Equal(t, want, got[i])
	}

	b, err := Marshal(FormatJSON, testRecords()[2].rec)
	require.NoError(t, err)
	var m map[string]any
	require.NoError(t, json.Unmarshal(b, &m))
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	assert.ElementsMatch(t, []string{
		"time", "start", "duration_ms", "session_id", "src", "dst", "nat_src", "proto", "app",
		"sni", "rule", "action", "decryption", "end_reason", "bytes_sent", "bytes_received",
		"packets_sent", "packets_received", "src_host", "dst_host",
	}, keys)
	assert.Equal(t, "10.10.10.100:51002", m["src"])
	assert.Equal(t, "198.51.100.1:40003", m["nat_src"])
	dec := m["decryption"].(map[string]any)
	assert.Equal(t, "client-firewall", dec["leg"])
	assert.Equal(t, "forged-certificate-rejected", dec["cause"])

	b, err = Marshal(FormatJSON, testRecords()[1].rec)
	require.NoError(t, err)
	assert.NotContains(t, string(b), "nat_src", "no NAT: nat_src omitted")
	assert.NotContains(t, string(b), "decryption", "decryption did not apply: omitted")
}

// Documented field orders, copied from the PAN-OS guides.
const (
	panTraffic91     = `FUTURE_USE, Receive Time, Serial Number, Type, Threat/Content Type, FUTURE_USE, Generated Time, Source Address, Destination Address, NAT Source IP, NAT Destination IP, Rule Name, Source User, Destination User, Application, Virtual System, Source Zone, Destination Zone, Inbound Interface, Outbound Interface, Log Action, FUTURE_USE, Session ID, Repeat Count, Source Port, Destination Port, NAT Source Port, NAT Destination Port, Flags, Protocol, Action, Bytes, Bytes Sent, Bytes Received, Packets, Start Time, Elapsed Time, Category, FUTURE_USE, Sequence Number, Action Flags, Source Location, Destination Location, FUTURE_USE, Packets Sent, Packets Received, Session End Reason, Device Group Hierarchy Level 1, Device Group Hierarchy Level 2, Device Group Hierarchy Level 3, Device Group Hierarchy Level 4, Virtual System Name, Device Name, Action Source, Source VM UUID, Destination VM UUID, Tunnel ID/IMSI, Monitor Tag/IMEI, Parent Session ID, Parent Start Time, Tunnel Type, SCTP Association ID, SCTP Chunks, SCTP Chunks Sent, SCTP Chunks Received, Rule UUID, HTTP/2 Connection, App Flap Count, Policy ID, Link Switches, SD-WAN Cluster, SD-WAN Device Type, SD-WAN Cluster Type, SD-WAN Site, Dynamic User Group Name`
	panDecryption100 = `FUTURE_USE, Receive Time, Serial Number, Type, Threat/Content Type, Config Version, Generate Time, Source Address, Destination Address, NAT Source IP, NAT Destination IP, Rule, Source User, Destination User, Application, Virtual System, Source Zone, Destination Zone, Inbound Interface, Outbound Interface, Log Action, Time Logged, Session ID, Repeat Count, Source Port, Destination Port, NAT Source Port, NAT Destination Port, Flags, IP Protocol, Action, Tunnel, FUTURE_USE, FUTURE_USE, Source VM UUID, Destination VM UUID, UUID for rule, Stage for Client to Firewall, Stage for Firewall to Server, TLS Version, Key Exchange Algorithm, Encryption Algorithm, Hash Algorithm, Policy Name, Elliptic Curve, Error Index, Root Status, Chain Status, Proxy Type, Certificate Serial Number, Fingerprint, Certificate Start Date, Certificate End Date, Certificate Version, Certificate Size, Common Name Length, Issuer Common Name Length, Root Common Name Length, SNI Length, Certificate Flags, Subject Common Name, Issuer Subject Common Name, Root Subject Common Name, Server Name Indication, Error, Container ID, POD Namespace, POD Name, Source External Dynamic List, Destination External Dynamic List, Source Dynamic Address Group, Destination Dynamic Address Group, High Res Timestamp, Source Device Category, Source Device Profile, Source Device Model, Source Device Vendor, Source Device OS Family, Source Device OS Version, Source Hostname, Source Mac Address, Destination Device Category, Destination Device Profile, Destination Device Model, Destination Device Vendor, Destination Device OS Family, Destination Device OS Version, Destination Hostname, Destination Mac Address, Sequence Number, Action Flags`
)

func fieldNames(fs []field) []string {
	out := make([]string, len(fs))
	for i, f := range fs {
		out[i] = f.name
	}
	return out
}

func TestPANFieldOrderMatchesDocumentation(t *testing.T) {
	r := testRecords()[2].rec
	assert.Equal(t, strings.Split(panTraffic91, ", "), fieldNames(panTrafficFields(r, Device{})))
	assert.Len(t, panTrafficFields(r, Device{}), 75)
	assert.Equal(t, strings.Split(panDecryption100, ", "), fieldNames(panDecryptionFields(r, Device{})))
	assert.Len(t, panDecryptionFields(r, Device{}), 91)
}

// panField parses a PAN CSV line and returns the named field of the
// documented order.
func panField(t *testing.T, line []byte, order, name string) string {
	t.Helper()
	rec, err := csv.NewReader(bytes.NewReader(line)).Read()
	require.NoError(t, err)
	names := strings.Split(order, ", ")
	require.Len(t, rec, len(names))
	for i, n := range names {
		if n == name {
			return rec[i]
		}
	}
	t.Fatalf("no field %q", name)
	return ""
}

func TestPANTrafficValues(t *testing.T) {
	tests := []struct {
		name   string
		rec    Record
		fields map[string]string
	}{
		{"spliced tunnel", testRecords()[0].rec, map[string]string{
			"Type": "TRAFFIC", "Threat/Content Type": "end", "Source Address": "10.10.10.100",
			"Destination Address": "203.0.113.10", "NAT Source IP": "198.51.100.1", "NAT Source Port": "40001",
			"Destination Port": "443", "Application": "ssl", "Protocol": "tcp", "Action": "allow",
			"Flags": "0x400000", "Bytes": "11358656", "Elapsed Time": "300",
			"Start Time": "2026/03/02 10:00:00", "Receive Time": "2026/03/02 10:05:00",
			"Session End Reason": "tcp-fin", "Source Location": "10.0.0.0-10.255.255.255",
		}},
		{"udp deny", testRecords()[1].rec, map[string]string{
			"Threat/Content Type": "deny", "Protocol": "udp", "Action": "deny", "Application": "not-applicable",
			"NAT Source IP": "0.0.0.0", "NAT Source Port": "0", "Flags": "0x0", "Packets": "1",
			"Packets Sent": "1", "Session End Reason": "policy-deny", "Rule Name": "block-udp-443",
		}},
		{"decrypt failure", testRecords()[2].rec, map[string]string{
			"Flags": "0x1400000", "Session End Reason": "decrypt-cert-validation", "Threat/Content Type": "end",
		}},
		{"drop", Record{Src: ap("10.10.10.100:1"), Dst: ap("192.0.2.1:443"), Proto: ProtoUDP, Action: ActionDrop, Rule: "rule, with \"comma\""}, map[string]string{
			"Threat/Content Type": "drop", "Rule Name": `rule, with "comma"`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			line, err := Marshal(FormatPANTraffic, tt.rec)
			require.NoError(t, err)
			for name, want := range tt.fields {
				assert.Equal(t, want, panField(t, line, panTraffic91, name), name)
			}
		})
	}
}

func TestPANDecryptionValues(t *testing.T) {
	line, err := Marshal(FormatPANDecryption, testRecords()[2].rec)
	require.NoError(t, err)
	for name, want := range map[string]string{
		"Type": "DECRYPTION", "Proxy Type": "Forward", "Error Index": "Certificate",
		"Root Status": "trusted", "Chain Status": "Trusted", "TLS Version": "TLS1.3",
		"Stage for Client to Firewall": "client-firewall: certificate rejected",
		"Fingerprint":                  fp("gateway-acme.sse.test"),
		"Subject Common Name":          "gateway-acme.sse.test",
		"Issuer Subject Common Name":   "pinwall Internet Root CA",
		"Server Name Indication":       "gateway-acme.sse.test", "SNI Length": "21",
		"Error": "client rejected the forged certificate: remote error: tls: bad certificate",
	} {
		assert.Equal(t, want, panField(t, line, panDecryption100, name), name)
	}

	line, err = Marshal(FormatPANDecryption, testRecords()[4].rec)
	require.NoError(t, err)
	assert.Equal(t, "No Decrypt", panField(t, line, panDecryption100, "Proxy Type"))
	assert.Equal(t, "None", panField(t, line, panDecryption100, "Error Index"))
	assert.Equal(t, "Uninspected", panField(t, line, panDecryption100, "Chain Status"))
	assert.Empty(t, panField(t, line, panDecryption100, "Error"), "only failures carry an error")

	line, err = Marshal(FormatPANDecryption, testRecords()[1].rec)
	require.NoError(t, err)
	assert.Nil(t, line, "no decryption rule applied: no DECRYPTION line")
}

func TestFortiOSLines(t *testing.T) {
	lines := func(r Record) []string {
		b, err := Marshal(FormatFortiOS, r)
		require.NoError(t, err)
		return strings.Split(string(b), "\n")
	}
	recs := testRecords()

	got := lines(recs[0].rec)
	require.Len(t, got, 1, "a spliced session is one traffic line")
	assert.Contains(t, got[0], `logid="0000000013" type="traffic" subtype="forward"`)
	assert.Contains(t, got[0], `srcip=10.10.10.100 srcport=51000`)
	assert.Contains(t, got[0], `proto=6 action="close"`)
	assert.Contains(t, got[0], `service="HTTPS" trandisp="snat" transip=198.51.100.1 transport=40001 app="SSL"`)
	assert.Contains(t, got[0], `duration=300 sentbyte=1482113 rcvdbyte=9876543`)

	got = lines(recs[1].rec)
	require.Len(t, got, 1)
	assert.Contains(t, got[0], `proto=17 action="deny" policyname="block-udp-443"`)
	assert.Contains(t, got[0], `service="udp/443" trandisp="noop" appcat="unscanned"`)

	got = lines(recs[2].rec)
	require.Len(t, got, 2, "a failed decryption adds the SSL anomaly event first")
	assert.Contains(t, got[0], `type="utm" subtype="ssl" eventtype="ssl-anomalies" level="warning"`)
	assert.Contains(t, got[0], `action="blocked"`)
	assert.Contains(t, got[0], `reason="forged-certificate-rejected"`)
	assert.Contains(t, got[1], `action="client-rst"`)
	assert.Contains(t, got[1], `utmaction="block" countssl=1`)

	got = lines(recs[4].rec)
	require.Len(t, got, 2)
	assert.Contains(t, got[0], `logid="1701062003" type="utm" subtype="ssl" eventtype="sslexempt" level="notice"`)
	assert.Contains(t, got[0], `action="exempt" hostname="gateway-acme.sse.test"`)

	// Server-side failures and certificate-request blocks.
	r := recs[2].rec
	dec := *r.Decryption
	dec.Leg, dec.Cause = failure.LegFirewallGateway, failure.CauseClientCertRequired
	r.Decryption = &dec
	got = lines(r)
	assert.Contains(t, got[0], `logid="1700062051"`)
	assert.Contains(t, got[1], `action="server-rst"`)

	// Quotes and backslashes inside values are escaped.
	r = recs[1].rec
	r.Rule = `say "hi" \ bye`
	got = lines(r)
	assert.Contains(t, got[0], `policyname="say \"hi\" \\ bye"`)
}

func TestCEFEscaping(t *testing.T) {
	header := []struct{ in, want string }{
		{"plain", "plain"},
		{"a|b", `a\|b`},
		{`a\b`, `a\\b`},
		{`a\|b`, `a\\\|b`},
		{"line\nbreak", "line break"},
		{"a=b", "a=b"},
	}
	for _, tt := range header {
		assert.Equal(t, tt.want, cefHeaderEscape(tt.in), "header %q", tt.in)
	}
	values := []struct{ in, want string }{
		{"plain value", "plain value"},
		{"a=b", `a\=b`},
		{`C:\dir`, `C:\\dir`},
		{"two\nlines", `two\nlines`},
		{"crlf\r\nend", `crlf\nend`},
		{"cr\rend", `cr\rend`},
		{"a|b", "a|b"},
		{`\=`, `\\\=`},
	}
	for _, tt := range values {
		assert.Equal(t, tt.want, cefValueEscape(tt.in), "value %q", tt.in)
	}

	r := testRecords()[2].rec
	r.Rule = "decrypt|all=yes\\now\nplease"
	b, err := Encoder{Format: FormatCEF, Device: Device{Version: "2.0|beta"}}.Marshal(r)
	require.NoError(t, err)
	line := string(b)
	assert.NotContains(t, line, "\n")
	assert.True(t, strings.HasPrefix(line, `CEF:0|pinwall|firewall|2.0\|beta|decrypt-cert-validation|decryption failed|7|`), line)
	assert.Contains(t, line, `cs1Label=Rule cs1=decrypt|all\=yes\\now\nplease`)
}

func TestCEFExtensions(t *testing.T) {
	b, err := Marshal(FormatCEF, testRecords()[0].rec)
	require.NoError(t, err)
	line := string(b)
	for _, want := range []string{
		"CEF:0|pinwall|firewall|1.0|tcp-fin|session end|1|",
		"rt=1772445900000", "start=1772445600000",
		"src=10.10.10.100 spt=51000 dst=203.0.113.10 dpt=443",
		"sourceTranslatedAddress=198.51.100.1 sourceTranslatedPort=40001",
		"proto=TCP app=ssl act=allow reason=tcp-fin externalId=1001",
		"shost=laptop dhost=gateway-acme.sse.test in=1482113 out=9876543",
		"cs2Label=DecryptionOutcome cs2=not-decrypted",
		"flexString1Label=JA4 flexString1=" + clientJA4,
	} {
		assert.Contains(t, line, want)
	}
	b, err = Marshal(FormatCEF, testRecords()[1].rec)
	require.NoError(t, err)
	assert.Contains(t, string(b), "|policy-deny|session deny|5|")
	assert.NotContains(t, string(b), "sourceTranslatedAddress")
}

func TestFormatParsing(t *testing.T) {
	assert.Equal(t, []string{"json", "pan-traffic-csv", "pan-decryption-csv", "fortios-kv", "cef"}, Choices())
	for _, c := range Choices() {
		f, err := ParseFormat(c)
		require.NoError(t, err)
		assert.Equal(t, c, f.String())
	}
	_, err := ParseFormat("syslog")
	require.ErrorIs(t, err, ErrUnknownFormat)
	assert.ErrorContains(t, err, `"syslog" (choices: json, pan-traffic-csv, pan-decryption-csv, fortios-kv, cef)`)

	var f Format
	require.NoError(t, f.UnmarshalText([]byte("cef")))
	assert.Equal(t, FormatCEF, f)
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	fs.SetOutput(new(bytes.Buffer))
	fs.Var(&f, "format", "log format")
	require.NoError(t, fs.Parse([]string{"-format", "fortios-kv"}))
	assert.Equal(t, FormatFortiOS, f)
	require.Error(t, fs.Parse([]string{"-format", "xml"}))

	_, err = Marshal("xml", testRecords()[0].rec)
	require.ErrorIs(t, err, ErrUnknownFormat)
	err = NewWriter(new(bytes.Buffer), "xml").Log(testRecords()[0].rec)
	require.ErrorIs(t, err, ErrUnknownFormat)
}

func TestValidate(t *testing.T) {
	ok := testRecords()[2].rec
	require.NoError(t, ok.Validate())
	tests := []struct {
		name   string
		mutate func(*Record)
		want   string
	}{
		{"no src", func(r *Record) { r.Src = netip.AddrPort{} }, "src is not a valid"},
		{"proto", func(r *Record) { r.Proto = "sctp" }, `proto "sctp"`},
		{"app", func(r *Record) { r.App = "facebook" }, `app "facebook"`},
		{"action", func(r *Record) { r.Action = "permit" }, `action "permit"`},
		{"end reason", func(r *Record) { r.EndReason = "tcp-close" }, `end_reason "tcp-close"`},
		{"outcome", func(r *Record) { r.Decryption = &Decryption{Outcome: "maybe"} }, `decryption.outcome "maybe"`},
		{"leg", func(r *Record) { r.Decryption = &Decryption{Outcome: OutcomeFailed, Leg: "laptop"} }, `decryption.leg "laptop"`},
		{"cause", func(r *Record) { r.Decryption = &Decryption{Outcome: OutcomeFailed, Cause: "gremlins"} }, `decryption.cause "gremlins"`},
		{"chain", func(r *Record) { r.Decryption = &Decryption{Outcome: OutcomeFailed, ChainStatus: "ok"} }, `decryption.chain_status "ok"`},
		{"duration", func(r *Record) { r.DurationMS = -1 }, "duration_ms -1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := ok
			tt.mutate(&r)
			err := r.Validate()
			require.Error(t, err)
			assert.ErrorContains(t, err, "fwlog: invalid record (session 1003)")
			assert.ErrorContains(t, err, tt.want)
			for _, f := range Formats() {
				_, err := Marshal(f, r)
				assert.Error(t, err, f)
			}
		})
	}
}

func TestWriterConcurrent(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf, FormatJSON)
	const goroutines, each = 16, 50
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range each {
				r := testRecords()[i%5].rec
				r.SessionID = uint64(g*each + i)
				if err := w.Log(r); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	got, err := ReadJSONL(&buf)
	require.NoError(t, err)
	require.Len(t, got, goroutines*each)
	seen := map[uint64]bool{}
	for _, r := range got {
		seen[r.SessionID] = true
	}
	assert.Len(t, seen, goroutines*each, "every line intact")
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestLogFanOutAndMemory(t *testing.T) {
	var jsonBuf, panBuf bytes.Buffer
	clock := t0
	l := NewLog(LogConfig{
		Writers: []Logger{NewWriter(&jsonBuf, FormatJSON), nil, NewWriter(&panBuf, FormatPANTraffic)},
		Keep:    3,
		Now:     func() time.Time { return clock },
	})
	for _, r := range records() {
		require.NoError(t, l.Log(r))
	}
	total, dropped := l.Total()
	assert.Equal(t, uint64(5), total)
	assert.Equal(t, uint64(2), dropped)
	assert.Equal(t, 3, l.Len())
	var ids []uint64
	for _, r := range l.Records() {
		ids = append(ids, r.SessionID)
	}
	assert.Equal(t, []uint64{1003, 1004, 1005}, ids, "oldest first, oldest dropped")
	assert.Equal(t, 5, strings.Count(jsonBuf.String(), "\n"))
	assert.Equal(t, 5, strings.Count(panBuf.String(), "\n"))

	failed := l.Filter(func(r Record) bool { return r.Outcome() == OutcomeFailed })
	require.Len(t, failed, 1)
	assert.Equal(t, failure.LegClientFirewall, failed[0].Decryption.Leg)
	failed[0].Decryption.Leg = failure.LegNone
	assert.Equal(t, failure.LegClientFirewall, l.Filter(func(r Record) bool { return r.SessionID == 1003 })[0].Decryption.Leg,
		"callers get copies")

	// Zero times are stamped with the injected clock.
	r := records()[0]
	r.Time = time.Time{}
	r.SessionID = 2000
	require.NoError(t, l.Log(r))
	last := l.Records()[2]
	assert.Equal(t, uint64(2000), last.SessionID)
	assert.Equal(t, clock, last.Time)

	// Invalid records are refused, not kept.
	r.Proto = "icmp"
	require.Error(t, l.Log(r))
	total, _ = l.Total()
	assert.Equal(t, uint64(6), total)
}

func TestLogWriterFailureDoesNotStopOthers(t *testing.T) {
	var buf bytes.Buffer
	l := NewLog(LogConfig{Writers: []Logger{NewWriter(failingWriter{}, FormatCEF), NewWriter(&buf, FormatJSON)}})
	err := l.Log(records()[0])
	require.Error(t, err)
	assert.ErrorContains(t, err, "fwlog: write cef: disk full")
	assert.Equal(t, 1, strings.Count(buf.String(), "\n"))
	assert.Equal(t, 1, l.Len())

	none := NewLog(LogConfig{Keep: -1})
	require.NoError(t, none.Log(records()[0]))
	assert.Empty(t, none.Records())
	assert.Equal(t, 0, NewLog(LogConfig{}).Len())
}

func TestLogConcurrent(t *testing.T) {
	var buf bytes.Buffer
	l := NewLog(LogConfig{Writers: []Logger{NewWriter(&buf, FormatFortiOS)}, Keep: 100})
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 25 {
				r := records()[i%5]
				r.SessionID = uint64(g*100 + i)
				_ = l.Log(r)
				_ = l.Filter(func(r Record) bool { return r.Proto == ProtoUDP })
			}
		})
	}
	wg.Wait()
	total, dropped := l.Total()
	assert.Equal(t, uint64(200), total)
	assert.Equal(t, uint64(100), dropped)
	assert.Len(t, l.Records(), 100)
}

func TestReadJSONLErrors(t *testing.T) {
	good, err := Marshal(FormatJSON, records()[0])
	require.NoError(t, err)
	g := string(good)
	tests := []struct {
		name  string
		input string
		want  string
		n     int
	}{
		{"blank lines skipped", "\n" + g + "\n\n  \n" + g + "\n", "", 2},
		{"no trailing newline", g, "", 1},
		{"unknown field", g + "\n" + `{"time":"2026-03-02T10:00:00Z","srcaddr":"x"}` + "\n", `fwlog: line 2: json: unknown field "srcaddr"`, 1},
		{"bad syntax", g + "\n" + g + "\n{nope\n", "fwlog: line 3:", 2},
		{"trailing data", g + " {}\n", "fwlog: line 1: trailing data", 0},
		{"bad address", strings.Replace(g, "10.10.10.100:51000", "10.10.10.100", 1), "fwlog: line 1:", 0},
		{"invalid record", strings.Replace(g, `"proto":"tcp"`, `"proto":"sctp"`, 1), `fwlog: line 1: invalid record: proto "sctp"`, 0},
		{"too long", g + "\n" + strings.Repeat("x", maxLine+1) + "\n", "fwlog: line 2: longer than", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ReadJSONL(strings.NewReader(tt.input))
			if tt.want == "" {
				require.NoError(t, err)
			} else {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tt.want)
			}
			assert.Len(t, got, tt.n, "records before the error are returned")
		})
	}
}

func FuzzReadJSONL(f *testing.F) {
	for _, r := range records() {
		b, err := Marshal(FormatJSON, r)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("\n\n"))
	f.Add([]byte(`{"src":"[::1]:443","dst":"[2001:db8::1]:443","proto":"udp"}`))
	f.Add([]byte(`{"decryption":null}` + "\n" + `{"decryption":{"outcome":"failed","leg":"x"}}`))
	f.Add([]byte(`{"session_id":-1}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		recs, err := ReadJSONL(bytes.NewReader(data))
		if err != nil {
			return
		}
		for _, r := range recs {
			if err := r.Validate(); err != nil {
				t.Fatalf("ReadJSONL returned an invalid record: %v", err)
			}
			for _, format := range Formats() {
				if _, err := Marshal(format, r); err != nil {
					t.Fatalf("%s: %v", format, err)
				}
			}
		}
	})
}

func TestIsReserved(t *testing.T) {
	for _, a := range []string{"10.10.10.100", "198.51.100.1", "203.0.113.10", "192.0.2.20", "127.0.0.1", "2001:db8::1"} {
		assert.True(t, isReserved(netip.MustParseAddr(a)), a)
	}
	assert.False(t, isReserved(netip.MustParseAddr("8.8.8.8")))
}

func TestDeviceOverridesDefaults(t *testing.T) {
	dev := Device{
		Serial: "013201020735", Name: "edge-fw-01", VirtualSystem: "vsys2",
		InsideZone: "lan", OutsideZone: "internet",
		InsideInterface: "ae1.10", OutsideInterface: "ae2", LogAction: "to-siem", Version: "2.1",
	}
	r := testRecords()[0].rec
	var buf bytes.Buffer
	for _, f := range []Format{FormatPANTraffic, FormatFortiOS, FormatCEF} {
		w := NewWriter(&buf, f, WithDevice(dev))
		assert.Equal(t, f, w.Format())
		require.NoError(t, w.Log(r))
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	require.Len(t, lines, 3)
	for name, want := range map[string]string{
		"Serial Number": "013201020735", "Virtual System": "vsys2", "Source Zone": "lan",
		"Destination Zone": "internet", "Inbound Interface": "ae1.10", "Outbound Interface": "ae2",
		"Log Action": "to-siem", "Device Name": "edge-fw-01",
	} {
		assert.Equal(t, want, panField(t, []byte(lines[0]), panTraffic91, name), name)
	}
	assert.Contains(t, lines[1], `devname="edge-fw-01" devid="013201020735"`)
	assert.Contains(t, lines[1], `vd="vsys2" srcip=10.10.10.100 srcport=51000 srcintf="ae1.10"`)
	assert.True(t, strings.HasPrefix(lines[2], "CEF:0|pinwall|firewall|2.1|"))
	assert.Contains(t, lines[2], "deviceExternalId=013201020735 dvchost=edge-fw-01 deviceInboundInterface=ae1.10")
}

func TestFortiOSActionsAndApps(t *testing.T) {
	base := Record{Src: ap("10.10.10.100:5000"), Dst: ap("203.0.113.10:443"), Proto: ProtoTCP, Action: ActionAllow}
	tests := []struct {
		name   string
		mutate func(*Record)
		want   string
	}{
		{"fin", func(r *Record) { r.EndReason = EndTCPFin }, `action="close"`},
		{"client rst", func(r *Record) { r.EndReason = EndTCPRSTFromClient }, `action="client-rst"`},
		{"server rst", func(r *Record) { r.EndReason = EndTCPRSTFromServer }, `action="server-rst"`},
		{"aged out", func(r *Record) { r.EndReason = EndAgedOut }, `action="timeout"`},
		{"policy deny on allow", func(r *Record) { r.EndReason = EndPolicyDeny }, `action="deny"`},
		{"reset both", func(r *Record) { r.Action = ActionResetBoth }, `action="deny"`},
		{"udp", func(r *Record) { r.Proto = ProtoUDP; r.App = AppDTLS }, `action="accept" policytype="policy" service="udp/443" trandisp="noop" app="DTLS"`},
		{"quic", func(r *Record) { r.Proto = ProtoUDP; r.App = AppQUIC }, `app="QUIC"`},
		{"http2", func(r *Record) { r.App = AppHTTP2 }, `app="HTTP2"`},
		{"http", func(r *Record) { r.Dst = ap("192.0.2.20:80") }, `service="HTTP"`},
		{"public address", func(r *Record) { r.Dst = ap("8.8.8.8:443") }, `srccountry="Reserved" sessionid=0`},
		{"decrypt error no decryption", func(r *Record) { r.EndReason = EndDecryptError }, `action="client-rst"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := base
			tt.mutate(&r)
			b, err := Marshal(FormatFortiOS, r)
			require.NoError(t, err)
			assert.Contains(t, string(b), tt.want)
		})
	}
	assert.True(t, EndDecryptCertValidation.IsDecrypt())
	assert.False(t, EndTCPFin.IsDecrypt())
}
