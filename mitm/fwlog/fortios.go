package fwlog

import (
	"bytes"
	"net/netip"
	"strconv"
	"strings"

	"github.com/pinwall/pinwall/failure"
)

// FortiOS key=value lines, after the FortiOS Log Message Reference and the
// administration guide's "Sample logs by log type": string values are
// double-quoted, numbers and IP addresses are bare, keys come in the order
// the samples show (action, policyid, policytype in the forward-traffic
// sample; policyid before sessionid in the SSL samples). Traffic: logid
// 0000000013 (LOG_ID_TRAFFIC_END_FORWARD). SSL events: logid 1701062003
// eventtype "sslexempt" action "exempt" reason "exempt-addr" and logid
// 1700062002 eventtype "ssl-anomalies" action "blocked" reason
// "block-cert-invalid" follow the published samples; 1700062051
// (certificate request blocked, message 62051), 1701062050 (certificate
// request exempted, 62050) and 1700062308 (handshake failure, 62308)
// combine documented message IDs with the samples' prefixes, and the
// reasons block-cert-untrusted, block-cert-req, exempt-cert-req and
// block-handshake follow the samples' keyword pattern: inferred.
// policyid is the rule's number (Record.RuleID), 0 for the implicit deny.

const (
	fortiSerial = SyntheticFortiSerial
	fortiName   = "pinwall-fw"
	fortiVDOM   = "root"
	fortiInIf   = "port2"
	fortiOutIf  = "port1"
)

// kv builds one FortiOS line.
type kv struct{ b bytes.Buffer }

func (l *kv) raw(k, v string) {
	if l.b.Len() > 0 {
		l.b.WriteByte(' ')
	}
	l.b.WriteString(k)
	l.b.WriteByte('=')
	l.b.WriteString(v)
}

