package harness

import (
	"context"
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"sort"
	"strings"

	"github.com/pinwall/pinwall/client"
	"github.com/pinwall/pinwall/hostnet"
	"github.com/pinwall/pinwall/outfile"
	"github.com/pinwall/pinwall/pki"
	"github.com/pinwall/pinwall/resolve"
)

// The files a lab writes into Options.Dir besides the CAs and the logs, for
// people and third-party tools to poke at a running in-process topology.
const (
	// LabJSON describes the lab (LabInfo) for scripts.
	LabJSON = "lab.json"
	// LabHosts maps every simulated name to the real loopback address
	// standing in for it, in /etc/hosts format (squid's hosts_file, curl
	// --resolve, a bind mount over /etc/hosts).
	LabHosts = "hosts"
	// LabDeviceCert and LabDeviceKey are the client's device certificate
	// chain and its private key (mode 0600): present them with
	// openssl s_client -cert -key to be the laptop.
	LabDeviceCert = "device.pem"
	LabDeviceKey  = "device-key.pem"
	// LabGatewayCert is the certificate every gateway serves.
	LabGatewayCert = "gateway.pem"
	// LabPin holds the client's gateway pins, one per line.
	LabPin = "pin.txt"
	// LabClientHistory is the client's history (the format of pinwall
	// run's client-history.json).
	LabClientHistory = "client-history.json"
)

// LabServer is a simulated server as a tool outside the simulation reaches
// it: its logical addresses and the real loopback sockets standing in for
// them (in process every listening socket has an ephemeral real port).
type LabServer struct {
	Name string `json:"name"`
	// Addrs are the logical addresses (203.0.113.x: what the client and
	// the firewall log).
	Addrs []netip.Addr `json:"addrs"`
	// TCP and UDP are the real sockets standing in for port 443 of Addrs.
	TCP []netip.AddrPort `json:"tcp"`
	UDP []netip.AddrPort `json:"udp,omitempty"`
}

// LabInfo describes a running lab.
type LabInfo struct {
	Gateways []LabServer `json:"gateways"`
	Origins  []LabServer `json:"origins"`
	// DNS is the lab's DNS server (resolve.DNSServer), "" when off.
	DNS string `json:"dns,omitempty"`
	// SOCKS is the client's SOCKS5 listener.
	SOCKS string `json:"socks,omitempty"`
	// FirewallProxy is the lab firewall's explicit proxy on a real
	// address, "" when not opened.
	FirewallProxy string `json:"firewall_proxy,omitempty"`
	// UpstreamProxy is the proxy the client's TLS tunnel goes through, and
	// ProxyConnect what its CONNECT names (client.ProxyConnectMode).
	UpstreamProxy string `json:"upstream_proxy,omitempty"`
	ProxyConnect  string `json:"proxy_connect,omitempty"`
	// Transport is the client's transport mode.
	Transport string `json:"transport"`
	// Pins are the client's gateway pins.
	Pins []string `json:"pins,omitempty"`
	// Files maps what each file holds to its name in the lab's directory.
	Files map[string]string `json:"files"`
}

// RealAddr is the real loopback socket standing in for the simulated
// socket ap (a listening socket's ephemeral port), for a program on this
// machine; false when no simulated host owns ap's address.
func (t *Topology) RealAddr(proto hostnet.Proto, ap netip.AddrPort) (netip.AddrPort, bool) {
	return t.Sim.RealAddr(proto, ap)
}

// Servers lists the gateways and origins with the real sockets standing in
// for their port 443.
func (t *Topology) Servers() (gateways, origins []LabServer) {
	server := func(name string, addrs []netip.Addr, udp bool) LabServer {
		s := LabServer{Name: name, Addrs: addrs}
		seen := map[netip.AddrPort]bool{}
		for _, a := range addrs {
			if r, ok := t.RealAddr(hostnet.ProtoTCP, netip.AddrPortFrom(a, 443)); ok && !seen[r] {
				seen[r] = true
				s.TCP = append(s.TCP, r)
			}
			if !udp {
				continue
			}
			if r, ok := t.RealAddr(hostnet.ProtoUDP, netip.AddrPortFrom(a, 443)); ok && !seen[r] {
				seen[r] = true
				s.UDP = append(s.UDP, r)
			}
		}
		return s
	}
	for _, g := range t.Spec.Gateways {
		gateways = append(gateways, server(g.Name, g.Addrs(), true))
	}
	for _, o := range t.Spec.Origins {
		origins = append(origins, server(o.Name, []netip.Addr{o.Addr}, false))
	}
	return gateways, origins
}

