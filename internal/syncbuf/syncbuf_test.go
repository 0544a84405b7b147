package syncbuf_test

import (
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/pinwall/pinwall/internal/syncbuf"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestConcurrentWritesAllKept(t *testing.T) {
	var b syncbuf.Buffer
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 100 {
				fmt.Fprintf(&b, "writer=%d line=%d\n", i, j)
				_ = b.String() // a reader while others write
			}
		}()
	}
	wg.Wait()
	require.Len(t, b.Lines(), 800)
	assert.Len(t, b.Lines("writer=3"), 100)
	assert.Equal(t, []string{"writer=3 line=42"}, b.Lines("writer=3 ", "line=42"))
}

func TestBytesIsACopy(t *testing.T) {
	var b syncbuf.Buffer
	_, err := b.Write([]byte("abc"))
	require.NoError(t, err)
	got := b.Bytes()
	got[0] = 'x'
	assert.Equal(t, "abc", b.String())
}

func TestLinesSkipsEmptyLines(t *testing.T) {
	var b syncbuf.Buffer
	_, _ = b.Write([]byte("a=1\n\nb=2\n"))
	assert.Equal(t, []string{"a=1", "b=2"}, b.Lines())
	assert.Nil(t, b.Lines("c"))
}

// TestWriterKeepsWritesWhole: lines written at once by many goroutines
// through one Writer reach the underlying writer whole, none interleaved.
func TestWriterKeepsWritesWhole(t *testing.T) {
	var out strings.Builder // not safe for concurrent use: the Writer must serialize
	w := syncbuf.NewWriter(&out)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 100 {
				_, err := fmt.Fprintf(w, "goroutine %d line %d %s\n", g, i, strings.Repeat("x", 64))
				assert.NoError(t, err)
			}
		}()
	}
	wg.Wait()
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	require.Len(t, lines, 800)
	for _, l := range lines {
		assert.Regexp(t, `^goroutine \d line \d+ x{64}$`, l)
	}
}
