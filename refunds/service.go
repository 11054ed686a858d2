package refunds

import (
	"cmp"
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"paygate/db"
	"paygate/metrics"
	"paygate/payments"
	"paygate/web"
	"paygate/webhooks"
)

// Service runs the refund use cases: creations in batches (create.go), each
// batch one transaction; processing in the worker's batches.
type Service struct {
	Pool *pgxpool.Pool
	// Payments answers whether a payment is the merchant's.
	Payments *payments.Service
	// Delay is how long after creation a refund is processed.
	Delay func() time.Duration
	// Emit records the refund events (a batch's in one call); nil records
	// none.
	Emit webhooks.Emit
	// Logger logs a batch's panic, with its stack; nil: slog's default.
	Logger *slog.Logger
	// CreateBatches is how many batches of refunds run at once
	// (CREATE_BATCHES); 0: createFlights.
	CreateBatches int
	// Spares and Stall are payments.Service's, for refunds.
	Spares int
	Stall  time.Duration

	once    sync.Once
	batches *db.Batcher[creation, created]
}

func (s *Service) Get(ctx context.Context, merchantID uuid.UUID, id string) (Refund, error) {
	return getRefund(ctx, s.Pool, merchantID, id)
}

// ListForPayment lists a payment's refunds, newest first; an unknown
// payment (or another merchant's) is NOT_FOUND rather than an empty list.
func (s *Service) ListForPayment(ctx context.Context, merchantID uuid.UUID, paymentID string, page web.Page) (web.List[Refund], error) {
	if _, err := s.Payments.GetPayment(ctx, merchantID, paymentID); err != nil {
		return web.List[Refund]{}, err
	}
	return listRefunds(ctx, s.Pool, merchantID, paymentID, page)
}

// processTx moves pending refunds to processed, adds their amounts to
// their payments' amount_refunded and records refund.processed; a refund
// already processed (or unknown) is left alone. It does so for many
// refunds (the worker's batch) with one statement for all the refunds and
// their payments (processManyTx), and one for all the events with their
// delivery jobs: every refund processed, its
// amount, its event and its job commit with tx, or none does. It reports
// for each key whether it changed its refund. A refund named twice (a job
// run again while its first run processes) is processed once, with one
// event: the other names report false like a refund processed already.
func (s *Service) processTx(ctx context.Context, tx pgx.Tx, keys []refundKey) ([]bool, error) {
	// In id order, so that two batches that share refunds (a job run
	// twice, by two processes: a process runs one batch at a time) lock
	// them in the same order and wait rather than deadlock.
	unique, first := db.Distinct(keys, func(k refundKey) refundKey { return k }, func(a, b refundKey) int {
		return cmp.Or(strings.Compare(a.ID, b.ID), slices.Compare(a.MerchantID[:], b.MerchantID[:]))
	})
	processed, err := processManyTx(ctx, tx, unique)
	if err != nil {
		return nil, err
	}
	changed := make([]bool, len(keys))
	events := make([]webhooks.Event, len(processed))
	for i, r := range processed {
		changed[first[refundKey{MerchantID: r.MerchantID, ID: r.ID}]] = true
		events[i] = refundEvent(r, webhooks.EventRefundProcessed)
	}
	if len(processed) == 0 {
		return changed, nil
	}
	db.AfterCommit(tx, func() {
		for _, r := range processed {
			metrics.RefundFinal(r.Status)
		}
	})
	return changed, s.emitTx(ctx, tx, events...)
}

// emitTx records refund events, with their deliveries' jobs, in tx.
func (s *Service) emitTx(ctx context.Context, tx pgx.Tx, events ...webhooks.Event) error {
	if s.Emit == nil {
		return nil
	}
	return s.Emit(ctx, tx, events)
}

// refundEvent is a refund event: its data is {"refund": <the refund>}.
func refundEvent(r Refund, name string) webhooks.Event {
	return webhooks.Event{MerchantID: r.MerchantID, Name: name, Data: map[string]any{"refund": r}}
}
