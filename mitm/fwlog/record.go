package fwlog

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/pinwall/pinwall/failure"
)

// Proto is a session's transport protocol.
type Proto string

// Transport protocols.
const (
	ProtoTCP Proto = "tcp"
	ProtoUDP Proto = "udp"
)

// Number returns the IANA protocol number (6, 17), or 0 for an unknown proto.
func (p Proto) Number() int {
	switch p {
	case ProtoTCP:
		return 6
	case ProtoUDP:
		return 17
	}
	return 0
}

// App is the application the firewall identified, in PAN-OS App-ID
// vocabulary.
type App string

// Applications pinwall's firewall identifies.
const (
	AppSSL           App = "ssl"
	AppWebBrowsing   App = "web-browsing"
	AppHTTP2         App = "http2"
	AppUnknownTCP    App = "unknown-tcp"
	AppDTLS          App = "dtls"
	AppQUIC          App = "quic"
	AppUnknownUDP    App = "unknown-udp"
	AppIncomplete    App = "incomplete"
	AppNotApplicable App = "not-applicable"
)

// Apps lists every App.
var Apps = []App{AppSSL, AppWebBrowsing, AppHTTP2, AppUnknownTCP, AppDTLS, AppQUIC, AppUnknownUDP, AppIncomplete, AppNotApplicable}

// Action is what the security rule did with the session, in PAN-OS
// vocabulary.
type Action string

// Actions.
const (
	ActionAllow       Action = "allow"
	ActionDeny        Action = "deny"
	ActionDrop        Action = "drop"
	ActionResetClient Action = "reset-client"
	ActionResetServer Action = "reset-server"
	ActionResetBoth   Action = "reset-both"
)

// Actions lists every Action.
var Actions = []Action{ActionAllow, ActionDeny, ActionDrop, ActionResetClient, ActionResetServer, ActionResetBoth}

// EndReason is why a session ended, in the PAN-OS Session End Reason
// vocabulary.
type EndReason string

// Session end reasons.
const (
	EndTCPFin                EndReason = "tcp-fin"
	EndTCPRSTFromClient      EndReason = "tcp-rst-from-client"
	EndTCPRSTFromServer      EndReason = "tcp-rst-from-server"
	EndPolicyDeny            EndReason = "policy-deny"
	EndDecryptCertValidation EndReason = "decrypt-cert-validation"
	EndDecryptUnsupportParam EndReason = "decrypt-unsupport-param"
	EndDecryptError          EndReason = "decrypt-error"
	EndAgedOut               EndReason = "aged-out"
	EndThreat                EndReason = "threat"
	EndUnknown               EndReason = "unknown"
	EndNotApplicable         EndReason = "n/a"
)

// EndReasons lists every EndReason.
var EndReasons = []EndReason{
	EndTCPFin, EndTCPRSTFromClient, EndTCPRSTFromServer, EndPolicyDeny,
	EndDecryptCertValidation, EndDecryptUnsupportParam, EndDecryptError,
	EndAgedOut, EndThreat, EndUnknown, EndNotApplicable,
}

// IsDecrypt reports whether the session ended because decryption failed.
func (e EndReason) IsDecrypt() bool {
	return e == EndDecryptCertValidation || e == EndDecryptUnsupportParam || e == EndDecryptError
}

// Outcome is what became of a session's TLS with respect to decryption.
type Outcome string

// Decryption outcomes.
const (
	// OutcomeDecrypted: the firewall terminated both handshakes and inspected the plaintext.
	OutcomeDecrypted Outcome = "decrypted"
	// OutcomeNotDecrypted: a no-decrypt rule matched; the session was spliced.
	OutcomeNotDecrypted Outcome = "not-decrypted"
	// OutcomeFailed: decryption was attempted and one of the two handshakes failed.
	OutcomeFailed Outcome = "failed"
	// OutcomeExcluded: decryption would apply but the session passed
	// undecrypted because of a learned exclusion or a bypass.
	OutcomeExcluded Outcome = "excluded"
)

// Outcomes lists every Outcome.
var Outcomes = []Outcome{OutcomeDecrypted, OutcomeNotDecrypted, OutcomeFailed, OutcomeExcluded}

// ChainStatus is whether the upstream certificate chain verified against the
// firewall's trust store.
type ChainStatus string

// Chain statuses.
const (
	ChainTrusted     ChainStatus = "trusted"
	ChainUntrusted   ChainStatus = "untrusted"
	ChainUninspected ChainStatus = "uninspected"
)

