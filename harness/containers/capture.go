package containers

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"path"
	"strings"

	"github.com/moby/moby/client"

	"github.com/pinwall/pinwall/capture"
	"github.com/pinwall/pinwall/harness"
	"github.com/pinwall/pinwall/internal/node"
	"github.com/pinwall/pinwall/pcapng"
)

// addCapture gives every node its part of the run's capture: the firewall
// captures its LAN overlay (the laptop's and the probes' legs) and its
// internet overlay (to the gateways and to the origins), each gateway its
// internet overlay towards the origins; every node logs its components'
// session secrets. Each leg is captured at one place only.
func (run *containerRun) addCapture(cfgs []node.Config) {
	s := run.plan.Spec
	host32 := func(a netip.Addr) netip.Prefix { return netip.PrefixFrom(a, 32) }
	var gwPeers, originPeers []netip.Prefix
	for _, g := range s.Gateways {
		for _, a := range g.Addrs() {
			gwPeers = append(gwPeers, host32(a))
		}
	}
	for _, o := range s.Origins {
		originPeers = append(originPeers, host32(o.Addr))
	}
	tap := func(leg string, where string, peers []netip.Prefix) capture.Tap {
		return capture.Tap{Leg: leg, Description: s.LegDescription(leg) + "; captured " + where, Peers: peers}
	}
	for i := range cfgs {
		nc := &cfgs[i]
		c := &node.Capture{SnapLen: run.r.SnapLen}
		switch nc.Role {
		case node.RoleFirewall:
			laptops := []netip.Prefix{host32(s.Laptop)}
			for _, name := range run.fleet {
				laptops = append(laptops, host32(run.fleetAddr[name]))
			}
			lan := []capture.Tap{tap(s.LegName("laptop", "fw-inside"), "on the firewall's LAN interface", laptops)}
			for _, h := range s.ExtraHosts {
				lan = append(lan, tap(s.LegName(h.Name, "fw-inside"), "on the firewall's LAN interface", []netip.Prefix{host32(h.Addr)}))
			}
			c.Ifaces = []node.CaptureIface{
				{Iface: lanOverlay, Taps: lan},
				{Iface: inetOverlay, Taps: []capture.Tap{
					tap(harness.LegFirewallGateway, "on the firewall's internet interface", gwPeers),
					tap(harness.LegFirewallOrigins, "on the firewall's internet interface", originPeers),
				}},
			}
		case node.RoleGateway:
			where := "on the gateway " + nc.Name + "'s interface"
			if nc.Gateway != nil && len(nc.Gateway.Hosts) > 0 {
				var names []string
				for _, h := range nc.Gateway.Hosts {
					names = append(names, h.Name)
				}
				where = "on the interface of the node the gateways share (" + strings.Join(names, ", ") + ")"
			}
			c.Ifaces = []node.CaptureIface{{Iface: inetOverlay, Taps: []capture.Tap{
				tap(harness.LegGatewayOrigins, where, originPeers),
			}}}
		}
		nc.Capture = c
	}
}

// capturing says whether a node captures packets (not only session
// secrets).
func capturing(nc node.Config) bool {
	return nc.Capture != nil && len(nc.Capture.Ifaces) > 0
}

