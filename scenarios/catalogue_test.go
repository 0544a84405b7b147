package scenarios_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/stretchr/testify/suite"
	"go.uber.org/goleak"

	"github.com/pinwall/pinwall/failure"
	"github.com/pinwall/pinwall/harness"
	"github.com/pinwall/pinwall/mitm/fwlog"
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
	s.Require().Len(all, 13, "every row of the catalogue table")
	s.runs, err = scenarios.AllRuns(all)
	s.Require().NoError(err)
}

func (s *CatalogueSuite) TestEveryRun() {
	for _, r := range s.runs {
		s.Run(r.Key(), func() {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			runner := &keepObservation{}
			res := scenarios.RunOne(ctx, runner, r)
			for _, c := range res.Checks {
				if !c.Pass {
					s.T().Logf("FAILED %s: expected %s; observed %s", c.Name, c.Expected, c.Observed)
				}
			}
			s.Require().Empty(res.Error)
			s.Require().Equal(scenarios.Pass, res.Verdict, "%s: see the failed checks above", r.Key())
			s.withoutFirewallLog(res, runner.obs)
		})
	}
}

// withoutFirewallLog attributes the run again from the endpoints alone,
// as behind an interceptor whose log pinwall cannot read: the leg and
// cause must not change, and the firewall's log must only have added to
// the basis.
func (s *CatalogueSuite) withoutFirewallLog(res scenarios.Result, obs *harness.Observation) {
	s.Require().NotNil(obs)
	bare := *obs
	bare.Firewall = nil
	got := scenarios.Attribute(&bare)
	want := res.Observed.Failure
	if want == nil {
		s.Nil(got, "no failure with the firewall log, none without")
		return
	}
	s.Require().NotNil(got, "the endpoints alone see the failure %s/%s", want.Leg, want.Cause)
	s.Equal(want.Leg, got.Leg, "leg without the firewall log; basis: %s", got.BasisLine())
	s.Equal(want.Cause, got.Cause, "cause without the firewall log; basis: %s", got.BasisLine())
	for _, e := range got.Basis {
		s.NotEqual(failure.FromFirewall, e.From)
	}
	if len(obs.Firewall) > 0 && tunnelFailed(obs) {
		s.Contains(want.BasisLine(), "firewall log (", "the firewall's record confirms: %s", want.BasisLine())
	}
}

// tunnelFailed: the firewall logged a failed or denied session of the
// tunnel, so its log has something to confirm.
func tunnelFailed(obs *harness.Observation) bool {
	for _, r := range obs.Firewall {
		if r.Src.Addr() == obs.Roles.Laptop && obs.Roles.IsGateway(r.Dst.Addr()) &&
			((r.Decryption != nil && r.Decryption.Outcome == fwlog.OutcomeFailed) || r.Action == fwlog.ActionDeny) {
			return true
		}
	}
	return false
}

// keepObservation is the in-process runner, keeping the observation.
type keepObservation struct {
	harness.InProcess
	obs *harness.Observation
}

func (k *keepObservation) Run(ctx context.Context, p harness.Plan) (*harness.Observation, error) {
	obs, err := k.InProcess.Run(ctx, p)
	k.obs = obs
	return obs, err
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
