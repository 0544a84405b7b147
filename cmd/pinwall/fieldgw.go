package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/pinwall/pinwall/fieldgw"
	"github.com/pinwall/pinwall/hostnet"
	"github.com/pinwall/pinwall/outfile"
)

// hasFlag reports whether args set the flag name (-name, --name, with or
// without =value).
func hasFlag(args []string, name string) bool {
	for _, a := range args {
		if a == "--" {
			return false
		}
		a = strings.TrimLeft(a, "-")
		if a == name || strings.HasPrefix(a, name+"=") {
			return true
		}
	}
	return false
}

// serveFieldGateway runs the field probe's gateway from the state in
// --dir (made there on first start) and writes the probe bundle.
func serveFieldGateway(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("serve gateway", "pinwall serve gateway --dir DIR [--listen ADDR] [--advertise IP:PORT] [--name NAME] [--backup ADDR] [--decoy ADDR] [--origin NAME=IP:PORT]... [flags]\n"+
		"       (the container role of a topology: pinwall serve gateway --config FILE)", args, stdout, stderr)
	dir := fs.String("dir", "", "state directory: keys, certificates, logs, the probe bundle (required; made on first start)")
	listen := fs.String("listen", "0.0.0.0:443", "primary gateway: TCP (TLS 1.3) and UDP (DTLS) on this address")
	advertise := fs.String("advertise", "", "the primary's address as the probe reaches it (IP:PORT); default --listen, which must then be an IP")
	name := fs.String("name", "gateway.pinwall-probe.test", "the primary gateway's name (the probe's SNI; never resolved)")
	backup := fs.String("backup", "", "backup gateway: another address of this machine to serve on (IP:PORT)")
	backupName := fs.String("backup-name", "", "the backup gateway's name; default backup-NAME")
	decoy := fs.String("decoy", "", "decoy: an address of this machine outside the gateway ranges the customer bypasses (IP:PORT), for the spoofing check")
	ttl := fs.Duration("bundle-ttl", 7*24*time.Hour, "how long the probe bundle is valid")
	verbose := fs.Bool("v", false, "operational logs on stderr")
	var origins []fieldgw.Origin
	fs.Func("origin", "NAME=IP:PORT: also serve inner flows to this destination, by this name only (repeatable; default: the built-in test origins only)", func(v string) error {
		o, err := fieldgw.ParseOrigin(v)
		if err != nil {
			return err
		}
		origins = append(origins, o)
		return nil
	})
	if err := fs.Parse(args); err != nil {
		return flagError(err)
	}
	if *dir == "" {
		return usageError("serve gateway: --dir DIR is required (or --config FILE for the container role)")
	}
	if *backupName == "" {
		*backupName = "backup-" + *name
	}
	primary, err := listener("--listen", *name, *listen, *advertise)
	if err != nil {
		return err
	}
	cfg := fieldgw.Config{Primary: primary, BundleTTL: *ttl, ControlName: "control." + *name, Origins: origins}
	names := []string{*name, *backupName, cfg.ControlName}
	if *backup != "" {
		if cfg.Backup, err = listener("--backup", *backupName, *backup, ""); err != nil {
			return err
		}
		if cfg.Backup.Listen.Port() != primary.Advertised().Port() {
			return usageError("serve gateway: --backup %s: the backup needs the primary's port %d (a client uses one port for both)", *backup, primary.Advertised().Port())
		}
	}
	if *decoy != "" {
		if cfg.Decoy, err = listener("--decoy", "decoy", *decoy, ""); err != nil {
			return err
		}
	}
	st, err := fieldgw.LoadState(*dir, names...)
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	for _, n := range names {
		if !slices.Contains(st.Certificate.Leaf.DNSNames, n) {
			return usageError("serve gateway: the certificate in %s names %v, not %q: use the names it was made for, or a new --dir", *dir, st.Certificate.Leaf.DNSNames, n)
		}
	}
	cfg.State = st
	log := slog.New(slog.DiscardHandler)
	if *verbose {
		log = slog.New(slog.NewTextHandler(stderr, nil))
	}
	cfg.Logger = log
	d, err := outfile.OpenDir(*dir)
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	defer d.Close()
	gwLog, err := d.Append(fieldgw.GatewayLogFile, outfile.Public)
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	defer gwLog.Close()
	runLog, err := d.Append(fieldgw.RunLogFile, outfile.Public)
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	defer runLog.Close()
	cfg.Log, cfg.RunLog = gwLog, runLog
	srv, err := fieldgw.Start(ctx, cfg)
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	defer srv.Close()
	b, err := srv.IssueBundle()
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	data, err := b.Marshal()
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	if err := d.MkdirAll("bundles"); err != nil {
		return &exitError{code: 2, err: err}
	}
	for _, f := range []string{fieldgw.BundleFile, filepath.Join("bundles", b.ID+".json")} {
		if err := d.WriteFile(f, data, outfile.Private); err != nil {
			return &exitError{code: 2, err: err}
		}
	}
	fmt.Fprintf(stderr, "pinwall field gateway ready: %s on %s (tls+dtls)", *name, primary.Advertised())
	if cfg.Backup.Stack != nil {
		fmt.Fprintf(stderr, ", backup %s on %s", *backupName, *backup)
	}
	if cfg.Decoy.Stack != nil {
		fmt.Fprintf(stderr, ", decoy %s", *decoy)
	}
	fmt.Fprintf(stderr, "\npinwall field gateway: inner flows to the built-in test origins")
	for _, o := range origins {
		fmt.Fprintf(stderr, ", %s (%s, --origin)", o.Name, o.Addr)
	}
	if len(origins) == 0 {
		fmt.Fprint(stderr, " only")
	}
	fmt.Fprintf(stderr, "\npinwall field gateway: probe bundle %s (id %s, expires %s); events in %s, probe runs in %s\n",
		filepath.Join(*dir, fieldgw.BundleFile), b.ID, b.Expires.Format(time.RFC3339), filepath.Join(*dir, fieldgw.GatewayLogFile), filepath.Join(*dir, fieldgw.RunLogFile))
	<-ctx.Done()
	return nil
}

// listener parses a listening address (and the address the probe reaches
// it at) on the machine's own network.
func listener(flag, name, listen, advertise string) (fieldgw.Listener, error) {
	l := fieldgw.Listener{Name: name, Stack: hostnet.OS{}}
	ap, err := netip.ParseAddrPort(listen)
	if err != nil {
		return l, usageError("serve gateway: %s %q: want IP:PORT", flag, listen)
	}
	l.Listen = ap
	if advertise != "" {
		if l.Advertise, err = netip.ParseAddrPort(advertise); err != nil {
			return l, usageError("serve gateway: --advertise %q: want IP:PORT", advertise)
		}
	} else if ap.Addr().IsUnspecified() {
		return l, usageError("serve gateway: %s %s listens on every address; say which one the probe reaches with --advertise IP:PORT", flag, listen)
	}
	return l, nil
}
