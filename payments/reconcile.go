package payments

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"

	"paygate/db"
)

// stuckAfter is how long a payment may stay pending without a live job
// before the reconciler gives it a new one. It is longer than any job's
// timeout, so a job still working is never taken for a lost one.
const stuckAfter = time.Minute

// ReconcileArgs is the periodic job that resumes payments left pending
// without a live ProcessPayment job.
//
// The worker decides every payment it runs, and fails it after its last
// attempt, but a job can still leave River without passing through it:
// discarded by the rescuer when a crash hit its last attempt, or after its
// last attempt failed on the database rather than the acquirer, or cancelled
// or deleted by an operator. Such a payment gets a new job, due now, which
// asks the acquirer again under the same decision key, so no payment stays
// pending forever.
type ReconcileArgs struct{}

func (ReconcileArgs) Kind() string { return "payment_reconcile" }

func (ReconcileArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{Queue: db.QueueMaintenance, UniqueOpts: river.UniqueOpts{ByPeriod: stuckAfter}}
}

// ReconcileWorker runs ReconcileArgs. Its query spans merchants, like key
// pruning: the rule is the same for all of them, and each new job carries
// its payment's merchant.
type ReconcileWorker struct {
	river.WorkerDefaults[ReconcileArgs]
	Service *Service
}

func (w *ReconcileWorker) Work(ctx context.Context, _ *river.Job[ReconcileArgs]) error {
	_, err := w.Service.Reconcile(ctx, stuckAfter)
	return err
}

// Reconcile gives every payment created more than after ago that is still
// pending without a live job a new one, and reports how many it resumed.
func (s *Service) Reconcile(ctx context.Context, after time.Duration) (int, error) {
	resumed := 0
	err := db.WithTx(ctx, s.Pool, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `
			SELECT p.id, p.merchant_id FROM payments p
			WHERE p.status = 'pending' AND p.created_at < now() - $1::interval
			  AND NOT EXISTS (
			      SELECT 1 FROM river_job j
			      WHERE j.kind = 'process_payment' AND j.args @> jsonb_build_object('payment_id', p.id)
			        AND j.state IN ('available', 'pending', 'running', 'retryable', 'scheduled'))
			ORDER BY p.created_at LIMIT 1000
			FOR UPDATE OF p SKIP LOCKED`, after)
		if err != nil {
			return err
		}
		lost, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (ProcessArgs, error) {
			var a ProcessArgs
			return a, r.Scan(&a.PaymentID, &a.MerchantID)
		})
		if err != nil {
			return err
		}
		for _, a := range lost {
			// A second job of one payment would be harmless: the decision
			// is a conditional update, asked under the same key.
			if _, err := s.River.InsertTx(ctx, tx, a, nil); err != nil {
				return err
			}
		}
		resumed = len(lost)
		return nil
	})
	return resumed, err
}

// PeriodicReconcile schedules ReconcileArgs every stuckAfter.
func PeriodicReconcile() *river.PeriodicJob {
	return river.NewPeriodicJob(river.PeriodicInterval(stuckAfter),
		func() (river.JobArgs, *river.InsertOpts) { return ReconcileArgs{}, nil },
		&river.PeriodicJobOpts{ID: "payment_reconcile"})
}
