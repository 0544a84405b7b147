package containers

import (
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestSortStale: the networks the engine keeps as stale are recorded and
// said, and only the other removal errors are returned.
func TestSortStale(t *testing.T) {
	r := &Runner{}
	stale := &StaleNetworkError{Name: "pw-lan-a", Err: fmt.Errorf("%w: has active endpoints", ErrEngineStale)}
	other := fmt.Errorf("remove network pw-inet-a: %w", errors.New("permission denied"))

	err := r.sortStale(errors.Join(stale, other))
	require.Error(t, err)
	assert.ErrorIs(t, err, other)
	assert.NotErrorIs(t, err, ErrEngineStale, "a stale network is not the run's failure")
	assert.Equal(t, []string{"pw-lan-a"}, r.EngineStale())

	assert.NoError(t, r.sortStale(errors.Join(&StaleNetworkError{Name: "pw-inet-b", Err: ErrEngineStale})))
	assert.Equal(t, []string{"pw-lan-a", "pw-inet-b"}, r.EngineStale())
	assert.NoError(t, r.sortStale(nil))
	assert.ErrorIs(t, r.sortStale(other), other, "an error not joined is returned as it is")
	assert.Equal(t, "network pw-lan-a: "+stale.Err.Error(), stale.Error())
}
