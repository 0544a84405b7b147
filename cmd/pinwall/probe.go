package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"path/filepath"
	"strconv"
	"time"

	"github.com/pinwall/pinwall/capture"
	"github.com/pinwall/pinwall/hostnet"
	"github.com/pinwall/pinwall/probe"
	"github.com/pinwall/pinwall/reports"
)

func cmdProbe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("probe", "pinwall probe --bundle FILE [--out DIR [--capture] [--sign KEY]] [--proxy URL] [--label TEXT] [--json]", args, stdout, stderr)
	bundleFile := fs.String("bundle", "", "the probe bundle the field gateway wrote (probe-bundle.json; required)")
	out := fs.String("out", "", "write the evidence bundle here (report.md, report.html, evidence.json, junit.xml, manifest.sha256)")
	proxy := fs.String("proxy", "", "an HTTP CONNECT proxy for the TCP attempts and the TLS tunnel (http://[user:pass@]host:port)")
	label := fs.String("label", "", "names the network measured in the report (\"ACME HQ, guest Wi-Fi\")")
	asJSON := fs.Bool("json", false, "print the result as JSON instead of the verdict")
	rate := fs.Float64("rate", probe.DefaultRate, "new connections a second, at most")
	verbose := fs.Bool("v", false, "each step on stderr as it ends")
	ef := addEvidenceFlags(fs)
	fs.Lookup("capture").Usage = "write the probe's own connections (every TLS and DTLS attempt, session secrets inside) into the bundle as capture.pcapng"
	if err := fs.Parse(args); err != nil {
		return flagError(err)
	}
	if *bundleFile == "" || fs.NArg() > 0 {
		return usageError("probe: --bundle FILE is required and takes no other arguments")
	}
	if *out == "" && (*ef.capture || *ef.sign != "") {
		return usageError("probe: --capture and --sign write into the evidence bundle: give --out DIR")
	}
	signer, err := ef.signer()
	if err != nil {
		return err
	}
	b, id, err := probe.LoadBundle(*bundleFile, time.Now())
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	cfg := probe.Config{Bundle: b, Identity: id, Stack: hostnet.OS{}, Label: *label, Rate: *rate}
	if *ef.capture {
		cfg.Capture = capture.New(capture.Config{SnapLen: ef.snapLen(), Comment: "pinwall probe: the probe's own connections, synthesized from what it wrote and read"})
	}
	if *proxy != "" {
		u, err := url.Parse(*proxy)
		if err != nil {
			return usageError("probe: --proxy %q: %v", *proxy, err)
		}
		cfg.Proxy = u
		if cfg.ProxyAddr, err = resolveProxy(ctx, u); err != nil {
			return &exitError{code: 2, err: err}
		}
	}
	if *verbose {
		cfg.Logger = slog.New(slog.NewTextHandler(stderr, nil))
	}
	cfg.Progress = func(step, s string) { fmt.Fprintf(stderr, "probe: %-9s %s\n", step, s) }
	fmt.Fprintf(stderr, "probe: measuring %s (bundle %s, expires %s), at most %.0f new connections a second, %s at most\n",
		b.Primary.Addr, b.ID, b.Expires.Format(time.RFC3339), cfg.Rate, probe.MaxLimit)
	res, err := probe.Run(ctx, cfg)
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	if *out != "" {
		prov := provenanceOf(ctx, nil)
		producer := fmt.Sprintf("pinwall %s (commit %s), %s, %s/%s", prov.Pinwall.Version, prov.Pinwall.Commit, prov.Go, prov.OS, prov.Arch)
		if prov.Kernel != "" {
			producer += ", kernel " + prov.Kernel
		}
		eo := probe.EvidenceOptions{Provenance: prov, Producer: producer, Capture: cfg.Capture}
		if signer != nil {
			eo.Signature = signer.Describe()
		}
		if err := probe.WriteEvidence(*out, res, eo); err != nil {
			return &exitError{code: 2, err: err}
		}
		if signer != nil {
			if err := signer.Sign(*out); err != nil {
				return &exitError{code: 2, err: err}
			}
			fmt.Fprintf(stderr, "probe: signed %s with the %s key %s (%s, %s)\n", reports.ManifestFile, signer.Describe().Algorithm, signer.Fingerprint(), reports.SignatureFile, reports.OpenSSLSignatureFile)
		}
		fmt.Fprintf(stderr, "probe: evidence in %s\n", *out)
		if cfg.Capture != nil {
			fmt.Fprintf(stderr, "probe: capture: %s (%d packets, %d session secrets inside; also in %s)\n",
				filepath.Join(*out, probe.CaptureFile), cfg.Capture.Packets(), cfg.Capture.KeyLog().Lines(), probe.KeyLogFile)
		}
	}
	if err := probe.Unreachable(res); err != nil {
		return &exitError{code: 2, err: err}
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(res); err != nil {
			return err
		}
	} else if err := res.WriteText(stdout); err != nil {
		return err
	}
	switch res.Level() {
	case probe.Warn:
		return &exitError{code: exitWarnings, err: errors.New("")}
	case probe.Problem:
		return &exitError{code: exitProblems, err: errors.New("")}
	}
	return nil
}

func resolveProxy(ctx context.Context, u *url.URL) (netip.AddrPort, error) {
	port, err := strconv.Atoi(u.Port())
	if err != nil || port <= 0 || port > 65535 {
		return netip.AddrPort{}, fmt.Errorf("probe: --proxy %s: no port", u.Redacted())
	}
	if ip, err := netip.ParseAddr(u.Hostname()); err == nil {
		return netip.AddrPortFrom(ip, uint16(port)), nil
	}
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	ips, err := net.DefaultResolver.LookupNetIP(rctx, "ip", u.Hostname())
	if err != nil || len(ips) == 0 {
		return netip.AddrPort{}, fmt.Errorf("probe: --proxy %s: resolving %s: %v", u.Redacted(), u.Hostname(), err)
	}
	return netip.AddrPortFrom(ips[0].Unmap(), uint16(port)), nil
}