// ErrorIndex is the category of a decryption error, in the PAN-OS Decryption
// log vocabulary.
type ErrorIndex string

// Error indexes (PAN-OS "Decryption Log Errors, Error Indexes, and
// Bitmasks").
const (
	ErrorIndexNone        ErrorIndex = "None"
	ErrorIndexCertificate ErrorIndex = "Certificate"
	ErrorIndexCipher      ErrorIndex = "Cipher"
	ErrorIndexFeature     ErrorIndex = "Feature"
	ErrorIndexGeneral     ErrorIndex = "General"
	ErrorIndexHSM         ErrorIndex = "HSM"
	ErrorIndexProtocol    ErrorIndex = "Protocol"
	ErrorIndexResource    ErrorIndex = "Resource"
	ErrorIndexVersion     ErrorIndex = "Version"
)

// Decryption is what the firewall did about a session's TLS. A Record
// carries one only when a decryption rule applied to the session.
type Decryption struct {
	Outcome Outcome `json:"outcome"`
	// Reason explains the outcome in free text ("no-decrypt rule
	// gateway-bypass", "learned exclusion after client certificate
	// required").
	Reason string `json:"reason,omitempty"`
	// Leg and Cause attribute a failure (Outcome failed).
	Leg   failure.Leg   `json:"leg,omitempty"`
	Cause failure.Cause `json:"cause,omitempty"`
	// Alert is the fatal TLS alert that ended the failed handshake, by its
	// IANA name ("bad_certificate"), and AlertFrom who sent it ("client"
	// or "server"); empty when the handshake ended otherwise.
	Alert     string `json:"alert,omitempty"`
	AlertFrom string `json:"alert_from,omitempty"`
	// ExemptBy says what left an excluded or not-decrypted session alone:
	// ExemptAddress, ExemptName, ExemptClientCert or ExemptCache.
	ExemptBy Exemption `json:"exempt_by,omitempty"`
	// TLSVersion as PAN-OS writes it: "TLS1.2", "TLS1.3".
	TLSVersion string `json:"tls_version,omitempty"`
	// ClientStage and ServerStage say in words how far each handshake got
	// ("client-firewall: handshake completed").
	ClientStage string `json:"client_stage,omitempty"`
	ServerStage string `json:"server_stage,omitempty"`
	// ClientMessage and ServerMessage are the last handshake message of
	// each leg in PAN-OS's vocabulary (Client_Hello, Server_Hello_Done,
	// Certificate, Finished…): the Decryption log's "Stage for Client to
	// Firewall" and "Stage for Firewall to Server".
	ClientMessage string `json:"client_message,omitempty"`
	ServerMessage string `json:"server_message,omitempty"`
	// CipherSuite is the negotiated cipher suite's IANA name
	// ("TLS_AES_128_GCM_SHA256") on the leg the Decryption log describes:
	// the client's when its handshake completed, else the server's.
	CipherSuite string `json:"cipher_suite,omitempty"`
	// ForgedFingerprint is the SHA-256 of the leaf the firewall presented;
	// ForgedKey its key ("ECDSA-P256", "RSA-2048"); ForgedBy the CA that
	// signed it (ForgedByTrust or ForgedByUntrust).
	ForgedFingerprint string   `json:"forged_fingerprint,omitempty"`
	ForgedKey         string   `json:"forged_key,omitempty"`
	ForgedBy          ForgedBy `json:"forged_by,omitempty"`
	// UpstreamFingerprint is the SHA-256 of the server's real leaf.
	UpstreamFingerprint string `json:"upstream_fingerprint,omitempty"`
	// UpstreamIssuer and UpstreamSubject are the real leaf's distinguished
	// names in RFC 2253 form (pkix.Name.String: "CN=…,O=…").
	UpstreamIssuer  string `json:"upstream_issuer,omitempty"`
	UpstreamSubject string `json:"upstream_subject,omitempty"`
	// UpstreamRoot is the common name of the root the firewall verified the
	// real leaf's chain to.
	UpstreamRoot string `json:"upstream_root,omitempty"`
	// UpstreamSerial is the real leaf's serial number in lower-case hex;
	// UpstreamNotBefore and UpstreamNotAfter its validity.
	UpstreamSerial    string    `json:"upstream_serial,omitempty"`
	UpstreamNotBefore time.Time `json:"upstream_not_before,omitzero"`
	UpstreamNotAfter  time.Time `json:"upstream_not_after,omitzero"`
	// UpstreamKeyType ("RSA", "ECDSA", "Ed25519") and UpstreamKeyBits are
	// the real leaf's public key.
	UpstreamKeyType string      `json:"upstream_key_type,omitempty"`
	UpstreamKeyBits int         `json:"upstream_key_bits,omitempty"`
	ChainStatus     ChainStatus `json:"chain_status,omitempty"`
	ErrorIndex      ErrorIndex  `json:"error_index,omitempty"`
	// ALPN is the negotiated (or, undecrypted, the offered first) protocol.
	ALPN string `json:"alpn,omitempty"`
	// KeyExchange and UpstreamKeyExchange are the groups negotiated on the
	// client's leg and on the firewall's own leg to the server ("X25519",
	// "X25519MLKEM768"), like the PAN-OS Decryption log's elliptic curve:
	// they show whether interception kept post-quantum key exchange.
	KeyExchange         string `json:"key_exchange,omitempty"`
	UpstreamKeyExchange string `json:"upstream_key_exchange,omitempty"`
}

