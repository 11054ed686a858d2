package payments

import (
	"context"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"paygate/db"
	"paygate/idempotency"
)

// Answer is an answer of a decision batch.
type Answer = answer

// RecordBatch records answers as one batch of the worker's decisions.
func (w *Worker) RecordBatch(ctx context.Context, answers []Answer) ([]bool, error) {
	return w.recordBatch()(ctx, answers)
}

// DecideTx records one answer, as the worker's batch of one.
func (s *Service) DecideTx(ctx context.Context, tx pgx.Tx, merchantID uuid.UUID, paymentID string, ok bool) (bool, error) {
	changed, err := s.decideTx(ctx, tx, []answer{{MerchantID: merchantID, PaymentID: paymentID, OK: ok}})
	if err != nil {
		return false, err
	}
	return changed[0], nil
}

// PendingDecisions reads one payment as the worker's batched read does.
func PendingDecisions(ctx context.Context, q pgx.Tx, merchantID uuid.UUID, id string) error {
	_, err := pendingDecisions(ctx, q, []paymentKey{{MerchantID: merchantID, ID: id}})
	return err
}

// DropFirstDecisions forgets the payments the process holds to decide, as
// a crash would: they are neither decided nor given back.
func (s *Service) DropFirstDecisions() {
	f := s.first.Load()
	f.mu.Lock()
	defer f.mu.Unlock()
	for k, h := range f.waiting {
		if h.timer.Stop() {
			delete(f.waiting, k)
			f.held--
			f.wg.Done()
		}
	}
}

// DueLate makes the payments the process holds due now with their
// deadline passed, as when their commit came late.
func (s *Service) DueLate() {
	f := s.first.Load()
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, h := range f.waiting {
		h.by = time.Now()
		if h.timer.Stop() {
			h.timer.Reset(0)
		}
	}
}

// CreateBatch creates ins as one batch of creations, and answers, for each,
// its payment or nil when the batch did not create it.
// by are the requests' deadlines, when given.
func (s *Service) CreateBatch(ctx context.Context, merchantID uuid.UUID, ins []PaymentInput, by ...time.Time) ([]*Payment, error) {
	cs, err := creations(merchantID, ins)
	if err != nil {
		return nil, err
	}
	res, err := s.createBatch(ctx, withDeadlines(cs, by))
	return payments(res), err
}

// CreateKeyedBatch is CreateBatch for requests with keys: claims (nil:
// none) are the requests' claims, and a payment remembered is answered as
// it is.
func (s *Service) CreateKeyedBatch(ctx context.Context, merchantID uuid.UUID, ins []PaymentInput, claims []*idempotency.Claim) ([]*Payment, error) {
	cs, err := creations(merchantID, ins)
	if err != nil {
		return nil, err
	}
	res, err := s.createBatch(ctx, withClaims(cs, claims))
	return payments(res), err
}

// withClaims gives the creations their claims, and a view that answers a
// payment as it is.
func withClaims(cs []creation, claims []*idempotency.Claim) []creation {
	for i := range claims {
		cs[i].claim, cs[i].view = claims[i], func(p Payment) any { return p }
	}
	return cs
}

func creations(merchantID uuid.UUID, ins []PaymentInput) ([]creation, error) {
	cs := make([]creation, len(ins))
	for i, in := range ins {
		p, err := newPayment(merchantID, in)
		if err != nil {
			return nil, err
		}
		cs[i] = creation{p: p, key: uuid.New()}
	}
	return cs, nil
}

// withDeadlines sets the creations' deadlines.
func withDeadlines(cs []creation, by []time.Time) []creation {
	for i := range by {
		cs[i].deadline = by[i]
	}
	return cs
}

func payments(res []created) []*Payment {
	out := make([]*Payment, len(res))
	for i, r := range res {
		if r.ok {
			out[i] = &r.p
		}
	}
	return out
}

// CreateManyTx creates ins in tx as a batch of creations does, and
// answers as CreateBatch; claims, when given, are the requests' claims.
func (s *Service) CreateManyTx(ctx context.Context, tx pgx.Tx, merchantID uuid.UUID, ins []PaymentInput, claims ...*idempotency.Claim) ([]*Payment, error) {
	cs, err := creations(merchantID, ins)
	if err != nil {
		return nil, err
	}
	withClaims(cs, claims)
	res, err := s.createManyTx(ctx, tx, cs, time.Now())
	return payments(res), err
}

// QueuedCreations is how many creations wait for a batch.
func (s *Service) QueuedCreations() int { return s.creations().Queued() }

// QueuedOrders is how many order creations wait for a batch.
func (s *Service) QueuedOrders() int { return s.orderCreations().Queued() }

// CreateOrderBatch creates ins as one batch of orders whose requests'
// deadlines are by, and answers each order, or nil when left out.
func (s *Service) CreateOrderBatch(ctx context.Context, merchantID uuid.UUID, ins []OrderInput, by []time.Time) ([]*Order, error) {
	return s.orderBatch(ctx, merchantID, ins, by, nil)
}

// CreateKeyedOrderBatch creates ins as one batch of orders whose requests'
// claims (nil: none) are claims, and deadlines by, when given.
func (s *Service) CreateKeyedOrderBatch(ctx context.Context, merchantID uuid.UUID, ins []OrderInput, claims []*idempotency.Claim, by ...time.Time) ([]*Order, error) {
	return s.orderBatch(ctx, merchantID, ins, by, claims)
}

func (s *Service) orderBatch(ctx context.Context, merchantID uuid.UUID, ins []OrderInput, by []time.Time, claims []*idempotency.Claim) ([]*Order, error) {
	cs, err := orderCreations(merchantID, ins, by, claims)
	if err != nil {
		return nil, err
	}
	return s.createOrders(ctx, cs)
}

// CreateOrdersTx creates ins in tx as a batch of orders does: with claims
// (nil: none) in one transaction, and without in one statement.
func CreateOrdersTx(ctx context.Context, tx pgx.Tx, merchantID uuid.UUID, ins []OrderInput, claims ...*idempotency.Claim) ([]*Order, error) {
	cs, err := orderCreations(merchantID, ins, nil, claims)
	if err != nil {
		return nil, err
	}
	if claims == nil {
		return insertOrders(ctx, tx, cs)
	}
	return createOrdersTx(ctx, tx, cs)
}

func orderCreations(merchantID uuid.UUID, ins []OrderInput, by []time.Time, claims []*idempotency.Claim) ([]orderCreation, error) {
	cs := make([]orderCreation, len(ins))
	for i, in := range ins {
		o, err := in.order()
		if err != nil {
			return nil, err
		}
		o.ID, o.MerchantID = db.NewID("order_"), merchantID
		cs[i].o = o
		if i < len(by) {
			cs[i].deadline = by[i]
		}
		if i < len(claims) {
			cs[i].claim = claims[i]
		}
	}
	return cs, nil
}
