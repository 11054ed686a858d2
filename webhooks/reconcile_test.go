package webhooks_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
)

// A live job counts for its own run only: a log whose only live job is of
// another run has lost its job and is resumed. The reconciler matches the
// job's args key by key (no GIN index on args since migration 00017), so
// this would pass a job of any run if the run were left out.
func TestReconcilerMatchesTheJobOfTheLogsRun(t *testing.T) {
	t.Parallel()
	a, h, _ := setup(t, slow, failing)
	ctx := context.Background()
	id := sendTest(t, a, h)
	eventually(t, "the first failed attempt", func() bool { return get(t, a, h, id).Attempts == 1 })

	n, err := a.Webhooks.Reconcile(ctx, 0)
	require.NoError(t, err)
	require.Zero(t, n, "the log's job of its run is live")

	_, err = a.Pool.Exec(ctx, `UPDATE river_job SET args = jsonb_set(args, '{run}', '7')
		WHERE kind = 'deliver_webhook' AND args->>'log_id' = $1::text`, id)
	require.NoError(t, err)
	n, err = a.Webhooks.Reconcile(ctx, 0)
	require.NoError(t, err)
	require.Equal(t, 1, n, "a job of another run is not the log's")
}
