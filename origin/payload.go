package origin

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"io"
	"math/rand/v2"
	"sync"
)

// payloadKeyContext fills the ChaCha8 key after the seed, so payloads cannot
// collide with other uses of ChaCha8 seeded from small integers. Changing it
// changes every payload and every golden hash.
const payloadKeyContext = "pinwall/origin/payload/1"

// payloadChunk is the buffer size used to generate and hash payloads.
const payloadChunk = 64 << 10

// payloadKey derives the ChaCha8 key of seed: the seed's 8 bytes little
// endian, then the 24 bytes of payloadKeyContext.
func payloadKey(seed uint64) [32]byte {
	var k [32]byte
	binary.LittleEndian.PutUint64(k[:8], seed)
	copy(k[8:], payloadKeyContext)
	return k
}

// Payload returns a reader of size deterministic bytes for seed: the ChaCha8
// (math/rand/v2) stream keyed by payloadKey(seed). The same (seed, size) gives
// the same bytes on every machine and Go release (the ChaCha8 output is
// specified), however the reader is read; a shorter size is a prefix of a
// longer one. Nothing is buffered beyond the generator's state. A negative
// size reads as empty. The reader also implements io.WriterTo.
func Payload(seed uint64, size int64) io.Reader {
	key := payloadKey(seed)
	return &payloadReader{rng: rand.NewChaCha8(key), left: max(size, 0)}
}

type payloadReader struct {
	rng  *rand.ChaCha8
	left int64
}

func (p *payloadReader) Read(b []byte) (int, error) {
	if p.left <= 0 {
		return 0, io.EOF
	}
	if int64(len(b)) > p.left {
		b = b[:p.left]
	}
	p.rng.Read(b)
	p.left -= int64(len(b))
	return len(b), nil
}

// WriteTo writes the rest of the payload to w in 64 KiB chunks.
func (p *payloadReader) WriteTo(w io.Writer) (int64, error) {
	buf := make([]byte, min(p.left, payloadChunk))
	var total int64
	for p.left > 0 {
		n, _ := p.Read(buf)
		m, err := w.Write(buf[:n])
		total += int64(m)
		if err != nil {
			return total, err
		}
		if m != n {
			return total, io.ErrShortWrite
		}
	}
	return total, nil
}

// PayloadSHA256 returns the SHA-256 of Payload(seed, size), computed by
// streaming the payload through the hash.
func PayloadSHA256(seed uint64, size int64) [32]byte {
	sum, _ := payloadSHA256(context.Background(), seed, size)
	return sum
}

// payloadSHA256 is PayloadSHA256 giving up when ctx is done (checked every
// 64 KiB), so a 1 GiB hash does not outlive a closed server or a gone client.
func payloadSHA256(ctx context.Context, seed uint64, size int64) ([32]byte, error) {
	h := sha256.New()
	p := Payload(seed, size).(*payloadReader)
	buf := make([]byte, min(max(size, 0), payloadChunk))
	for p.left > 0 {
		if err := ctx.Err(); err != nil {
			return [32]byte{}, err
		}
		n, _ := p.Read(buf)
		h.Write(buf[:n])
	}
	var sum [32]byte
	h.Sum(sum[:0])
	return sum, nil
}

// hashCache remembers payload hashes so that repeated (seed, size) pairs are
// hashed once. It is bounded: when full it starts over.
type hashCache struct {
	max int
	// hash computes a payload's hash; payloadSHA256 except in tests that
	// need a hash that takes as long as they say.
	hash func(ctx context.Context, seed uint64, size int64) ([32]byte, error)
	mu   sync.Mutex
	m    map[hashKey][32]byte
}

type hashKey struct {
	seed uint64
	size int64
}

// hashCacheMin is the smallest payload worth caching: below it hashing is
// cheaper than the lock.
const hashCacheMin = 64 << 10

func newHashCache(max int) *hashCache {
	return &hashCache{max: max, hash: payloadSHA256, m: make(map[hashKey][32]byte)}
}

func (c *hashCache) sum(ctx context.Context, seed uint64, size int64) ([32]byte, error) {
	if size < hashCacheMin {
		return c.hash(ctx, seed, size)
	}
	k := hashKey{seed, size}
	c.mu.Lock()
	sum, ok := c.m[k]
	c.mu.Unlock()
	if ok {
		return sum, nil
	}
	sum, err := c.hash(ctx, seed, size)
	if err != nil {
		return sum, err
	}
	c.mu.Lock()
	if len(c.m) >= c.max {
		clear(c.m)
	}
	c.m[k] = sum
	c.mu.Unlock()
	return sum, nil
}
