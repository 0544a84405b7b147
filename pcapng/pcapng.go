// Package pcapng reads and writes the pcapng capture file format
// (draft-ietf-opsawg-pcapng, https://www.ietf.org/archive/id/draft-ietf-opsawg-pcapng-03.html),
// the blocks pinwall's evidence captures need and nothing more:
//
//	Section Header Block (SHB)      one per file: byte order, the writing application
//	Interface Description Block     one per leg of a topology, named after it
//	Decryption Secrets Block (DSB)  the TLS/DTLS key log (NSS format), so Wireshark
//	                                decrypts the file without being told where the keys are
//	Enhanced Packet Block (EPB)     one per packet: interface, timestamp, bytes
//
// Writer writes little-endian files with nanosecond timestamps. Reader reads
// files of either byte order written by any tool, skipping the block types
// it does not know; it bounds every length it reads, so a damaged or hostile
// file ends in an error, never a panic or a huge allocation. A file cut in
// the middle of a block (a capture whose writer was killed) ends with
// ErrTruncated after its last whole block.
package pcapng

import (
	"errors"
	"time"
)

// Block types.
const (
	BlockSection         uint32 = 0x0A0D0D0A
	BlockInterface       uint32 = 0x00000001
	BlockEnhancedPacket  uint32 = 0x00000006
	BlockDecryptSecrets  uint32 = 0x0000000A
	byteOrderMagic       uint32 = 0x1A2B3C4D
	byteOrderMagicSwap   uint32 = 0x4D3C2B1A
	sectionLengthUnknown        = ^uint64(0)
)

// Link types (https://www.tcpdump.org/linktypes.html).
const (
	// LinkEthernet is IEEE 802.3 Ethernet (LINKTYPE_ETHERNET).
	LinkEthernet uint16 = 1
	// LinkRaw is raw IP, the version read from the first nibble (LINKTYPE_RAW).
	LinkRaw uint16 = 101
)

// SecretsTLSKeyLog is the DSB secrets type of an NSS key log
// ("TLSK"), the format SSLKEYLOGFILE uses.
const SecretsTLSKeyLog uint32 = 0x544c534b

// Option codes.
const (
	optEndOfOpt    = 0
	optComment     = 1
	optSHBHardware = 2
	optSHBOS       = 3
	optSHBUserAppl = 4
	optIfName      = 2
	optIfDesc      = 3
	optIfTSResol   = 9
	optIfOS        = 12
	optEPBFlags    = 2
)

// Direction is the EPB flags' inbound/outbound bits.
type Direction uint8

// Directions.
const (
	DirUnknown  Direction = 0
	DirInbound  Direction = 1
	DirOutbound Direction = 2
)

// Limits the Reader enforces.
const (
	// MaxBlockLen bounds one block (a packet of 256 KiB plus headers, or
	// a key log): anything larger is taken for damage.
	MaxBlockLen = 16 << 20
	// MaxSnapLen is the largest packet a writer accepts.
	MaxSnapLen = 256 << 10
)

// Errors.
var (
	// ErrTruncated means the file ended inside a block.
	ErrTruncated = errors.New("pcapng: file ends inside a block")
	// ErrFormat means the bytes are not a pcapng file or a block is damaged.
	ErrFormat = errors.New("pcapng: malformed")
)

// Section is a Section Header Block's descriptive options.
type Section struct {
	Hardware, OS, Application, Comment string
}

// Interface is an Interface Description Block.
type Interface struct {
	LinkType uint16
	// SnapLen is the longest packet captured on it; zero means no limit.
	SnapLen uint32
	// Name names the interface (pinwall: the leg, "laptop-firewall").
	Name string
	// Description says what it is, in words.
	Description string
	// OS is the operating system of the capturing machine, optional.
	OS string
	// TSResol is the timestamp resolution as the if_tsresol option codes
	// it: bit 7 clear, 10^-TSResol seconds; set, 2^-(TSResol&0x7f). Zero
	// means the default, microseconds (6). Writer always writes 9
	// (nanoseconds) and ignores this field.
	TSResol uint8
}

// Packet is an Enhanced Packet Block.
type Packet struct {
	// Interface is the index of the packet's Interface in its section.
	Interface uint32
	Time      time.Time
	// Data is the captured bytes; OrigLen the packet's length on the wire
	// (at least len(Data); zero when writing means len(Data)).
	Data    []byte
	OrigLen uint32
	// Direction, when known, from the EPB flags.
	Direction Direction
	Comment   string
}

// Secrets is a Decryption Secrets Block.
type Secrets struct {
	Type uint32
	Data []byte
}

// pad4 is how many zero bytes follow n bytes to a multiple of 4.
func pad4(n int) int { return (4 - n%4) % 4 }
