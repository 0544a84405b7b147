package scenarios_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/stretchr/testify/suite"
	"go.uber.org/goleak"

	"github.com/pinwall/pinwall/harness"
	"github.com/pinwall/pinwall/scenarios"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// CatalogueSuite runs every variant of every built-in scenario in process
// and requires each expectation to hold.
type CatalogueSuite struct {
	suite.Suite
	runs []scenarios.Run
}

func (s *CatalogueSuite) SetupSuite() {
	all, err := scenarios.Catalogue()
	s.Require().NoError(err)
	s.Require().Len(all, 12, "every row of the catalogue table")
	s.runs, err = scenarios.AllRuns(all)
	s.Require().NoError(err)
}

func (s *CatalogueSuite) TestEveryRun() {
	for _, r := range s.runs {
		s.Run(r.Key(), func() {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			res := scenarios.RunOne(ctx, harness.InProcess{}, r)
			for _, c := range res.Checks {
				if !c.Pass {
					s.T().Logf("FAILED %s: expected %s; observed %s", c.Name, c.Expected, c.Observed)
				}
			}
			s.Require().Empty(res.Error)
			s.Require().Equal(scenarios.Pass, res.Verdict, "%s: see the failed checks above", r.Key())
		})
	}
}

func TestCatalogue(t *testing.T) {
	if testing.Short() {
		t.Skip("the catalogue runs every scenario; skipped with -short")
	}
	suite.Run(t, new(CatalogueSuite))
}

func TestCatalogueShape(t *testing.T) {
	all, err := scenarios.Catalogue()
	require.NoError(t, err)
	for _, sc := range all {
		runs, err := sc.Runs()
		require.NoError(t, err)
		var hasWith, hasWithout, hasBaseline bool
		for _, r := range runs {
			hasWith = hasWith || r.Role == scenarios.WithFix
			hasWithout = hasWithout || r.Role == scenarios.WithoutFix
			hasBaseline = hasBaseline || r.Role == scenarios.Baseline
		}
		if sc.Fix != "" {
			require.True(t, hasWith && hasWithout, "%s names a fix: it needs both variants", sc.ID)
		} else {
			require.True(t, hasBaseline, "%s has no fix: it runs once as baseline", sc.ID)
		}
		require.NotEmpty(t, sc.Explain, sc.ID)
	}
}
