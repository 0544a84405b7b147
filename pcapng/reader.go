package pcapng

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"time"
)

// Reader reads a pcapng file block by block.
type Reader struct {
	r       *bufio.Reader
	order   binary.ByteOrder
	section Section
	ifaces  []Interface
	buf     []byte
	off     int64 // offset of the next block
}

// NewReader reads the file's first Section Header Block.
func NewReader(r io.Reader) (*Reader, error) {
	pr := &Reader{r: bufio.NewReaderSize(r, 64<<10)}
	b, err := pr.Next()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%w: empty file", ErrFormat)
		}
		return nil, err
	}
	if _, ok := b.(*Section); !ok {
		return nil, fmt.Errorf("%w: no section header at the start", ErrFormat)
	}
	return pr, nil
}

// Section returns the current section's header options.
func (r *Reader) Section() Section { return r.section }

// Interfaces returns the interfaces of the current section read so far.
func (r *Reader) Interfaces() []Interface { return append([]Interface(nil), r.ifaces...) }

// Next returns the next block: *Section (a new section starts; its
// interfaces start again from index 0), *Interface, *Packet or *Secrets.
// Block types it does not know are skipped. At the end of the file it
// returns io.EOF; in the middle of a block, ErrTruncated. The bytes of a
// returned block are only valid until the next call.
func (r *Reader) Next() (any, error) {
	for {
		b, err := r.next()
		if b != nil || err != nil {
			return b, err
		}
	}
}

func (r *Reader) next() (any, error) {
	var hdr [12]byte
	n, err := io.ReadFull(r.r, hdr[:8])
	if err == io.EOF {
		return nil, io.EOF
	}
	if err != nil {
		return nil, r.truncated(n)
	}
	at := r.off
	typ := binary.LittleEndian.Uint32(hdr[:4])
	if typ == BlockSection {
		// The byte order is the section's: read the magic first.
		if _, err := io.ReadFull(r.r, hdr[8:12]); err != nil {
			return nil, r.truncated(8)
		}
		switch binary.LittleEndian.Uint32(hdr[8:12]) {
		case byteOrderMagic:
			r.order = binary.LittleEndian
		case byteOrderMagicSwap:
			r.order = binary.BigEndian
		default:
			return nil, fmt.Errorf("%w: section header at offset %d: bad byte-order magic", ErrFormat, at)
		}
	} else if r.order == nil {
		return nil, fmt.Errorf("%w: block at offset %d before any section header", ErrFormat, at)
	} else {
		typ = r.order.Uint32(hdr[:4])
	}
	total := r.order.Uint32(hdr[4:8])
	if total < 12 || total%4 != 0 || total > MaxBlockLen {
		return nil, fmt.Errorf("%w: block at offset %d has length %d", ErrFormat, at, total)
	}
	read := 8
	if typ == BlockSection {
		if total < 28 {
			return nil, fmt.Errorf("%w: section header at offset %d has length %d", ErrFormat, at, total)
		}
		read = 12
	}
	if cap(r.buf) < int(total) {
		r.buf = make([]byte, total)
	}
	blk := r.buf[:total]
	copy(blk, hdr[:read])
	if n, err := io.ReadFull(r.r, blk[read:]); err != nil {
		return nil, r.truncated(read + n)
	}
	r.off += int64(total)
	if r.order.Uint32(blk[total-4:]) != total {
		return nil, fmt.Errorf("%w: block at offset %d: trailing length differs", ErrFormat, at)
	}
	body := blk[8 : total-4]
	switch typ {
	case BlockSection:
		return r.parseSection(body, at)
	case BlockInterface:
		return r.parseInterface(body, at)
	case BlockEnhancedPacket:
		return r.parsePacket(body, at)
	case BlockDecryptSecrets:
		return r.parseSecrets(body, at)
	}
	return nil, nil
}

func (r *Reader) truncated(n int) error {
	if n == 0 {
		return io.EOF
	}
	return fmt.Errorf("%w (offset %d)", ErrTruncated, r.off)
}

func (r *Reader) parseSection(body []byte, at int64) (any, error) {
	// magic(4) major(2) minor(2) section length(8)
	if major := r.order.Uint16(body[4:6]); major != 1 {
		return nil, fmt.Errorf("%w: section header at offset %d: version %d", ErrFormat, at, major)
	}
	s := &Section{}
	err := r.options(body[16:], at, func(code uint16, v []byte) {
		switch code {
		case optComment:
			s.Comment = string(v)
		case optSHBHardware:
			s.Hardware = string(v)
		case optSHBOS:
			s.OS = string(v)
		case optSHBUserAppl:
			s.Application = string(v)
		}
	})
	if err != nil {
		return nil, err
	}
	r.section, r.ifaces = *s, nil
	return s, nil
}

