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
	"strconv"
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
			Rule: "sse-gateway-no-decrypt", RuleID: 2, Action: ActionAllow,
			JA3: clientJA3Hash, JA4: clientJA4,
			Decryption: &Decryption{
				Outcome:       OutcomeNotDecrypted,
				Reason:        "no-decrypt rule sse-gateway-no-decrypt matched SNI",
				ExemptBy:      ExemptName,
				TLSVersion:    "TLS1.3",
				ClientMessage: "Server_Hello", ServerMessage: "Server_Hello",
				ChainStatus: ChainUninspected,
				ALPN:        "h2",
			},
			EndReason: EndTCPFin,
			BytesSent: 1_482_113, BytesReceived: 9_876_543,
			PacketsSent: 1402, PacketsReceived: 7311, PacketsSource: "tcp_info",
			SrcHost: "laptop", DstHost: "gateway-acme.sse.test",
		}},
		{"udp-443-deny", Record{
			Time: t0.Add(2 * time.Second), Start: t0.Add(2 * time.Second),
			SessionID: 1002,
			Src:       ap("10.10.10.100:52000"), Dst: ap("203.0.113.10:443"),
			Proto: ProtoUDP, App: AppNotApplicable,
			Rule: "block-udp-443", RuleID: 3, Action: ActionDeny,
			JA3: "e9b1e2d1b6f8b3c5a7d90a1b2c3d4e5f", JA4: "dd2d0807pl_1c5c9bb5ce1b_57ba3b0b6a36",
			EndReason: EndPolicyDeny,
			BytesSent: 1200, PacketsSent: 1, PacketsSource: "datagrams",
			SrcHost: "laptop", DstHost: "gateway-acme.sse.test",
		}},
		{"decrypt-cert-validation", Record{
			Time: t0.Add(5*time.Second + 250*time.Millisecond), Start: t0.Add(5 * time.Second), DurationMS: 250,
			SessionID: 1003,
			Src:       ap("10.10.10.100:51002"), Dst: ap("203.0.113.11:443"), NATSrc: ap("198.51.100.1:40003"),
			Proto: ProtoTCP, App: AppSSL, SNI: "gateway-acme.sse.test",
			Rule: "decrypt-all", RuleID: 4, Action: ActionResetBoth,
			JA3: clientJA3Hash, JA4: clientJA4,
			Decryption: &Decryption{
				Outcome:             OutcomeFailed,
				Reason:              "client rejected the forged certificate: bad_certificate",
				Leg:                 failure.LegClientFirewall,
				Cause:               failure.CauseForgedCertRejected,
				Alert:               "bad_certificate",
				AlertFrom:           "client",
				TLSVersion:          "TLS1.3",
				ClientStage:         "client-firewall: certificate rejected",
				ServerStage:         "firewall-gateway: handshake completed",
				ClientMessage:       "Certificate",
				ServerMessage:       "Finished",
				CipherSuite:         "TLS_AES_128_GCM_SHA256",
				KeyExchange:         "x25519",
				UpstreamKeyExchange: "x25519",
				ForgedFingerprint:   fp("forged gateway-acme.sse.test"),
				ForgedKey:           "ECDSA-P256",
				ForgedBy:            ForgedByTrust,
				UpstreamFingerprint: fp("gateway-acme.sse.test"),
				UpstreamIssuer:      gatewayIssuer,
				UpstreamSubject:     gatewaySubject,
				UpstreamRoot:        "pinwall Internet Root CA",
				UpstreamSerial:      "5f2e8d41a0c3",
				UpstreamNotBefore:   t0.Add(-24 * time.Hour),
				UpstreamNotAfter:    t0.Add(365 * 24 * time.Hour),
				UpstreamKeyType:     "RSA",
				UpstreamKeyBits:     2048,
				ChainStatus:         ChainTrusted,
				ErrorIndex:          ErrorIndexCertificate,
			},
			EndReason: EndDecryptCertValidation,
			BytesSent: 517, BytesReceived: 2911,
			PacketsSent: 6, PacketsReceived: 5, PacketsSource: "tcp_info",
			SrcHost: "laptop", DstHost: "gateway-acme.sse.test",
		}},
		{"decrypted", Record{
			Time: t0.Add(12 * time.Second), Start: t0.Add(10 * time.Second), DurationMS: 2000,
			SessionID: 1004,
			Src:       ap("10.10.10.100:51003"), Dst: ap("192.0.2.20:443"), NATSrc: ap("198.51.100.1:40004"),
			Proto: ProtoTCP, App: AppWebBrowsing, SNI: "www.social.test",
			Rule: "decrypt-all", RuleID: 4, Action: ActionAllow,
			JA3: clientJA3Hash, JA4: "t13d0512h1_8daaf6152771_e5627efa2ab1",
			Decryption: &Decryption{
				Outcome:             OutcomeDecrypted,
				TLSVersion:          "TLS1.3",
				ClientStage:         "client-firewall: handshake completed",
				ServerStage:         "firewall-origin: handshake completed",
				ClientMessage:       "Finished",
				ServerMessage:       "Finished",
				CipherSuite:         "TLS_AES_256_GCM_SHA384",
				KeyExchange:         "X25519MLKEM768",
				UpstreamKeyExchange: "X25519MLKEM768",
				ForgedFingerprint:   fp("forged www.social.test"),
				ForgedKey:           "ECDSA-P256",
				ForgedBy:            ForgedByTrust,
				UpstreamFingerprint: fp("www.social.test"),
				UpstreamIssuer:      gatewayIssuer,
				UpstreamSubject:     "CN=www.social.test,O=pinwall simulated internet",
				UpstreamRoot:        "pinwall Internet Root CA",
				UpstreamSerial:      "1d",
				UpstreamNotBefore:   t0.Add(-48 * time.Hour),
				UpstreamNotAfter:    t0.Add(90 * 24 * time.Hour),
				UpstreamKeyType:     "ECDSA",
				UpstreamKeyBits:     256,
				ChainStatus:         ChainTrusted,
				ALPN:                "http/1.1",
			},
			PacketsSent: 9, PacketsReceived: 761, PacketsSource: "tcp_info",
			EndReason: EndTCPFin,
			BytesSent: 734, BytesReceived: 1_049_411,
			SrcHost: "laptop", DstHost: "www.social.test",
		}},
		{"excluded", Record{
			Time: t0.Add(61 * time.Second), Start: t0.Add(31 * time.Second), DurationMS: 30_000,
			SessionID: 1005,
			Src:       ap("10.10.10.100:51004"), Dst: ap("203.0.113.11:443"), NATSrc: ap("198.51.100.1:40005"),
			Proto: ProtoTCP, App: AppSSL, SNI: "gateway-acme.sse.test", HostnameHint: "gateway-acme.sse.test",
			Rule: "decrypt-all", RuleID: 4, Action: ActionAllow,
			JA3: clientJA3Hash, JA4: clientJA4,
			Decryption: &Decryption{
				Outcome:     OutcomeExcluded,
				Reason:      "learned exclusion: 203.0.113.11 gateway-acme.sse.test required a client certificate",
				ExemptBy:    ExemptCache,
				TLSVersion:  "TLS1.3",
				ChainStatus: ChainUninspected,
			},
			EndReason: EndTCPFin,
			BytesSent: 88_123, BytesReceived: 301_777,
			SrcHost: "laptop", DstHost: "gateway-acme.sse.test",
		}},
		{"dtls-tunnel", Record{
			Time: t0.Add(601 * time.Second), Start: t0.Add(1 * time.Second), DurationMS: 600_000,
			SessionID: 1006,
			Src:       ap("10.10.10.100:53000"), Dst: ap("203.0.113.9:443"), NATSrc: ap("198.51.100.1:40006"),
			Proto: ProtoUDP, App: AppDTLS, SNI: "gateway-acme.sse.test",
			Rule: "allow-dtls-to-sse", RuleID: 1, Action: ActionAllow,
			JA3: "5a1d7ee4c2cbd1d0cdec3d1e4f2a9b10", JA4: "dd2d0807pl_1c5c9bb5ce1b_57ba3b0b6a36",
			EndReason: EndAgedOut,
			BytesSent: 2_210_334, BytesReceived: 18_002_117,
			PacketsSent: 3011, PacketsReceived: 14870, PacketsSource: "datagrams",
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

// TestGoldenFormats writes every test record in every format (the PAN-OS
// formats in each layout) and compares with the golden files.
func TestGoldenFormats(t *testing.T) {
	ext := map[Format]string{
		FormatJSON: "jsonl", FormatPANTraffic: "csv", FormatPANDecryption: "csv",
		FormatFortiOS: "log", FormatCEF: "cef",
	}
	for _, f := range Formats() {
		versions := []string{""}
		if f == FormatPANTraffic || f == FormatPANDecryption {
			versions = []string{"9.1", "10.0", "11.1"}
		}
		for _, v := range versions {
			name := "firewall." + string(f)
			if v != "" {
				name += "." + v
			}
			t.Run(name, func(t *testing.T) {
				var buf bytes.Buffer
				w := NewWriter(&buf, f, WithDevice(Device{PANVersion: v}))
				for _, tr := range testRecords() {
					require.NoError(t, w.Log(tr.rec), tr.name)
				}
				if f == FormatPANDecryption && v == "9.1" {
					assert.Zero(t, buf.Len(), "PAN-OS 9.1 has no Decryption log")
					return
				}
				golden(t, name+"."+ext[f], buf.Bytes())
			})
		}
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
		"sni", "rule", "rule_id", "action", "ja3", "ja4", "decryption", "end_reason", "bytes_sent", "bytes_received",
		"packets_sent", "packets_received", "packets_source", "src_host", "dst_host",
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

// documented returns a documented field order from testdata: the lines
// of a .fields file that are not comments, each "name" or "name # source".
func documented(t *testing.T, file string) []string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", file))
	require.NoError(t, err)
	var out []string
	for line := range strings.SplitSeq(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, _, _ := strings.Cut(line, " #")
		out = append(out, strings.TrimSpace(name))
	}
	return out
}

// layouts are the documented field lists of each PAN-OS format and
// version.
var layouts = []struct {
	format  Format
	version string
	file    string
	n       int
}{
	{FormatPANTraffic, "9.1", "pan-traffic-9.1.fields", 75},
	{FormatPANTraffic, "10.0", "pan-traffic-9.1.fields", 75},
	{FormatPANTraffic, "10.1", "pan-traffic-10.1+.fields", 115},
	{FormatPANTraffic, "11.1", "pan-traffic-10.1+.fields", 115},
	{FormatPANTraffic, "", "pan-traffic-10.1+.fields", 115},
	{FormatPANDecryption, "10.0", "pan-decryption-10.0.fields", 91},
	{FormatPANDecryption, "10.2", "pan-decryption-10.1+.fields", 107},
	{FormatPANDecryption, "11.2", "pan-decryption-10.1+.fields", 107},
}

// TestPANFieldOrderMatchesDocumentation checks the encoder's field names,
// and every line of every PAN-OS golden file, against the documented
// lists: count and order.
func TestPANFieldOrderMatchesDocumentation(t *testing.T) {
	for _, l := range layouts {
		want := documented(t, l.file)
		require.Len(t, want, l.n, l.file)
		got, err := PANFieldNames(l.format, l.version)
		require.NoError(t, err)
		assert.Equal(t, want, got, "%s %s", l.format, l.version)
	}
	none, err := PANFieldNames(FormatPANDecryption, "9.1")
	require.NoError(t, err)
	assert.Nil(t, none, "PAN-OS 9.1 has no Decryption log")
	_, err = PANFieldNames(FormatPANTraffic, "8.1")
	require.ErrorIs(t, err, ErrUnknownPANVersion)

	for _, g := range []struct{ file, fields string }{
		{"firewall.pan-traffic-csv.9.1.csv", "pan-traffic-9.1.fields"},
		{"firewall.pan-traffic-csv.10.0.csv", "pan-traffic-9.1.fields"},
		{"firewall.pan-traffic-csv.11.1.csv", "pan-traffic-10.1+.fields"},
		{"firewall.pan-decryption-csv.10.0.csv", "pan-decryption-10.0.fields"},
		{"firewall.pan-decryption-csv.11.1.csv", "pan-decryption-10.1+.fields"},
	} {
		names := documented(t, g.fields)
		data, err := os.ReadFile(filepath.Join("testdata", g.file))
		require.NoError(t, err)
		recs, err := csv.NewReader(bytes.NewReader(data)).ReadAll()
		require.NoError(t, err, g.file)
		require.NotEmpty(t, recs, g.file)
		for i, rec := range recs {
			require.Len(t, rec, len(names), "%s line %d", g.file, i+1)
			assert.Equal(t, "1", rec[0], "%s line %d: FUTURE_USE", g.file, i+1)
			typ := "TRAFFIC"
			if strings.Contains(g.file, "decryption") {
				typ = "DECRYPTION"
			}
			assert.Equal(t, typ, rec[indexOf(names, "Type")], "%s line %d: Type where documented", g.file, i+1)
			assert.Regexp(t, `^0x[0-9a-f]+$`, rec[indexOf(names, "Flags")], "%s line %d: Flags where documented", g.file, i+1)
		}
	}
	assert.NoFileExists(t, filepath.Join("testdata", "firewall.pan-decryption-csv.9.1.csv"), "no Decryption log on 9.1")
}

func indexOf(names []string, name string) int {
	for i, n := range names {
		if n == name {
			return i
		}
	}
	return -1
}

// panFields parses a PAN CSV line into its fields by documented name (the
// first of duplicate names wins).
func panFields(t *testing.T, line []byte, fieldsFile string) map[string]string {
	t.Helper()
	rec, err := csv.NewReader(bytes.NewReader(line)).Read()
	require.NoError(t, err)
	names := documented(t, fieldsFile)
	require.Len(t, rec, len(names))
	out := map[string]string{}
	for i, n := range names {
		if _, dup := out[n]; !dup {
			out[n] = rec[i]
		}
	}
	return out
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
			"NAT Destination IP": "203.0.113.10", "NAT Destination Port": "443",
			"Destination Port": "443", "Application": "ssl", "Protocol": "tcp", "Action": "allow",
			"Flags": "0x400000", "Bytes": "11358656", "Elapsed Time": "300",
			"Packets": "8713", "Packets Sent": "1402", "Packets Received": "7311",
			"Start Time": "2026/03/02 10:00:00", "Receive Time": "2026/03/02 10:05:00",
			"Session End Reason": "tcp-fin", "Source Country": "10.0.0.0-10.255.255.255",
			"High Resolution Timestamp": "2026-03-02T10:05:00.000Z", "Tunneled Application": "ssl",
			"Application Subcategory": "encrypted-tunnel", "Application Category": "networking", "Application Risk": "4",
			"Offloaded": "0",
		}},
		{"udp deny", testRecords()[1].rec, map[string]string{
			"Threat/Content Type": "deny", "Protocol": "udp", "Action": "deny", "Application": "not-applicable",
			"NAT Source IP": "0.0.0.0", "NAT Source Port": "0", "NAT Destination IP": "0.0.0.0", "NAT Destination Port": "0",
			"Flags": "0x0", "Packets": "1", "Packets Sent": "1", "Session End Reason": "policy-deny", "Rule Name": "block-udp-443",
		}},
		{"decrypt failure: the rule allowed it", testRecords()[2].rec, map[string]string{
			"Flags": "0x1400000", "Session End Reason": "decrypt-cert-validation", "Threat/Content Type": "end", "Action": "allow",
		}},
		{"drop", Record{Src: ap("10.10.10.100:1"), Dst: ap("192.0.2.1:443"), Proto: ProtoUDP, Action: ActionDrop, Rule: "rule, with \"comma\""}, map[string]string{
			"Threat/Content Type": "drop", "Rule Name": `rule, with "comma"`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			line, err := Marshal(FormatPANTraffic, tt.rec)
			require.NoError(t, err)
			got := panFields(t, line, "pan-traffic-10.1+.fields")
			for name, want := range tt.fields {
				assert.Equal(t, want, got[name], name)
			}
		})
	}
	line, err := Encoder{Format: FormatPANTraffic, Device: Device{PANVersion: "9.1"}}.Marshal(testRecords()[0].rec)
	require.NoError(t, err)
	assert.Equal(t, "10.0.0.0-10.255.255.255", panFields(t, line, "pan-traffic-9.1.fields")["Source Location"])
	_, err = Encoder{Format: FormatPANTraffic, Device: Device{PANVersion: "8.0"}}.Marshal(testRecords()[0].rec)
	require.ErrorIs(t, err, ErrUnknownPANVersion)
}

