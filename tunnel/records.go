package tunnel

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/binary"
	"encoding/gob"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/dtls/v3"
	"github.com/pion/dtls/v3/pkg/crypto/prf"
	"github.com/pion/transport/v5/deadline"
)

// A RecordPath carries a DTLS 1.2 connection's application data itself
// once pion/dtls has completed the handshake. pion/dtls writes and reads
// every record through per-record allocations, a goroutine and a context
// (BenchmarkDTLSRecords: 35 µs of CPU for an 8 KiB record, both ends,
// three quarters of it allocation, garbage collection and scheduling);
// the record path seals and opens the same records, byte for byte the
// DTLS 1.2 AEAD record of RFC 6347 §4.1 and RFC 5288 §3, in buffers it
// reuses.
//
// The RecordPath sits under pion/dtls as its net.PacketConn. pion/dtls
// runs the handshake, its retransmissions and alerts as before: every
// datagram that is not one application data record of the current epoch
// goes to pion/dtls, and so does everything before Attach. Attach comes
// right after the handshake, on both ends, and all application data goes
// through the connection it returns: its writes are records numbered from
// RecordSeqBase up (pion/dtls's own records after the handshake, its
// alerts, count from where the handshake left them, far below, so the two
// never meet); a datagram that holds one application data record from
// the peer is opened here, its sequence number checked against a replay
// window of its own (RFC 6347 §4.1.2.6), and queued for Read. A record
// from the peer's record path that arrives before Attach waits, up to
// earlyRecords of them, so that pion/dtls never reads application data:
// nothing reads pion/dtls's connection once attached, and its replay
// window would jump past the peer's alerts. pion/dtls still ends the
// connection: a close_notify or fatal alert from the peer makes it close
// the record path, which ends Read with io.EOF.
//
// Only the AES-GCM cipher suites are carried (the ones pion/dtls prefers
// with the tunnel's ECDSA and RSA certificates); with any other suite, or
// a connection ID, Attach returns the pion/dtls connection itself (the
// peer, with the same suite, does the same).
type RecordPath struct {
	inner net.PacketConn

	attached atomic.Pointer[pathConn] // nil until Attach

	mu     sync.Mutex
	early  [][]byte // the peer's record-path datagrams before Attach
	closed bool
	done   chan struct{} // closed by Close

	toPion atomic.Int64 // application data datagrams left to pion/dtls after Attach
}

// RecordSeqBase is the first sequence number of a record path's records.
// A DTLS 1.2 sequence number has 48 bits; pion/dtls's own records in the
// same epoch (the handshake's Finished, alerts) stay far below it.
const RecordSeqBase = 1 << 40

// earlyRecords bounds the peer's records held before Attach: SCTP sends
// a handful before the association is up (its INIT, perhaps again); more
// are dropped, as a full socket would, and SCTP sends them again.
const earlyRecords = 64

// recordBufSize is the largest datagram a record path reads and writes:
// pion/dtls's read buffer, into which the record path reads too, so that a
// tunnel waiting for a datagram holds no buffer of its own.
const recordBufSize = 8192

const (
	recordHeaderLen = 13
	// maxRecordPlaintext is the most a record path's record carries: a
	// datagram of recordBufSize less the header, the explicit nonce and
	// the tag (DTLS 1.2 allows 2^14).
	maxRecordPlaintext = recordBufSize - recordHeaderLen - 8 - 16
	contentAppData     = 23
	maxSeq48           = 1<<48 - 1
)

var recordBufs = sync.Pool{New: func() any { b := make([]byte, recordBufSize); return &b }}

func getRecordBuf() *[]byte { return recordBufs.Get().(*[]byte) }

func putRecordBuf(b *[]byte) {
	*b = (*b)[:cap(*b)]
	recordBufs.Put(b)
}

// ErrRecordTooLarge is returned by a record path's Write for a payload
// larger than its peer reads in one record (8,155 bytes).
var ErrRecordTooLarge = errors.New("tunnel: payload larger than a DTLS record")

// NewRecordPath returns a record path over pc, to be given to pion/dtls
// as its connection. Closing the record path closes pc.
func NewRecordPath(pc net.PacketConn) *RecordPath {
	return &RecordPath{inner: pc, done: make(chan struct{})}
}

