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
	panSerial  = SyntheticSerial
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

// panSubtype is the TRAFFIC subtype: end for allowed sessions (those whose
// decryption failed included), drop for dropped ones, deny for denied or
// reset ones.
func panSubtype(r Record) string {
	switch Action(panAction(r)) {
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

// panNAT returns the NAT source IP and port, NAT destination IP and port.
// Without NAT they are 0.0.0.0 and 0; with source NAT PAN-OS repeats the
// destination in the NAT destination fields (as real lines show, e.g. the
// PAN-OS lines in splunk-connect-for-syslog's tests).
func panNAT(r Record) (srcIP, srcPort, dstIP, dstPort string) {
	if !r.NATSrc.IsValid() {
		return "0.0.0.0", "0", "0.0.0.0", "0"
	}
	return r.NATSrc.Addr().String(), strconv.Itoa(int(r.NATSrc.Port())), r.Dst.Addr().String(), strconv.Itoa(int(r.Dst.Port()))
}

// panAction is the log's Action: the security rule's. A session whose
// decryption failed was allowed by its rule; PAN-OS logs allow and says
// why it ended in the session end reason (a client refusing the forged
// certificate: action allow, error "Received fatal alert … from client").
func panAction(r Record) string {
	if r.Outcome() == OutcomeFailed {
		return string(ActionAllow)
	}
	return string(r.Action)
}

func startTime(r Record) time.Time {
	if !r.Start.IsZero() {
		return r.Start
	}
	return r.Time.Add(-r.Duration())
}

// panLayout is a set of PAN-OS syslog layouts.
type panLayout struct {
	version    string
	legacy     bool // TRAFFIC of 9.1, DECRYPTION of 10.0
	decryption bool // the version has a Decryption log
}

func panLayoutOf(version string) (panLayout, error) {
	v, err := ParsePANVersion(version)
	if err != nil {
		return panLayout{}, err
	}
	return panLayout{version: v, legacy: v == "9.1" || v == "10.0", decryption: v != "9.1"}, nil
}

// PANFieldNames returns the field names, in order, of a PAN-OS format's
// line for a PAN-OS version ("" means DefaultPANVersion): what each CSV
// column holds. It returns nil for pan-decryption-csv on 9.1.
func PANFieldNames(f Format, version string) ([]string, error) {
	l, err := panLayoutOf(version)
	if err != nil {
		return nil, err
	}
	r := Record{Src: netip.MustParseAddrPort("10.0.0.1:1"), Dst: netip.MustParseAddrPort("10.0.0.2:2"), Proto: ProtoTCP, Decryption: &Decryption{}}
	var fs []field
	switch f {
	case FormatPANTraffic:
		fs = panTrafficFields(r, Device{}, l)
	case FormatPANDecryption:
		if !l.decryption {
			return nil, nil
		}
		fs = panDecryptionFields(r, Device{}, l)
	default:
		return nil, fmt.Errorf("fwlog: %s is not a PAN-OS format", f)
	}
	out := make([]string, len(fs))
	for i, x := range fs {
		out[i] = x.name
	}
	return out, nil
}

// appMeta is App-ID's description of an application, as the 10.1+ logs
// carry it: subcategory, category, technology, risk, characteristics,
// container.
type appMeta struct{ subcategory, category, technology, risk, characteristic, container string }

// panAppMeta holds what real PAN-OS lines show for the applications pinwall
// names (splunk-connect-for-syslog's PAN-OS test lines: ssl and
// incomplete). Applications without a line to copy from get empty fields.
var panAppMeta = map[App]appMeta{
	AppSSL:        {"encrypted-tunnel", "networking", "browser-based", "4", "used-by-malware,able-to-transfer-file,has-known-vulnerability,tunnel-other-application,pervasive-use", ""},
	AppIncomplete: {"unknown", "unknown", "unknown", "1", "", ""},
}

// panAppFields are the application fields of the 10.1+ layouts.
func panAppFields(a App) []field {
	m := panAppMeta[a]
	return []field{
		{"Application Subcategory", m.subcategory},
		{"Application Category", m.category},
		{"Application Technology", m.technology},
		{"Application Risk", m.risk},
		{"Application Characteristic", m.characteristic},
		{"Application Container", m.container},
		{"Tunneled Application", string(a)},
		{"Application SaaS", "no"},
		{"Application Sanctioned State", "no"},
	}
}

// deviceIDFields are the Device-ID fields of both sides, empty: pinwall has
// no Device-ID.
func deviceIDFields() []field {
	var fs []field
	for _, side := range []string{"Source", "Destination"} {
		for _, attr := range []string{"Device Category", "Device Profile", "Device Model", "Device Vendor", "Device OS Family", "Device OS Version", "Hostname", "Mac Address"} {
			fs = append(fs, field{side + " " + attr, ""})
		}
	}
	return fs
}

func highRes(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z07:00") }

// panTrafficFields returns the fields of a TRAFFIC line: the 75 of PAN-OS
// 9.1 ("Traffic Log Fields", 9.1), and for 10.1+ the 40 that follow
// (10.1-11.0 "Traffic Log Fields" up to A Slice Differentiator, the rest
// as real 10.x/11.x lines carry them).
func panTrafficFields(r Record, d Device, l panLayout) []field {
	natIP, natPort, natDstIP, natDstPort := panNAT(r)
	t := panTime(r.Time)
	loc := [2]string{"Source Location", "Destination Location"}
	if !l.legacy {
		loc = [2]string{"Source Country", "Destination Country"}
	}
	fs := []field{
		{"FUTURE_USE", "1"},
		{"Receive Time", t},
		{"Serial Number", orDefault(d.Serial, panSerial)},
		{"Type", "TRAFFIC"},
		{"Threat/Content Type", panSubtype(r)},
		{"FUTURE_USE", panConfigVersion},
		{"Generated Time", t},
		{"Source Address", r.Src.Addr().String()},
		{"Destination Address", r.Dst.Addr().String()},
		{"NAT Source IP", natIP},
		{"NAT Destination IP", natDstIP},
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
		{"NAT Destination Port", natDstPort},
		{"Flags", panFlags(r)},
		{"Protocol", string(r.Proto)},
		{"Action", panAction(r)},
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
		{loc[0], panLocation(r.Src.Addr())},
		{loc[1], panLocation(r.Dst.Addr())},
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
	if l.legacy {
		return fs
	}
	fs = append(fs, field{"XFF Address", ""})
	fs = append(fs, deviceIDFields()...)
	fs = append(fs,
		field{"Container ID", ""},
		field{"POD Namespace", ""},
		field{"POD Name", ""},
		field{"Source External Dynamic List", ""},
		field{"Destination External Dynamic List", ""},
		field{"Host ID", ""},
		field{"Serial Number", ""},
		field{"Source Dynamic Address Group", ""},
		field{"Destination Dynamic Address Group", ""},
		field{"Session Owner", ""},
		field{"High Resolution Timestamp", highRes(r.Time)},
		field{"A Slice Service Type", ""},
		field{"A Slice Differentiator", ""},
	)
	fs = append(fs, panAppFields(r.App)...)
	return append(fs, field{"Offloaded", "0"})
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

// panDecryptionFields returns the fields of a DECRYPTION line: the 91 of
// PAN-OS 10.0 ("Decryption Log Fields", 10.0), and for 10.1+ the 16 that
// follow (10.1-11.0 "Decryption Log Fields" up to Device Group Hierarchy
// Level 4, the rest as real 10.x/11.x lines carry them). r.Decryption must
// not be nil.
func panDecryptionFields(r Record, d Device, l panLayout) []field {
	dec := r.Decryption
	natIP, natPort, natDstIP, natDstPort := panNAT(r)
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
	certVersion, certSize, certFlags := "", "0", ""
	if dec.UpstreamFingerprint != "" {
		certVersion = "V3"
		if dec.UpstreamKeyBits > 0 {
			certSize = strconv.Itoa(dec.UpstreamKeyBits)
		}
		if dec.UpstreamKeyType != "" {
			certFlags = ":::::" + dec.UpstreamKeyType
		}
	}
	subjectCN, issuerCN := commonName(dec.UpstreamSubject), commonName(dec.UpstreamIssuer)
	kx, enc, hash := cipherParts(dec.CipherSuite, dec.TLSVersion)
	curve := dec.KeyExchange
	if dec.Leg == "firewall-gateway" || dec.ClientMessage == "" && dec.ServerMessage != "" {
		curve = dec.UpstreamKeyExchange
	}
	if kx == "ECDHE" && curve == "" {
		curve = dec.KeyExchange
	}
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
		{"NAT Destination IP", natDstIP},
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
		{"NAT Destination Port", natDstPort},
		{"Flags", panFlags(r)},
		{"IP Protocol", string(r.Proto)},
		{"Action", panAction(r)},
		{"Tunnel", "N/A"},
		{"FUTURE_USE", ""},
		{"FUTURE_USE", ""},
		{"Source VM UUID", ""},
		{"Destination VM UUID", ""},
		{"UUID for rule", ""},
		{"Stage for Client to Firewall", dec.ClientMessage},
		{"Stage for Firewall to Server", dec.ServerMessage},
		{"TLS Version", dec.TLSVersion},
		{"Key Exchange Algorithm", kx},
		{"Encryption Algorithm", enc},
		{"Hash Algorithm", hash},
		{"Policy Name", r.Rule},
		{"Elliptic Curve", curve},
		{"Error Index", errIndex},
		{"Root Status", root},
		{"Chain Status", chain},
		{"Proxy Type", proxy},
		{"Certificate Serial Number", dec.UpstreamSerial},
		{"Fingerprint", dec.UpstreamFingerprint},
		{"Certificate Start Date", panTime(dec.UpstreamNotBefore)},
		{"Certificate End Date", panTime(dec.UpstreamNotAfter)},
		{"Certificate Version", certVersion},
		{"Certificate Size", certSize},
		{"Common Name Length", strconv.Itoa(len(subjectCN))},
		{"Issuer Common Name Length", strconv.Itoa(len(issuerCN))},
		{"Root Common Name Length", strconv.Itoa(len(dec.UpstreamRoot))},
		{"SNI Length", strconv.Itoa(len(r.SNI))},
		{"Certificate Flags", certFlags},
		{"Subject Common Name", subjectCN},
		{"Issuer Subject Common Name", issuerCN},
		{"Root Subject Common Name", dec.UpstreamRoot},
		{"Server Name Indication", r.SNI},
		{"Error", panError(dec)},
		{"Container ID", ""},
		{"POD Namespace", ""},
		{"POD Name", ""},
		{"Source External Dynamic List", ""},
		{"Destination External Dynamic List", ""},
		{"Source Dynamic Address Group", ""},
		{"Destination Dynamic Address Group", ""},
		{"High Res Timestamp", highRes(r.Time)},
	}
	fs = append(fs, deviceIDFields()...)
	fs = append(fs,
		field{"Sequence Number", u64(r.SessionID)},
		field{"Action Flags", "0x0"},
	)
	if l.legacy {
		return fs
	}
	fs = append(fs,
		field{"Device Group Hierarchy Level 1", "0"},
		field{"Device Group Hierarchy Level 2", "0"},
		field{"Device Group Hierarchy Level 3", "0"},
		field{"Device Group Hierarchy Level 4", "0"},
		field{"Virtual System Name", ""},
		field{"Device Name", orDefault(d.Name, panName)},
		field{"Virtual System ID", "1"},
	)
	return append(fs, panAppFields(r.App)...)
}

// panError is the Error field: PAN-OS's wording for an alert the client
// sent ("Received fatal alert CertificateExpired from client." in a real
// line), pinwall's reason otherwise.
func panError(dec *Decryption) string {
	if dec.Outcome != OutcomeFailed {
		return ""
	}
	if dec.Alert != "" && dec.AlertFrom != "" {
		return "Received fatal alert " + alertCamel(dec.Alert) + " from " + dec.AlertFrom + "."
	}
	return dec.Reason
}

// alertCamel writes an IANA alert name as PAN-OS does (certificate_expired
// -> CertificateExpired, as seen; the others by the same rule, inferred).
func alertCamel(name string) string {
	var b strings.Builder
	for w := range strings.SplitSeq(name, "_") {
		switch w {
		case "":
		case "ca":
			b.WriteString("CA")
		default:
			b.WriteString(strings.ToUpper(w[:1]) + w[1:])
		}
	}
	return b.String()
}

// cipherParts splits a cipher suite's IANA name into the Decryption log's
// key exchange, encryption and hash algorithms, in the vocabulary real lines
// show (ECDHE, AES_128_GCM, SHA256). TLS 1.3 suites name no key exchange:
// it is (EC)DHE by construction.
func cipherParts(suite, version string) (kx, enc, hash string) {
	if suite == "" {
		return "", "", ""
	}
	name := strings.TrimPrefix(suite, "TLS_")
	if k, rest, ok := strings.Cut(name, "_WITH_"); ok {
		kx, name = k, rest
		if i := strings.IndexByte(kx, '_'); i > 0 {
			kx = kx[:i] // ECDHE_RSA -> ECDHE
		}
	} else if version == "TLS1.3" || strings.HasPrefix(name, "AES_") || strings.HasPrefix(name, "CHACHA20") {
		kx = "ECDHE"
	}
	if i := strings.LastIndexByte(name, '_'); i > 0 {
		enc, hash = name[:i], name[i+1:]
	} else {
		enc = name
	}
	return kx, enc, hash
}