// str writes a quoted string value, escaping '\' and '"' and line breaks.
func (l *kv) str(k, v string) {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`, "\r", `\r`)
	l.raw(k, `"`+r.Replace(v)+`"`)
}

func (l *kv) strIf(k, v string) {
	if v != "" {
		l.str(k, v)
	}
}

func (l *kv) num(k string, v uint64) { l.raw(k, strconv.FormatUint(v, 10)) }

// fortiHeader writes the keys every FortiOS line starts with.
func fortiHeader(l *kv, r Record, d Device, logid, typ, subtype, eventtype, level string) {
	t := r.Time.UTC()
	l.raw("date", t.Format("2006-01-02"))
	l.raw("time", t.Format("15:04:05"))
	l.str("devname", orDefault(d.Name, fortiName))
	l.str("devid", orDefault(d.Serial, fortiSerial))
	l.num("eventtime", uint64(max(t.UnixNano(), 0)))
	l.str("tz", "+0000")
	l.str("logid", logid)
	l.str("type", typ)
	l.str("subtype", subtype)
	if eventtype != "" {
		l.str("eventtype", eventtype)
	}
	l.str("level", level)
	l.str("vd", orDefault(d.VirtualSystem, fortiVDOM))
}

func fortiEndpoints(l *kv, r Record, d Device) {
	l.raw("srcip", r.Src.Addr().String())
	l.num("srcport", uint64(r.Src.Port()))
	l.str("srcintf", orDefault(d.InsideInterface, fortiInIf))
	l.str("srcintfrole", "lan")
	l.raw("dstip", r.Dst.Addr().String())
	l.num("dstport", uint64(r.Dst.Port()))
	l.str("dstintf", orDefault(d.OutsideInterface, fortiOutIf))
	l.str("dstintfrole", "wan")
}

func fortiCountry(a netip.Addr) string {
	if isReserved(a) {
		return "Reserved"
	}
	return ""
}

// fortiService names the service as FortiOS's predefined services do, or
// "proto/port".
func fortiService(r Record) string {
	port := r.Dst.Port()
	if r.Proto == ProtoTCP {
		switch port {
		case 443:
			return "HTTPS"
		case 80:
			return "HTTP"
		}
	}
	return string(r.Proto) + "/" + strconv.Itoa(int(port))
}

// fortiApp maps pinwall's App-ID names to FortiGuard application names
// (inferred for DTLS and HTTP2); unidentified traffic has no app.
func fortiApp(a App) string {
	switch a {
	case AppSSL:
		return "SSL"
	case AppWebBrowsing:
		return "HTTPS.BROWSER"
	case AppHTTP2:
		return "HTTP2"
	case AppQUIC:
		return "QUIC"
	case AppDTLS:
		return "DTLS"
	}
	return ""
}

// fortiAction is the traffic log's action: how the session closed, or deny.
func fortiAction(r Record) string {
	if r.Outcome() == OutcomeFailed && r.EndReason.IsDecrypt() {
		// A failed inspection closes the session with a reset on the side
		// that failed (action="server-rst", utmaction="block" in the
		// FortiOS 6.4 "SSL logging improvement" sample).
		if r.Decryption.Leg == failure.LegFirewallGateway {
			return "server-rst"
		}
		return "client-rst"
	}
	if r.Action != ActionAllow && r.Action != "" {
		return "deny"
	}
	switch r.EndReason {
	case EndPolicyDeny:
		return "deny"
	case EndTCPRSTFromClient:
		return "client-rst"
	case EndTCPRSTFromServer:
		return "server-rst"
	case EndAgedOut:
		return "timeout"
	case EndDecryptCertValidation, EndDecryptUnsupportParam, EndDecryptError:
		if r.Decryption != nil && r.Decryption.Leg == failure.LegFirewallGateway {
			return "server-rst"
		}
		return "client-rst"
	}
	if r.Proto == ProtoUDP {
		return "accept"
	}
	return "close"
}

// fortiSSLEvent returns the UTM SSL event line for excluded and failed
// decryption, or nil.
func fortiSSLEvent(r Record, d Device) []byte {
	dec := r.Decryption
	if dec == nil || (dec.Outcome != OutcomeExcluded && dec.Outcome != OutcomeFailed) {
		return nil
	}
	var logid, eventtype, level, action, msg, reason string
	if dec.Outcome == OutcomeExcluded {
		logid, eventtype, level, action, msg = "1701062003", "sslexempt", "notice", "exempt", "SSL connection exempted"
		reason = "exempt-addr"
		if dec.ExemptBy == ExemptClientCert {
			// 62050 LOG_ID_SSL_HS_CERT_REQ_EXEMPT; the keyword is inferred.
			logid, msg, reason = "1701062050", "Certificate request exempted", "exempt-cert-req"
		}
	} else {
		eventtype, level, action = "ssl-anomalies", "warning", "blocked"
		switch dec.Cause {
		case failure.CauseUnknownAuthority:
			logid, msg, reason = "1700062002", "Server certificate blocked", "block-cert-untrusted"
		case failure.CauseCertificateInvalid:
			logid, msg, reason = "1700062002", "Server certificate blocked", "block-cert-invalid"
		case failure.CauseClientCertRequired, failure.CauseClientCertRejected:
			logid, msg, reason = "1700062051", "Certificate request blocked", "block-cert-req"
		default:
			logid, msg, reason = "1700062308", "SSL handshake failure", "block-handshake"
		}
	}
	var l kv
	fortiHeader(&l, r, d, logid, "utm", "ssl", eventtype, level)
	l.num("policyid", uint64(max(r.RuleID, 0)))
	l.strIf("policyname", r.Rule)
	l.num("sessionid", r.SessionID)
	l.str("service", fortiService(r))
	fortiEndpoints(&l, r, d)
	l.num("proto", uint64(r.Proto.Number()))
	l.str("action", action)
	l.strIf("hostname", r.SNI)
	l.strIf("tlsver", strings.ToLower(dec.TLSVersion))
	l.str("msg", msg)
	l.str("reason", reason)
	return l.b.Bytes()
}

func fortiTraffic(r Record, d Device) []byte {
	var l kv
	fortiHeader(&l, r, d, "0000000013", "traffic", "forward", "", "notice")
	fortiEndpoints(&l, r, d)
	l.strIf("srccountry", fortiCountry(r.Src.Addr()))
	l.strIf("dstcountry", fortiCountry(r.Dst.Addr()))
	l.num("sessionid", r.SessionID)
	l.num("proto", uint64(r.Proto.Number()))
	l.str("action", fortiAction(r))
	l.num("policyid", uint64(max(r.RuleID, 0)))
	l.strIf("policyname", r.Rule)
	l.str("policytype", "policy")
	l.str("service", fortiService(r))
	if r.NATSrc.IsValid() {
		l.str("trandisp", "snat")
		l.raw("transip", r.NATSrc.Addr().String())
		l.num("transport", uint64(r.NATSrc.Port()))
	} else {
		l.str("trandisp", "noop")
	}
	if app := fortiApp(r.App); app != "" {
		l.str("app", app)
	} else {
		l.str("appcat", "unscanned")
	}
	l.num("duration", uint64(r.DurationMS/1000))
	l.num("sentbyte", r.BytesSent)
	l.num("rcvdbyte", r.BytesReceived)
	l.num("sentpkt", r.PacketsSent)
	l.num("rcvdpkt", r.PacketsReceived)
	switch r.Outcome() {
	case OutcomeFailed:
		l.str("utmaction", "block")
		l.num("countssl", 1)
	case OutcomeExcluded:
		l.str("utmaction", "allow")
		l.num("countssl", 1)
	}
	return l.b.Bytes()
}

// fortiOS returns the SSL event line (if any) and the traffic line, joined
// by "\n".
func fortiOS(r Record, d Device) []byte {
	traffic := fortiTraffic(r, d)
	if ev := fortiSSLEvent(r, d); ev != nil {
		return append(append(ev, '\n'), traffic...)
	}
	return traffic
}