// ReadFrom returns the next datagram that is pion/dtls's to read; the
// record path's own records are opened and queued on the way. Datagrams
// are read into pion/dtls's buffer (8,192 bytes, which holds the largest
// record of an SCTP packet within maxMTU), so that a waiting tunnel holds
// no buffer of the record path's; a record is opened into a pooled one.
func (r *RecordPath) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		n, addr, err := r.inner.ReadFrom(b)
		if err != nil {
			return n, addr, err
		}
		select {
		case <-r.done:
			return 0, nil, net.ErrClosed
		default:
		}
		// Whether attached is asked after the read: pion/dtls's reader
		// waits in it from before Attach.
		rc := r.attached.Load()
		if rc == nil && isPathRecord(b[:n]) {
			// A record from the peer's record path before Attach: held.
			if rc = r.holdEarly(b[:n]); rc == nil {
				continue
			}
		}
		if rc != nil && rc.take(b[:n]) {
			continue
		}
		if n > 0 && b[0] == contentAppData && r.attached.Load() != nil {
			// Not one record of the epoch: pion/dtls drops it, or keeps it
			// where nothing reads it.
			r.toPion.Add(1)
		}
		return n, addr, nil
	}
}

// isPathRecord reports a datagram that starts with an application data
// record numbered as a record path numbers its own.
func isPathRecord(d []byte) bool {
	return len(d) >= recordHeaderLen && d[0] == contentAppData && seq48(d[5:11]) >= RecordSeqBase
}

// holdEarly keeps a copy of d, a datagram from the peer's record path
// that came before Attach, and returns nil, or returns the record path's
// connection if Attach has happened since the read began, for the caller
// to open the record.
func (r *RecordPath) holdEarly(d []byte) *pathConn {
	r.mu.Lock()
	defer r.mu.Unlock()
	if rc := r.attached.Load(); rc != nil {
		return rc
	}
	if len(r.early) < earlyRecords {
		r.early = append(r.early, bytes.Clone(d))
	}
	return nil
}

// WriteTo writes pion/dtls's datagrams.
func (r *RecordPath) WriteTo(b []byte, addr net.Addr) (int, error) { return r.inner.WriteTo(b, addr) }

// Close closes the connection under the record path; pion/dtls calls it
// when its connection closes, for whatever reason.
func (r *RecordPath) Close() error {
	r.mu.Lock()
	if !r.closed {
		r.closed = true
		close(r.done)
	}
	r.early = nil
	r.mu.Unlock()
	return r.inner.Close()
}

// LocalAddr is the address of the connection under the record path.
func (r *RecordPath) LocalAddr() net.Addr { return r.inner.LocalAddr() }

// SetDeadline sets the deadlines of the connection under the record path.
func (r *RecordPath) SetDeadline(t time.Time) error { return r.inner.SetDeadline(t) }

// SetReadDeadline sets its read deadline.
func (r *RecordPath) SetReadDeadline(t time.Time) error { return r.inner.SetReadDeadline(t) }

// SetWriteDeadline sets its write deadline.
func (r *RecordPath) SetWriteDeadline(t time.Time) error { return r.inner.SetWriteDeadline(t) }

// dtlsState mirrors the fields of pion/dtls's exported State
// (State.MarshalBinary, a gob of its serializedState) that the record path
// needs; gob matches them by name.
type dtlsState struct {
	LocalEpoch         uint16
	RemoteEpoch        uint16
	LocalRandom        [32]byte
	RemoteRandom       [32]byte
	CipherSuiteID      uint16
	MasterSecret       []byte
	LocalConnectionID  []byte
	RemoteConnectionID []byte
	IsClient           bool
}

// recordSuite is an AES-GCM cipher suite's key length and PRF hash.
type recordSuite struct {
	keyLen int
	hash   func() hash.Hash
}

// recordSuites are the suites a record path carries (RFC 5289 §3.2).
var recordSuites = map[dtls.CipherSuiteID]recordSuite{
	dtls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256: {16, sha256.New},
	dtls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256:   {16, sha256.New},
	dtls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384: {32, sha512.New384},
	dtls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384:   {32, sha512.New384},
}