func (r *Reader) parseInterface(body []byte, at int64) (any, error) {
	if len(body) < 8 {
		return nil, fmt.Errorf("%w: interface block at offset %d too short", ErrFormat, at)
	}
	i := &Interface{LinkType: r.order.Uint16(body[0:2]), SnapLen: r.order.Uint32(body[4:8]), TSResol: 6}
	err := r.options(body[8:], at, func(code uint16, v []byte) {
		switch code {
		case optIfName:
			i.Name = string(v)
		case optIfDesc:
			i.Description = string(v)
		case optIfOS:
			i.OS = string(v)
		case optIfTSResol:
			if len(v) == 1 {
				i.TSResol = v[0]
			}
		}
	})
	if err != nil {
		return nil, err
	}
	if !validResol(i.TSResol) {
		return nil, fmt.Errorf("%w: interface block at offset %d: timestamp resolution %#x", ErrFormat, at, i.TSResol)
	}
	r.ifaces = append(r.ifaces, *i)
	return i, nil
}

func validResol(v uint8) bool {
	if v&0x80 != 0 {
		return v&0x7f <= 63
	}
	return v <= 19
}

func (r *Reader) parsePacket(body []byte, at int64) (any, error) {
	if len(body) < 20 {
		return nil, fmt.Errorf("%w: packet block at offset %d too short", ErrFormat, at)
	}
	p := &Packet{Interface: r.order.Uint32(body[0:4])}
	if int(p.Interface) >= len(r.ifaces) {
		return nil, fmt.Errorf("%w: packet block at offset %d on interface %d, only %d described", ErrFormat, at, p.Interface, len(r.ifaces))
	}
	ts := uint64(r.order.Uint32(body[4:8]))<<32 | uint64(r.order.Uint32(body[8:12]))
	p.Time = toTime(ts, r.ifaces[p.Interface].TSResol)
	capLen := r.order.Uint32(body[12:16])
	p.OrigLen = r.order.Uint32(body[16:20])
	if uint64(capLen) > uint64(len(body)-20) {
		return nil, fmt.Errorf("%w: packet block at offset %d: captured length %d beyond the block", ErrFormat, at, capLen)
	}
	p.Data = body[20 : 20+capLen]
	rest := body[20+capLen:]
	if pad := pad4(int(capLen)); pad <= len(rest) {
		rest = rest[pad:]
	} else {
		rest = nil
	}
	err := r.options(rest, at, func(code uint16, v []byte) {
		switch code {
		case optComment:
			p.Comment = string(v)
		case optEPBFlags:
			if len(v) == 4 {
				p.Direction = Direction(r.order.Uint32(v) & 3)
			}
		}
	})
	if err != nil {
		return nil, err
	}
	return p, nil
}

func (r *Reader) parseSecrets(body []byte, at int64) (any, error) {
	if len(body) < 8 {
		return nil, fmt.Errorf("%w: secrets block at offset %d too short", ErrFormat, at)
	}
	s := &Secrets{Type: r.order.Uint32(body[0:4])}
	n := r.order.Uint32(body[4:8])
	if uint64(n) > uint64(len(body)-8) {
		return nil, fmt.Errorf("%w: secrets block at offset %d: length %d beyond the block", ErrFormat, at, n)
	}
	s.Data = body[8 : 8+n]
	return s, nil
}

// options walks an options list, which may be absent (empty) and may end
// without opt_endofopt at the block's end.
func (r *Reader) options(b []byte, at int64, f func(code uint16, v []byte)) error {
	for len(b) >= 4 {
		code, n := r.order.Uint16(b[0:2]), int(r.order.Uint16(b[2:4]))
		if code == optEndOfOpt {
			return nil
		}
		b = b[4:]
		if n > len(b) {
			return fmt.Errorf("%w: block at offset %d: option %d of length %d beyond the block", ErrFormat, at, code, n)
		}
		f(code, b[:n])
		b = b[min(n+pad4(n), len(b)):]
	}
	return nil
}

// toTime converts a timestamp in units of the interface's resolution.
func toTime(ts uint64, resol uint8) time.Time {
	if resol&0x80 != 0 {
		// 2^-e seconds: seconds = ts >> e, fraction scaled to ns.
		e := uint(resol & 0x7f)
		sec := ts >> e
		frac := ts & (1<<e - 1)
		hi, lo := bits.Mul64(frac, 1e9)
		ns := hi<<(64-e) | lo>>e
		if e == 0 {
			ns = 0
		}
		return time.Unix(int64(sec), int64(ns)).UTC()
	}
	unit := uint64(1)
	for range resol {
		unit *= 10
	}
	sec, frac := ts/unit, ts%unit
	var ns uint64
	switch {
	case resol <= 9:
		ns = frac
		for range 9 - resol {
			ns *= 10
		}
	default:
		ns = frac
		for range resol - 9 {
			ns /= 10
		}
	}
	return time.Unix(int64(sec), int64(ns)).UTC()
}
