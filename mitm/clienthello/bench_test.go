package clienthello_test

import (
	"testing"

	"github.com/pinwall/pinwall/mitm/clienthello"
)

func BenchmarkParse(b *testing.B) {
	for _, name := range []string{"go-tls13.hex", "chrome143.hex"} {
		hello := readHex(b, name)
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(hello)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := clienthello.Parse(hello); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkParseMultiRecord(b *testing.B) {
	hello := tlsRecords(tlsMessage(chrome143().body()), 0x0301, 500, 500, 500)
	b.SetBytes(int64(len(hello)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := clienthello.Parse(hello); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkFingerprints(b *testing.B) {
	info, err := clienthello.Parse(readHex(b, "go-tls13.hex"))
	if err != nil {
		b.Fatal(err)
	}
	b.Run("JA3Hash", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = info.JA3Hash()
		}
	})
	b.Run("JA4", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = info.JA4()
		}
	})
}