// Attach hands conn's application data to the record path from now on
// and returns the connection to use instead of conn: its Write seals
// records, its Read returns the peer's, its Close closes conn. conn must
// be the pion/dtls connection the record path is under, its handshake
// just completed: nothing may have been written or read through it. With
// a cipher suite the record path does not carry, or a connection ID,
// Attach returns conn itself and logs why at debug level.
func (r *RecordPath) Attach(conn *dtls.Conn, log *slog.Logger) (net.Conn, error) {
	state, ok := conn.ConnectionState()
	if !ok {
		return nil, errors.New("tunnel: record path: the DTLS handshake has not completed")
	}
	raw, err := state.MarshalBinary()
	if err != nil {
		return nil, fmt.Errorf("tunnel: record path: DTLS state: %w", err)
	}
	var st dtlsState
	if err := gob.NewDecoder(bytes.NewReader(raw)).Decode(&st); err != nil {
		return nil, fmt.Errorf("tunnel: record path: DTLS state: %w", err)
	}
	suite, ok := recordSuites[dtls.CipherSuiteID(st.CipherSuiteID)]
	if !ok || len(st.RemoteConnectionID) > 0 || len(st.LocalConnectionID) > 0 {
		if log != nil {
			log.Debug("tunnel: record path not used", "cipher_suite", dtls.CipherSuiteID(st.CipherSuiteID).String(),
				"connection_id", len(st.RemoteConnectionID) > 0 || len(st.LocalConnectionID) > 0)
		}
		return conn, nil
	}
	clientRandom, serverRandom := st.LocalRandom, st.RemoteRandom
	if !st.IsClient {
		clientRandom, serverRandom = serverRandom, clientRandom
	}
	keys, err := prf.GenerateEncryptionKeys(st.MasterSecret, clientRandom[:], serverRandom[:], 0, suite.keyLen, 4, suite.hash)
	if err != nil {
		return nil, fmt.Errorf("tunnel: record path: keys: %w", err)
	}
	wKey, wIV, rKey, rIV := keys.ServerWriteKey, keys.ServerWriteIV, keys.ClientWriteKey, keys.ClientWriteIV
	if st.IsClient {
		wKey, wIV, rKey, rIV = rKey, rIV, wKey, wIV
	}
	c, err := newPathConn(r, conn, conn.RemoteAddr(), wKey, wIV, rKey, rIV, st.LocalEpoch, st.RemoteEpoch)
	if err != nil {
		return nil, err
	}
	c.log = log
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil, net.ErrClosed
	}
	r.attached.Store(c)
	early := r.early
	r.early = nil
	r.mu.Unlock()
	for _, d := range early {
		c.take(d) // one that is not a record of this epoch is dropped
	}
	return c, nil
}

// newPathConn is the connection of record path r once attached to dc,
// with its keys.
func newPathConn(r *RecordPath, dc *dtls.Conn, raddr net.Addr, wKey, wIV, rKey, rIV []byte, wEpoch, rEpoch uint16) (*pathConn, error) {
	seal, err := newGCM(wKey)
	if err != nil {
		return nil, err
	}
	open, err := newGCM(rKey)
	if err != nil {
		return nil, err
	}
	c := &pathConn{
		dc:     dc,
		path:   r,
		raddr:  raddr,
		seal:   seal,
		open:   open,
		wEpoch: wEpoch,
		rEpoch: rEpoch,
		wseq:   RecordSeqBase,
		rx:     make(chan rxRecord, 128),
		closed: make(chan struct{}),
		rdl:    deadline.New(),
	}
	copy(c.wIV[:], wIV)
	copy(c.rIV[:], rIV)
	return c, nil
}

func newGCM(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("tunnel: record path: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("tunnel: record path: %w", err)
	}
	return aead, nil
}

// rxRecord is a received record's plaintext: (*buf)[:n].
type rxRecord struct {
	buf *[]byte
	n   int
}

// pathConn is an attached record path's connection.
type pathConn struct {
	dc    *dtls.Conn
	path  *RecordPath
	raddr net.Addr

	seal, open     cipher.AEAD
	wIV, rIV       [4]byte
	wEpoch, rEpoch uint16

	wmu  sync.Mutex
	wseq uint64

	// The replay windows, one for the peer's record path's numbers and
	// one for pion/dtls's below them (a record pion/dtls wrote before the
	// peer attached, arriving late): rmu, because Attach opens the early
	// records while pion/dtls's reader may already open new ones.
	rmu    sync.Mutex
	replay [2]replayWindow
	bad    atomic.Int64 // records that failed to open or were replays

	log    *slog.Logger // nil: nothing logged
	rx     chan rxRecord
	rdl    *deadline.Deadline
	closed chan struct{} // closed by Close
	once   sync.Once
}

