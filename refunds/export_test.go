package refunds

import (
	"context"

	"github.com/google/uuid"
)

// Key names a refund of a processing batch.
type Key = refundKey

// NewKey is the key of a merchant's refund.
func NewKey(merchantID uuid.UUID, id string) Key { return Key{MerchantID: merchantID, ID: id} }

// ProcessBatch processes keys as one batch of the worker's.
func (w *Worker) ProcessBatch(ctx context.Context, keys []Key) ([]bool, error) {
	return w.processBatch()(ctx, keys)
}
