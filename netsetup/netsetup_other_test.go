//go:build !linux

package netsetup_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/pinwall/pinwall/netsetup"
)

func TestApplyUnsupported(t *testing.T) {
	undo, err := netsetup.Apply(context.Background(), netsetup.Config{})
	assert.Nil(t, undo)
	assert.ErrorIs(t, err, netsetup.ErrUnsupported)
}
