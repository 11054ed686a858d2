package webhooks

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"

	"paygate/db"
)

// PruneArgs is the periodic job that deletes webhook logs and attempts older
// than the retention (WEBHOOK_LOG_RETENTION).
type PruneArgs struct{}

func (PruneArgs) Kind() string { return "webhook_log_prune" }

func (PruneArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{Queue: db.QueueMaintenance, UniqueOpts: river.UniqueOpts{ByPeriod: time.Hour}}
}

// pruneBatch bounds each DELETE, so pruning a large backlog never holds
// many row locks or one long transaction.
const pruneBatch = 1000

// PruneWorker deletes, in batches, attempts made before the cut-off and
// logs created before it whose last attempt is before it too. A pending log
// is kept: its delivery is still running. Like the idempotency prune, this
// spans merchants: retention is the same rule for all of them.
type PruneWorker struct {
	river.WorkerDefaults[PruneArgs]
	Pool      *pgxpool.Pool
	Retention time.Duration
	// Batch overrides pruneBatch (tests).
	Batch int
}

func (w *PruneWorker) Work(ctx context.Context, _ *river.Job[PruneArgs]) error {
	cutoff := time.Now().Add(-w.Retention)
	batch := w.Batch
	if batch <= 0 {
		batch = pruneBatch
	}
	for _, sql := range []string{
		`DELETE FROM webhook_attempts WHERE id IN (
			SELECT id FROM webhook_attempts WHERE attempted_at < $1 LIMIT $2 FOR UPDATE SKIP LOCKED)`,
		// Their remaining attempts go with them (ON DELETE CASCADE).
		`DELETE FROM webhook_logs WHERE id IN (
			SELECT id FROM webhook_logs WHERE created_at < $1 AND status <> 'pending'
			  AND coalesce(last_attempt_at, created_at) < $1
			LIMIT $2 FOR UPDATE SKIP LOCKED)`,
	} {
		for {
			tag, err := w.Pool.Exec(ctx, sql, cutoff, batch)
			if err != nil {
				return err
			}
			if tag.RowsAffected() < int64(batch) {
				break
			}
		}
	}
	return nil
}

// PeriodicPrune schedules PruneArgs every hour and once at start.
func PeriodicPrune() *river.PeriodicJob {
	return river.NewPeriodicJob(river.PeriodicInterval(time.Hour),
		func() (river.JobArgs, *river.InsertOpts) { return PruneArgs{}, nil },
		&river.PeriodicJobOpts{RunOnStart: true, ID: "webhook_log_prune"})
}
