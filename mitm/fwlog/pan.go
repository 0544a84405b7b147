package fwlog

import (
	"bytes"
	"encoding/csv"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// PAN-OS syslog field orders, from the PAN-OS administrator's guides
// ("Syslog Field Descriptions": Traffic Log Fields for 9.1, Decryption Log
// Fields for 10.0). Example lines in public SIEM test suites (Splunk SC4S's
// PAN-OS tests) fixed the values of fields the guides only name:
// FUTURE_USE is "1" first, "0" in the middle; the FUTURE_USE after Log Action
// holds the time logged; Tunnel Type is "N/A"; Action Flags "0x0".

const (
	panSerial  = "007000000000001"
	panName    = "pinwall-fw"
	panVsys    = "vsys1"
	panInZone  = "trust"
	panOutZone = "untrust"
	panInIf    = "ethernet1/2"
	panOutIf   = "ethernet1/1"
	// panConfigVersion fills the FUTURE_USE/Config Version field after the
	// subtype; real boxes write a number that changes with the software.
	panConfigVersion = "0"

	// Flags bits ("The field Flags is a 32-bit field …").
	panFlagIPv6      = 0x02000000
	panFlagDecrypted = 0x01000000 // SSL session is decrypted (SSL Proxy)
	panFlagNAT       = 0x00400000 // session has a NAT translation performed
)

type field struct{ name, value string }

func fieldValues(fs []field) []string {
	out := make([]string, len(fs))
	for i, f := range fs {
		out[i] = f.value
	}
	return out
}

// csvLine encodes one RFC 4180 record without its line terminator.
func csvLine(values []string) ([]byte, error) {
	var b bytes.Buffer
	w := csv.NewWriter(&b)
	if err := w.Write(values); err != nil {
		return nil, fmt.Errorf("fwlog: csv: %w", err)
	}
	w.Flush()
	if err := w.Error(); err != nil {
		return nil, fmt.Errorf("fwlog: csv: %w", err)
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

func panTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format("2006/01/02 15:04:05")
}

func u64(v uint64) string { return strconv.FormatUint(v, 10) }

// panSubtype is the TRAFFIC subtype: end for allowed sessions, drop for
// dropped ones, deny for denied or reset ones.
func panSubtype(a Action) string {
	switch a {
	case ActionAllow, "":
		return "end"
	case ActionDrop:
		return "drop"
	default:
		return "deny"
	}
}

// panLocation is PAN-OS's Source/Destination Location for internal ranges;
// public addresses would get a country from the box's geo database, which
// pinwall does not have, so they stay empty.
func panLocation(a netip.Addr) string {
	a = a.Unmap()
	for _, r := range [][3]string{
		{"10.0.0.0/8", "10.0.0.0", "10.255.255.255"},
		{"172.16.0.0/12", "172.16.0.0", "172.31.255.255"},
		{"192.168.0.0/16", "192.168.0.0", "192.168.255.255"},
	} {
		if netip.MustParsePrefix(r[0]).Contains(a) {
			return r[1] + "-" + r[2]
		}
	}
	return ""
}

func panFlags(r Record) string {
	var f uint32
	if r.NATSrc.IsValid() {
		f |= panFlagNAT
	}
	if r.Src.Addr().Unmap().Is6() {
		f |= panFlagIPv6
	}
	if o := r.Outcome(); o == OutcomeDecrypted || o == OutcomeFailed {
		f |= panFlagDecrypted
	}
	return fmt.Sprintf("0x%x", f)
}

// panNAT returns the NAT source IP and port fields ("0.0.0.0", "0" without NAT).
func panNAT(r Record) (ip, port string) {
	if !r.NATSrc.IsValid() {
		return "0.0.0.0", "0"
	}
	return r.NATSrc.Addr().String(), strconv.Itoa(int(r.NATSrc.Port()))
}

func startTime(r Record) time.Time {
	if !r.Start.IsZero() {
		return r.Start
	}
	return r.Time.Add(-r.Duration())
}

// panTrafficFields returns the 75 fields of a PAN-OS 9.1 TRAFFIC log line.
func panTrafficFields(r Record, d Device) []field {
	natIP, natPort := panNAT(r)
	t := panTime(r.Time)
	return []field{
		{"FUTURE_USE", "1"},
		{"Receive Time", t},
		{"Serial Number", orDefault(d.Serial, panSerial)},
		{"Type", "TRAFFIC"},
		{"Threat/Content Type", panSubtype(r.Action)},
		{"FUTURE_USE", panConfigVersion},
		{"Generated Time", t},
		{"Source Address", r.Src.Addr().String()},
		{"Destination Address", r.Dst.Addr().String()},
		{"NAT Source IP", natIP},
		{"NAT Destination IP", "0.0.0.0"},
		{"Rule Name", r.Rule},
		{"Source User", ""},
		{"Destination User", ""},
		{"Application", string(r.App)},
		{"Virtual System", orDefault(d.VirtualSystem, panVsys)},
		{"Source Zone", orDefault(d.InsideZone, panInZone)},
		{"Destination Zone", orDefault(d.OutsideZone, panOutZone)},
		{"Inbound Interface", orDefault(d.InsideInterface, panInIf)},
		{"Outbound Interface", orDefault(d.OutsideInterface, panOutIf)},
		{"Log Action", d.LogAction},
		{"FUTURE_USE", t},
		{"Session ID", u64(r.SessionID)},
		{"Repeat Count", "1"},
		{"Source Port", strconv.Itoa(int(r.Src.Port()))},
		{"Destination Port", strconv.Itoa(int(r.Dst.Port()))},
		{"NAT Source Port", natPort},
		{"NAT Destination Port", "0"},
		{"Flags", panFlags(r)},
		{"Protocol", string(r.Proto)},
		{"Action", string(r.Action)},
		{"Bytes", u64(r.BytesSent + r.BytesReceived)},
		{"Bytes Sent", u64(r.BytesSent)},
		{"Bytes Received", u64(r.BytesReceived)},
		{"Packets", u64(r.PacketsSent + r.PacketsReceived)},
		{"Start Time", panTime(startTime(r))},
		{"Elapsed Time", strconv.FormatInt(r.DurationMS/1000, 10)},
		{"Category", "any"},
		{"FUTURE_USE", "0"},
		// The log sequence number; pinwall uses the session ID so that a
		// line is a pure function of its record.
		{"Sequence Number", u64(r.SessionID)},
		{"Action Flags", "0x0"},
		{"Source Location", panLocation(r.Src.Addr())},
		{"Destination Location", panLocation(r.Dst.Addr())},
		{"FUTURE_USE", "0"},
		{"Packets Sent", u64(r.PacketsSent)},
		{"Packets Received", u64(r.PacketsReceived)},
		{"Session End Reason", string(r.EndReason)},
		{"Device Group Hierarchy Level 1", "0"},
		{"Device Group Hierarchy Level 2", "0"},
		{"Device Group Hierarchy Level 3", "0"},
		{"Device Group Hierarchy Level 4", "0"},
		{"Virtual System Name", ""},
		{"Device Name", orDefault(d.Name, panName)},
		{"Action Source", "from-policy"},
		{"Source VM UUID", ""},
		{"Destination VM UUID", ""},
		{"Tunnel ID/IMSI", "0"},
		{"Monitor Tag/IMEI", ""},
		{"Parent Session ID", "0"},
		{"Parent Start Time", ""},
		{"Tunnel Type", "N/A"},
		{"SCTP Association ID", "0"},
		{"SCTP Chunks", "0"},
		{"SCTP Chunks Sent", "0"},
		{"SCTP Chunks Received", "0"},
		{"Rule UUID", ""},
		{"HTTP/2 Connection", "0"},
		{"App Flap Count", "0"},
		{"Policy ID", ""},
		{"Link Switches", "0"},
		{"SD-WAN Cluster", ""},
		{"SD-WAN Device Type", ""},
		{"SD-WAN Cluster Type", ""},
		{"SD-WAN Site", ""},
		{"Dynamic User Group Name", ""},
	}
}

// commonName returns the CN of an RFC 2253 distinguished name ("CN=x,O=y"),
// or the whole string when it has no CN attribute.
func commonName(dn string) string {
	for part := range strings.SplitSeq(dn, ",") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(part), "CN="); ok {
			return v
		}
	}
	return dn
}

