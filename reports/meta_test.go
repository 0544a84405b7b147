package reports

import (
	"runtime"
	"runtime/debug"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pinwall/pinwall/scenarios"
)

func TestBuildInfo(t *testing.T) {
	for _, tc := range []struct {
		name            string
		bi              *debug.BuildInfo
		ok              bool
		version, commit string
	}{
		{name: "unavailable", version: "devel", commit: UnknownCommit},
		{name: "devel without vcs", bi: &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, ok: true, version: "devel", commit: UnknownCommit},
		{name: "tagged module", bi: &debug.BuildInfo{Main: debug.Module{Version: "v1.2.3"}, Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "abc123"}, {Key: "vcs.modified", Value: "false"}}}, ok: true, version: "v1.2.3", commit: "abc123"},
		{name: "modified tree", bi: &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "abc123"}, {Key: "vcs.modified", Value: "true"}}}, ok: true, version: "devel", commit: "abc123-dirty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, c := buildInfo(tc.bi, tc.ok)
			require.Equal(t, tc.version, v)
			require.Equal(t, tc.commit, c)
		})
	}
	v, c := BuildInfo()
	require.NotEmpty(t, v)
	require.NotEmpty(t, c)
}

func TestMetaDefaults(t *testing.T) {
	rs := []scenarios.Result{
		{Mode: "inproc", Started: t0.Add(2 * time.Second), DurationMS: 500},
		{Mode: "inproc", Started: t0, DurationMS: 4000},
		{Mode: "inproc"},
	}
	m := Meta{}.withDefaults(rs)
	require.Equal(t, "devel", m.Version)
	require.Equal(t, UnknownCommit, m.Commit)
	require.Equal(t, runtime.Version(), m.GoVersion)
	require.Equal(t, runtime.GOOS, m.OS)
	require.Equal(t, runtime.GOARCH, m.Arch)
	require.Equal(t, "inproc", m.Mode)
	require.Equal(t, t0, m.Started)
	require.Equal(t, t0.Add(4*time.Second), m.Ended)
	require.NotNil(t, m.CAs)
	require.NotNil(t, m.CommandLine)
	require.NotNil(t, m.Provenance, "filled from the build and the fields above")
	require.Equal(t, "devel", m.Provenance.Pinwall.Version)
	require.Equal(t, runtime.Version(), m.Provenance.Go)

	// Fields the caller set are kept.
	set := fixtureMeta()
	require.Equal(t, set, set.withDefaults(rs))
}

func TestSummary(t *testing.T) {
	p, n := Summary(fixtureResults())
	require.Equal(t, 5, p)
	require.Equal(t, 8, n)
	p, n = Summary(nil)
	require.Zero(t, p)
	require.Zero(t, n)
}
