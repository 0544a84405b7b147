package capture_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pinwall/pinwall/capture"
	"github.com/pinwall/pinwall/pcapng"
)

// checkTCPOrder reads a capture of raw IPv4 packets in file order and
// checks what Wireshark's TCP analysis would: per connection and
// direction, every segment starts where the last one ended (nothing lost,
// repeated or reordered) and acknowledges nothing the other direction has
// not sent yet.
func checkTCPOrder(file []byte) error {
	r, err := pcapng.NewReader(bytes.NewReader(file))
	if err != nil {
		return err
	}
	type dirKey struct{ src, dst string }
	next := map[dirKey]uint32{}
	n := 0
	for {
		b, err := r.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		p, ok := b.(*pcapng.Packet)
		if !ok {
			continue
		}
		n++
		ip := p.Data
		if len(ip) < 40 || ip[9] != 6 {
			continue
		}
		ihl := int(ip[0]&0x0f) * 4
		total := int(binary.BigEndian.Uint16(ip[2:]))
		tcp := ip[ihl:]
		k := dirKey{fmt.Sprintf("%v:%d", net.IP(ip[12:16]), binary.BigEndian.Uint16(tcp[0:])), fmt.Sprintf("%v:%d", net.IP(ip[16:20]), binary.BigEndian.Uint16(tcp[2:]))}
		back := dirKey{k.dst, k.src}
		seq, ack, flags := binary.BigEndian.Uint32(tcp[4:]), binary.BigEndian.Uint32(tcp[8:]), tcp[13]
		payload := total - ihl - int(tcp[12]>>4)*4
		if flags&0x02 != 0 { // SYN
			next[k] = seq + 1
			continue
		}
		if want, ok := next[k]; ok && seq != want {
			return fmt.Errorf("packet %d %s→%s: seq %d, expected %d", n, k.src, k.dst, seq, want)
		}
		if flags&0x10 != 0 {
			if sent, ok := next[back]; ok && int32(ack-sent) > 0 {
				return fmt.Errorf("packet %d %s→%s: acknowledges %d, the other side has sent up to %d", n, k.src, k.dst, ack, sent)
			}
		}
		adv := uint32(payload)
		if flags&0x01 != 0 {
			adv++
		}
		next[k] = seq + adv
	}
}

// TestConcurrentEnds has both ends of recorded connections write at once,
// many times: the capture's segments still follow each other in order. The
// clock yields after each reading, so that an end stamping a packet before
// it holds the flow would be caught.
func TestConcurrentEnds(t *testing.T) {
	rec := capture.New(capture.Config{Now: func() time.Time {
		now := time.Now()
		runtime.Gosched()
		time.Sleep(time.Microsecond)
		return now
	}})
	leg := rec.Leg("leg", "")
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	var wg sync.WaitGroup
	for range 4 {
		raw, err := net.Dial("tcp4", ln.Addr().String())
		require.NoError(t, err)
		sraw, err := ln.Accept()
		require.NoError(t, err)
		c, s := leg.Dialled(raw), leg.Accepted(sraw)
		for _, end := range []net.Conn{c, s} {
			wg.Add(2)
			go func() { // write
				defer wg.Done()
				for i := range 300 {
					if _, err := end.Write(bytes.Repeat([]byte{byte(i)}, 1+i%97)); err != nil {
						return
					}
				}
				_ = end.(interface{ CloseWrite() error }).CloseWrite()
			}()
			go func() { // drain
				defer wg.Done()
				_, _ = io.Copy(io.Discard, end)
			}()
		}
		defer c.Close()
		defer s.Close()
	}
	wg.Wait()
	var out bytes.Buffer
	_, err = rec.WriteTo(&out)
	require.NoError(t, err)
	require.NoError(t, checkTCPOrder(out.Bytes()))
}
