package reports

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path"
	"slices"
	"sort"
	"strconv"

	"github.com/pinwall/pinwall/mitm/fwlog"
	"github.com/pinwall/pinwall/outfile"
	"github.com/pinwall/pinwall/scenarios"
	"github.com/pinwall/pinwall/wireshark"
)

// The files of a bundle.
const (
	EvidenceFile = "evidence.json"
	SchemaFile   = "evidence.schema.json"
	MarkdownFile = "report.md"
	HTMLFile     = "report.html"
	JUnitFile    = "junit.xml"
	ManifestFile = "manifest.sha256"
	// LogsDir holds one directory per result, named "id__variant[__case]".
	LogsDir = "logs"
	// LogsReadme says, in logs/, that the vendor-format logs are generated.
	LogsReadme = "README.md"
	// InputsDir holds the scenario and policy files the runs were made
	// from; ChecksDir the `pinwall check` reviews of the policies.
	InputsDir = "inputs"
	ChecksDir = "checks"
)

// The files of each result's log directory.
const (
	FirewallJSONL         = "firewall.jsonl"
	FirewallPANTraffic    = "firewall.pan-traffic.csv"
	FirewallPANDecryption = "firewall.pan-decryption.csv"
	FirewallFortiOS       = "firewall.fortios.log"
	FirewallCEF           = "firewall.cef.log"
	GatewayJSONL          = "gateway.jsonl"
	ClientHistoryJSON     = "client-history.json"
	// CaptureFile is the run's packet capture (pcapng, the key log inside),
	// KeyLogFile the same key log in NSS format, when the run was captured.
	CaptureFile = "capture.pcapng"
	KeyLogFile  = "keys.log"
)

// firewallFiles maps each firewall log file to its fwlog format.
func firewallFiles() []struct {
	name   string
	format fwlog.Format
} {
	return []struct {
		name   string
		format fwlog.Format
	}{
		{FirewallJSONL, fwlog.FormatJSON},
		{FirewallPANTraffic, fwlog.FormatPANTraffic},
		{FirewallPANDecryption, fwlog.FormatPANDecryption},
		{FirewallFortiOS, fwlog.FormatFortiOS},
		{FirewallCEF, fwlog.FormatCEF},
	}
}

func logFileNames() []string {
	out := []string{GatewayJSONL, ClientHistoryJSON}
	for _, f := range firewallFiles() {
		out = append(out, f.name)
	}
	return out
}

// CheckDir reports why Write could not write a bundle into dir, or nil: it
// creates dir (and its parents) when missing and proves it writable with a
// file it removes again. Callers check the directory before hours of runs,
// not after.
func CheckDir(dir string) error {
	if dir == "" {
		return errors.New("no directory given")
	}
	if st, err := os.Stat(dir); err == nil && !st.IsDir() {
		return fmt.Errorf("%s exists and is not a directory", dir)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".pinwall-write-check-*")
	if err != nil {
		return fmt.Errorf("%s is not writable: %w", dir, err)
	}
	name := f.Name()
	f.Close()
	return os.Remove(name)
}

// Write writes the evidence bundle of results into dir, creating it if
// needed. ss describes the scenarios (their explain text, setting, fix and
// sources); a result whose scenario is not in ss is reported under its own
// title.
//
// Stale files: the bundle's top-level files are overwritten, and the log
// files of an earlier bundle are removed from logs/ (with the directories
// they leave empty) before the new ones are written, so logs/ holds exactly
// this bundle's runs. Files Write does not own are left alone and are not
// listed in the manifest.
//
// Write writes every file it can: a record that cannot be formatted or a
// file that cannot be written does not stop the others. The manifest,
// written last, lists what was written; the errors are returned joined.
//
// Files are written below dir without following links (package outfile): a
// symbolic or hard link planted at a file's name, or a symbolic link at a
// directory below dir, is refused, and what it points at is left alone.
func Write(dir string, meta Meta, ss []*scenarios.Scenario, results []scenarios.Result) error {
	return WriteSigned(dir, meta, ss, results, nil)
}