// ServeDNS serves the topology's zone over real DNS on addr (a loopback
// address, port 0 for any), answering each name with the real loopback
// addresses standing in for its simulated ones, until the topology closes.
// A proxy resolving with it reaches the simulated servers: the port is the
// real one of RealAddr, not 443.
func (t *Topology) ServeDNS(ctx context.Context, addr string) (*resolve.DNSServer, error) {
	s, err := resolve.ListenDNS(ctx, resolve.DNSConfig{
		Addr:     addr,
		Resolver: t.Zone,
		Map:      t.Sim.Loopback,
		Logger:   t.log.With("component", "dns"),
	})
	if err != nil {
		return nil, fmt.Errorf("harness: %w", err)
	}
	t.onClose(s.Close)
	return s, nil
}

// WriteLabFiles writes what a person or a tool needs to poke at the lab
// into Options.Dir: info as LabJSON (its Files filled in), the hosts file,
// the device certificate and key (0600), the gateway's certificate and the
// pins of cfg, the client's configuration. Without a Dir it does nothing.
func (t *Topology) WriteLabFiles(cfg client.Config, info *LabInfo) error {
	if t.out == nil {
		return nil
	}
	info.Files = map[string]string{
		"internet CA": "internet-ca.pem", "tenant CA": "tenant-ca.pem", "enterprise CA": "enterprise-ca.pem",
		"gateway log": "gateway.jsonl", "origin log": "origins.jsonl", "client history": LabClientHistory,
		"hosts file": LabHosts, "gateway certificate": LabGatewayCert,
	}
	if t.Firewall != nil {
		for _, f := range firewallLogFiles {
			info.Files["firewall log ("+string(f.format)+")"] = f.name
		}
	}
	var errs []error
	write := func(name string, data []byte, mode fs.FileMode) {
		if err := t.out.WriteFile(name, data, mode); err != nil {
			errs = append(errs, fmt.Errorf("harness: %w", err))
		}
	}
	write(LabHosts, t.hostsFile(), outfile.Public)
	if t.gatewayCert != nil {
		write(LabGatewayCert, pki.CertPEM(t.gatewayCert), outfile.Public)
	}
	if len(cfg.Pins) > 0 {
		info.Pins = cfg.Pins.Strings()
		info.Files["pins"] = LabPin
		write(LabPin, []byte(strings.Join(info.Pins, "\n")+"\n"), outfile.Public)
	}
	if dc := cfg.DeviceCert; dc != nil {
		signer, ok := dc.PrivateKey.(crypto.Signer)
		if !ok {
			errs = append(errs, errors.New("harness: the device key is not a crypto.Signer"))
		} else if key, err := pki.KeyPEM(signer); err != nil {
			errs = append(errs, fmt.Errorf("harness: device key: %w", err))
		} else {
			write(LabDeviceCert, pki.ChainPEM(dc), outfile.Public)
			write(LabDeviceKey, key, outfile.Private)
			info.Files["device certificate"], info.Files["device key"] = LabDeviceCert, LabDeviceKey
		}
	}
	data, err := json.MarshalIndent(info, "", "  ")
	if err != nil {
		errs = append(errs, err)
	} else {
		write(LabJSON, append(data, '\n'), outfile.Public)
	}
	return errors.Join(errs...)
}

// WriteClientHistory writes the client's history into Options.Dir as
// LabClientHistory; without a Dir it does nothing.
func (t *Topology) WriteClientHistory(h []client.Transition) error {
	if t.out == nil {
		return nil
	}
	if h == nil {
		h = []client.Transition{}
	}
	data, err := json.MarshalIndent(h, "", "  ")
	if err != nil {
		return err
	}
	return t.out.WriteFile(LabClientHistory, append(data, '\n'), outfile.Public)
}

// hostsFile maps every name of the zone to the real loopback addresses
// standing in for its addresses, one line per address.
func (t *Topology) hostsFile() []byte {
	var b strings.Builder
	b.WriteString("# pinwall lab: the simulated names and the real loopback addresses standing in for them.\n")
	b.WriteString("# Servers listen on ephemeral ports there, not 443: see lab.json.\n")
	for _, r := range t.Zone.Records() {
		var loops []string
		seen := map[netip.Addr]bool{}
		for _, a := range r.Addrs {
			if l, ok := t.Sim.Loopback(a); ok && !seen[l] {
				seen[l] = true
				loops = append(loops, l.String())
			}
		}
		sort.Strings(loops)
		for _, l := range loops {
			fmt.Fprintf(&b, "%s\t%s\n", l, r.Name)
		}
	}
	return []byte(b.String())
}

// Snapshot is what the topology and the client c have logged so far, as
// an Observation for scenarios.Attribute, without ending anything (the lab
// reads it while running).
func (t *Topology) Snapshot(c *client.Client) *Observation {
	obs := &Observation{Mode: "inproc", Roles: RolesOf(t.Spec)}
	if c != nil {
		obs.Tunnel = c.State()
		obs.History = c.History()
		obs.ClientError = c.LastError()
	}
	t.collect(obs)
	return obs
}