func panChainStatus(c ChainStatus) (root, chain string) {
	switch c {
	case ChainTrusted:
		return "trusted", "Trusted"
	case ChainUntrusted:
		return "untrusted", "Untrusted"
	default:
		return "uninspected", "Uninspected"
	}
}

// panDecryptionFields returns the 91 fields of a PAN-OS 10.0 DECRYPTION log
// line. r.Decryption must not be nil.
func panDecryptionFields(r Record, d Device) []field {
	dec := r.Decryption
	natIP, natPort := panNAT(r)
	t := panTime(r.Time)
	root, chain := panChainStatus(dec.ChainStatus)
	proxy := "No Decrypt"
	if dec.Outcome == OutcomeDecrypted || dec.Outcome == OutcomeFailed {
		proxy = "Forward"
	}
	errIndex := string(dec.ErrorIndex)
	if errIndex == "" {
		errIndex = string(ErrorIndexNone)
	}
	var errText string
	if dec.Outcome == OutcomeFailed {
		errText = dec.Reason
	}
	certVersion := ""
	if dec.UpstreamFingerprint != "" {
		certVersion = "V3"
	}
	subjectCN, issuerCN := commonName(dec.UpstreamSubject), commonName(dec.UpstreamIssuer)
	fs := []field{
		{"FUTURE_USE", "1"},
		{"Receive Time", t},
		{"Serial Number", orDefault(d.Serial, panSerial)},
		{"Type", "DECRYPTION"},
		{"Threat/Content Type", "0"},
		{"Config Version", panConfigVersion},
		{"Generate Time", t},
		{"Source Address", r.Src.Addr().String()},
		{"Destination Address", r.Dst.Addr().String()},
		{"NAT Source IP", natIP},
		{"NAT Destination IP", "0.0.0.0"},
		{"Rule", r.Rule},
		{"Source User", ""},
		{"Destination User", ""},
		{"Application", string(r.App)},
		{"Virtual System", orDefault(d.VirtualSystem, panVsys)},
		{"Source Zone", orDefault(d.InsideZone, panInZone)},
		{"Destination Zone", orDefault(d.OutsideZone, panOutZone)},
		{"Inbound Interface", orDefault(d.InsideInterface, panInIf)},
		{"Outbound Interface", orDefault(d.OutsideInterface, panOutIf)},
		{"Log Action", d.LogAction},
		{"Time Logged", t},
		{"Session ID", u64(r.SessionID)},
		{"Repeat Count", "1"},
		{"Source Port", strconv.Itoa(int(r.Src.Port()))},
		{"Destination Port", strconv.Itoa(int(r.Dst.Port()))},
		{"NAT Source Port", natPort},
		{"NAT Destination Port", "0"},
		{"Flags", panFlags(r)},
		{"IP Protocol", string(r.Proto)},
		{"Action", string(r.Action)},
		{"Tunnel", "N/A"},
		{"FUTURE_USE", ""},
		{"FUTURE_USE", ""},
		{"Source VM UUID", ""},
		{"Destination VM UUID", ""},
		{"UUID for rule", ""},
		{"Stage for Client to Firewall", dec.ClientStage},
		{"Stage for Firewall to Server", dec.ServerStage},
		{"TLS Version", dec.TLSVersion},
		{"Key Exchange Algorithm", ""},
		{"Encryption Algorithm", ""},
		{"Hash Algorithm", ""},
		{"Policy Name", r.Rule},
		{"Elliptic Curve", ""},
		{"Error Index", errIndex},
		{"Root Status", root},
		{"Chain Status", chain},
		{"Proxy Type", proxy},
		{"Certificate Serial Number", ""},
		{"Fingerprint", dec.UpstreamFingerprint},
		{"Certificate Start Date", ""},
		{"Certificate End Date", ""},
		{"Certificate Version", certVersion},
		{"Certificate Size", "0"},
		{"Common Name Length", strconv.Itoa(len(subjectCN))},
		{"Issuer Common Name Length", strconv.Itoa(len(issuerCN))},
		{"Root Common Name Length", "0"},
		{"SNI Length", strconv.Itoa(len(r.SNI))},
		{"Certificate Flags", ""},
		{"Subject Common Name", subjectCN},
		{"Issuer Subject Common Name", issuerCN},
		{"Root Subject Common Name", ""},
		{"Server Name Indication", r.SNI},
		{"Error", errText},
		{"Container ID", ""},
		{"POD Namespace", ""},
		{"POD Name", ""},
		{"Source External Dynamic List", ""},
		{"Destination External Dynamic List", ""},
		{"Source Dynamic Address Group", ""},
		{"Destination Dynamic Address Group", ""},
		{"High Res Timestamp", r.Time.UTC().Format("2006-01-02T15:04:05.000Z07:00")},
	}
	for _, side := range []string{"Source", "Destination"} {
		for _, attr := range []string{"Device Category", "Device Profile", "Device Model", "Device Vendor", "Device OS Family", "Device OS Version", "Hostname", "Mac Address"} {
			fs = append(fs, field{side + " " + attr, ""})
		}
	}
	return append(fs,
		field{"Sequence Number", u64(r.SessionID)},
		field{"Action Flags", "0x0"},
	)
}
