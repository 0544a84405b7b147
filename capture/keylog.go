package capture

import (
	"bytes"
	"io"
	"sync"
)

// KeyLog collects TLS and DTLS session secrets in the NSS key log format
// (https://firefox-source-docs.mozilla.org/security/nss/legacy/key_log_format/),
// one "LABEL client_random secret" line each: what crypto/tls and pion/dtls
// write to a KeyLogWriter. Identical lines (both ends of one session log
// the same secrets) are kept once. It is safe for concurrent use.
type KeyLog struct {
	tee io.Writer

	mu      sync.Mutex
	buf     bytes.Buffer
	partial []byte
	seen    map[string]bool
}

// NewKeyLog returns an empty key log that also writes each new line to tee,
// when tee is not nil.
func NewKeyLog(tee io.Writer) *KeyLog { return &KeyLog{tee: tee, seen: map[string]bool{}} }

// Write adds lines; a line may come in several writes.
func (k *KeyLog) Write(p []byte) (int, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.partial = append(k.partial, p...)
	for {
		i := bytes.IndexByte(k.partial, '\n')
		if i < 0 {
			break
		}
		line := k.partial[:i+1]
		if len(bytes.TrimSpace(line)) > 0 && !k.seen[string(line)] {
			k.seen[string(line)] = true
			k.buf.Write(line)
			if k.tee != nil {
				_, _ = k.tee.Write(line) // the tee is a convenience; the log is the record
			}
		}
		k.partial = k.partial[i+1:]
	}
	if len(k.partial) == 0 {
		k.partial = nil
	}
	return len(p), nil
}

// Bytes returns the lines collected so far.
func (k *KeyLog) Bytes() []byte {
	k.mu.Lock()
	defer k.mu.Unlock()
	return bytes.Clone(k.buf.Bytes())
}

// Lines counts the lines collected.
func (k *KeyLog) Lines() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.seen)
}
