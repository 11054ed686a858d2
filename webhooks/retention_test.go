package webhooks_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/riverqueue/river"
	"github.com/stretchr/testify/require"

	"paygate/app/apptest"
	"paygate/merchants"
	"paygate/webhooks"
)

// Logs and attempts past the retention are deleted in bounded batches (a
// batch of 2 here, so the loops run); recent ones, pending ones and a recent
// log's recent attempts stay. Logs have version 7 ids of their creation, as
// webhooks make them, and the attempts of the last logs are older than a
// recent one inserted before them, so the prune has to look past it.
func TestPruneOldWebhookLogs(t *testing.T) {
	t.Parallel()
	a := apptest.New(t)
	ctx := context.Background()
	now := time.Now()
	old, recent := now.Add(-31*24*time.Hour), now.Add(-time.Hour)
	insert := func(created time.Time, status string, attempts ...time.Time) uuid.UUID {
		id := logIDAt(created)
		_, err := a.Pool.Exec(ctx, `INSERT INTO webhook_logs (id, merchant_id, event, payload, status, created_at, last_attempt_at)
			VALUES ($1, $2, 'payment.success', '{}', $3, $4, $4)`, id, merchants.TestMerchantID, status, created)
		require.NoError(t, err)
		for _, at := range attempts {
			_, err := a.Pool.Exec(ctx, `INSERT INTO webhook_attempts (log_id, attempted_at, duration_ms) VALUES ($1, $2, 1)`, id, at)
			require.NoError(t, err)
		}
		return id
	}
	var gone, kept []uuid.UUID
	for range 5 {
		gone = append(gone, insert(old, "success", old, old))
		gone = append(gone, insert(old, "failed", old))
	}
	kept = append(kept, insert(recent, "success", recent), insert(old, "pending", old))
	mixed := insert(recent, "failed", old, old, old, recent) // a recent log keeps its recent attempt

	w := &webhooks.PruneWorker{Pool: a.Pool, Retention: 30 * 24 * time.Hour, Batch: 2}
	require.NoError(t, w.Work(ctx, &river.Job[webhooks.PruneArgs]{}))

	count := func(sql string, args ...any) int {
		var n int
		require.NoError(t, a.Pool.QueryRow(ctx, sql, args...).Scan(&n))
		return n
	}
	require.Zero(t, count(`SELECT count(*) FROM webhook_logs WHERE id = ANY($1)`, gone))
	require.Zero(t, count(`SELECT count(*) FROM webhook_attempts WHERE log_id = ANY($1)`, gone))
	require.Equal(t, len(kept), count(`SELECT count(*) FROM webhook_logs WHERE id = ANY($1)`, kept))
	require.Equal(t, 1, count(`SELECT count(*) FROM webhook_attempts WHERE log_id = $1`, mixed))
	require.Equal(t, 1, count(`SELECT count(*) FROM webhook_logs WHERE id = $1`, mixed))
}

// logIDAt is a version 7 id made at t.
func logIDAt(t time.Time) uuid.UUID {
	id := uuid.Must(uuid.NewV7())
	ms := uint64(t.UnixMilli())
	for i := range 6 {
		id[i] = byte(ms >> (40 - 8*i))
	}
	return id
}

// The prune job is scheduled at start and runs on the maintenance queue.
func TestPruneIsPeriodic(t *testing.T) {
	t.Parallel()
	a := apptest.New(t)
	var n int
	for range 500 {
		require.NoError(t, a.Pool.QueryRow(context.Background(),
			`SELECT count(*) FROM river_job WHERE kind = 'webhook_log_prune' AND queue = 'maintenance' AND state = 'completed'`).Scan(&n))
		if n > 0 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	require.Equal(t, 1, n)
}
