package containers_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pinwall/pinwall/harness/containers"
	"github.com/pinwall/pinwall/interceptors"
	"github.com/pinwall/pinwall/scenarios"
)

// toolsRunner is containerRunner with the interceptors' image made, or a
// skip with a one-line reason where it cannot be.
func toolsRunner(t *testing.T, ctx context.Context) *containers.Runner {
	t.Helper()
	r := containerRunner(t)
	if _, err := r.ToolsImage(ctx); err != nil {
		if errors.Is(err, containers.ErrNoMmdebstrap) {
			t.Skipf("containers: %v", err)
		}
		require.NoError(t, err)
	}
	return r
}

// TestInterceptors puts mitmproxy and then squid in the firewall's place
// for decrypt-pinned and bypass-ip, with the rows' own expectations (and
// the differences they declare, with their sources), and requires every
// run as expected, with the tool's version, configuration, logs and
// nftables counters in the evidence.
func TestInterceptors(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	r := toolsRunner(t, ctx)
	all, err := scenarios.Catalogue()
	require.NoError(t, err)
	rows, err := scenarios.Find(all, "decrypt-pinned", "bypass-ip")
	require.NoError(t, err)
	base, err := scenarios.AllRuns(rows)
	require.NoError(t, err)
	var runs []scenarios.Run
	for _, k := range []interceptors.Kind{interceptors.Mitmproxy, interceptors.Squid} {
		for _, b := range base {
			run := b.ForFirewall(k)
			require.Empty(t, run.NotRun, "%s expresses %s", k, run.Key())
			runs = append(runs, run)
		}
	}
	start := time.Now()
	results := scenarios.Execute(ctx, runs, scenarios.ExecOptions{Runner: r, Parallel: 2})
	t.Logf("%d runs with a tool in the firewall's place in %v (tools image %+v)", len(results), time.Since(start).Round(time.Millisecond), r.ToolsImageBuild())
	version := map[string]string{"mitmproxy": "Mitmproxy: 8.1.1", "squid": "Squid Cache: Version 5.7"}
	for _, res := range results {
		t.Run(res.Key(), func(t *testing.T) {
			for _, c := range res.Checks {
				assert.True(t, c.Pass, "%s: expected %s, observed %s", c.Name, c.Expected, c.Observed)
			}
			require.Equal(t, scenarios.Pass, res.Verdict, res.Error)
			ev := res.Interceptor
			require.NotNil(t, ev)
			assert.Equal(t, version[res.Firewall], ev.Version)
			assert.Empty(t, ev.Exited, "the tool ran to the end")
			require.NotEmpty(t, ev.Files, "the generated configuration")
			logs := map[string]string{}
			for _, l := range ev.Logs {
				logs[l.Name] = l.Text
			}
			switch res.Firewall {
			case "mitmproxy":
				assert.Contains(t, logs["mitmproxy-events.log"], "Proxy server listening at *:15001")
			case "squid":
				assert.Contains(t, logs["squid-cache.log"], "Accepting NAT intercepted SSL bumped HTTPS Socket connections")
				// Every TLS session the laptop opened on 443 went through squid,
				// bumped or spliced by the policy (a DTLS tunnel opens none).
				if res.Observed.Tunnel.Transport == "dtls" {
					break
				}
				assert.Regexp(t, `10\.10\.10\.100:\d+ .* sni=gateway-(backup-)?acme\.sse\.test bump=(bump|splice)`, logs["squid-access.log"])
			}
			if res.ID == "bypass-ip" && res.Variant == "with-fix" {
				dtls := uint64(0)
				for _, c := range ev.Counters {
					if c.Rule == "allow-dtls-to-sse" {
						dtls += c.Packets
					}
				}
				assert.NotZero(t, dtls, "DTLS to the gateway range is allowed by nftables: %+v", ev.Counters)
			}
			if f := res.Observed.Failure; res.ID == "decrypt-pinned" && f != nil {
				assert.NotContains(t, f.Source, "firewall", "no pinwall firewall log: the leg comes from the endpoints")
			}
		})
	}
}
