package reports

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pinwall/pinwall/wireshark"
)

func TestProvenanceFromBuildInfo(t *testing.T) {
	bi := &debug.BuildInfo{
		GoVersion: "go1.26.8",
		Main:      debug.Module{Path: "github.com/pinwall/pinwall", Version: "(devel)"},
		Deps: []*debug.Module{
			{Path: "github.com/pion/dtls/v3", Version: "v3.1.15"},
			{Path: "github.com/hashicorp/yamux", Version: "v0.1.2", Replace: &debug.Module{Path: "../yamux", Version: ""}},
			{Path: "github.com/unrelated/lib", Version: "v1.0.0"},
		},
		Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "b4d913d0123456789abcdef0123456789abcdef0"},
			{Key: "vcs.modified", Value: "true"},
			{Key: "vcs.time", Value: "2026-01-14T18:00:00Z"},
		},
	}
	p := provenanceOf(bi, true)
	assert.Equal(t, Build{Module: "github.com/pinwall/pinwall", Version: "devel", Commit: "b4d913d0123456789abcdef0123456789abcdef0", Modified: true, CommitTime: "2026-01-14T18:00:00Z"}, p.Pinwall)
	assert.Equal(t, "go1.26.8", p.Go)
	assert.Equal(t, []Module{{"github.com/pion/dtls/v3", "v3.1.15"}, {"github.com/hashicorp/yamux", "v0.1.2 => ../yamux "}}, p.Modules)
	rows := p.Describe()
	assert.Equal(t, [2]string{"pinwall", "devel, commit b4d913d0123456789abcdef0123456789abcdef0 with uncommitted changes (committed 2026-01-14T18:00:00Z)"}, rows[0])

	// Built without VCS information (go run, go test).
	p = provenanceOf(&debug.BuildInfo{Main: debug.Module{Path: "github.com/pinwall/pinwall"}}, true)
	assert.Equal(t, UnknownCommit, p.Pinwall.Commit)
	assert.False(t, p.Pinwall.Modified)
}

func TestGatherProvenance(t *testing.T) {
	p := GatherProvenance(context.Background(), ProvenanceOptions{
		Version: "v1.2.3", Commit: "abc",
		DockerVersion: func(context.Context) (string, error) { return "", errors.New("no engine") },
		Image:         "pinwall-node:0123456789ab",
		Tools:         []ToolQuery{{Name: "go", Args: []string{"version"}}, {Name: "pinwall-no-such-tool"}},
	})
	assert.Equal(t, "v1.2.3", p.Pinwall.Version)
	assert.Equal(t, "abc", p.Pinwall.Commit)
	assert.Equal(t, "unknown (no engine)", p.Docker)
	assert.Equal(t, "pinwall-node:0123456789ab", p.Image)
	require.Len(t, p.Tools, 2)
	assert.True(t, strings.HasPrefix(p.Tools[0].Version, "go version go1."), p.Tools[0].Version)
	assert.Equal(t, "not installed", p.Tools[1].Error)
	if _, err := os.Stat("/proc/sys/kernel/osrelease"); err == nil {
		assert.NotEmpty(t, p.Kernel)
	}
}

// TestBundleCaptures: a captured run's pcapng and key log are in its log
// directory and in the manifest, and the dissector is at the top.
func TestBundleCaptures(t *testing.T) {
	dir := writeFixture(t)
	rs := fixtureResults()
	require.NotNil(t, rs[0].Capture)
	d := filepath.Join(dir, "logs", "visibility__baseline")
	got, err := os.ReadFile(filepath.Join(d, CaptureFile))
	require.NoError(t, err)
	assert.Equal(t, rs[0].Capture.PCAPNG, got)
	got, err = os.ReadFile(filepath.Join(d, KeyLogFile))
	require.NoError(t, err)
	assert.Equal(t, rs[0].Capture.KeyLog, got)
	lua, err := os.ReadFile(filepath.Join(dir, wireshark.DissectorFile))
	require.NoError(t, err)
	assert.Equal(t, wireshark.Dissector, lua)
	assert.NoFileExists(t, filepath.Join(dir, "logs", "udp-blocked__with-fix", CaptureFile), "a run without a capture has none")
	m, err := os.ReadFile(filepath.Join(dir, ManifestFile))
	require.NoError(t, err)
	for _, f := range []string{"logs/visibility__baseline/" + CaptureFile, "logs/visibility__baseline/" + KeyLogFile, wireshark.DissectorFile} {
		assert.Contains(t, string(m), "  "+f+"\n")
	}
	assert.NoFileExists(t, filepath.Join(dir, SignatureFile), "unsigned")

	// Rewritten without captures, the stale ones go.
	for i := range rs {
		rs[i].Capture = nil
	}
	require.NoError(t, Write(dir, fixtureMeta(), fixtureScenarios(), rs))
	assert.NoFileExists(t, filepath.Join(d, CaptureFile))
	assert.NoFileExists(t, filepath.Join(dir, wireshark.DissectorFile))
}
