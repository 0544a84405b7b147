package containers

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/pinwall/pinwall/fieldgw"
	"github.com/pinwall/pinwall/harness"
	"github.com/pinwall/pinwall/internal/node"
	"github.com/pinwall/pinwall/pki"
	"github.com/pinwall/pinwall/probe"
)

// fieldRun is a field probe's run: the gateways are the field probe's
// (package fieldgw) and the laptop runs the probe (package probe) with a
// bundle the runner issued.
type fieldRun struct {
	label string
	// bundle is the bundle given to the laptop (set by probeNode).
	bundle *probe.Bundle
}

func (f *fieldRun) controlName(s harness.Spec) string { return "control." + s.Gateways[0].Name }

// probeNode issues the bundle (the first address of the first gateway as
// the primary, of the second as the backup; no decoy) and the laptop's
// configuration that runs the probe with it.
func (f *fieldRun) probeNode(s harness.Spec, set *pki.Set, gwCert *tls.Certificate) (*node.FieldProbe, error) {
	at := func(g harness.GatewaySpec) probe.Endpoint {
		return probe.Endpoint{Name: g.Name, Addr: netip.AddrPortFrom(g.Addrs()[0], 443)}
	}
	o := fieldgw.BundleOptions{Primary: at(s.Gateways[0]), ControlName: f.controlName(s), TTL: time.Hour}
	if len(s.Gateways) > 1 {
		bk := at(s.Gateways[1])
		o.Backup = &bk
	}
	b, err := fieldgw.NewBundle(&fieldgw.State{Certificate: gwCert, DeviceCA: set.Tenant}, o)
	if err != nil {
		return nil, err
	}
	data, err := b.Marshal()
	if err != nil {
		return nil, err
	}
	f.bundle = b
	return &node.FieldProbe{Bundle: data, Label: f.label}, nil
}

// RunFieldProbe runs the field probe in containers: the laptop behind the
// spec's firewall (pinwall's, or a third-party interceptor), the field
// probe's gateways at the spec's gateway addresses, and returns the
// probe's result as the laptop wrote it.
func (c *Runner) RunFieldProbe(ctx context.Context, spec harness.Spec, label string) (*probe.Result, error) {
	spec = spec.WithDefaults()
	if spec.Firewall == nil {
		return nil, errors.New("containers: the topology needs a firewall (it is the laptop's route to the internet)")
	}
	if len(spec.Gateways) == 0 {
		return nil, errors.New("containers: the field probe needs a gateway")
	}
	p := harness.Plan{Spec: spec}
	run, end, err := c.newRun(ctx, p)
	if err != nil {
		return nil, err
	}
	defer end()
	run.field = &fieldRun{label: label}
	if err := run.start(ctx); err != nil {
		return nil, err
	}
	if err := run.startCreated(ctx, "laptop"); err != nil {
		return nil, err
	}
	laptop := run.nodes["laptop"]
	if err := run.waitLog(ctx, laptop.c, node.MarkerDone, 2*probe.MaxLimit); err != nil {
		return nil, fmt.Errorf("%w\n%s", err, containerLogs(ctx, laptop.c))
	}
	var res probe.Result
	if err := run.readJSON(ctx, "laptop", node.FieldProbeFile, &res); err != nil {
		return nil, fmt.Errorf("containers: the probe's result: %w\n%s", err, containerLogs(ctx, laptop.c))
	}
	return &res, nil
}
