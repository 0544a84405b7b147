package main

import (
	"context"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"

	"github.com/pinwall/pinwall/hostnet"
	"github.com/pinwall/pinwall/mitm"
	"github.com/pinwall/pinwall/mitm/fwlog"
	"github.com/pinwall/pinwall/mitm/policy"
	"github.com/pinwall/pinwall/outfile"
	"github.com/pinwall/pinwall/pki"
	"github.com/pinwall/pinwall/resolve"
	"github.com/pinwall/pinwall/strictyaml"
)

func cmdServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, serveUsage)
		return usageError("serve: which role? firewall, client, gateway, origin or probe")
	}
	role, rest := args[0], args[1:]
	switch role {
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, serveUsage)
		return errHelp
	case "firewall":
		// With a node configuration the firewall is a container role;
		// otherwise it runs standalone from PEM files and a policy.
		if hasFlag(rest, "config") || hasFlag(rest, "config-env") {
			return serveRole(ctx, role, rest, stdout, stderr)
		}
		return serveFirewall(ctx, rest, stdout, stderr)
	case "gateway":
		// With --dir the gateway is the field probe's, standalone;
		// with --config (or --config-env) a container role.
		if hasFlag(rest, "config") || hasFlag(rest, "config-env") {
			return serveRole(ctx, role, rest, stdout, stderr)
		}
		return serveFieldGateway(ctx, rest, stdout, stderr)
	case "client", "origin", "probe":
		return serveRole(ctx, role, rest, stdout, stderr)
	}
	return usageError("serve: unknown role %q (want firewall, client, gateway, origin or probe)", role)
}

const serveUsage = `Usage: pinwall serve ROLE [flags]

Roles:
  firewall   the TLS-intercepting firewall, standalone (--proxy or --forward) or,
             with --config, as a container node
  client     the endpoint client of a container topology (--config)
  gateway    the field probe's gateway, standalone (--dir DIR: see docs/probe.md) or,
             with --config, a cloud gateway of a container topology
  origin     the SaaS origins of a container topology (--config)
  probe      a LAN host without the client (--config)

A container node's configuration is a file (--config FILE) or, as the container
runner hands it, the environment (--config-env: $PINWALL_NODE_CONFIG).
Run "pinwall serve ROLE -h" for a role's flags.
`

func loadZone(file string) (*resolve.Zone, error) {
	if file == "" {
		return &resolve.Zone{}, nil
	}
	var zf struct {
		Records []struct {
			Name  string       `yaml:"name,required"`
			Addrs []netip.Addr `yaml:"addrs,required"`
		} `yaml:"records"`
	}
	if err := strictyaml.DecodeFile(file, &zf); err != nil {
		return nil, err
	}
	z := &resolve.Zone{}
	for _, r := range zf.Records {
		if err := z.Add(resolve.Record{Name: r.Name, Addrs: r.Addrs}); err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
	}
	return z, nil
}

// serveFirewall runs the firewall standalone on the machine's network: an
// explicit-destination listener (--forward) or an HTTP CONNECT proxy
// (--proxy), with an enterprise CA given as PEM files.
func serveFirewall(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("serve firewall", "pinwall serve firewall --ca-cert PEM --ca-key PEM --policy FILE (--proxy | --forward IP:PORT) [flags]", args, stdout, stderr)
	caCert := fs.String("ca-cert", "", "enterprise CA certificate, PEM (required)")
	caKey := fs.String("ca-key", "", "enterprise CA private key, PEM: RSA or ECDSA, PKCS#1, SEC 1 or PKCS#8 (required)")
	policyFile := fs.String("policy", "", "policy file, mitm/policy YAML (required)")
	listen := fs.String("listen", "127.0.0.1:8443", "listening address")
	forward := fs.String("forward", "", "explicit-destination mode: send every connection to this IP:port")
	proxy := fs.Bool("proxy", false, "HTTP CONNECT proxy mode")
	trustFile := fs.String("trust", "", "PEM bundle the firewall verifies servers with (default: the system roots)")
	hosts := fs.String("hosts", "", "YAML file of names and addresses (records: [{name, addrs}]) for CONNECT targets and FQDN objects")
	logFile := fs.String("log", "-", "session log file (- for stdout)")
	logFormat := fs.String("log-format", "json", "session log format: json, pan-traffic-csv, pan-decryption-csv, fortios-kv, cef")
	verbose := fs.Bool("v", false, "operational logs on stderr")
	var vendor vendorFlags
	vendor.flags(fs)
	if err := fs.Parse(args); err != nil {
		return flagError(err)
	}
	if *caCert == "" || *caKey == "" || *policyFile == "" {
		return usageError("serve firewall: --ca-cert, --ca-key and --policy are required")
	}
	if (*forward == "") == !*proxy {
		return usageError("serve firewall: choose exactly one of --forward IP:PORT and --proxy")
	}
	format, err := fwlog.ParseFormat(*logFormat)
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	certPEM, err := os.ReadFile(*caCert)
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	keyPEM, err := os.ReadFile(*caKey)
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	ca, err := pki.LoadCA(pki.Config{}, certPEM, keyPEM)
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	pol, err := policy.Load(*policyFile)
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	roots, err := x509.SystemCertPool()
	if err != nil || roots == nil {
		roots = x509.NewCertPool()
	}
	if *trustFile != "" {
		pem, err := os.ReadFile(*trustFile)
		if err != nil {
			return &exitError{code: 2, err: err}
		}
		roots = x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			return usageError("serve firewall: --trust %s holds no certificate", *trustFile)
		}
	}
	zone, err := loadZone(*hosts)
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	var out io.Writer = stdout
	if *logFile != "-" {
		f, err := outfile.Create(*logFile, outfile.Public)
		if err != nil {
			return &exitError{code: 2, err: err}
		}
		defer f.Close()
		out = f
	}
	log := slog.New(slog.DiscardHandler)
	if *verbose {
		log = slog.New(slog.NewTextHandler(stderr, nil))
	}
	fwCfg := mitm.Config{
		Outside: hostnet.OS{}, Policy: pol, CA: ca, Roots: roots, Resolver: zone,
		Logger: log, KeepRecords: 1,
	}
	device, err := vendor.apply(&fwCfg)
	if err != nil {
		return err
	}
	fwCfg.Writers = []fwlog.Logger{fwlog.NewWriter(out, format, fwlog.WithDevice(device))}
	fw, err := mitm.New(fwCfg)
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	defer fw.Close()
	l, err := net.Listen("tcp", *listen)
	if err != nil {
		return usageError("serve firewall: --listen %s: %v", *listen, err)
	}
	done := make(chan error, 1)
	if *proxy {
		go func() { done <- fw.ServeProxy(ctx, l) }()
		fmt.Fprintf(stderr, "pinwall firewall ready: HTTP CONNECT proxy on %s, enterprise CA %q\n", l.Addr(), ca.Cert.Subject.CommonName)
	} else {
		up, err := netip.ParseAddrPort(*forward)
		if err != nil {
			l.Close()
			return usageError("serve firewall: --forward %q: want IP:PORT", *forward)
		}
		go func() { done <- fw.ServeForward(ctx, l, up) }()
		fmt.Fprintf(stderr, "pinwall firewall ready: %s forwards to %s, enterprise CA %q\n", l.Addr(), up, ca.Cert.Subject.CommonName)
	}
	select {
	case <-ctx.Done():
		fw.Close()
		<-done
		return nil
	case err := <-done:
		return err
	}
}