// WriteSigned is Write, then, with a signer, the manifest's signatures and
// the signer's public key beside it (Signer.Sign); the report and
// evidence.json name the key's fingerprint (Meta.Signature). A bundle
// whose results carry captures also holds the Wireshark dissector
// (wireshark.DissectorFile) that decodes the tunnel inside them.
func WriteSigned(dir string, meta Meta, ss []*scenarios.Scenario, results []scenarios.Result, signer *Signer) error {
	if signer != nil {
		meta.Signature = signer.Describe()
	} else {
		meta.Signature = nil
	}
	out, err := outfile.OpenDir(dir)
	if err != nil {
		return fmt.Errorf("reports: %w", err)
	}
	defer out.Close()
	meta = meta.withDefaults(results)
	prov := *meta.Provenance
	prov.Tools = slices.Clone(prov.Tools)
	prov.withRunTools(results)
	meta.Provenance = &prov
	dirs := logDirs(results)
	b := &bundle{out: out, hashes: map[string]string{}, device: fwlog.Device{PANVersion: meta.PANVersion}}
	if err := removeStale(out); err != nil {
		b.fail(err)
	}

	b.writeInputs(ss)
	b.writeUserInputs(meta)
	meta.Checks = slices.Clone(meta.Checks)
	b.writeChecks(meta.Checks)
	ev := buildEvidence(meta, ss, results, dirs)
	if data, err := json.MarshalIndent(ev, "", "  "); err != nil {
		b.fail(fmt.Errorf("reports: evidence: %w", err))
	} else {
		b.write(EvidenceFile, append(data, '\n'))
	}
	b.write(SchemaFile, Schema())

	v := buildView(meta, ss, results, dirs)
	if data, err := renderMarkdown(v); err != nil {
		b.fail(err)
	} else {
		b.write(MarkdownFile, data)
	}
	if data, err := renderHTML(v); err != nil {
		b.fail(err)
	} else {
		b.write(HTMLFile, data)
	}
	sv := buildSummary(meta, results)
	if data, err := renderSummaryMarkdown(sv); err != nil {
		b.fail(err)
	} else {
		b.write(SummaryMarkdownFile, data)
	}
	if data, err := renderSummaryHTML(sv); err != nil {
		b.fail(err)
	} else {
		b.write(SummaryHTMLFile, data)
	}
	if data, err := junit(meta, results); err != nil {
		b.fail(err)
	} else {
		b.write(JUnitFile, data)
	}
	captured := false
	for i := range results {
		b.writeLogs(dirs[i], &results[i])
		b.writeInterceptor(dirs[i], &results[i])
		captured = captured || results[i].Capture != nil
	}
	if captured {
		b.write(wireshark.DissectorFile, wireshark.Dissector)
	}
	if len(results) > 0 {
		b.write(path.Join(LogsDir, LogsReadme), []byte(logsReadme))
	}
	b.writeManifest()
	if signer != nil && len(b.errs) == 0 {
		if err := signer.sign(out); err != nil {
			b.fail(err)
		}
	}
	return errors.Join(b.errs...)
}

// bundle writes files under dir and remembers their hashes.
type bundle struct {
	out    *outfile.Dir
	device fwlog.Device
	hashes map[string]string // slash path → hex SHA-256
	errs   []error
}

func (b *bundle) fail(err error) { b.errs = append(b.errs, err) }

func (b *bundle) write(rel string, data []byte) {
	if err := b.out.WriteFile(rel, data, outfile.Public); err != nil {
		b.fail(fmt.Errorf("reports: %w", err))
		return
	}
	sum := sha256.Sum256(data)
	b.hashes[rel] = hex.EncodeToString(sum[:])
}

