package payments

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"paygate/db"
)

// Reconcile gives every payment created more than after ago that is still
// pending without a live ProcessPayment job a new one, due now, and reports
// how many it resumed. after must exceed any job's timeout, so that a job
// still working is never taken for a lost one.
//
// The worker decides every payment it runs, and fails it after its last
// attempt, but a job can still leave River without passing through it:
// discarded by the rescuer when a crash hit its last attempt, or after its
// last attempt failed on the database rather than the acquirer, or cancelled
// or deleted by an operator. The new job asks the acquirer again under the
// same decision key, so no payment stays pending forever. The query spans
// merchants, like key pruning: the rule is the same for all of them, and
// each new job carries its payment's merchant.
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
