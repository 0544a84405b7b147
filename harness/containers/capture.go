package containers

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"sync"
	"time"

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
			lan := []capture.Tap{tap(s.LegName("laptop", "fw-inside"), "on the firewall's LAN interface", []netip.Prefix{host32(s.Laptop)})}
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
			c.Ifaces = []node.CaptureIface{{Iface: inetOverlay, Taps: []capture.Tap{
				tap(harness.LegGatewayOrigins, "on the gateway "+nc.Name+"'s interface", originPeers),
			}}}
		}
		nc.Capture = c
	}
}

// collectCapture stops the nodes still running, so that their captures are
// complete, and merges every node's capture and key log into obs.Capture:
// one interface per leg, in the order of the in-process captures.
func (run *containerRun) collectCapture(ctx context.Context, obs *harness.Observation) error {
	grace := 10 * time.Second
	var wg sync.WaitGroup
	for _, name := range run.order {
		n := run.nodes[name]
		if n == nil || n.c == nil || n.cfg.Capture == nil || len(n.cfg.Capture.Ifaces) == 0 {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = n.c.Stop(ctx, &grace) // SIGTERM: the node flushes its capture
		}()
	}
	wg.Wait()
	rec := capture.New(capture.Config{SnapLen: run.r.SnapLen, Comment: "pinwall container run: captured with AF_PACKET on the containers' interfaces"})
	legs := map[string]uint32{}
	for _, leg := range []string{harness.LegLaptopFirewall, harness.LegFirewallGateway, harness.LegGatewayOrigins} {
		legs[leg] = rec.AddInterface(pcapng.Interface{LinkType: pcapng.LinkEthernet, Name: leg, Description: run.plan.Spec.LegDescription(leg)})
	}
	var dropped uint64
	var errs []error
	for _, name := range run.order {
		n := run.nodes[name]
		if n == nil || n.c == nil || n.cfg.Capture == nil {
			continue
		}
		if keys, err := run.read(ctx, name, node.KeyLogFile); err == nil {
			_, _ = rec.KeyLog().Write(keys)
		}
		if len(n.cfg.Capture.Ifaces) == 0 {
			continue
		}
		data, err := run.read(ctx, name, node.CaptureFile)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if err := mergeCapture(rec, legs, data); err != nil {
			errs = append(errs, fmt.Errorf("containers: %s's capture: %w", name, err))
		}
		var st node.CaptureStats
		if b, err := run.read(ctx, name, node.CaptureStatsFile); err == nil && json.Unmarshal(b, &st) == nil {
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
