package origin

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// readChunked reads r with a fixed buffer size.
func readChunked(t *testing.T, r io.Reader, chunk int) []byte {
	t.Helper()
	var out bytes.Buffer
	buf := make([]byte, chunk)
	for {
		n, err := r.Read(buf)
		out.Write(buf[:n])
		if err == io.EOF {
			return out.Bytes()
		}
		require.NoError(t, err)
	}
}

func TestPayloadDeterministic(t *testing.T) {
	const size = 100_003
	want, err := io.ReadAll(Payload(42, size))
	require.NoError(t, err)
	require.Len(t, want, size)

	tests := []struct {
		name string
		read func() []byte
	}{
		{"1-byte reads", func() []byte { return readChunked(t, Payload(42, size), 1) }},
		{"7-byte reads", func() []byte { return readChunked(t, Payload(42, size), 7) }},
		{"odd large reads", func() []byte { return readChunked(t, Payload(42, size), 65_537) }},
		{"WriteTo", func() []byte {
			var b bytes.Buffer
			n, err := Payload(42, size).(io.WriterTo).WriteTo(&b)
			require.NoError(t, err)
			require.EqualValues(t, size, n)
			return b.Bytes()
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.True(t, bytes.Equal(want, tt.read()), "same bytes however read")
		})
	}

	prefix, _ := io.ReadAll(Payload(42, 1000))
	assert.Equal(t, want[:1000], prefix, "a shorter payload is a prefix")
	other, _ := io.ReadAll(Payload(43, size))
	assert.NotEqual(t, want, other, "seeds differ")
	empty, _ := io.ReadAll(Payload(42, 0))
	assert.Empty(t, empty)
	negative, _ := io.ReadAll(Payload(42, -5))
	assert.Empty(t, negative)
}

func TestPayloadSHA256(t *testing.T) {
	for _, size := range []int64{0, 1, 63, 64 << 10, 64<<10 + 1, 1 << 20} {
		b, _ := io.ReadAll(Payload(7, size))
		assert.Equal(t, sha256.Sum256(b), PayloadSHA256(7, size), "size %d", size)
	}
	// Golden values: a change here changes every payload of every recorded run.
	golden := []struct {
		seed uint64
		size int64
		want string
	}{
		{0, 0, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
		{1, 1024, "280974f615cd8d968b7d6ebb533b6cc3868af50cd4868931094c12081595704b"},
		{1 << 63, 4096, "57247c5fa40636943b040c3bac3e47f197c63a4738f3b14f97f86e5731ad35c1"},
	}
	for _, g := range golden {
		sum := PayloadSHA256(g.seed, g.size)
		assert.Equal(t, g.want, hex.EncodeToString(sum[:]), "seed %d size %d", g.seed, g.size)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := payloadSHA256(ctx, 1, 1<<20)
	assert.ErrorIs(t, err, context.Canceled)
}

func TestHashCache(t *testing.T) {
	c := newHashCache(2)
	ctx := context.Background()
	for _, k := range []hashKey{{1, 1 << 20}, {2, 1 << 20}, {3, 1 << 20}, {1, 1 << 20}, {4, 10}} {
		got, err := c.sum(ctx, k.seed, k.size)
		require.NoError(t, err)
		assert.Equal(t, PayloadSHA256(k.seed, k.size), got)
		assert.LessOrEqual(t, len(c.m), 2)
	}
}

func BenchmarkPayload(b *testing.B) {
	for _, size := range []int64{64 << 10, 16 << 20} {
		b.Run(byteSize(size), func(b *testing.B) {
			b.SetBytes(size)
			for b.Loop() {
				if _, err := io.Copy(io.Discard, Payload(1, size)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkPayloadSHA256(b *testing.B) {
	for _, size := range []int64{64 << 10, 16 << 20} {
		b.Run(byteSize(size), func(b *testing.B) {
			b.SetBytes(size)
			for b.Loop() {
				PayloadSHA256(1, size)
			}
		})
	}
}

// BenchmarkSHA256 is the hash alone, for comparison with PayloadSHA256.
func BenchmarkSHA256(b *testing.B) {
	buf := make([]byte, payloadChunk)
	h := sha256.New()
	b.SetBytes(int64(len(buf)))
	for b.Loop() {
		h.Write(buf)
	}
}

func byteSize(n int64) string {
	switch {
	case n >= 1<<20:
		return strconv.FormatInt(n>>20, 10) + "MiB"
	case n >= 1<<10:
		return strconv.FormatInt(n>>10, 10) + "KiB"
	}
	return strconv.FormatInt(n, 10) + "B"
}
