package yamldoc

import (
	"reflect"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

type level string

func (level) Choices() []string { return []string{"low", "high"} }

type inner struct {
	// Ports to watch.
	Ports []int `yaml:"ports"`
}

type common struct {
	// Owner of the thing.
	Owner string `yaml:"owner"`
}

type sample struct {
	common `yaml:",inline"`
	// Name is required; DefaultName is what it is not.
	Name string `yaml:"name,required"`
	// Level and Wait share this comment.
	Level level         `yaml:"level"`
	Wait  time.Duration `yaml:"wait"`

	// Skipped has no yaml key.
	Skipped string `yaml:"-"`
	// A is the first use of inner.
	A inner `yaml:"a"`
	// B meets inner again.
	B    []inner          `yaml:"b"`
	M    map[string]inner `yaml:"m"`
	Line int              `yaml:"-" strictyaml:"line"`
}

func TestFieldsAndComments(t *testing.T) {
	cs := Comments{}
	require.NoError(t, readDir(cs, ".", "github.com/pinwall/pinwall/internal/yamldoc", true))
	fs := Fields(reflect.TypeFor[sample](), cs, Options{Values: map[string]string{"DefaultName": "x"}})
	var got []string
	for _, f := range fs {
		got = append(got, f.Path+" | "+f.Type+" | "+f.Doc)
	}
	assert.Equal(t, []string{
		"owner | string | Owner of the thing.",
		"name | string | Name is required; DefaultName (x) is what it is not.",
		"level | one of: low, high | Level and Wait share this comment.",
		"wait | duration (30s, 500ms) | Level and Wait share this comment.",
		"a | mapping | A is the first use of inner.",
		"a.ports | list of integer | Ports to watch.",
		"b | list of mapping, with the keys of `a` | B meets inner again.",
		"m | mapping of name to mapping, with the keys of `a` | ",
	}, got)
	assert.True(t, fs[1].Required)
	assert.Contains(t, Table(fs[:1]), "| `owner` | string |  | Owner of the thing. |")
}

func TestSplice(t *testing.T) {
	out, err := Splice("head\n<!-- b -->\nold\n<!-- e -->\ntail\n", "<!-- b -->", "<!-- e -->", "new\n")
	require.NoError(t, err)
	assert.Equal(t, "head\n<!-- b -->\nnew\n<!-- e -->\ntail\n", out)
	_, err = Splice("no markers", "<!-- b -->", "<!-- e -->", "x")
	assert.Error(t, err)
}

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
