package forge

import (
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"testing"

	"github.com/pinwall/pinwall/pki"
)

// benchForger returns a Forger whose enterprise CA uses alg, and a wildcard
// upstream certificate that covers every benchmark name.
func benchForger(b *testing.B, alg pki.KeyAlgorithm) (*Forger, *x509.Certificate) {
	b.Helper()
	fx := newFixture(b, alg)
	wild, err := fx.set.Internet.Issue(pki.Leaf{
		Subject:  pkix.Name{CommonName: "*.bench.test", Organization: []string{"bench"}},
		DNSNames: []string{"*.bench.test"},
	})
	if err != nil {
		b.Fatal(err)
	}
	return fx.forger(b), wild.Leaf
}

// BenchmarkForgeCold signs a leaf for a distinct name every iteration: the
// per-name cost of decrypting a session to a new server.
func BenchmarkForgeCold(b *testing.B) {
	for _, alg := range algorithms {
		b.Run(string(alg), func(b *testing.B) {
			f, up := benchForger(b, alg)
			ctx := context.Background()
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if _, err := f.Forge(ctx, fmt.Sprintf("host-%d.bench.test", i), up); err != nil {
					b.Fatal(err)
				}
				i++
			}
			if st := f.Stats(); st.Hits != 0 {
				b.Fatalf("cold benchmark hit the cache: %+v", st)
			}
		})
	}
}

// BenchmarkForgeWarm serves the same name from the cache.
func BenchmarkForgeWarm(b *testing.B) {
	for _, alg := range algorithms {
		b.Run(string(alg), func(b *testing.B) {
			f, up := benchForger(b, alg)
			ctx := context.Background()
			if _, err := f.Forge(ctx, "www.bench.test", up); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := f.Forge(ctx, "www.bench.test", up); err != nil {
					b.Fatal(err)
				}
			}
			if st := f.Stats(); st.Signings != 1 {
				b.Fatalf("warm benchmark signed more than once: %+v", st)
			}
		})
	}
}
