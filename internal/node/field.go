package node

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"path/filepath"
	"time"

	"github.com/pinwall/pinwall/fieldgw"
	"github.com/pinwall/pinwall/gateway"
	"github.com/pinwall/pinwall/hostnet"
	"github.com/pinwall/pinwall/pki"
	"github.com/pinwall/pinwall/probe"
)

// runFieldGatewayNode runs the field probe's gateway on the container's
// addresses, port 443.
func runFieldGatewayNode(ctx context.Context, nc Config, stdout io.Writer, log *slog.Logger) error {
	gn := nc.Gateway
	cert, err := parseKeyPair(gn.Cert)
	if err != nil {
		return fmt.Errorf("gateway certificate: %w", err)
	}
	ca, err := parseCertPEM(gn.ClientCA)
	if err != nil {
		return fmt.Errorf("device CA: %w", err)
	}
	f, err := createOut(nc, "gateway.jsonl")
	if err != nil {
		return err
	}
	defer f.Close()
	runs, err := createOut(nc, fieldgw.RunLogFile)
	if err != nil {
		return err
	}
	defer runs.Close()
	var pool []netip.Addr
	for _, p := range nc.Net.Addrs {
		pool = append(pool, p.Addr())
	}
	srv, err := fieldgw.Start(ctx, fieldgw.Config{
		// The device CA's key stays with the runner, which issued the
		// bundle: the gateway only verifies.
		State:       &fieldgw.State{Certificate: cert, DeviceCA: &pki.CA{Cert: ca}},
		Primary:     fieldgw.Listener{Name: nc.Name, Stack: hostnet.OS{}, Listen: netip.AddrPortFrom(netip.IPv4Unspecified(), 443)},
		ControlName: gn.FieldControlName,
		Gateway:     gateway.Config{UDPAddrs: pool, KeyLogWriter: nc.keyLog},
		Log:         f, RunLog: runs, Logger: log,
	})
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, MarkerReady)
	<-ctx.Done()
	return srv.Close()
}

// runFieldProbeNode runs the field probe from the laptop and writes its
// result to FieldProbeFile.
func runFieldProbeNode(ctx context.Context, nc Config, stdout io.Writer, log *slog.Logger) error {
	fmt.Fprintln(stdout, MarkerReady)
	defer fmt.Fprintln(stdout, MarkerDone)
	b, id, err := probe.ParseBundle(nc.FieldProbe.Bundle, time.Now())
	if err != nil {
		return err
	}
	res, err := probe.Run(ctx, probe.Config{Bundle: b, Identity: id, Stack: hostnet.OS{}, Label: nc.FieldProbe.Label, Logger: log})
	if err != nil {
		return err
	}
	return writeJSON(filepath.Join(nc.Out, FieldProbeFile), res)
}

func parseCertPEM(s string) (*x509.Certificate, error) {
	blk, _ := pem.Decode([]byte(s))
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, errors.New("no PEM CERTIFICATE block")
	}
	return x509.ParseCertificate(blk.Bytes)
}
