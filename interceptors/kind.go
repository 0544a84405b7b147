package interceptors

import (
	"errors"
	"fmt"
	"strings"
)

// Kind names what sits in the firewall's place.
type Kind string

// The kinds. The zero Kind means Pinwall.
const (
	// Pinwall is pinwall's own firewall (package mitm).
	Pinwall   Kind = "pinwall"
	Mitmproxy Kind = "mitmproxy"
	Squid     Kind = "squid"
	SSLsplit  Kind = "sslsplit"
)

// Kinds lists every kind, pinwall's first.
var Kinds = []Kind{Pinwall, Mitmproxy, Squid, SSLsplit}

// ThirdParty lists the third-party tools.
var ThirdParty = []Kind{Mitmproxy, Squid, SSLsplit}

// Choices lists the valid kinds.
func (Kind) Choices() []string {
	out := make([]string, len(Kinds))
	for i, k := range Kinds {
		out[i] = string(k)
	}
	return out
}

// Validate rejects an unknown kind.
func (k Kind) Validate() error {
	if k == "" {
		return nil
	}
	for _, x := range Kinds {
		if k == x {
			return nil
		}
	}
	return fmt.Errorf("%q is not one of: %s", string(k), strings.Join(k.Choices(), ", "))
}

// OrPinwall is k, or Pinwall for the zero Kind.
func (k Kind) OrPinwall() Kind {
	if k == "" {
		return Pinwall
	}
	return k
}

// IsThirdParty reports whether k is a tool rather than pinwall's firewall.
func (k Kind) IsThirdParty() bool { return k.OrPinwall() != Pinwall }

// ParseKind reads a kind from a flag or a file.
func ParseKind(s string) (Kind, error) {
	k := Kind(strings.TrimSpace(strings.ToLower(s)))
	if err := k.Validate(); err != nil {
		return "", err
	}
	return k.OrPinwall(), nil
}

// Tool describes a third-party interceptor as Debian bookworm ships it.
type Tool struct {
	Kind Kind `json:"kind"`
	// Package is the Debian package holding it.
	Package string `json:"package"`
	// Version is the package's upstream version that the translation
	// targets; the version string the running tool prints is recorded
	// with every run.
	Version string `json:"version"`
	// VersionCmd prints the tool's version string.
	VersionCmd []string `json:"version_cmd"`
	// Docs is where its behaviour is documented.
	Docs string `json:"docs"`
}

// Tools describes each third-party kind.
var Tools = map[Kind]Tool{
	Mitmproxy: {Kind: Mitmproxy, Package: "mitmproxy", Version: "8.1.1", VersionCmd: []string{"mitmdump", "--version"},
		Docs: "mitmproxy 8.1.1 options (mitmdump --options; mitmproxy/options.py) and docs.mitmproxy.org \"Modes of Operation: Transparent Proxy\""},
	Squid: {Kind: Squid, Package: "squid-openssl", Version: "5.7", VersionCmd: []string{"squid", "-v"},
		Docs: "squid 5.7 squid.conf.documented (https_port, ssl_bump, acl ssl::server_name_regex) and wiki.squid-cache.org \"SslPeekAndSplice\""},
	SSLsplit: {Kind: SSLsplit, Package: "sslsplit", Version: "0.5.5", VersionCmd: []string{"sslsplit", "-V"},
		Docs: "sslsplit(1) and sslsplit.conf(5), version 0.5.5"},
}

// Packages are the Debian packages the tools' image holds: the tools and
// the CA certificates they verify servers against by default.
var Packages = []string{"ca-certificates", "mitmproxy", "sslsplit", "squid-openssl"}

// ErrUnsupported is wrapped by Translate's error when the tool cannot
// express part of the policy.
var ErrUnsupported = errors.New("the interceptor cannot express this rule")
