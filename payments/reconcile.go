package payments

import (
	"context"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"

	"paygate/db"
)

// Reconcile gives every payment created more than after ago that is still
// pending without a live ProcessPayment job a new one, due now, and reports
// how many it resumed. after must exceed any job's timeout, and the time a
// payment decided by its creating process may take (first.go), so that a
// decision still being made is never taken for a lost one.
//
// The worker decides every payment it runs, and fails it after its last
// attempt, but a payment can still be left without a job: taken by the
// process that created it (first.go), which died before deciding it or
// giving it back; or its job left River without passing through it:
// discarded by the rescuer when a crash hit its last attempt, or after its
// last attempt failed on the database rather than the acquirer, or cancelled
// or deleted by an operator. The new job asks the acquirer again under the
// same decision key, so no payment stays pending forever. The query spans
// merchants, like key pruning: the rule is the same for all of them, and
// each new job carries its payment's merchant.
func (s *Service) Reconcile(ctx context.Context, after time.Duration) (int, error) {
	return db.ResumeLost(ctx, s.Pool, "payments", ProcessArgs{}.Kind(), "payment_id", after,
		func(tx pgx.Tx, id string, merchantID uuid.UUID) error {
			// A second job of one payment would be harmless: the decision
			// is a conditional update, asked under the same key.
			return db.InsertJobsAtCommit(ctx, tx, river.InsertManyParams{Args: ProcessArgs{PaymentID: id, MerchantID: merchantID}})
		})
}
