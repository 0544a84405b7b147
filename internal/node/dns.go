package node

import (
	"errors"
	"net"
	"net/netip"
	"strings"
	"sync"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/pinwall/pinwall/resolve"
)

// zoneDNS answers the topology's names over DNS on a loopback UDP socket,
// for a third-party tool in the firewall container that resolves names
// itself: squid verifies that an intercepted connection's SNI resolves to
// its destination (squid.conf.documented, host_verify_strict: "suspicious
// intercepted CONNECT requests are always responded to with an HTTP 409
// (Conflict)"). Every address of a name is in every answer, so the check
// holds whichever address of a rotating pool the client was given.
// Queries for other names get NXDOMAIN; other types an empty answer. One
// goroutine serves, one datagram at a time; Close stops it.
type zoneDNS struct {
	pc    net.PacketConn
	names map[string][]netip.Addr
	wg    sync.WaitGroup
	once  sync.Once
}

// serveZoneDNS starts answering zone on addr (a loopback address:port).
func serveZoneDNS(addr string, zone []resolve.Record) (*zoneDNS, error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return nil, err
	}
	if !ap.Addr().IsLoopback() {
		return nil, errors.New("node: the zone's DNS answers on loopback only")
	}
	pc, err := net.ListenPacket("udp4", addr)
	if err != nil {
		return nil, err
	}
	z := &zoneDNS{pc: pc, names: map[string][]netip.Addr{}}
	for _, r := range zone {
		n := strings.ToLower(strings.TrimSuffix(r.Name, ".")) + "."
		z.names[n] = append(z.names[n], r.Addrs...)
	}
	z.wg.Add(1)
	go z.serve()
	return z, nil
}

func (z *zoneDNS) serve() {
	defer z.wg.Done()
	buf := make([]byte, 1500)
	for {
		n, from, err := z.pc.ReadFrom(buf)
		if err != nil {
			return
		}
		if resp, ok := z.answer(buf[:n]); ok {
			_, _ = z.pc.WriteTo(resp, from)
		}
	}
}

// answer builds the response to one query; ok is false for what is not
// a query worth answering.
func (z *zoneDNS) answer(q []byte) ([]byte, bool) {
	var p dnsmessage.Parser
	h, err := p.Start(q)
	if err != nil || h.Response {
		return nil, false
	}
	qs, err := p.AllQuestions()
	if err != nil || len(qs) != 1 {
		return nil, false
	}
	question := qs[0]
	rh := dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true, RecursionDesired: h.RecursionDesired}
	addrs, known := z.names[strings.ToLower(question.Name.String())]
	if !known {
		rh.RCode = dnsmessage.RCodeNameError
	}
	b := dnsmessage.NewBuilder(make([]byte, 0, 512), rh)
	b.EnableCompression()
	if b.StartQuestions() != nil || b.Question(question) != nil || b.StartAnswers() != nil {
		return nil, false
	}
	if question.Type == dnsmessage.TypeA && question.Class == dnsmessage.ClassINET {
		for _, a := range addrs {
			if !a.Is4() {
				continue
			}
			rr := dnsmessage.ResourceHeader{Name: question.Name, Class: dnsmessage.ClassINET, TTL: 60}
			if b.AResource(rr, dnsmessage.AResource{A: a.As4()}) != nil {
				return nil, false
			}
		}
	}
	resp, err := b.Finish()
	return resp, err == nil
}

// Close stops answering and waits for the server's goroutine.
func (z *zoneDNS) Close() error {
	var err error
	z.once.Do(func() {
		err = z.pc.Close()
		z.wg.Wait()
	})
	return err
}