func (b *bundle) writeLogs(dir string, r *scenarios.Result) {
	for _, ff := range firewallFiles() {
		var buf bytes.Buffer
		w := fwlog.NewWriter(&buf, ff.format, fwlog.WithDevice(b.device))
		for _, rec := range r.FirewallLog {
			if err := w.Log(rec); err != nil {
				b.fail(fmt.Errorf("reports: %s %s: %w", r.Key(), ff.name, err))
			}
		}
		b.write(path.Join(dir, ff.name), buf.Bytes())
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	for _, e := range r.GatewayLog {
		if err := enc.Encode(e); err != nil {
			b.fail(fmt.Errorf("reports: %s %s: %w", r.Key(), GatewayJSONL, err))
		}
	}
	b.write(path.Join(dir, GatewayJSONL), buf.Bytes())
	if c := r.Capture; c != nil {
		b.write(path.Join(dir, CaptureFile), c.PCAPNG)
		b.write(path.Join(dir, KeyLogFile), c.KeyLog)
	}
	hist := r.ClientHistory
	if hist == nil {
		hist = normalize(scenarios.Result{}).ClientHistory
	}
	if data, err := json.MarshalIndent(hist, "", "  "); err != nil {
		b.fail(fmt.Errorf("reports: %s %s: %w", r.Key(), ClientHistoryJSON, err))
	} else {
		b.write(path.Join(dir, ClientHistoryJSON), append(data, '\n'))
	}
}

// writeManifest writes every written file's SHA-256 in `sha256sum -c`
// format, sorted by path.
func (b *bundle) writeManifest() {
	paths := make([]string, 0, len(b.hashes))
	for p := range b.hashes {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	var buf bytes.Buffer
	for _, p := range paths {
		fmt.Fprintf(&buf, "%s  %s\n", b.hashes[p], p)
	}
	if err := b.out.WriteFile(ManifestFile, buf.Bytes(), outfile.Public); err != nil {
		b.fail(fmt.Errorf("reports: %w", err))
	}
}

// removeStale removes an earlier bundle's log files and the directories
// they leave empty. Anything else in logs/ stays.
func removeStale(out *outfile.Dir) error {
	for _, n := range []string{wireshark.DissectorFile, SignatureFile, OpenSSLSignatureFile, SignerPublicKeyFile, SignerPEMFile, AllowedSignersFile} {
		if err := out.Remove(n); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("reports: removing a stale file: %w", err)
		}
	}
	for _, d := range []string{InputsDir, ChecksDir} {
		if err := removeStaleFlat(out, d); err != nil {
			return err
		}
	}
	if err := out.Remove(path.Join(LogsDir, LogsReadme)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("reports: removing a stale file: %w", err)
	}
	entries, err := out.ReadDir(LogsDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reports: %w", err)
	}
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		sub := path.Join(LogsDir, e.Name())
		if err := removeStaleInterceptor(out, path.Join(sub, InterceptorDir)); err != nil {
			return err
		}
		for _, n := range append(logFileNames(), CaptureFile, KeyLogFile) {
			if err := out.Remove(path.Join(sub, n)); err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("reports: removing a stale file: %w", err)
			}
		}
		_ = out.Remove(sub) // fails, as intended, when something else is left
	}
	_ = out.Remove(LogsDir)
	return nil
}

// removeStaleInterceptor removes an earlier bundle's files in dir (an
// interceptor's logs, the inputs: regular files only) and then the
// directory, if that leaves it empty.
func removeStaleInterceptor(out *outfile.Dir, dir string) error {
	entries, err := out.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reports: %w", err)
	}
	for _, e := range entries {
		if e.Type().IsRegular() {
			if err := out.Remove(path.Join(dir, e.Name())); err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("reports: removing a stale file: %w", err)
			}
		}
	}
	_ = out.Remove(dir)
	return nil
}

// logDirs assigns each result its log directory; a key that repeats (the
// same run twice) gets "__2", "__3"… so no run's logs overwrite another's.
func logDirs(results []scenarios.Result) []string {
	out := make([]string, len(results))
	seen := map[string]int{}
	for i, r := range results {
		d := logDir(r)
		seen[d]++
		if n := seen[d]; n > 1 {
			d += "__" + strconv.Itoa(n)
		}
		out[i] = d
	}
	return out
}
