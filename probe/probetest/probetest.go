// Package probetest puts the field probe's gateway (package fieldgw)
// behind pinwall's in-process firewall (package harness), at the
// catalogue's gateway addresses, so tests can run the probe where a
// policy's truth is known.
package probetest

import (
	"context"
	"fmt"
	"net/netip"

	"github.com/pinwall/pinwall/fieldgw"
	"github.com/pinwall/pinwall/harness"
	"github.com/pinwall/pinwall/hostnet"
	"github.com/pinwall/pinwall/mitm/policy"
	"github.com/pinwall/pinwall/probe"
)

// Addresses of the field: the catalogue's primary and backup gateway
// addresses, and a decoy outside the gateway ranges.
var (
	PrimaryAddr = netip.MustParseAddrPort("203.0.113.9:443")
	BackupAddr  = netip.MustParseAddrPort("203.0.113.137:443")
	DecoyAddr   = netip.MustParseAddrPort("192.0.2.200:443")
)

// Field is a running field: firewall, field gateway, the laptop's network.
type Field struct {
	Topology *harness.Topology
	Server   *fieldgw.Server
	Bundle   *probe.Bundle
	Identity *probe.Identity
}

// Laptop is the laptop's network, behind the firewall.
func (f *Field) Laptop() hostnet.Stack { return f.Topology.LaptopStack() }

// Close stops everything; it is idempotent.
func (f *Field) Close() error {
	if f.Server != nil {
		f.Server.Close()
	}
	if f.Topology != nil {
		return f.Topology.Close()
	}
	return nil
}

// Options shape a field.
type Options struct {
	// NoBackup and NoDecoy leave those out of the bundle.
	NoBackup, NoDecoy bool
}

// Start starts a field with pol as the firewall's policy (nil: no firewall).
func Start(ctx context.Context, pol *policy.Policy, opts Options) (_ *Field, err error) {
	spec := harness.Spec{}
	if pol != nil {
		spec.Firewall = &harness.FirewallSpec{Policy: pol}
	}
	top, err := harness.StartInProcess(ctx, spec, harness.Options{NoClient: true, NoGateways: true})
	if err != nil {
		return nil, err
	}
	f := &Field{Topology: top}
	defer func() {
		if err != nil {
			f.Close()
		}
	}()
	decoy, err := top.Sim.AddHost("decoy", DecoyAddr.Addr())
	if err != nil {
		return nil, err
	}
	control := "control." + harness.PrimaryGateway
	cert, err := top.PKI.ServerCert(harness.PrimaryGateway, harness.BackupGateway, control)
	if err != nil {
		return nil, err
	}
	decoyCert, err := top.PKI.ServerCert("decoy.test")
	if err != nil {
		return nil, err
	}
	any443 := netip.AddrPortFrom(netip.IPv4Unspecified(), 443)
	cfg := fieldgw.Config{
		State:       &fieldgw.State{Certificate: cert, DeviceCA: top.PKI.Tenant, Decoy: decoyCert},
		Primary:     fieldgw.Listener{Name: harness.PrimaryGateway, Stack: top.Hosts[harness.PrimaryGateway], Listen: any443, Advertise: PrimaryAddr},
		ControlName: control,
	}
	if !opts.NoBackup {
		cfg.Backup = fieldgw.Listener{Name: harness.BackupGateway, Stack: top.Hosts[harness.BackupGateway], Listen: any443, Advertise: BackupAddr}
	}
	if !opts.NoDecoy {
		cfg.Decoy = fieldgw.Listener{Name: "decoy", Stack: decoy, Listen: DecoyAddr}
	}
	srv, err := fieldgw.Start(context.Background(), cfg)
	if err != nil {
		return nil, err
	}
	f.Server = srv
	b, err := srv.IssueBundle()
	if err != nil {
		return nil, err
	}
	data, err := b.Marshal()
	if err != nil {
		return nil, err
	}
	pb, id, err := probe.ParseBundle(data, b.Created)
	if err != nil {
		return nil, fmt.Errorf("probetest: the bundle the server issued: %w", err)
	}
	f.Bundle, f.Identity = pb, id
	return f, nil
}
