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

// Request is a refund asked for of one of a merchant's payments, in a
// batch of creations.
type Request struct {
	PaymentID string
	In        Input
}

// Created is a batch's answer to a Request: its refund, or the error the
// request is answered.
type Created struct {
	Refund Refund
	Err    error
}

// CreateBatch creates reqs as one batch of creations, without keys.
func (s *Service) CreateBatch(ctx context.Context, merchantID uuid.UUID, reqs []Request) ([]Created, error) {
	cs := make([]creation, len(reqs))
	for i, r := range reqs {
		cs[i] = creation{merchantID: merchantID, paymentID: r.PaymentID, in: r.In}
	}
	res, err := s.createBatch(ctx, cs)
	out := make([]Created, len(res))
	for i, r := range res {
		out[i] = Created{Refund: r.r, Err: r.err}
	}
	return out, err
}

// QueuedCreations is how many refund creations wait for a batch.
func (s *Service) QueuedCreations() int { return s.creations().Queued() }
