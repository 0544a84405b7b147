package harness

import (
	"errors"

	"github.com/pinwall/pinwall/interceptors"
)

// ErrThirdPartyInProcess is returned by the in-process runner for a plan
// whose firewall is a third-party interceptor.
var ErrThirdPartyInProcess = errors.New("harness: a third-party firewall needs the container runner")

// InterceptorEvidence is what a third-party firewall (package
// interceptors) left behind in a run.
type InterceptorEvidence struct {
	Kind interceptors.Kind `json:"kind"`
	// Version is the first line the tool printed for its version
	// (mitmdump --version, squid -v, sslsplit -V); VersionText all of it.
	Version     string `json:"version"`
	VersionText string `json:"version_text,omitempty"`
	// Translation is the policy as translated (interceptors.Config.Describe).
	Translation string `json:"translation"`
	// Files are the tool's generated configuration files.
	Files []NamedText `json:"files"`
	// Logs are the tool's own logs.
	Logs []NamedText `json:"logs"`
	// Counters say how many packets each nftables rule matched.
	Counters []RuleCount `json:"nftables_counters,omitempty"`
	// Exited says how the tool ended if it did before the run did.
	Exited string `json:"exited,omitempty"`
}

// NamedText is a file of evidence.
type NamedText struct {
	Name string `json:"name"`
	What string `json:"what,omitempty"`
	Text string `json:"text,omitempty"`
	// File is where an evidence bundle holds it, instead of Text.
	File string `json:"file,omitempty"`
	// Truncated is how many bytes were left out at the end.
	Truncated int64 `json:"truncated,omitempty"`
}

// RuleCount is an nftables rule of the firewall and what it matched.
type RuleCount struct {
	Chain   string `json:"chain"`
	Rule    string `json:"rule"`
	Packets uint64 `json:"packets"`
	Bytes   uint64 `json:"bytes"`
}
