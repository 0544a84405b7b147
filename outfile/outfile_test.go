package outfile_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/pinwall/pinwall/outfile"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// victim is a file outside the output directory that a planted link points
// at; it must never change.
func victim(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "victim")
	require.NoError(t, os.WriteFile(p, []byte("precious"), 0o644))
	return p
}

func requireUntouched(t *testing.T, p string) {
	t.Helper()
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	assert.Equal(t, "precious", string(b))
}

func TestRefusesPlantedLinks(t *testing.T) {
	tests := []struct {
		name  string
		plant func(t *testing.T, dir, victim string)
		rel   string
		want  error
	}{
		{"symlink out of the directory", func(t *testing.T, dir, v string) {
			require.NoError(t, os.Symlink(v, filepath.Join(dir, "report.md")))
		}, "report.md", outfile.ErrSymlink},
		{"symlink inside the directory", func(t *testing.T, dir, v string) {
			require.NoError(t, os.WriteFile(filepath.Join(dir, "other.md"), []byte("precious"), 0o644))
			require.NoError(t, os.Symlink("other.md", filepath.Join(dir, "report.md")))
		}, "report.md", outfile.ErrSymlink},
		{"dangling symlink", func(t *testing.T, dir, v string) {
			require.NoError(t, os.Symlink(v+".new", filepath.Join(dir, "gateway.jsonl")))
		}, "gateway.jsonl", outfile.ErrSymlink},
		{"symlinked directory below", func(t *testing.T, dir, v string) {
			require.NoError(t, os.Symlink(filepath.Dir(v), filepath.Join(dir, "logs")))
		}, "logs/victim", outfile.ErrSymlink},
		{"hard link", func(t *testing.T, dir, v string) {
			require.NoError(t, os.Link(v, filepath.Join(dir, "firewall.jsonl")))
		}, "firewall.jsonl", outfile.ErrLinked},
		{"a directory", func(t *testing.T, dir, v string) {
			require.NoError(t, os.Mkdir(filepath.Join(dir, "report.md"), 0o755))
		}, "report.md", outfile.ErrNotRegular},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			v := victim(t)
			tt.plant(t, dir, v)
			d, err := outfile.OpenDir(dir)
			require.NoError(t, err)
			defer d.Close()
			err = d.WriteFile(tt.rel, []byte("overwritten"), outfile.Public)
			require.ErrorIs(t, err, tt.want)
			assert.Contains(t, err.Error(), "refusing to write")
			requireUntouched(t, v)
			if tt.name == "symlink inside the directory" {
				requireUntouched(t, filepath.Join(dir, "other.md"))
			}
			if filepath.Dir(tt.rel) == "." {
				// The single-file form checks the file's own name (its
				// directory is the caller's choice).
				_, err = outfile.Create(filepath.Join(dir, tt.rel), outfile.Public)
				require.ErrorIs(t, err, tt.want, "the single-file form refuses it too")
				requireUntouched(t, v)
				_, err = outfile.Append(filepath.Join(dir, tt.rel), outfile.Public)
				require.ErrorIs(t, err, tt.want, "appending refuses it too")
				requireUntouched(t, v)
			}
		})
	}
}

func TestWritesAndTightensPermissions(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "node.json")
	require.NoError(t, os.WriteFile(p, []byte("an older and longer file"), 0o644))
	d, err := outfile.OpenDir(dir)
	require.NoError(t, err)
	defer d.Close()
	require.NoError(t, d.WriteFile("node.json", []byte("key"), outfile.Private))
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	assert.Equal(t, "key", string(b), "truncated")
	fi, err := os.Stat(p)
	require.NoError(t, err)
	assert.Equal(t, outfile.Private, fi.Mode().Perm(), "an existing file takes the permissions asked for")

	require.NoError(t, d.WriteFile("logs/run-1/gateway.jsonl", []byte("{}\n"), outfile.Public))
	fi, err = os.Stat(filepath.Join(dir, "logs", "run-1", "gateway.jsonl"))
	require.NoError(t, err)
	assert.Equal(t, outfile.Public, fi.Mode().Perm())

	require.Error(t, d.WriteFile("../escape", []byte("x"), outfile.Public))
	require.Error(t, d.WriteFile("/etc/escape", []byte("x"), outfile.Public))
}

// TestAppendKeepsWhatWasWritten: a restarted node appends to its log.
func TestAppendKeepsWhatWasWritten(t *testing.T) {
	p := filepath.Join(t.TempDir(), "firewall.jsonl")
	for _, line := range []string{"first\n", "second\n"} {
		f, err := outfile.Append(p, outfile.Public)
		require.NoError(t, err)
		_, err = f.WriteString(line)
		require.NoError(t, err)
		require.NoError(t, f.Close())
	}
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	assert.Equal(t, "first\nsecond\n", string(b))
}

// TestOutputDirectoryMayBeALink: the directory the user names may itself
// be a symbolic link; only what is below it is checked.
func TestOutputDirectoryMayBeALink(t *testing.T) {
	real := t.TempDir()
	link := filepath.Join(t.TempDir(), "out")
	require.NoError(t, os.Symlink(real, link))
	d, err := outfile.OpenDir(link)
	require.NoError(t, err)
	defer d.Close()
	require.NoError(t, d.WriteFile("report.md", []byte("# report"), outfile.Public))
	b, err := os.ReadFile(filepath.Join(real, "report.md"))
	require.NoError(t, err)
	assert.Equal(t, "# report", string(b))
}