// Exemption is what left a session undecrypted.
type Exemption string

// Exemptions.
const (
	// ExemptAddress: a rule matching the destination address (PAN-OS
	// no-decrypt rule by address, FortiOS ssl-exempt address).
	ExemptAddress Exemption = "address"
	// ExemptName: a rule matching the server name (SNI, wildcard, regex or
	// URL category).
	ExemptName Exemption = "name"
	// ExemptClientCert: the server asked for a client certificate and the
	// rule bypasses such servers.
	ExemptClientCert Exemption = "client-certificate"
	// ExemptCache: a learned decryption exclusion.
	ExemptCache Exemption = "cache"
	// ExemptPolicy: any other no-decrypt rule.
	ExemptPolicy Exemption = "policy"
)

// ForgedBy names the CA that signed a forged leaf.
type ForgedBy string

// The signing CAs.
const (
	// ForgedByTrust: the enterprise (forward trust) CA the clients trust.
	ForgedByTrust ForgedBy = "forward-trust"
	// ForgedByUntrust: the firewall's untrusted CA, for a server whose
	// certificate the firewall does not trust (PAN-OS Forward Untrust,
	// FortiOS Fortinet_CA_Untrusted).
	ForgedByUntrust ForgedBy = "forward-untrust"
)

// Record is one firewall session, end to end. Its JSON form is the native
// firewall.jsonl line; field names are stable.
type Record struct {
	// Time is when the record was logged; Start when the session began.
	Time  time.Time `json:"time"`
	Start time.Time `json:"start"`
	// DurationMS is the session's length in milliseconds.
	DurationMS int64  `json:"duration_ms"`
	SessionID  uint64 `json:"session_id"`
	// Src and Dst are the original (pre-NAT) endpoints, "ip:port" in JSON.
	Src netip.AddrPort `json:"src"`
	Dst netip.AddrPort `json:"dst"`
	// NATSrc is the translated source; the zero value (omitted) means no
	// source NAT.
	NATSrc netip.AddrPort `json:"nat_src,omitzero"`
	Proto  Proto          `json:"proto"`
	App    App            `json:"app"`
	// SNI is the ClientHello's server name; HostnameHint the CONNECT target
	// or other name the firewall learned for the destination.
	SNI          string `json:"sni,omitempty"`
	HostnameHint string `json:"hostname_hint,omitempty"`
	// Rule is the name of the matching rule; empty for an implicit default.
	Rule string `json:"rule"`
	// RuleID is the rule's number: its ID in the vendor configuration it
	// was translated from (FortiOS policyid), else its position from 1; 0
	// for the implicit default rule.
	RuleID int    `json:"rule_id,omitempty"`
	Action Action `json:"action"`
	// JA3 and JA4 fingerprint the client's ClientHello, TLS or DTLS.
	JA3 string `json:"ja3,omitempty"`
	JA4 string `json:"ja4,omitempty"`
	// Decryption is nil when no decryption rule applied to the session.
	Decryption *Decryption `json:"decryption,omitempty"`
	EndReason  EndReason   `json:"end_reason"`
	// Reason says in pinwall's words why the session ended when EndReason's
	// vendor vocabulary cannot ("destination unreachable: connection
	// refused", "firewall shut down before the client's hello was
	// complete"); empty when EndReason says it all.
	Reason string `json:"reason,omitempty"`
	// BytesSent flowed client→server, BytesReceived server→client.
	BytesSent     uint64 `json:"bytes_sent"`
	BytesReceived uint64 `json:"bytes_received"`
	// PacketsSent and PacketsReceived count packets client→server and
	// server→client: datagrams for UDP; for TCP the segments the kernel
	// counted on the firewall's own sockets (see PacketsSource).
	PacketsSent     uint64 `json:"packets_sent"`
	PacketsReceived uint64 `json:"packets_received"`
	// PacketsSource says where the packet counts come from: "datagrams"
	// (UDP, counted as relayed), "tcp_info" (TCP: the kernel's
	// tcpi_segs_in on the client socket for sent and on the server socket
	// for received, so handshakes, ACKs and retransmissions included, as a
	// firewall counts them), or "" (not counted: 0).
	PacketsSource string `json:"packets_source,omitempty"`
	// SrcHost and DstHost are optional labels for reports ("laptop",
	// "gateway-acme.sse.test").
	SrcHost string `json:"src_host,omitempty"`
	DstHost string `json:"dst_host,omitempty"`
}

