package capture

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"time"

	"github.com/pinwall/pinwall/outfile"
	"github.com/pinwall/pinwall/pcapng"
)

// LiveFile streams captured frames into a pcapng file as they arrive,
// flushing at least every FlushEvery, so that a capture whose process is
// killed loses at most that much (a reader stops at the torn last block).
// Every flow (an IP 5-tuple) keeps at most SnapLen bytes of payload in each
// direction; beyond that its frames keep their headers. It is safe for
// concurrent use.
type LiveFile struct {
	snap int

	mu     sync.Mutex
	f      *os.File
	bw     *bufio.Writer
	pw     *pcapng.Writer
	legs   map[string]uint32
	kept   map[flowKey]int
	closed bool
	err    error

	stop chan struct{}
	wg   sync.WaitGroup
}

// FlushEvery bounds how long a captured frame stays in memory.
const FlushEvery = 200 * time.Millisecond

// CreateLiveFile creates file and writes the section header. snapLen is as
// Config.SnapLen: zero means DefaultSnapLen, negative no limit.
func CreateLiveFile(file string, snapLen int, comment string) (*LiveFile, error) {
	if snapLen == 0 {
		snapLen = DefaultSnapLen
	}
	f, err := outfile.Create(file, outfile.Public)
	if err != nil {
		return nil, fmt.Errorf("capture: %w", err)
	}
	bw := bufio.NewWriterSize(f, 256<<10)
	pw, err := pcapng.NewWriter(bw, pcapng.Section{Application: DefaultApplication(), OS: runtime.GOOS, Comment: comment})
	if err != nil {
		f.Close()
		return nil, err
	}
	l := &LiveFile{snap: snapLen, f: f, bw: bw, pw: pw, legs: map[string]uint32{}, kept: map[flowKey]int{}, stop: make(chan struct{})}
	l.wg.Add(1)
	go l.flusher()
	return l, nil
}

func (l *LiveFile) flusher() {
	defer l.wg.Done()
	t := time.NewTicker(FlushEvery)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
			l.mu.Lock()
			if !l.closed && l.err == nil {
				l.err = l.bw.Flush()
			}
			l.mu.Unlock()
		}
	}
}

// Leg returns the interface of a leg, writing its description block the
// first time.
func (l *LiveFile) Leg(name, description string, link uint16) (uint32, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if i, ok := l.legs[name]; ok {
		return i, nil
	}
	if l.closed {
		return 0, os.ErrClosed
	}
	i, err := l.pw.AddInterface(pcapng.Interface{LinkType: link, Name: name, Description: description, OS: runtime.GOOS})
	if err != nil {
		return 0, err
	}
	l.legs[name] = i
	return i, nil
}

// Frame writes one Ethernet frame captured on interface iface at t.
func (l *LiveFile) Frame(iface uint32, t time.Time, frame []byte, dir pcapng.Direction) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed || l.err != nil {
		return
	}
	keep := len(frame)
	if l.snap > 0 {
		if key, hdr, payload, ok := parseEthernet(frame); ok && payload > 0 {
			k := max(0, min(payload, l.snap-l.kept[key]))
			l.kept[key] += k
			keep = hdr + k
		}
	}
	keep = min(keep, pcapng.MaxSnapLen)
	l.err = l.pw.WritePacket(pcapng.Packet{Interface: iface, Time: t, Data: frame[:keep], OrigLen: uint32(len(frame)), Direction: dir})
}

// Close flushes and closes the file; it is idempotent.
func (l *LiveFile) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	close(l.stop)
	l.mu.Unlock()
	l.wg.Wait()
	err := l.err
	if ferr := l.bw.Flush(); err == nil {
		err = ferr
	}
	if cerr := l.f.Close(); err == nil {
		err = cerr
	}
	return err
}

// flowKey identifies one direction of a flow.
type flowKey struct {
	proto    uint8
	src, dst netip.AddrPort
}

// parseEthernet finds an IPv4 TCP or UDP frame's flow, the length of its
// headers (Ethernet, IP, TCP/UDP) and of its payload.
func parseEthernet(b []byte) (flowKey, int, int, bool) {
	if len(b) < 14 {
		return flowKey{}, 0, 0, false
	}
	off := 12
	et := binary.BigEndian.Uint16(b[off:])
	off += 2
	if et == 0x8100 && len(b) >= 18 { // one VLAN tag
		et = binary.BigEndian.Uint16(b[16:])
		off = 18
	}
	if et != 0x0800 {
		return flowKey{}, 0, 0, false
	}
	key, hdr, payload, ok := parseIPv4(b[off:])
	return key, off + hdr, payload, ok
}

// parseIPv4 finds an IPv4 TCP or UDP packet's flow, header and payload
// lengths (the payload per the IP total length, however much was captured).
func parseIPv4(b []byte) (flowKey, int, int, bool) {
	if len(b) < 20 || b[0]>>4 != 4 {
		return flowKey{}, 0, 0, false
	}
	ihl := int(b[0]&0x0f) * 4
	total := int(binary.BigEndian.Uint16(b[2:]))
	if ihl < 20 || len(b) < ihl+8 || total < ihl {
		return flowKey{}, 0, 0, false
	}
	if total == 0 { // TSO: the length is the frame's
		total = len(b)
	}
	src := netip.AddrFrom4([4]byte(b[12:16]))
	dst := netip.AddrFrom4([4]byte(b[16:20]))
	l4 := b[ihl:]
	sp, dp := binary.BigEndian.Uint16(l4[0:]), binary.BigEndian.Uint16(l4[2:])
	key := flowKey{proto: b[9], src: netip.AddrPortFrom(src, sp), dst: netip.AddrPortFrom(dst, dp)}
	switch b[9] {
	case protoTCP:
		if len(l4) < 20 {
			return flowKey{}, 0, 0, false
		}
		thl := int(l4[12]>>4) * 4
		if thl < 20 || ihl+thl > total {
			return flowKey{}, 0, 0, false
		}
		return key, ihl + thl, total - ihl - thl, true
	case protoUDP:
		if total < ihl+8 {
			return flowKey{}, 0, 0, false
		}
		return key, ihl + 8, total - ihl - 8, true
	}
	return flowKey{}, 0, 0, false
}

// peerOf returns an IPv4 frame's source and destination addresses.
func peersOf(frame []byte) (src, dst netip.Addr, ok bool) {
	off := 14
	if len(frame) >= 18 && binary.BigEndian.Uint16(frame[12:]) == 0x8100 {
		off = 18
	}
	if len(frame) < off+20 || binary.BigEndian.Uint16(frame[off-2:]) != 0x0800 {
		return src, dst, false
	}
	ip := frame[off:]
	return netip.AddrFrom4([4]byte(ip[12:16])), netip.AddrFrom4([4]byte(ip[16:20])), true
}

// ErrNotSupported means live capture is not available on this platform.
var ErrNotSupported = errors.New("capture: live capture needs Linux (AF_PACKET)")
