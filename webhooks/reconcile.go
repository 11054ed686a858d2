package webhooks

import (
	"context"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"

	"paygate/db"
)

// stuckAfter is how long a pending log may go unchanged without a live job
// of its current run before the reconciler resumes it. Every step of a run
// touches the log, so a log this old without a job has lost it.
const stuckAfter = time.Minute

// ReconcileArgs is the periodic job that resumes logs left pending without
// a live job of their run.
//
// The worker keeps a log and its jobs in step on every path it takes, but a
// job can still leave River without passing through it: discarded after
// failing jobRetries times (the database was away), discarded by the
// rescuer when a crash hit its last try, or cancelled or deleted by an
// operator. Such a log gets a new job of its run, due now, so it goes on
// with the attempts it has left and ends delivered or failed, never pending
// forever.
type ReconcileArgs struct{}

func (ReconcileArgs) Kind() string { return "webhook_reconcile" }

func (ReconcileArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{Queue: db.QueueMaintenance, UniqueOpts: river.UniqueOpts{ByPeriod: stuckAfter}}
}

// ReconcileWorker runs ReconcileArgs. Like key pruning, it is a rule for all
// merchants, so its query spans them; each resumed job carries its log's
// merchant.
type ReconcileWorker struct {
	river.WorkerDefaults[ReconcileArgs]
	Service *Service
}

func (w *ReconcileWorker) Work(ctx context.Context, _ *river.Job[ReconcileArgs]) error {
	_, err := w.Service.Reconcile(ctx, stuckAfter)
	return err
}

// Reconcile gives every log pending for longer than after without a live
// job of its current run a new job, and reports how many it resumed.
func (s *Service) Reconcile(ctx context.Context, after time.Duration) (int, error) {
	resumed := 0
	err := db.WithTx(ctx, s.pool, func(tx pgx.Tx) error {
		// FOR UPDATE re-reads a log that a transition changed meanwhile and
		// drops it (its updated_at is fresh), so a job committed after this
		// statement's snapshot is never taken for a missing one.
		rows, err := tx.Query(ctx, `
			SELECT l.id, l.merchant_id, l.run FROM webhook_logs l
			WHERE l.status = 'pending' AND l.updated_at < now() - $1::interval
			  AND NOT EXISTS (
			      SELECT 1 FROM river_job j
			      WHERE j.kind = 'deliver_webhook'
			        AND j.args @> jsonb_build_object('log_id', l.id, 'run', l.run)
			        AND j.state IN ('available', 'pending', 'running', 'retryable', 'scheduled'))
			ORDER BY l.updated_at LIMIT 1000
			FOR UPDATE OF l SKIP LOCKED`, after)
		if err != nil {
			return err
		}
		lost, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (DeliverArgs, error) {
			var a DeliverArgs
			return a, r.Scan(&a.LogID, &a.MerchantID, &a.Run)
		})
		if err != nil {
			return err
		}
		for _, a := range lost {
			if _, err := s.insertDeliveryTx(ctx, tx, a); err != nil {
				return err
			}
			if err := touchLog(ctx, tx, a.MerchantID, a.LogID); err != nil {
				return err
			}
		}
		resumed = len(lost)
		return nil
	})
	return resumed, err
}

func touchLog(ctx context.Context, tx pgx.Tx, merchantID, id uuid.UUID) error {
	_, err := tx.Exec(ctx, `UPDATE webhook_logs SET next_retry_at = now(), updated_at = now()
		WHERE id = $1 AND merchant_id = $2`, id, merchantID)
	return err
}

// PeriodicReconcile schedules ReconcileArgs every stuckAfter.
func PeriodicReconcile() *river.PeriodicJob {
	return river.NewPeriodicJob(river.PeriodicInterval(stuckAfter),
		func() (river.JobArgs, *river.InsertOpts) { return ReconcileArgs{}, nil },
		&river.PeriodicJobOpts{ID: "webhook_reconcile"})
}