// collectCapture merges every node's capture and key log, as collect read
// them (readOutputs stops the capturing nodes first), into obs.Capture:
// one interface per leg, in the order of the in-process captures.
func (run *containerRun) collectCapture(ctx context.Context, obs *harness.Observation) error {
	rec := capture.New(capture.Config{SnapLen: run.r.SnapLen, Comment: "pinwall container run: captured with AF_PACKET on the containers' interfaces"})
	legs := map[string]uint32{}
	for _, leg := range []string{harness.LegLaptopFirewall, harness.LegFirewallGateway, harness.LegGatewayOrigins} {
		legs[leg] = rec.AddInterface(pcapng.Interface{LinkType: pcapng.LinkEthernet, Name: leg, Description: run.plan.Spec.LegDescription(leg)})
	}
	type output struct {
		name  string
		files map[string][]byte
		err   error
	}
	var outs []*output
	for _, name := range run.order {
		if n := run.nodes[name]; n != nil && n.c != nil && n.cfg.Capture != nil {
			o := &output{name: name}
			run.mu.Lock()
			files, ok := run.outs[name]
			run.mu.Unlock()
			if ok {
				o.files = files
			} else {
				o.files, o.err = run.readOut(ctx, name)
			}
			outs = append(outs, o)
		}
	}
	var dropped uint64
	var errs []error
	for _, o := range outs {
		if o.err != nil {
			errs = append(errs, o.err)
			continue
		}
		_, _ = rec.KeyLog().Write(o.files[node.KeyLogFile])
		if !capturing(run.nodes[o.name].cfg) {
			continue
		}
		data, ok := o.files[node.CaptureFile]
		if !ok {
			errs = append(errs, fmt.Errorf("containers: %s wrote no %s", o.name, node.CaptureFile))
			continue
		}
		if err := mergeCapture(rec, legs, data); err != nil {
			errs = append(errs, fmt.Errorf("containers: %s's capture: %w", o.name, err))
		}
		var st node.CaptureStats
		if b, ok := o.files[node.CaptureStatsFile]; ok && json.Unmarshal(b, &st) == nil {
			dropped += st.Dropped
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	c, err := harness.CaptureOf(rec, harness.CaptureSniffed)
	if err != nil {
		return err
	}
	c.Dropped += int64(dropped)
	obs.Capture = c
	return nil
}

// readOut copies a node's output directory in one archive: its regular
// files by base name.
func (run *containerRun) readOut(ctx context.Context, nodeName string) (map[string][]byte, error) {
	n := run.nodes[nodeName]
	res, err := run.cli.CopyFromContainer(ctx, n.c.GetContainerID(), client.CopyFromContainerOptions{SourcePath: node.OutDir})
	if err != nil {
		return nil, fmt.Errorf("containers: read %s from %s: %w", node.OutDir, nodeName, err)
	}
	defer res.Content.Close()
	out := map[string][]byte{}
	tr := tar.NewReader(res.Content)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("containers: read %s from %s: %w", node.OutDir, nodeName, err)
		}
		if h.Typeflag == tar.TypeReg && path.Dir(h.Name) == path.Base(node.OutDir) {
			if out[path.Base(h.Name)], err = io.ReadAll(tr); err != nil {
				return nil, fmt.Errorf("containers: read %s from %s: %w", h.Name, nodeName, err)
			}
		}
	}
}

// mergeCapture adds one node's capture to rec, its interfaces by leg name.
// A capture torn by a killed node ends at its last whole block.
func mergeCapture(rec *capture.Recorder, legs map[string]uint32, data []byte) error {
	r, err := pcapng.NewReader(bytes.NewReader(data))
	if err != nil {
		return err
	}
	// The file's interface index → rec's, added at its first packet so
	// that a leg nothing crossed leaves no empty interface.
	var local []*pcapng.Interface
	idx := map[int]uint32{}
	for {
		blk, err := r.Next()
		if errors.Is(err, io.EOF) || errors.Is(err, pcapng.ErrTruncated) {
			return nil
		}
		if err != nil {
			return err
		}
		switch b := blk.(type) {
		case *pcapng.Section:
			local, idx = nil, map[int]uint32{}
		case *pcapng.Interface:
			c := *b
			local = append(local, &c)
		case *pcapng.Packet:
			n := int(b.Interface)
			i, ok := idx[n]
			if !ok {
				if i, ok = legs[local[n].Name]; !ok {
					i = rec.AddInterface(*local[n])
					legs[local[n].Name] = i
				}
				idx[n] = i
			}
			p := *b
			p.Interface = i
			rec.AddPacket(p)
		}
	}
}