// take opens d, a datagram that is one application data record of the
// current epoch, into a pooled buffer and queues the plaintext; it reports
// whether the datagram was the record path's (queued, or dropped as a
// forgery or replay).
func (c *pathConn) take(d []byte) bool {
	if len(d) < recordHeaderLen+8+16 || d[0] != contentAppData || d[1] != 0xfe || d[2] != 0xfd ||
		binary.BigEndian.Uint16(d[3:5]) != c.rEpoch ||
		int(binary.BigEndian.Uint16(d[11:13]))+recordHeaderLen != len(d) {
		return false // not one record of ours: pion/dtls's to read
	}
	seq := seq48(d[5:11])
	w := &c.replay[0]
	if seq >= RecordSeqBase {
		w = &c.replay[1]
	}
	c.rmu.Lock()
	defer c.rmu.Unlock()
	if !w.fresh(seq) {
		c.bad.Add(1)
		return true
	}
	var nonce [12]byte
	copy(nonce[:4], c.rIV[:])
	copy(nonce[4:], d[recordHeaderLen:recordHeaderLen+8])
	ct := d[recordHeaderLen+8:]
	var aad [13]byte
	copy(aad[:8], d[3:11])
	aad[8], aad[9], aad[10] = contentAppData, 0xfe, 0xfd
	binary.BigEndian.PutUint16(aad[11:], uint16(len(ct)-16)) //nolint:gosec // bounded by the record length
	buf := getRecordBuf()
	pt, err := c.open.Open((*buf)[:0], nonce[:], ct, aad[:])
	if err != nil {
		putRecordBuf(buf)
		c.bad.Add(1)
		return true
	}
	w.mark(seq)
	select {
	case c.rx <- rxRecord{buf: buf, n: len(pt)}:
	case <-c.closed:
		putRecordBuf(buf)
	}
	return true
}

// Read returns the peer's next record, truncated to p
// (io.ErrShortBuffer) as a datagram would be.
func (c *pathConn) Read(p []byte) (int, error) {
	select {
	case r := <-c.rx:
		return deliver(p, r)
	default:
	}
	select {
	case r := <-c.rx:
		return deliver(p, r)
	case <-c.path.done:
		// pion/dtls closed the record path: the peer's close_notify or
		// fatal alert, or the connection under it ended. The records
		// opened before are read first.
		select {
		case r := <-c.rx:
			return deliver(p, r)
		default:
		}
		select {
		case <-c.closed:
			return 0, net.ErrClosed
		default:
			return 0, io.EOF
		}
	case <-c.closed:
		return 0, net.ErrClosed
	case <-c.rdl.Done():
		return 0, recordTimeout{}
	}
}

func deliver(p []byte, r rxRecord) (int, error) {
	n := copy(p, (*r.buf)[:r.n])
	putRecordBuf(r.buf)
	if n < r.n {
		return n, fmt.Errorf("tunnel: record path: %w: a %d-byte record", errShortRead, r.n)
	}
	return n, nil
}

var errShortRead = errors.New("read buffer smaller than the record")

// recordTimeout is a read past the connection's deadline.
type recordTimeout struct{}

func (recordTimeout) Error() string   { return "tunnel: record path: read deadline exceeded" }
func (recordTimeout) Timeout() bool   { return true }
func (recordTimeout) Temporary() bool { return true }

