package node

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestReadConfig(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte(text), 0o600))
		return p
	}
	tests := []struct {
		name    string
		file    string
		wantErr string
		want    Config
	}{
		{name: "good", file: write("good.json", `{"role":"gateway","name":"gw1","net":{"default_via":"10.10.10.254"}}`),
			want: Config{Role: RoleGateway, Name: "gw1"}},
		{name: "bad json", file: write("bad.json", `{"role":`), wantErr: "bad.json"},
		{name: "missing", file: filepath.Join(dir, "none.json"), wantErr: "none.json"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := ReadConfig(tt.file)
			if tt.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tt.wantErr, "the error names the file")
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want.Role, c.Role)
			assert.Equal(t, tt.want.Name, c.Name)
			assert.Equal(t, "10.10.10.254", c.Net.DefaultVia.String())
		})
	}
}

func TestRunUnknownRole(t *testing.T) {
	err := Run(t.Context(), Config{Role: "sideways", Out: t.TempDir()}, Signals{}, os.Stdout, os.Stderr)
	require.Error(t, err)
	assert.Contains(t, err.Error(), `unknown role "sideways"`)
}

func TestContainerEvidence(t *testing.T) {
	noEnv := func(string) string { return "" }
	tests := []struct {
		name   string
		files  []string
		env    map[string]string
		pid    int
		expect string
	}{
		{"docker", []string{".dockerenv"}, nil, 4242, "/.dockerenv exists"},
		{"podman", []string{"run/.containerenv"}, nil, 4242, "/run/.containerenv exists"},
		{"systemd convention", nil, map[string]string{"container": "systemd-nspawn"}, 4242, "container=systemd-nspawn in the environment"},
		{"entrypoint", nil, nil, 1, "running as PID 1"},
		{"a host", nil, nil, 4242, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			for _, f := range tt.files {
				p := filepath.Join(root, f)
				require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
				require.NoError(t, os.WriteFile(p, nil, 0o644))
			}
			getenv := noEnv
			if tt.env != nil {
				getenv = func(k string) string { return tt.env[k] }
			}
			assert.Equal(t, tt.expect, ContainerEvidence(root, getenv, tt.pid))
		})
	}
}
