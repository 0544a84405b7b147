package fwlog

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// Format names a log line format.
type Format string

// Formats.
const (
	// FormatJSON is the native Record, one JSON object per line.
	FormatJSON Format = "json"
	// FormatPANTraffic is a PAN-OS TRAFFIC log line (CSV).
	FormatPANTraffic Format = "pan-traffic-csv"
	// FormatPANDecryption is a PAN-OS DECRYPTION log line (CSV); records
	// without a Decryption produce none.
	FormatPANDecryption Format = "pan-decryption-csv"
	// FormatFortiOS is FortiOS key=value: a traffic line, preceded by a UTM
	// SSL event line for excluded and failed decryption.
	FormatFortiOS Format = "fortios-kv"
	// FormatCEF is ArcSight Common Event Format.
	FormatCEF Format = "cef"
)

// ErrUnknownFormat is wrapped by errors about a format name pinwall does not
// know.
var ErrUnknownFormat = errors.New("fwlog: unknown format")

// Formats returns every Format, in the order of Choices.
func Formats() []Format {
	return []Format{FormatJSON, FormatPANTraffic, FormatPANDecryption, FormatFortiOS, FormatCEF}
}

// Choices returns the names of every Format, for flags and configuration
// errors.
func Choices() []string {
	fs := Formats()
	out := make([]string, len(fs))
	for i, f := range fs {
		out[i] = string(f)
	}
	return out
}

// ParseFormat returns the Format named s.
func ParseFormat(s string) (Format, error) {
	for _, f := range Formats() {
		if string(f) == s {
			return f, nil
		}
	}
	return "", fmt.Errorf("%w %q (choices: %s)", ErrUnknownFormat, s, strings.Join(Choices(), ", "))
}

// String returns the format's name.
func (f Format) String() string { return string(f) }

// Set parses s into f, so that *Format is a flag.Value.
func (f *Format) Set(s string) error {
	v, err := ParseFormat(s)
	if err != nil {
		return err
	}
	*f = v
	return nil
}

// UnmarshalText parses a format name, so that configuration decoders reject
// unknown names.
func (f *Format) UnmarshalText(b []byte) error { return f.Set(string(b)) }

// Device describes the firewall that writes the log: the values vendor
// formats need and a Record does not carry. Every zero field takes the
// documented default of the format being written.
type Device struct {
	// Serial is the PAN-OS serial number, FortiOS devid and CEF
	// deviceExternalId. "" means SyntheticSerial (PAN-OS, CEF) or
	// SyntheticFortiSerial (FortiOS).
	Serial string
	// Name is the device name (PAN-OS Device Name, FortiOS devname, CEF
	// dvchost). "" means "pinwall-fw".
	Name string
	// VirtualSystem is the PAN-OS vsys or FortiOS VDOM. "" means "vsys1"
	// (PAN-OS) or "root" (FortiOS).
	VirtualSystem string
	// InsideZone and OutsideZone are the PAN-OS source and destination
	// zones of the laptop's sessions. "" means "trust" and "untrust".
	InsideZone, OutsideZone string
	// InsideInterface and OutsideInterface are the LAN and internet
	// interfaces. "" means "ethernet1/2" and "ethernet1/1" (PAN-OS, CEF) or
	// "port2" and "port1" (FortiOS).
	InsideInterface, OutsideInterface string
	// LogAction is the PAN-OS Log Action (log forwarding profile); "" leaves
	// it empty.
	LogAction string
	// Version is the product version in the CEF header. "" means "1.0".
	Version string
	// PANVersion selects the PAN-OS syslog layouts: "9.1" or "10.0" for
	// TRAFFIC as PAN-OS 9.1 documents it (75 fields) and DECRYPTION as
	// PAN-OS 10.0 does (91 fields; 9.1 has no Decryption log, so none is
	// written), "10.1" through "11.2" for the layouts of PAN-OS 10.1 and
	// later (TRAFFIC 115 fields, DECRYPTION 107). "" means DefaultPANVersion.
	PANVersion string
}

// DefaultPANVersion is the PAN-OS version whose layouts Device's zero
// PANVersion selects.
const DefaultPANVersion = "11.1"

// PANVersions lists the PAN-OS versions Device.PANVersion accepts.
func PANVersions() []string {
	return []string{"9.1", "10.0", "10.1", "10.2", "11.0", "11.1", "11.2"}
}

// ErrUnknownPANVersion is wrapped by errors about a PAN-OS version pinwall
// has no layout for.
var ErrUnknownPANVersion = errors.New("fwlog: unknown PAN-OS version")

// ParsePANVersion checks a PAN-OS version ("" means DefaultPANVersion).
func ParsePANVersion(s string) (string, error) {
	if s == "" {
		return DefaultPANVersion, nil
	}
	for _, v := range PANVersions() {
		if s == v {
			return v, nil
		}
	}
	return "", fmt.Errorf("%w %q (choices: %s)", ErrUnknownPANVersion, s, strings.Join(PANVersions(), ", "))
}

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

// Encoder marshals records in one format for one device. The zero Device
// uses the defaults documented on Device.
type Encoder struct {
	Format Format
	Device Device
}

// Marshal returns r in format f with the default Device. See Encoder.Marshal.
func Marshal(f Format, r Record) ([]byte, error) {
	return Encoder{Format: f}.Marshal(r)
}

// Marshal validates r and returns it in e.Format, without a trailing
// newline. FormatFortiOS may return two lines joined by "\n";
// FormatPANDecryption returns nil (no line, no error) for a record without
// a Decryption.
func (e Encoder) Marshal(r Record) ([]byte, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	switch e.Format {
	case FormatJSON:
		b, err := json.Marshal(r)
		if err != nil {
			return nil, fmt.Errorf("fwlog: json: %w", err)
		}
		return b, nil
	case FormatPANTraffic:
		l, err := panLayoutOf(e.Device.PANVersion)
		if err != nil {
			return nil, err
		}
		return csvLine(fieldValues(panTrafficFields(r, e.Device, l)))
	case FormatPANDecryption:
		l, err := panLayoutOf(e.Device.PANVersion)
		if err != nil {
			return nil, err
		}
		if r.Decryption == nil || !l.decryption {
			return nil, nil
		}
		return csvLine(fieldValues(panDecryptionFields(r, e.Device, l)))
	case FormatFortiOS:
		return fortiOS(r, e.Device), nil
	case FormatCEF:
		return cef(r, e.Device), nil
	default:
		_, err := ParseFormat(string(e.Format))
		return nil, err
	}
}

// isReserved reports whether a is private, loopback, link-local or in one of
// the documentation ranges (RFC 5737) pinwall's topologies use.
func isReserved(a netip.Addr) bool {
	if a.IsPrivate() || a.IsLoopback() || a.IsLinkLocalUnicast() || a.IsUnspecified() {
		return true
	}
	for _, p := range []string{"192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32"} {
		if netip.MustParsePrefix(p).Contains(a.Unmap()) {
			return true
		}
	}
	return false
}

// The default device serials. They are unmistakably synthetic, in no
// vendor's serial format, so that no reader takes a generated log for one
// a real device wrote: pinwall's vendor-format logs are generated from its
// own firewall's records.
const (
	// SyntheticSerial is the PAN-OS serial number and CEF deviceExternalId.
	SyntheticSerial = "PINWALLSIMULATED"
	// SyntheticFortiSerial is the FortiOS devid.
	SyntheticFortiSerial = "FGVM-PINWALL-SIMULATED"
)
