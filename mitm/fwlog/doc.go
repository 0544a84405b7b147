// Package fwlog is the perimeter firewall's session log: one Record per
// session, written when the session ends, and the vendor-shaped lines that
// record becomes.
//
// # Data flow
//
// The firewall engine fills a Record when a session ends (or is denied) and
// hands it to a Logger. A Log fans each record out to several Writers — the
// native JSON lines (firewall.jsonl) and any vendor formats a run asks for —
// and keeps the most recent records in memory for the harness to query
// (Records, Filter). ReadJSONL reads firewall.jsonl back.
//
// # Formats
//
// Marshal turns one Record into the text of one Format, without a trailing
// newline; Writer adds it.
//
//   - json: the Record itself, one JSON object per line. Field names are
//     snake_case and stable.
//   - pan-traffic-csv: a PAN-OS TRAFFIC log line in the syslog field order
//     Device.PANVersion selects: PAN-OS 9.1's 75 fields for 9.1 and 10.0,
//     the 115 of 10.1 and later (the default, 11.1). Subtype is end for
//     allowed sessions (a failed decryption too: its rule allowed it),
//     deny for denied or reset ones, drop for dropped ones. With source
//     NAT the NAT destination repeats the destination, as PAN-OS does.
//   - pan-decryption-csv: a PAN-OS DECRYPTION log line: PAN-OS 10.0's 91
//     fields for 10.0, the 107 of 10.1 and later (the default); none for
//     9.1, which has no Decryption log. Only records with a Decryption
//     produce a line (Marshal returns nil otherwise), as a real box logs
//     only sessions that matched a decryption rule. Handshake stages are
//     PAN-OS's message names, the cipher suite is split into key exchange,
//     encryption and hash, and the upstream certificate's serial, dates,
//     key size and flags are filled.
//   - fortios-kv: FortiOS key=value lines. Every record gives one
//     type="traffic" subtype="forward" line (logid 0000000013) with the
//     rule's number as policyid. A record whose
//     decryption outcome is excluded or failed is preceded by the UTM SSL event
//     FortiOS writes during the session: eventtype="sslexempt" action="exempt"
//     for excluded sessions, eventtype="ssl-anomalies" action="blocked" for
//     failed ones, with FortiOS's reason keywords (exempt-addr,
//     block-cert-invalid, …). Marshal joins the two lines with "\n", the
//     SSL event first.
//   - cef: ArcSight Common Event Format,
//     CEF:0|pinwall|firewall|version|signature|name|severity|extension, with
//     header fields escaped for '|' and '\' and extension values for '=',
//     '\' and line breaks. msg carries the decryption reason and the
//     record's own Reason.
//
// Record.Reason is pinwall's own words for why a session ended when the
// PAN-OS end reason cannot say it ("destination unreachable: connection
// refused", "firewall shut down during the session"); the JSON line and
// CEF carry it, the PAN-OS and FortiOS lines have no field for it.
//
// Times in vendor formats are UTC. Addresses are the logical addresses of
// the topology in both runners (see hostnet).
//
// Where the vendor documentation gives no value for something pinwall models
// (FortiOS application names for DTLS, which FortiOS SSL log ID a client's
// rejection of a forged certificate maps to) the mapping is marked inferred
// in the code and in docs/sources.md#logs, which lists every format's sources;
// docs/fwlog.md lists every field of every format with its source, or the
// word inferred.
package fwlog
