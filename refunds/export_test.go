package refunds

import (
	"context"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// Key names a refund of a processing batch.
type Key = refundKey

// NewKey is the key of a merchant's refund.
func NewKey(merchantID uuid.UUID, id string) Key { return Key{MerchantID: merchantID, ID: id} }

// ProcessBatch processes keys as one batch of the worker's.
func (w *Worker) ProcessBatch(ctx context.Context, keys []Key) ([]bool, error) {
	return w.processBatch()(ctx, keys)
}

// ProcessTx processes one refund, as the worker's batch of one.
func (s *Service) ProcessTx(ctx context.Context, tx pgx.Tx, merchantID uuid.UUID, id string) (bool, error) {
	changed, err := s.processTx(ctx, tx, []refundKey{{MerchantID: merchantID, ID: id}})
	if err != nil {
		return false, err
	}
	return changed[0], nil
}
