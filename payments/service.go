package payments

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"

	"paygate/db"
	"paygate/metrics"
	"paygate/web"
	"paygate/webhooks"
)

// Service runs the order and payment use cases, one transaction each.
type Service struct {
	Pool *pgxpool.Pool
	// KeptPlans gives the creation and decision batches their pool
	// (db.KeptPlans); nil: Pool.
	KeptPlans *db.KeptPlans
	// Logger logs a batch's panic, with its stack; nil: slog's default.
	Logger *slog.Logger
	// Delay is how long after creation a payment is decided.
	Delay func(method string) time.Duration
	// Emit records the payment events (a decision batch's in one call);
	// nil records none.
	Emit webhooks.Emit
	// CreateBatches is how many batches of payments, and as many of
	// orders, run at once (CREATE_BATCHES); 0: createFlights.
	CreateBatches int
	// Spares is how many spare batches of payments, and as many of orders,
	// may run besides CreateBatches, each started once the oldest queued
	// request has waited Stall (0: StallAfter) behind a running batch
	// (CREATE_SPARES, CREATE_STALL); 0: none.
	Spares int
	Stall  time.Duration

	// first decides the payments this process creates, while it works the
	// payments queue (Worker.StartFirstDecisions); nil otherwise.
	first atomic.Pointer[firstDecisions]

	once    sync.Once
	batches *db.Batcher[creation, created] // creations(): CreatePayment's batches

	ordersOnce   sync.Once
	orderBatches *db.Batcher[orderCreation, *Order] // orderCreations(): CreateOrder's batches
}

// CreateOrderTx validates in and creates a merchant's order.
func (s *Service) CreateOrderTx(ctx context.Context, tx pgx.Tx, merchantID uuid.UUID, in OrderInput) (Order, error) {
	o, verr := in.order()
	if verr != nil {
		return Order{}, verr
	}
	o.ID, o.MerchantID = db.NewID("order_"), merchantID
	return insertOrderTx(ctx, tx, o)
}

func (s *Service) GetOrder(ctx context.Context, merchantID uuid.UUID, id string) (Order, error) {
	return getOrder(ctx, s.Pool, merchantID, id)
}

func (s *Service) ListOrders(ctx context.Context, merchantID uuid.UUID, page web.Page) (web.List[Order], error) {
	return listOrders(ctx, s.Pool, merchantID, page)
}

// CreatePaymentTx validates in and creates a pending payment on a merchant's
// order, with the job that will decide it and its payment.created event.
// An order that is paid, or has a payment still pending, takes no other
// payment: the unique index payments_one_live_per_order refuses it whatever
// the concurrency, and the refusal is the client's 400 on order_id.
//
// The payment's INSERT reads the order (its amount and currency, and that
// it has no successful payment) without a row lock. The index is what
// keeps one live payment per order, and a paid order has a success payment,
// so that read only picks the clearer message. The payment's foreign key
// takes a key-share lock on the order, which nothing this version does
// conflicts with (it never writes an order after its insert), nor the
// previous version's marking it paid during a rolling deploy (an update
// of no key column).
func (s *Service) CreatePaymentTx(ctx context.Context, tx pgx.Tx, merchantID uuid.UUID, in PaymentInput) (Payment, error) {
	p, err := newPayment(merchantID, in)
	if err != nil {
		return Payment{}, err
	}
	now, delay := time.Now(), s.Delay(p.Method)
	decideAt, key := now.Add(delay), uuid.New()
	// Decided by this process (first.go), the payment has no job.
	// Otherwise its job is inserted by the payment's own statement,
	// available at once, and snoozes until DecideAt: a job scheduled for
	// later would wait for River's 5 s scheduler tick.
	take, taken := s.first.Load().reserve(tx, now, delay)
	var jobs []river.InsertManyParams
	if !taken[0] {
		jobs = append(jobs, river.InsertManyParams{Args: ProcessArgs{PaymentID: p.ID, MerchantID: merchantID, DecideAt: decideAt}})
	}
	job, err := db.JobRowsOf(jobs...)
	if err != nil {
		return Payment{}, err
	}
	p, err = insertPaymentTx(ctx, tx, p, key, job)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		// No such order, or a paid one: read it, off the usual path, to say which.
		order, err := getOrder(ctx, tx, merchantID, in.OrderID)
		if err != nil {
			return Payment{}, err
		}
		if order.Status == OrderPaid {
			return Payment{}, web.BadField("order_id", "Order has already been paid")
		}
		return Payment{}, fmt.Errorf("payment on order %s: the order is %s, yet took no payment", in.OrderID, order.Status)
	case db.IsUniqueViolationOf(err, "payments_one_live_per_order"):
		// Also when the live payment succeeded after the order was read.
		return Payment{}, web.BadField("order_id", "Order already has a payment in progress; wait for its outcome")
	case err != nil:
		return Payment{}, err
	}
	// The event (with its delivery's job) and the job's insert notification
	// are sent with the COMMIT (db.QueryAtCommit, db.ExecAtCommit): nothing after the
	// payment's INSERT waits for a round trip inside the transaction.
	if err := s.emitTx(ctx, tx, paymentEvent(p, webhooks.EventPaymentCreated)); err != nil {
		return Payment{}, err
	}
	if err := db.NotifyInsertAtCommit(ctx, tx, job.Queues...); err != nil {
		return Payment{}, err
	}
	if taken[0] {
		take(0, p, key, decideAt)
	}
	return p, nil
}