func TestPANDecryptionValues(t *testing.T) {
	line, err := Marshal(FormatPANDecryption, testRecords()[2].rec)
	require.NoError(t, err)
	for name, want := range map[string]string{
		"Type": "DECRYPTION", "Proxy Type": "Forward", "Error Index": "Certificate", "Action": "allow",
		"Root Status": "trusted", "Chain Status": "Trusted", "TLS Version": "TLS1.3",
		"Stage for Client to Firewall": "Certificate", "Stage for Firewall to Server": "Finished",
		"Key Exchange Algorithm": "ECDHE", "Encryption Algorithm": "AES_128_GCM", "Hash Algorithm": "SHA256",
		"Elliptic Curve":             "x25519",
		"Fingerprint":                fp("gateway-acme.sse.test"),
		"Certificate Serial Number":  "5f2e8d41a0c3",
		"Certificate Start Date":     "2026/03/01 10:00:00",
		"Certificate End Date":       "2027/03/02 10:00:00",
		"Certificate Version":        "V3",
		"Certificate Size":           "2048",
		"Certificate Flags":          ":::::RSA",
		"Subject Common Name":        "gateway-acme.sse.test",
		"Issuer Subject Common Name": "pinwall Internet Root CA",
		"Root Subject Common Name":   "pinwall Internet Root CA", "Root Common Name Length": "24",
		"Server Name Indication": "gateway-acme.sse.test", "SNI Length": "21",
		"NAT Destination IP": "203.0.113.11", "NAT Destination Port": "443",
		"Error":       "Received fatal alert BadCertificate from client.",
		"Device Name": "pinwall-fw", "Virtual System ID": "1",
	} {
		assert.Equal(t, want, panFields(t, line, "pan-decryption-10.1+.fields")[name], name)
	}

	line, err = Marshal(FormatPANDecryption, testRecords()[3].rec)
	require.NoError(t, err)
	got := panFields(t, line, "pan-decryption-10.1+.fields")
	assert.Equal(t, "AES_256_GCM", got["Encryption Algorithm"])
	assert.Equal(t, "SHA384", got["Hash Algorithm"])
	assert.Equal(t, "X25519MLKEM768", got["Elliptic Curve"])
	assert.Equal(t, ":::::ECDSA", got["Certificate Flags"])
	assert.Equal(t, "256", got["Certificate Size"])

	line, err = Marshal(FormatPANDecryption, testRecords()[4].rec)
	require.NoError(t, err)
	got = panFields(t, line, "pan-decryption-10.1+.fields")
	assert.Equal(t, "No Decrypt", got["Proxy Type"])
	assert.Equal(t, "None", got["Error Index"])
	assert.Equal(t, "Uninspected", got["Chain Status"])
	assert.Empty(t, got["Error"], "only failures carry an error")

	line, err = Marshal(FormatPANDecryption, testRecords()[1].rec)
	require.NoError(t, err)
	assert.Nil(t, line, "no decryption rule applied: no DECRYPTION line")
	line, err = Encoder{Format: FormatPANDecryption, Device: Device{PANVersion: "9.1"}}.Marshal(testRecords()[2].rec)
	require.NoError(t, err)
	assert.Nil(t, line, "PAN-OS 9.1 has no Decryption log")

	// A failure the server caused, without an alert: pinwall's reason.
	r := testRecords()[2].rec
	d := *r.Decryption
	d.Alert, d.AlertFrom, d.Reason, d.Leg = "", "", "server certificate issuer is not trusted", failure.LegFirewallGateway
	r.Decryption = &d
	line, err = Marshal(FormatPANDecryption, r)
	require.NoError(t, err)
	assert.Equal(t, "server certificate issuer is not trusted", panFields(t, line, "pan-decryption-10.1+.fields")["Error"])

	for suite, want := range map[string][3]string{
		"TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256":         {"ECDHE", "AES_128_GCM", "SHA256"},
		"TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": {"ECDHE", "CHACHA20_POLY1305", "SHA256"},
		"TLS_RSA_WITH_AES_256_CBC_SHA":                  {"RSA", "AES_256_CBC", "SHA"},
		"TLS_CHACHA20_POLY1305_SHA256":                  {"ECDHE", "CHACHA20_POLY1305", "SHA256"},
		"":                                              {"", "", ""},
	} {
		kx, enc, hash := cipherParts(suite, "")
		assert.Equal(t, want, [3]string{kx, enc, hash}, suite)
	}
	for in, want := range map[string]string{"certificate_expired": "CertificateExpired", "unknown_ca": "UnknownCA", "bad_certificate": "BadCertificate"} {
		assert.Equal(t, want, alertCamel(in))
	}
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
	assert.Contains(t, got[0], `proto=6 action="close" policyid=2 policyname="sse-gateway-no-decrypt" policytype="policy"`)
	assert.Contains(t, got[0], `service="HTTPS" trandisp="snat" transip=198.51.100.1 transport=40001 app="SSL"`)
	assert.Contains(t, got[0], `duration=300 sentbyte=1482113 rcvdbyte=9876543`)

	got = lines(recs[1].rec)
	require.Len(t, got, 1)
	assert.Contains(t, got[0], `proto=17 action="deny" policyid=3 policyname="block-udp-443"`)
	assert.Contains(t, got[0], `service="udp/443" trandisp="noop" appcat="unscanned"`)

	got = lines(recs[2].rec)
	require.Len(t, got, 2, "a failed decryption adds the SSL anomaly event first")
	assert.Contains(t, got[0], `type="utm" subtype="ssl" eventtype="ssl-anomalies" level="warning"`)
	assert.Contains(t, got[0], `action="blocked"`)
	assert.Contains(t, got[0], `reason="block-handshake"`)
	assert.Contains(t, got[0], `policyid=4 policyname="decrypt-all" sessionid=1003`)
	assert.Contains(t, got[1], `action="client-rst"`)
	assert.Contains(t, got[1], `utmaction="block" countssl=1`)

	got = lines(recs[4].rec)
	require.Len(t, got, 2)
	assert.Contains(t, got[0], `logid="1701062003" type="utm" subtype="ssl" eventtype="sslexempt" level="notice"`)
	assert.Contains(t, got[0], `action="exempt" hostname="gateway-acme.sse.test"`)
	assert.Contains(t, got[0], `reason="exempt-addr"`)

	// Server-side failures and certificate-request blocks.
	r := recs[2].rec
	dec := *r.Decryption
	dec.Leg, dec.Cause = failure.LegFirewallGateway, failure.CauseClientCertRequired
	r.Decryption = &dec
	got = lines(r)
	assert.Contains(t, got[0], `logid="1700062051"`)
	assert.Contains(t, got[0], `reason="block-cert-req"`)
	assert.Contains(t, got[1], `action="server-rst"`)
	for cause, reason := range map[failure.Cause]string{
		failure.CauseUnknownAuthority: "block-cert-untrusted", failure.CauseCertificateInvalid: "block-cert-invalid",
	} {
		dec.Cause = cause
		assert.Contains(t, lines(r)[0], `reason="`+reason+`"`)
	}
	ex := recs[4].rec
	exd := *ex.Decryption
	exd.ExemptBy = ExemptClientCert
	ex.Decryption = &exd
	assert.Contains(t, lines(ex)[0], `logid="1701062050"`)
	assert.Contains(t, lines(ex)[0], `reason="exempt-cert-req"`)
	assert.Contains(t, lines(Record{Src: ap("10.10.10.100:1"), Dst: ap("192.0.2.1:443"), Proto: ProtoTCP, Action: ActionResetBoth})[0],
		`policyid=0 policytype="policy"`, "the implicit deny is policy 0")

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
		Keep:    4,
		Now:     func() time.Time { return clock },
	})
	for _, r := range records() {
		require.NoError(t, l.Log(r))
	}
	total, dropped := l.Total()
	assert.Equal(t, uint64(6), total)
	assert.Equal(t, uint64(2), dropped)
	assert.Equal(t, 4, l.Len())
	var ids []uint64
	for _, r := range l.Records() {
		ids = append(ids, r.SessionID)
	}
	assert.Equal(t, []uint64{1003, 1004, 1005, 1006}, ids, "oldest first, oldest dropped")
	assert.Equal(t, 6, strings.Count(jsonBuf.String(), "\n"))
	assert.Equal(t, 6, strings.Count(panBuf.String(), "\n"))

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
	last := l.Records()[3]
	assert.Equal(t, uint64(2000), last.SessionID)
	assert.Equal(t, clock, last.Time)

	// Invalid records are refused, not kept.
	r.Proto = "icmp"
	require.Error(t, l.Log(r))
	total, _ = l.Total()
	assert.Equal(t, uint64(7), total)
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
	got := panFields(t, []byte(lines[0]), "pan-traffic-10.1+.fields")
	for name, want := range map[string]string{
		"Serial Number": "013201020735", "Virtual System": "vsys2", "Source Zone": "lan",
		"Destination Zone": "internet", "Inbound Interface": "ae1.10", "Outbound Interface": "ae2",
		"Log Action": "to-siem", "Device Name": "edge-fw-01",
	} {
		assert.Equal(t, want, got[name], name)
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
		{"udp", func(r *Record) { r.Proto = ProtoUDP; r.App = AppDTLS }, `action="accept" policyid=0 policytype="policy" service="udp/443" trandisp="noop" app="DTLS"`},
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

// TestDocumentedFields checks that docs/fwlog.md's tables name every field
// of the 10.1+ PAN-OS layouts in order, each with a value and a source.
func TestDocumentedFields(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "..", "docs", "fwlog.md"))
	require.NoError(t, err)
	tables := map[string][][]string{}
	var section string
	for line := range strings.SplitSeq(string(data), "\n") {
		if h, ok := strings.CutPrefix(line, "## "); ok {
			section = h
			continue
		}
		if !strings.HasPrefix(line, "| ") {
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), " | ")
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		if cells[0] == "#" {
			continue
		}
		tables[section] = append(tables[section], cells)
	}
	for _, tc := range []struct {
		section string
		format  Format
	}{
		{"PAN-OS TRAFFIC (`pan-traffic-csv`)", FormatPANTraffic},
		{"PAN-OS DECRYPTION (`pan-decryption-csv`)", FormatPANDecryption},
	} {
		want, err := PANFieldNames(tc.format, "")
		require.NoError(t, err)
		rows := tables[tc.section]
		require.Len(t, rows, len(want), tc.section)
		for i, row := range rows {
			require.Len(t, row, 4, "%s row %d", tc.section, i+1)
			assert.Equal(t, strconv.Itoa(i+1), row[0], "%s row %d", tc.section, i+1)
			assert.Equal(t, want[i], row[1], "%s row %d", tc.section, i+1)
			assert.NotEmpty(t, row[2], "%s row %d (%s): what pinwall writes", tc.section, i+1, row[1])
			assert.NotEmpty(t, row[3], "%s row %d (%s): source or inferred", tc.section, i+1, row[1])
		}
	}
}
