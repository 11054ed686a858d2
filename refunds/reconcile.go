package refunds

import (
	"context"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"

	"paygate/db"
)

// Reconcile gives each refund still pending after `after` whose
// ProcessRefund job is gone a new one, due now, and reports how many
// (db.ResumeLost). A job leaves River without processing its refund when
// it is discarded (its attempts failed on the database, or a crash hit the
// last one) or an operator cancels or deletes it; the refund would stay
// pending forever and keep its amount from the payment's refundable amount.
// Processing is a conditional update: a second job of one refund changes
// nothing.
func (s *Service) Reconcile(ctx context.Context, after time.Duration) (int, error) {
	return db.ResumeLost(ctx, s.Pool, "refunds", ProcessArgs{}.Kind(), "refund_id", after,
		func(tx pgx.Tx, id string, merchantID uuid.UUID) error {
			return db.InsertJobsAtCommit(ctx, tx, river.InsertManyParams{Args: ProcessArgs{RefundID: id, MerchantID: merchantID}})
		})
}