// Duration returns DurationMS as a time.Duration.
func (r Record) Duration() time.Duration { return time.Duration(r.DurationMS) * time.Millisecond }

// Outcome returns the decryption outcome, or "" without a Decryption.
func (r Record) Outcome() Outcome {
	if r.Decryption == nil {
		return ""
	}
	return r.Decryption.Outcome
}

// Validate reports the fields that break the record's vocabulary. Empty
// App, Action and EndReason are allowed (unknown); everything set must be
// one of the documented values.
func (r Record) Validate() error {
	if err := r.validate(); err != nil {
		return fmt.Errorf("fwlog: invalid record (session %d): %w", r.SessionID, err)
	}
	return nil
}

func (r Record) validate() error {
	var errs []error
	if !r.Src.IsValid() {
		errs = append(errs, errors.New("src is not a valid ip:port"))
	}
	if !r.Dst.IsValid() {
		errs = append(errs, errors.New("dst is not a valid ip:port"))
	}
	if r.NATSrc != (netip.AddrPort{}) && !r.NATSrc.IsValid() {
		errs = append(errs, errors.New("nat_src is not a valid ip:port"))
	}
	if r.Proto != ProtoTCP && r.Proto != ProtoUDP {
		errs = append(errs, fmt.Errorf("proto %q is not tcp or udp", r.Proto))
	}
	if r.App != "" && !slices.Contains(Apps, r.App) {
		errs = append(errs, fmt.Errorf("app %q is not one of %v", r.App, Apps))
	}
	if r.Action != "" && !slices.Contains(Actions, r.Action) {
		errs = append(errs, fmt.Errorf("action %q is not one of %v", r.Action, Actions))
	}
	if r.EndReason != "" && !slices.Contains(EndReasons, r.EndReason) {
		errs = append(errs, fmt.Errorf("end_reason %q is not one of %v", r.EndReason, EndReasons))
	}
	switch r.PacketsSource {
	case "", "datagrams", "tcp_info":
	default:
		errs = append(errs, fmt.Errorf("packets_source %q is not datagrams or tcp_info", r.PacketsSource))
	}
	if r.RuleID < 0 {
		errs = append(errs, fmt.Errorf("rule_id %d is negative", r.RuleID))
	}
	if r.DurationMS < 0 {
		errs = append(errs, fmt.Errorf("duration_ms %d is negative", r.DurationMS))
	}
	if d := r.Decryption; d != nil {
		if !slices.Contains(Outcomes, d.Outcome) {
			errs = append(errs, fmt.Errorf("decryption.outcome %q is not one of %v", d.Outcome, Outcomes))
		}
		if !d.Leg.Valid() {
			errs = append(errs, fmt.Errorf("decryption.leg %q is not a failure leg", d.Leg))
		}
		if !d.Cause.Valid() {
			errs = append(errs, fmt.Errorf("decryption.cause %q is not a failure cause", d.Cause))
		}
		switch d.ExemptBy {
		case "", ExemptAddress, ExemptName, ExemptClientCert, ExemptCache, ExemptPolicy:
		default:
			errs = append(errs, fmt.Errorf("decryption.exempt_by %q is not a known exemption", d.ExemptBy))
		}
		switch d.ForgedBy {
		case "", ForgedByTrust, ForgedByUntrust:
		default:
			errs = append(errs, fmt.Errorf("decryption.forged_by %q is not forward-trust or forward-untrust", d.ForgedBy))
		}
		switch d.ChainStatus {
		case "", ChainTrusted, ChainUntrusted, ChainUninspected:
		default:
			errs = append(errs, fmt.Errorf("decryption.chain_status %q is not trusted, untrusted or uninspected", d.ChainStatus))
		}
	}
	return errors.Join(errs...)
}
