package clienthello

import (
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// This file computes two ClientHello fingerprints.
//
// JA3 follows Salesforce's definition (github.com/salesforce/ja3, README):
// the decimal fields SSLVersion,Cipher,SSLExtension,EllipticCurve,
// EllipticCurvePointFormat, values within a field joined by "-", GREASE
// values (RFC 8701) removed, empty fields left empty; JA3Hash is the MD5 of
// that string in lower-case hex.
//
// JA4 follows FoxIO's specification, technical_details/JA4.md in
// github.com/FoxIO-LLC/ja4 (read at commit d8f731ce0f19), checked against
// its worked example and FoxIO's Rust implementation (rust/ja4/src/tls.rs):
//
//	JA4_a = protocol (t, q or d) + version (2 chars) + SNI (d or i)
//	        + cipher count (2 digits) + extension count (2 digits)
//	        + first and last character of the first ALPN value
//	JA4_b = sha256("cccc,cccc,...")[:12], ciphers as 4-digit lower-case hex
//	        sorted, or 000000000000 when there are none
//	JA4_c = sha256("eeee,...,eeee_ssss,...")[:12], extensions sorted with
//	        SNI (0000) and ALPN (0010) left out, then "_" and the signature
//	        algorithms in wire order (no "_" when there are none), or
//	        000000000000 when the extension list is empty
//
// GREASE is ignored everywhere; counts above 99 print as 99. The version is
// the highest non-GREASE value of supported_versions, else the ClientHello's
// legacy_version. For DTLS "highest" means the newest protocol (DTLS 1.3,
// 0xfefc, over DTLS 1.2, 0xfefd), which is numerically lower: the spec maps
// 0xfefc to "d3" and a DTLS 1.3 client lists both, so a numeric maximum
// would never print "d3". (Arkime's DTLS code takes the numeric maximum;
// pinwall's DTLS peers are 1.2 and send no supported_versions, so the two
// agree on every hello pinwall produces.)

// IsGREASE reports whether v is one of the sixteen GREASE values of
// RFC 8701 (0x0a0a, 0x1a1a, ..., 0xfafa), reserved so that peers exercise
// their handling of unknown values.
func IsGREASE(v uint16) bool {
	return v&0x0f0f == 0x0a0a && v>>8 == v&0xff
}

// MaxVersion returns the newest protocol version the client offers: the
// newest non-GREASE entry of supported_versions, else LegacyVersion.
func (i *Info) MaxVersion() uint16 {
	best := uint16(0)
	for _, v := range i.SupportedVersions {
		if IsGREASE(v) {
			continue
		}
		if best == 0 || versionRank(v) > versionRank(best) {
			best = v
		}
	}
	if best == 0 {
		return i.LegacyVersion
	}
	return best
}

// versionRank orders TLS versions by value and DTLS versions (0xfeff DTLS
// 1.0, 0xfefd 1.2, 0xfefc 1.3) by age, newest highest.
func versionRank(v uint16) int {
	if v>>8 == 0xfe {
		return 0x10000 + int(0xff-v&0xff)
	}
	return int(v)
}

// TLSVersionName names a protocol version for logs: "SSL3.0", "TLS1.0" to
// "TLS1.3", "DTLS1.0" to "DTLS1.3", "GREASE", else "0x%04x".
func TLSVersionName(v uint16) string {
	switch v {
	case 0x0002:
		return "SSL2.0"
	case 0x0300:
		return "SSL3.0"
	case 0x0301:
		return "TLS1.0"
	case 0x0302:
		return "TLS1.1"
	case 0x0303:
		return "TLS1.2"
	case 0x0304:
		return "TLS1.3"
	case 0xfeff:
		return "DTLS1.0"
	case 0xfefd:
		return "DTLS1.2"
	case 0xfefc:
		return "DTLS1.3"
	}
	if IsGREASE(v) {
		return "GREASE"
	}
	return fmt.Sprintf("0x%04x", v)
}

// JA3 returns the JA3 string of the hello, e.g.
// "771,4865-4866-4867,0-23-65281-10-11,29-23-24,0".
func (i *Info) JA3() string {
	var sb strings.Builder
	sb.Grow(16 + 6*(len(i.CipherSuites)+len(i.Extensions)+len(i.Groups)) + 4*len(i.PointFormats))
	sb.WriteString(strconv.Itoa(int(i.LegacyVersion)))
	sb.WriteByte(',')
	writeDecimals(&sb, i.CipherSuites)
	sb.WriteByte(',')
	writeDecimals(&sb, i.Extensions)
	sb.WriteByte(',')
	writeDecimals(&sb, i.Groups)
	sb.WriteByte(',')
	for n, f := range i.PointFormats {
		if n > 0 {
			sb.WriteByte('-')
		}
		sb.WriteString(strconv.Itoa(int(f)))
	}
	return sb.String()
}

func writeDecimals(sb *strings.Builder, vs []uint16) {
	first := true
	for _, v := range vs {
		if IsGREASE(v) {
			continue
		}
		if !first {
			sb.WriteByte('-')
		}
		first = false
		sb.WriteString(strconv.Itoa(int(v)))
	}
}

// JA3Hash returns the MD5 of JA3 in lower-case hex.
func (i *Info) JA3Hash() string {
	sum := md5.Sum([]byte(i.JA3()))
	return hex.EncodeToString(sum[:])
}

// JA4 returns the JA4 fingerprint of the hello, e.g.
// "t13d1516h2_8daaf6152771_e5627efa2ab1".
func (i *Info) JA4() string {
	a, b, c := i.ja4Parts()
	return a + "_" + ja4Hash(b) + "_" + ja4Hash(c)
}

// JA4Raw returns JA4 with its hashed parts in clear (FoxIO's ja4_r), e.g.
// "t13d1516h2_002f,0035,..._0005,000a,..._0403,0804,...".
func (i *Info) JA4Raw() string {
	a, b, c := i.ja4Parts()
	return a + "_" + b + "_" + c
}

// ja4Parts returns JA4_a and the strings hashed into JA4_b and JA4_c.
func (i *Info) ja4Parts() (a, b, c string) {
	ciphers := withoutGREASE(i.CipherSuites, nil)
	nExt := 0
	for _, e := range i.Extensions {
		if !IsGREASE(e) {
			nExt++
		}
	}
	exts := withoutGREASE(i.Extensions, func(e uint16) bool { return e == extServerName || e == extALPN })
	sigs := withoutGREASE(i.SignatureAlgorithms, nil)

	var sb strings.Builder
	sb.Grow(10)
	switch i.Record {
	case RecordDTLS:
		sb.WriteByte('d')
	case RecordQUIC:
		sb.WriteByte('q')
	default:
		sb.WriteByte('t')
	}
	sb.WriteString(ja4Version(i.MaxVersion()))
	if i.HasSNI {
		sb.WriteByte('d')
	} else {
		sb.WriteByte('i')
	}
	fmt.Fprintf(&sb, "%02d%02d", min(len(ciphers), 99), min(nExt, 99))
	sb.WriteString(ja4ALPN(i.ALPN))
	a = sb.String()

	slices.Sort(ciphers)
	slices.Sort(exts)
	b = hexList(ciphers)
	c = hexList(exts)
	if len(sigs) > 0 {
		c += "_" + hexList(sigs)
	}
	return a, b, c
}

// withoutGREASE copies vs without GREASE values and without the values
// drop reports true for.
func withoutGREASE(vs []uint16, drop func(uint16) bool) []uint16 {
	out := make([]uint16, 0, len(vs))
	for _, v := range vs {
		if IsGREASE(v) || (drop != nil && drop(v)) {
			continue
		}
		out = append(out, v)
	}
	return out
}

// hexList renders vs as comma-separated 4-digit lower-case hex.
func hexList(vs []uint16) string {
	const digits = "0123456789abcdef"
	buf := make([]byte, 0, 5*len(vs))
	for n, v := range vs {
		if n > 0 {
			buf = append(buf, ',')
		}
		buf = append(buf, digits[v>>12], digits[v>>8&0xf], digits[v>>4&0xf], digits[v&0xf])
	}
	return string(buf)
}

// ja4Hash is the truncated SHA-256 of JA4_b and JA4_c, with the
// specification's twelve zeros for an empty list.
func ja4Hash(s string) string {
	if s == "" || s[0] == '_' {
		return "000000000000"
	}
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:6])
}

func ja4Version(v uint16) string {
	switch v {
	case 0x0304:
		return "13"
	case 0x0303:
		return "12"
	case 0x0302:
		return "11"
	case 0x0301:
		return "10"
	case 0x0300:
		return "s3"
	case 0x0002:
		return "s2"
	case 0xfeff:
		return "d1"
	case 0xfefd:
		return "d2"
	case 0xfefc:
		return "d3"
	}
	return "00"
}

// ja4ALPN returns the first and last characters of the first ALPN value:
// "00" when there is none or it is empty; the first and last hex digits of
// the value when its first or last byte is not an ASCII letter or digit.
func ja4ALPN(alpn []string) string {
	if len(alpn) == 0 || alpn[0] == "" {
		return "00"
	}
	p := alpn[0]
	first, last := p[0], p[len(p)-1]
	if isAlnum(first) && isAlnum(last) {
		return string([]byte{first, last})
	}
	const digits = "0123456789abcdef"
	return string([]byte{digits[first>>4], digits[last&0x0f]})
}

func isAlnum(c byte) bool {
	return '0' <= c && c <= '9' || 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z'
}