// newPayment validates in and returns the pending payment it asks for, with
// its ids (the order's amount and currency come with its insert).
func newPayment(merchantID uuid.UUID, in PaymentInput) (Payment, error) {
	p, verr := in.payment(time.Now())
	if verr != nil {
		return Payment{}, verr
	}
	if !db.IsID("order_", in.OrderID) {
		return Payment{}, web.NotFound("Order")
	}
	p.ID, p.MerchantID = db.NewID("pay_"), merchantID
	return p, nil
}

func (s *Service) GetPayment(ctx context.Context, merchantID uuid.UUID, id string) (Payment, error) {
	return getPayment(ctx, s.Pool, merchantID, id, false)
}

func (s *Service) ListPayments(ctx context.Context, merchantID uuid.UUID, f PaymentFilter, page web.Page) (web.List[Payment], error) {
	if err := f.validate(); err != nil {
		return web.List[Payment]{}, err
	}
	return listPayments(ctx, s.Pool, merchantID, f, page)
}

// decideTx moves pending payments to success (ok) or failed, a success
// making its order paid, and records their events. While a payment is
// pending no other payment of its order can exist in pending or success
// (payments_one_live_per_order), so a success here is the order's only
// one. It does so for many answers (the worker's batch) with one statement
// for all the payments, and one for all the events with their delivery
// jobs: every decision, its event and its job commit with tx, or none
// does. It reports for each answer whether it changed its payment. A
// payment named twice (a job run again while its first run records) is
// decided by its first answer, once, with one event: the others report
// false like an answer for a payment decided already.
func (s *Service) decideTx(ctx context.Context, tx pgx.Tx, answers []answer) ([]bool, error) {
	// In id order, so that two batches that share payments (a job run
	// twice, by two processes: a process runs one batch at a time) lock
	// them in the same order and wait rather than deadlock. Should a plan
	// lock them otherwise, PostgreSQL ends the deadlock by failing one
	// batch, whose answers are then recorded one at a time.
	unique, first := db.Distinct(answers, answer.key, func(a, b answer) int { return a.key().compare(b.key()) })
	decided, err := decideManyTx(ctx, tx, unique)
	if err != nil {
		return nil, err
	}
	changed := make([]bool, len(answers))
	events := make([]webhooks.Event, len(decided))
	for i, p := range decided {
		changed[first[paymentKey{MerchantID: p.MerchantID, ID: p.ID}]] = true
		event := webhooks.EventPaymentFailed
		if p.Status == StatusSuccess {
			event = webhooks.EventPaymentSuccess // and the order is paid (ordersWithStatus)
		}
		events[i] = paymentEvent(p, event)
	}
	if len(decided) == 0 {
		return changed, nil
	}
	db.AfterCommit(tx, func() {
		for _, p := range decided {
			metrics.PaymentFinal(p.Status, p.Method)
		}
	})
	return changed, s.emitTx(ctx, tx, events...)
}

// CaptureTx captures a successful payment once. amount, when given, must be
// the payment's amount. The row lock makes a concurrent capture wait and
// then find the payment captured.
func (s *Service) CaptureTx(ctx context.Context, tx pgx.Tx, merchantID uuid.UUID, id string, amount *int64) (Payment, error) {
	p, err := GetForUpdateTx(ctx, tx, merchantID, id)
	if err != nil {
		return Payment{}, err
	}
	if verr := p.checkCapture(amount); verr != nil {
		return Payment{}, verr
	}
	return captureTx(ctx, tx, merchantID, id)
}

// emitTx records payment events, with their deliveries' jobs, in tx.
func (s *Service) emitTx(ctx context.Context, tx pgx.Tx, events ...webhooks.Event) error {
	if s.Emit == nil {
		return nil
	}
	return s.Emit(ctx, tx, events)
}

// paymentEvent is a payment event: its data is {"payment": <the payment>}.
func paymentEvent(p Payment, name string) webhooks.Event {
	return webhooks.Event{MerchantID: p.MerchantID, Name: name, Data: map[string]any{"payment": p}}
}
