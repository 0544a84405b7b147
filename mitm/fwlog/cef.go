package fwlog

import (
	"bytes"
	"strconv"
	"strings"
)

// ArcSight Common Event Format (CEF) rev 25 ("Implementing ArcSight Common
// Event Format"): a header of seven pipe-separated fields after "CEF:0",
// then space-separated key=value extensions.
//
//	CEF:0|pinwall|firewall|<Device.Version>|<end reason>|<name>|<severity>|<extensions>
//
// The signature ID is the session end reason, so that SIEM rules can key on
// the PAN-OS vocabulary; the name says what happened to the session.
// Severity: 1 for a normal end, 3 for a decryption exclusion, 5 for a denied,
// dropped or reset session, 7 for a failed decryption.

const (
	cefVendor  = "pinwall"
	cefProduct = "firewall"
	cefVersion = "1.0"
)

// cefHeaderEscape escapes a CEF header field: '\' and '|' are escaped with a
// backslash; line breaks, which the header cannot hold, become spaces.
func cefHeaderEscape(s string) string {
	return strings.NewReplacer(`\`, `\\`, `|`, `\|`, "\r\n", " ", "\n", " ", "\r", " ").Replace(s)
}

// cefValueEscape escapes a CEF extension value: '\' and '=' are escaped with
// a backslash, line breaks are written as \n and \r.
func cefValueEscape(s string) string {
	return strings.NewReplacer(`\`, `\\`, `=`, `\=`, "\r\n", `\n`, "\n", `\n`, "\r", `\r`).Replace(s)
}

func cefSeverityName(r Record) (severity int, name string) {
	switch {
	case r.Outcome() == OutcomeFailed:
		return 7, "decryption failed"
	case r.Action != ActionAllow && r.Action != "":
		return 5, "session " + string(r.Action)
	case r.Outcome() == OutcomeExcluded:
		return 3, "decryption excluded"
	default:
		return 1, "session end"
	}
}

type cefExt struct{ b bytes.Buffer }

func (e *cefExt) add(k, v string) {
	if v == "" {
		return
	}
	if e.b.Len() > 0 {
		e.b.WriteByte(' ')
	}
	e.b.WriteString(k)
	e.b.WriteByte('=')
	e.b.WriteString(cefValueEscape(v))
}

// label adds a custom field and its label (cs1Label=Rule cs1=...).
func (e *cefExt) label(k, label, v string) {
	if v == "" {
		return
	}
	e.add(k+"Label", label)
	e.add(k, v)
}

func cef(r Record, d Device) []byte {
	sev, name := cefSeverityName(r)
	sig := string(r.EndReason)
	if sig == "" {
		sig = string(EndUnknown)
	}
	var b bytes.Buffer
	b.WriteString("CEF:0|")
	for _, h := range []string{cefVendor, cefProduct, orDefault(d.Version, cefVersion), sig, name, strconv.Itoa(sev)} {
		b.WriteString(cefHeaderEscape(h))
		b.WriteByte('|')
	}

	ms := func(t int64) string { return strconv.FormatInt(t, 10) }
	var e cefExt
	e.add("rt", ms(r.Time.UnixMilli()))
	e.add("start", ms(startTime(r).UnixMilli()))
	e.add("end", ms(r.Time.UnixMilli()))
	e.add("deviceExternalId", orDefault(d.Serial, panSerial))
	e.add("dvchost", orDefault(d.Name, panName))
	e.add("deviceInboundInterface", orDefault(d.InsideInterface, panInIf))
	e.add("deviceOutboundInterface", orDefault(d.OutsideInterface, panOutIf))
	e.add("src", r.Src.Addr().String())
	e.add("spt", strconv.Itoa(int(r.Src.Port())))
	e.add("dst", r.Dst.Addr().String())
	e.add("dpt", strconv.Itoa(int(r.Dst.Port())))
	if r.NATSrc.IsValid() {
		e.add("sourceTranslatedAddress", r.NATSrc.Addr().String())
		e.add("sourceTranslatedPort", strconv.Itoa(int(r.NATSrc.Port())))
	}
	e.add("proto", strings.ToUpper(string(r.Proto)))
	e.add("app", string(r.App))
	e.add("act", string(r.Action))
	e.add("reason", string(r.EndReason))
	e.add("externalId", u64(r.SessionID))
	e.add("shost", r.SrcHost)
	dhost := r.SNI
	if dhost == "" {
		dhost = r.DstHost
	}
	e.add("dhost", dhost)
	// bytesIn/bytesOut are relative to the source→destination direction.
	e.add("in", u64(r.BytesSent))
	e.add("out", u64(r.BytesReceived))
	e.label("cs1", "Rule", r.Rule)
	if r.PacketsSent != 0 || r.PacketsReceived != 0 {
		e.label("cn1", "PacketsSent", u64(r.PacketsSent))
		e.label("cn2", "PacketsReceived", u64(r.PacketsReceived))
	}
	e.label("cn3", "DurationMs", strconv.FormatInt(r.DurationMS, 10))
	if dec := r.Decryption; dec != nil {
		e.label("cs2", "DecryptionOutcome", string(dec.Outcome))
		e.label("cs3", "FaultLeg", string(dec.Leg))
		e.label("cs4", "FaultCause", string(dec.Cause))
		e.label("cs5", "UpstreamIssuer", dec.UpstreamIssuer)
		e.label("cs6", "ChainStatus", string(dec.ChainStatus))
	}
	// msg ("an arbitrary message giving more details about the event"):
	// the decryption reason, then the session's own.
	var msg []string
	if dec := r.Decryption; dec != nil && dec.Reason != "" {
		msg = append(msg, dec.Reason)
	}
	if r.Reason != "" && (len(msg) == 0 || msg[0] != r.Reason) {
		msg = append(msg, r.Reason)
	}
	e.add("msg", strings.Join(msg, "; "))
	e.label("flexString1", "JA4", r.JA4)
	e.label("flexString2", "JA3", r.JA3)
	b.Write(e.b.Bytes())
	return b.Bytes()
}
