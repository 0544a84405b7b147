package pcapng

import (
	"encoding/binary"
	"fmt"
	"io"
)

var le = binary.LittleEndian

// Writer writes one pcapng section: NewWriter writes the Section Header
// Block, then interfaces, secrets and packets follow in any order (an
// interface before its packets; secrets before the packets they decrypt,
// for readers that make one pass, as tshark does). A Writer is not safe for
// concurrent use. Errors are sticky: after the first, every call returns it.
type Writer struct {
	w      io.Writer
	buf    []byte
	ifaces uint32
	err    error
}

// NewWriter writes a Section Header Block describing s to w.
func NewWriter(w io.Writer, s Section) (*Writer, error) {
	pw := &Writer{w: w}
	b := pw.begin(BlockSection)
	b = le.AppendUint32(b, byteOrderMagic)
	b = le.AppendUint16(b, 1) // major
	b = le.AppendUint16(b, 0) // minor
	b = le.AppendUint64(b, sectionLengthUnknown)
	b = appendStringOpt(b, optComment, s.Comment)
	b = appendStringOpt(b, optSHBHardware, s.Hardware)
	b = appendStringOpt(b, optSHBOS, s.OS)
	b = appendStringOpt(b, optSHBUserAppl, s.Application)
	b = appendEndOpt(b, s.Comment != "" || s.Hardware != "" || s.OS != "" || s.Application != "")
	pw.buf = b
	return pw, pw.end()
}

// AddInterface writes an Interface Description Block and returns the
// interface's index, for Packet.Interface.
func (w *Writer) AddInterface(i Interface) (uint32, error) {
	if w.err != nil {
		return 0, w.err
	}
	b := w.begin(BlockInterface)
	b = le.AppendUint16(b, i.LinkType)
	b = le.AppendUint16(b, 0)
	b = le.AppendUint32(b, i.SnapLen)
	b = appendStringOpt(b, optIfName, i.Name)
	b = appendStringOpt(b, optIfDesc, i.Description)
	b = appendOpt(b, optIfTSResol, []byte{9})
	b = appendStringOpt(b, optIfOS, i.OS)
	b = appendEndOpt(b, true)
	w.buf = b
	if err := w.end(); err != nil {
		return 0, err
	}
	w.ifaces++
	return w.ifaces - 1, nil
}

// Interfaces returns how many interfaces have been written.
func (w *Writer) Interfaces() int { return int(w.ifaces) }

// WriteSecrets writes a Decryption Secrets Block.
func (w *Writer) WriteSecrets(s Secrets) error {
	if w.err != nil {
		return w.err
	}
	if len(s.Data) > MaxBlockLen-64 {
		return fmt.Errorf("pcapng: secrets of %d bytes exceed %d", len(s.Data), MaxBlockLen-64)
	}
	b := w.begin(BlockDecryptSecrets)
	b = le.AppendUint32(b, s.Type)
	b = le.AppendUint32(b, uint32(len(s.Data)))
	b = append(b, s.Data...)
	b = append(b, make([]byte, pad4(len(s.Data)))...)
	w.buf = b
	return w.end()
}

// WritePacket writes an Enhanced Packet Block.
func (w *Writer) WritePacket(p Packet) error {
	if w.err != nil {
		return w.err
	}
	if p.Interface >= w.ifaces {
		return fmt.Errorf("pcapng: packet on interface %d, only %d written", p.Interface, w.ifaces)
	}
	if len(p.Data) > MaxSnapLen {
		return fmt.Errorf("pcapng: packet of %d bytes exceeds %d", len(p.Data), MaxSnapLen)
	}
	orig := p.OrigLen
	if orig == 0 {
		orig = uint32(len(p.Data))
	}
	if orig < uint32(len(p.Data)) {
		return fmt.Errorf("pcapng: original length %d below the %d bytes captured", orig, len(p.Data))
	}
	ts := uint64(p.Time.UnixNano())
	b := w.begin(BlockEnhancedPacket)
	b = le.AppendUint32(b, p.Interface)
	b = le.AppendUint32(b, uint32(ts>>32))
	b = le.AppendUint32(b, uint32(ts))
	b = le.AppendUint32(b, uint32(len(p.Data)))
	b = le.AppendUint32(b, orig)
	b = append(b, p.Data...)
	b = append(b, make([]byte, pad4(len(p.Data)))...)
	if p.Direction != DirUnknown {
		b = appendOpt(b, optEPBFlags, le.AppendUint32(nil, uint32(p.Direction&3)))
	}
	b = appendStringOpt(b, optComment, p.Comment)
	b = appendEndOpt(b, p.Direction != DirUnknown || p.Comment != "")
	w.buf = b
	return w.end()
}

// begin starts a block in w.buf with a placeholder length.
func (w *Writer) begin(typ uint32) []byte {
	b := w.buf[:0]
	b = le.AppendUint32(b, typ)
	return le.AppendUint32(b, 0)
}

// end fills in the block's length, appends the trailing copy and writes it.
func (w *Writer) end() error {
	if w.err != nil {
		return w.err
	}
	n := uint32(len(w.buf) + 4)
	le.PutUint32(w.buf[4:8], n)
	w.buf = le.AppendUint32(w.buf, n)
	if _, err := w.w.Write(w.buf); err != nil {
		w.err = fmt.Errorf("pcapng: %w", err)
	}
	return w.err
}

func appendOpt(b []byte, code uint16, v []byte) []byte {
	b = le.AppendUint16(b, code)
	b = le.AppendUint16(b, uint16(len(v)))
	b = append(b, v...)
	return append(b, make([]byte, pad4(len(v)))...)
}

// appendStringOpt appends a UTF-8 option unless s is empty; an option
// value is at most 65535 bytes, so a longer string is cut.
func appendStringOpt(b []byte, code uint16, s string) []byte {
	if s == "" {
		return b
	}
	if len(s) > 0xffff {
		s = s[:0xffff]
	}
	return appendOpt(b, code, []byte(s))
}

// appendEndOpt ends an options list, when there is one.
func appendEndOpt(b []byte, some bool) []byte {
	if !some {
		return b
	}
	return le.AppendUint32(b, 0)
}
