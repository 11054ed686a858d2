package webhooks

import (
	"context"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"paygate/db"
)

// Reconcile gives every log pending and unchanged for longer than after
// without a live job of its current run a new job, due now (in
// transactions of up to db.ResumeBatch logs), and reports how many it
// resumed. Every step of a run touches the log, so a log this old
// (LostAfter: longer than a first attempt made by its recording process,
// the one step made without a job, can take) without a job has lost it.
//
// The worker keeps a log and its jobs in step on every path it takes, but a
// log can still lose its job, or never get one: a first attempt (first.go)
// whose process died before recording it or giving it back, a job
// discarded after failing jobRetries times (the database was away), discarded by the rescuer
// when a crash hit its last try, or cancelled or deleted by an operator. The
// new job goes on with the attempts the log has left, so it ends delivered
// or failed, never pending forever. The query spans merchants, like key
// pruning; each new job carries its log's merchant.
func (s *Service) Reconcile(ctx context.Context, after time.Duration) (int, error) {
	return db.ResumeInBatches(func() (int, error) { return s.reconcileOnce(ctx, after) })
}

// reconcileOnce resumes up to a batch of lost logs in one transaction.
func (s *Service) reconcileOnce(ctx context.Context, after time.Duration) (int, error) {
	resumed := 0
	err := db.WithTx(ctx, s.pool, func(tx pgx.Tx) error {
		// FOR UPDATE re-reads a log that a transition changed meanwhile and
		// drops it (its updated_at is fresh), so a job committed after this
		// statement's snapshot is never taken for a missing one.
		rows, err := tx.Query(ctx, `
			SELECT l.id, l.merchant_id, l.run FROM webhook_logs l
			WHERE l.status = 'pending' AND l.updated_at < now() - $1::interval
			  AND NOT `+liveJobOfRun("l.id", "l.run")+`
			ORDER BY l.updated_at LIMIT $2
			FOR UPDATE OF l SKIP LOCKED`, after, db.ResumeBatch)
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
			if err := s.insertDeliveryTx(ctx, tx, a); err != nil {
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
