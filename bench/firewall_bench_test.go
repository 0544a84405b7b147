package bench

import (
	"context"
	"os/exec"
	"strings"
	"testing"
)

// The firewall benchmarks put pinwall's firewall (explicit-destination mode,
// RSA-2048) between a Go crypto/tls client and a TLS blob origin on
// loopback, beside a direct path, a Go io.Copy relay, and sslsplit and
// mitmproxy when they are installed (the benchmarks never install them; the
// report does):
//
//	go test ./bench -run '^$' -bench 'Firewall' -benchtime 2s

func startFirewallEnv(b *testing.B) *FirewallEnv {
	b.Helper()
	env, err := StartFirewallEnv(FirewallEnvConfig{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { env.Close() })
	return env
}

// firewallPaths starts every path the machine can run, in report order.
func firewallPaths(b *testing.B, env *FirewallEnv) []*Path {
	b.Helper()
	paths := []*Path{env.Direct()}
	relay, err := env.StartRelay()
	if err != nil {
		b.Fatal(err)
	}
	paths = append(paths, relay)
	for _, decrypt := range []bool{false, true} {
		p, err := env.StartPinwall(decrypt)
		if err != nil {
			b.Fatal(err)
		}
		paths = append(paths, p)
	}
	for _, t := range []Tool{Mitmproxy, SSLsplit} {
		path, err := exec.LookPath(t.Binary)
		if err != nil {
			b.Logf("%s not installed: its benchmarks are skipped (make bench installs it)", t.Name)
			continue
		}
		p, err := env.StartTool(ToolStatus{Tool: t, Path: path})
		if err != nil {
			b.Logf("%s: %v", t.Name, err)
			continue
		}
		paths = append(paths, p)
	}
	return paths
}

func slug(name string) string { return strings.ReplaceAll(name, " ", "-") }

// BenchmarkFirewallConns is new connections per second through each path
// (connect, full TLS handshake, 1 KiB response), sequential and 8-way, with
// a warm certificate cache (one SNI) and, on decrypting paths, a cold one
// (a new SNI and a new origin certificate per connection). It reports
// conn/s and the connection latency to the first response byte.
func BenchmarkFirewallConns(b *testing.B) {
	env := startFirewallEnv(b)
	for _, p := range firewallPaths(b, env) {
		b.Run(slug(p.Name), func(b *testing.B) {
			for _, conc := range []int{1, FirewallConcurrency} {
				mode := "seq"
				if conc > 1 {
					mode = "8way"
				}
				b.Run(mode+"-warm", func(b *testing.B) {
					if _, err := env.ConnOp(p, WarmNames)(context.Background()); err != nil {
						b.Fatal(err)
					}
					res := runB(b, RunConfig{Concurrency: conc}, env.ConnOp(p, WarmNames))
					b.ReportMetric(res.PerSecond(), "conn/s")
					reportLatency(b, res)
				})
				if !p.Decrypts {
					continue
				}
				b.Run(mode+"-cold", func(b *testing.B) {
					names, err := env.ColdNames(b.N)
					if err != nil {
						b.Fatal(err)
					}
					defer env.ForgetNames()
					res := runB(b, RunConfig{Concurrency: conc}, env.ConnOp(p, names))
					b.ReportMetric(res.PerSecond(), "conn/s")
					reportLatency(b, res)
				})
			}
		})
	}
}

// BenchmarkFirewallBulk is the throughput of one connection fetching 64 MiB
// through each path.
func BenchmarkFirewallBulk(b *testing.B) {
	env := startFirewallEnv(b)
	for _, p := range firewallPaths(b, env) {
		b.Run(slug(p.Name), func(b *testing.B) {
			b.SetBytes(FirewallBulkSize)
			runB(b, RunConfig{}, env.BulkOp(p, FirewallBulkSize))
		})
	}
}
