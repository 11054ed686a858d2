package webhooks

import (
	"context"
	"encoding/binary"
	"time"

	"github.com/google/uuid"
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
//
// Both tables are walked from their oldest rows by primary key, which
// orders them by age, rather than by an index on their times that every
// delivery would write: a log's id is a UUIDv7 of its creation (newLog),
// and an attempt's identity grows with each insert. Each statement still
// tests the times themselves, so nothing is deleted early; an attempt
// recorded a few seconds out of order behind a batch of younger ones waits
// for the next run.
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
	// The attempts among the oldest batch by id: whatever the plan, a scan
	// of one batch, whether or not any is old enough. Attempts are never
	// updated, so locking the young ones of the batch for the statement
	// holds up no one (a row lock each, a batch an hour). Until a batch has
	// none.
	for {
		tag, err := w.Pool.Exec(ctx, `DELETE FROM webhook_attempts WHERE id IN (
			SELECT id FROM (
				SELECT id, attempted_at FROM webhook_attempts ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED
			) oldest WHERE attempted_at < $1)`, cutoff, batch)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			break
		}
	}
	// The logs whose ids were made before the cut-off: a range of the
	// primary key. Their remaining attempts go with them (ON DELETE CASCADE).
	for {
		tag, err := w.Pool.Exec(ctx, `DELETE FROM webhook_logs WHERE id IN (
			SELECT id FROM webhook_logs WHERE id < $3 AND created_at < $1 AND status <> 'pending'
			  AND coalesce(last_attempt_at, created_at) < $1
			ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED)`, cutoff, batch, firstV7(cutoff))
		if err != nil {
			return err
		}
		if tag.RowsAffected() < int64(batch) {
			return nil
		}
	}
}

// firstV7 is the least version 7 UUID of t's millisecond: every log id made
// before that millisecond sorts before it.
func firstV7(t time.Time) uuid.UUID {
	var id uuid.UUID
	binary.BigEndian.PutUint64(id[:8], uint64(t.UnixMilli())<<16|0x7000)
	id[8] = 0x80 // the variant
	return id
}

// PeriodicPrune schedules PruneArgs every hour and once at start.
func PeriodicPrune() *river.PeriodicJob {
	return river.NewPeriodicJob(river.PeriodicInterval(time.Hour),
		func() (river.JobArgs, *river.InsertOpts) { return PruneArgs{}, nil },
		&river.PeriodicJobOpts{RunOnStart: true, ID: "webhook_log_prune"})
}
