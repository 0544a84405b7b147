package interceptors_test

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/pinwall/pinwall/interceptors"
	"github.com/pinwall/pinwall/mitm/policy"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestCataloguePolicies translates every policy of the catalogue for every
// tool and compares the result (or the refusal) with its golden file.
func TestCataloguePolicies(t *testing.T) {
	files, err := filepath.Glob("../scenarios/policies/*.yaml")
	require.NoError(t, err)
	require.NotEmpty(t, files)
	for _, file := range files {
		pol, err := policy.Load(file)
		require.NoError(t, err)
		pol.File = "policies/" + filepath.Base(file)
		for _, kind := range interceptors.ThirdParty {
			name := strings.TrimSuffix(filepath.Base(file), ".yaml") + "." + string(kind)
			t.Run(name, func(t *testing.T) {
				c, err := interceptors.Translate(kind, pol, interceptors.DefaultParams())
				var got string
				if err != nil {
					require.ErrorIs(t, err, interceptors.ErrUnsupported)
					got = "REFUSED: " + err.Error() + "\n"
				} else {
					got = c.Describe()
				}
				golden(t, filepath.Join("testdata", name+".golden"), got)
			})
		}
	}
}

func golden(t *testing.T, file, got string) {
	t.Helper()
	if *update {
		require.NoError(t, os.MkdirAll(filepath.Dir(file), 0o755))
		require.NoError(t, os.WriteFile(file, []byte(got), 0o644))
		return
	}
	want, err := os.ReadFile(file)
	require.NoError(t, err, "run go test ./interceptors -update to create it")
	assert.Equal(t, string(want), got)
}