// Write seals p as one application data record and sends it.
func (c *pathConn) Write(p []byte) (int, error) {
	if len(p) > maxRecordPlaintext {
		return 0, ErrRecordTooLarge
	}
	select {
	case <-c.closed:
		return 0, net.ErrClosed
	case <-c.path.done:
		return 0, fmt.Errorf("tunnel: record path: %w: the DTLS connection has ended", net.ErrClosed)
	default:
	}
	c.wmu.Lock()
	seq := c.wseq
	if seq > maxSeq48 {
		c.wmu.Unlock()
		return 0, errors.New("tunnel: record path: sequence numbers exhausted")
	}
	c.wseq++
	c.wmu.Unlock()
	// An idle tunnel holds no buffer: a fleet's gateway holds thousands.
	buf := getRecordBuf()
	defer putRecordBuf(buf)
	b := *buf
	b[0], b[1], b[2] = contentAppData, 0xfe, 0xfd
	binary.BigEndian.PutUint16(b[3:5], c.wEpoch)
	putSeq48(b[5:11], seq)
	binary.BigEndian.PutUint16(b[11:13], uint16(8+len(p)+16)) //nolint:gosec // len(p) ≤ maxRecordPlaintext
	// The explicit nonce is the record's epoch and sequence number, as
	// RFC 5288 §3 suggests: unique for the key.
	copy(b[13:21], b[3:11])
	var nonce [12]byte
	copy(nonce[:4], c.wIV[:])
	copy(nonce[4:], b[13:21])
	var aad [13]byte
	copy(aad[:8], b[3:11])
	aad[8], aad[9], aad[10] = contentAppData, 0xfe, 0xfd
	binary.BigEndian.PutUint16(aad[11:], uint16(len(p))) //nolint:gosec // len(p) ≤ maxRecordPlaintext
	out := c.seal.Seal(b[21:21], nonce[:], p, aad[:])
	if _, err := c.path.inner.WriteTo(b[:21+len(out)], c.raddr); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Close closes the pion/dtls connection: its close_notify, then the
// connection under the record path. Records it dropped are logged then,
// at warning level: none is dropped silently.
func (c *pathConn) Close() error {
	var err error
	c.once.Do(func() {
		close(c.closed)
		err = c.dc.Close()
		if bad, left := c.bad.Load(), c.path.toPion.Load(); c.log != nil && (bad > 0 || left > 0) {
			c.log.Warn("tunnel: record path dropped records", "peer", c.raddr.String(),
				"forged_or_replayed", bad, "left_to_pion", left)
		}
	})
	return err
}

func (c *pathConn) LocalAddr() net.Addr  { return c.dc.LocalAddr() }
func (c *pathConn) RemoteAddr() net.Addr { return c.dc.RemoteAddr() }

func (c *pathConn) SetDeadline(t time.Time) error {
	c.rdl.Set(t)
	return c.path.inner.SetWriteDeadline(t)
}

func (c *pathConn) SetReadDeadline(t time.Time) error { c.rdl.Set(t); return nil }

func (c *pathConn) SetWriteDeadline(t time.Time) error { return c.path.inner.SetWriteDeadline(t) }

// Rejected is how many of the peer's records the record path dropped:
// forgeries (the AEAD tag did not verify) and replays.
func (c *pathConn) Rejected() int64 { return c.bad.Load() }

// replayWindow is RFC 6347 §4.1.2.6's sliding window of 64 sequence
// numbers.
type replayWindow struct {
	top  uint64 // highest sequence number accepted
	bits uint64 // bit i: top-i accepted
	any  bool
}

// fresh reports whether seq is new and within the window.
func (w *replayWindow) fresh(seq uint64) bool {
	if !w.any || seq > w.top {
		return true
	}
	d := w.top - seq
	return d < 64 && w.bits&(1<<d) == 0
}

// mark records seq, which fresh accepted and whose record opened.
func (w *replayWindow) mark(seq uint64) {
	switch {
	case !w.any:
		w.any, w.top, w.bits = true, seq, 1
	case seq > w.top:
		if s := seq - w.top; s >= 64 {
			w.bits = 1
		} else {
			w.bits = w.bits<<s | 1
		}
		w.top = seq
	default:
		w.bits |= 1 << (w.top - seq)
	}
}

func seq48(b []byte) uint64 {
	_ = b[5]
	return uint64(b[0])<<40 | uint64(b[1])<<32 | uint64(b[2])<<24 | uint64(b[3])<<16 | uint64(b[4])<<8 | uint64(b[5])
}

func putSeq48(b []byte, v uint64) {
	_ = b[5]
	b[0], b[1], b[2], b[3], b[4], b[5] = byte(v>>40), byte(v>>32), byte(v>>24), byte(v>>16), byte(v>>8), byte(v)
}
