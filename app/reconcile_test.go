package app

import (
	"testing"

	"github.com/stretchr/testify/require"

	"paygate/payments"
)

// The reconciler's threshold leaves room for a payment decided by the
// process that creates it, at the default delays (test mode's and live
// mode's longest): so those payments have no job, and one still being
// decided is never taken for a lost one.
func TestFirstDecisionsFitTheDefaultDelays(t *testing.T) {
	cfg, err := LoadConfig(func(string) string { return "" })
	require.NoError(t, err)
	w := &payments.Worker{DecideTimeout: decideTimeout}
	require.True(t, w.DecidesHere(cfg.TestProcessingDelay, jobLostAfter))
	require.True(t, w.DecidesHere(cfg.ProcessingDelayMax, jobLostAfter))
	require.False(t, w.DecidesHere(jobLostAfter, jobLostAfter))
}
