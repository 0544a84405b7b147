package harness

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"strings"

	"github.com/pinwall/pinwall/capture"
	"github.com/pinwall/pinwall/hostnet"
)

// The legs of a topology: the interfaces of a run's capture, named after
// the roles at their two ends. Both runners use these names.
const (
	// LegLaptopFirewall is the LAN: the laptop and what the firewall intercepts.
	LegLaptopFirewall = "laptop-firewall"
	// LegFirewallGateway is the firewall's outside and the gateways.
	LegFirewallGateway = "firewall-gateway"
	// LegFirewallOrigins is the firewall's outside and the origins (flows
	// the client sends direct).
	LegFirewallOrigins = "firewall-origins"
	// LegGatewayOrigins is the gateways and the SaaS origins.
	LegGatewayOrigins = "gateway-origins"
	// LegLaptopGateway is the laptop and the gateways with no firewall between.
	LegLaptopGateway = "laptop-gateway"
)

// Capture is a run's packet capture: every leg of the topology in one
// pcapng file, with the secrets of every TLS and DTLS session the
// components terminated inside it.
type Capture struct {
	// PCAPNG is the capture file: one interface per leg, the key log as a
	// Decryption Secrets Block, the packets in time order.
	PCAPNG []byte
	// KeyLog is the same key log in NSS format (what SSLKEYLOGFILE holds).
	KeyLog []byte
	// Packets counts the packets; Dropped those beyond the memory limit.
	Packets int
	Dropped int64
	// KeyLines counts the key log's lines.
	KeyLines int
	// SnapLen is the payload kept per flow and direction (negative: all).
	SnapLen int
	// Legs names the interfaces, in the file's order.
	Legs []string
	// Source says how the packets were made: "synthesized from the
	// in-process data path" or "captured on the containers' interfaces".
	Source string
}

// Capture sources.
const (
	CaptureSynthesized = "synthesized from the in-process data path"
	CaptureSniffed     = "captured on the containers' interfaces (AF_PACKET)"
)

// CaptureOf writes a Recorder out as a Capture.
func CaptureOf(rec *capture.Recorder, source string) (*Capture, error) {
	var buf bytes.Buffer
	if _, err := rec.WriteTo(&buf); err != nil {
		return nil, fmt.Errorf("harness: capture: %w", err)
	}
	keys := rec.KeyLog()
	return &Capture{PCAPNG: buf.Bytes(), KeyLog: keys.Bytes(), Packets: rec.Packets(), Dropped: rec.Dropped(),
		KeyLines: keys.Lines(), SnapLen: rec.SnapLen(), Legs: rec.Interfaces(), Source: source}, nil
}

// LegRole is the role a host plays at the end of a leg: "laptop",
// "firewall", "gateway", "origins", or an extra host's own name.
func (s Spec) LegRole(host string) string {
	switch host {
	case "fw-inside", "fw-outside", "firewall":
		return "firewall"
	case "laptop", "origins":
		return host
	}
	for _, g := range s.Gateways {
		if g.Name == host {
			return "gateway"
		}
	}
	return host
}

// LegName names the leg between two hosts of s ("laptop" and "fw-inside"
// make LegLaptopFirewall).
func (s Spec) LegName(from, to string) string {
	return s.LegRole(from) + "-" + s.LegRole(to)
}

// LegDescription says in words what a leg of s carries, with addresses.
func (s Spec) LegDescription(leg string) string {
	var gws []string
	for _, g := range s.Gateways {
		gws = append(gws, g.Name)
	}
	fw := func(side string) string {
		if s.Firewall == nil {
			return "the firewall"
		}
		if side == "inside" {
			return fmt.Sprintf("the firewall's inside (%s), which intercepts the laptop's traffic to the internet: addresses are the laptop's and the destinations'", s.Firewall.Inside)
		}
		return fmt.Sprintf("the firewall's outside (%s)", s.Firewall.Outside)
	}
	switch leg {
	case LegLaptopFirewall:
		return fmt.Sprintf("the LAN: the laptop (%s) and %s", s.Laptop, fw("inside"))
	case LegFirewallGateway:
		return fmt.Sprintf("the internet: %s and the gateways (%s)", fw("outside"), strings.Join(gws, ", "))
	case LegFirewallOrigins:
		return fmt.Sprintf("the internet: %s and the SaaS origins, for flows the client sends direct", fw("outside"))
	case LegGatewayOrigins:
		return fmt.Sprintf("the cloud: the gateways (%s) and the SaaS origins they connect to for the tunnel's inner flows", strings.Join(gws, ", "))
	case LegLaptopGateway:
		return fmt.Sprintf("the laptop (%s) and the gateways (%s), no firewall between", s.Laptop, strings.Join(gws, ", "))
	}
	a, b, _ := strings.Cut(leg, "-")
	return fmt.Sprintf("between %s and %s", a, b)
}

// tapInto returns the Sim tap recording every connection on its leg, each
// end what it sends. The main legs are added first, so that their
// interfaces come in the order traffic crosses them whichever connection
// happens first.
func (t *Topology) tapInto(rec *capture.Recorder) hostnet.Tap {
	legs := []string{LegLaptopGateway, LegGatewayOrigins}
	if t.Spec.Firewall != nil {
		legs = []string{LegLaptopFirewall, LegFirewallGateway, LegGatewayOrigins}
	}
	for _, leg := range legs {
		rec.Leg(leg, t.Spec.LegDescription(leg))
	}
	return legTap{spec: t.Spec, rec: rec}
}

// legTap puts every connection of a Sim on its leg of a capture.
type legTap struct {
	spec Spec
	rec  *capture.Recorder
}

func (l legTap) leg(from, to *hostnet.Host) *capture.Leg {
	name := l.spec.LegName(from.Name(), to.Name())
	return l.rec.Leg(name, l.spec.LegDescription(name))
}

func (l legTap) DialledConn(_ hostnet.Proto, from, to *hostnet.Host, c net.Conn) net.Conn {
	return l.leg(from, to).Dialled(c)
}

func (l legTap) AcceptedConn(from, at *hostnet.Host, c net.Conn) net.Conn {
	return l.leg(from, at).Accepted(c)
}

func (l legTap) PacketConn(_ *hostnet.Host, pc net.PacketConn) net.PacketConn {
	return l.rec.PacketConn(pc)
}

// keyLogWriter is where the components write their session secrets: the
// capture's key log and the caller's writer, either or both.
func keyLogWriter(opts Options) io.Writer {
	var ws []io.Writer
	if opts.Capture != nil {
		ws = append(ws, opts.Capture.KeyLog())
	}
	if opts.KeyLogWriter != nil {
		ws = append(ws, opts.KeyLogWriter)
	}
	switch len(ws) {
	case 0:
		return nil
	case 1:
		return ws[0]
	}
	return io.MultiWriter(ws...)
}
