package refunds

import (
	"cmp"
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"

	"paygate/db"
	"paygate/idempotency"
	"paygate/metrics"
	"paygate/payments"
	"paygate/web"
	"paygate/webhooks"
)

// Refunds are created in batches (db.Batcher), as payments are
// (payments/create.go): the requests that come while a batch runs make the
// next one, a transaction for all of them where each had its own. A batch
// claims its requests' Idempotency-Keys (idempotency.ClaimAllTx), locks
// its payments' rows (payments.LockManyTx, in id order, so that batches
// that share payments wait in one order), sums their refunds in a statement
// of its own, inserts its refunds with their processing jobs in one
// statement, writes the keys' answers (idempotency.SettleCreatedTx), and commits
// with the refund.created events. Each refund still commits with its job
// and its event, or none does.
//
// The refund limit holds as it does for one refund: the sum is read after
// the locks are granted (in READ COMMITTED a statement sees what committed
// before it began), so it counts every refund committed by a transaction
// that held a payment before; and the batch's own refunds of one payment
// are taken from what it has left one after the other, in the order the
// requests came.
//
// A request the batch cannot make a refund of (no such payment, not
// refundable, an amount over what is left) is answered its error by the
// batch, as it would be alone; unless it has a key, when the batch drops
// its claim and it runs alone (CreateTx under idempotency.Keys.Do), which
// answers the same and remembers it. Deadlines and keys held by requests
// in progress are handled by idempotency.InBatch; a failed batch is run
// again one request at a time (db.Batcher), unless its COMMIT may have
// committed (db.ErrCommitUnknown), when running it again could refund twice.
//
// One batch waits for its slowest payment: a refund of a payment another
// transaction holds (a capture, a refund run alone, a processing batch, a
// decision of a pending payment, another process's creation batch: short
// transactions) waits for it, and its batch with it, and, for up to
// payments.StallAfter, the requests queued for the next batch behind it,
// which a spare batch then takes (payments.SpareBatches); should that
// outlast the earliest deadline, every request of the batch is answered
// 503, as when the database does not answer in time. A client that goes
// away while its batch is written may find its refund created; a retry
// with the same Idempotency-Key is what makes it once.
const (
	// createFlights batches of creations run at once; maxBatch bounds each.
	// One, as for payments (payments/create.go).
	createFlights = 1
	// createTimeout bounds a batch whose requests have no deadline (a
	// request's own ends it earlier: db.Due): REQUEST_TIMEOUT's default.
	createTimeout = 10 * time.Second
)

// creation is a validated refund request: the payment it refunds, its
// input, its request's deadline (zero: none) and, for a request with an
// Idempotency-Key, its claim.
type creation struct {
	merchantID uuid.UUID
	paymentID  string
	in         Input
	deadline   time.Time
	claim      *idempotency.Claim
}

func (c creation) Due() time.Time               { return c.deadline }
func (c creation) KeyClaim() *idempotency.Claim { return c.claim }

func (c creation) payment() paymentKey { return paymentKey{c.merchantID, c.paymentID} }

// created is a creation's outcome: its refund (ok), or the client's error
// (a *web.Error) that a request alone would be answered; neither when the
// batch left it out (its deadline passed, or its key was not the batch's).
type created struct {
	r   Refund
	ok  bool
	err error
}

// paymentKey names a merchant's payment.
type paymentKey struct {
	merchantID uuid.UUID
	id         string
}

// Create creates a refund as CreateTx does, in a batch of the refunds
// asked for at the same time. With claim (a request's Idempotency-Key:
// idempotency.DoBatched), the batch claims its key and remembers the refund
// as the answer. ok false and no error say the batch did not create it (nor
// remembered anything): the caller runs the request with CreateTx, which
// answers why and remembers that under the key.
func (s *Service) Create(ctx context.Context, merchantID uuid.UUID, paymentID string, in Input, claim *idempotency.Claim) (r Refund, ok bool, err error) {
	if verr := in.validate(); verr != nil {
		if claim != nil {
			return Refund{}, false, nil
		}
		return Refund{}, false, verr
	}
	deadline, _ := ctx.Deadline()
	res, err := s.creations().Do(ctx, creation{merchantID: merchantID, paymentID: paymentID, in: in, deadline: deadline, claim: claim})
	switch {
	case err != nil:
		return Refund{}, false, err
	case res.ok || claim != nil:
		return res.r, res.ok, nil
	case res.err != nil:
		return Refund{}, false, res.err
	}
	return Refund{}, false, context.DeadlineExceeded // left out of its batch: its deadline passed
}

func (s *Service) creations() *db.Batcher[creation, created] {
	s.once.Do(func() {
		s.batches = db.NewBatcher(maxBatch, cmp.Or(s.CreateBatches, createFlights), createTimeout, s.createBatch).WithLogger(s.Logger).
			WithSpares(s.Spares, cmp.Or(s.Stall, payments.StallAfter),
				func() { metrics.SpareBatch("refunds") })
	})
	return s.batches
}

// createBatch creates a batch's refunds in one transaction (createManyTx),
// under idempotency.InBatch's rules for deadlines and keys in progress.
func (s *Service) createBatch(ctx context.Context, cs []creation) ([]created, error) {
	return idempotency.InBatch(ctx, cs, func(ctx context.Context, live []creation) ([]created, error) {
		return db.InTx(s.Pool, s.createManyTx)(ctx, live)
	})
}

// CreateTx validates in and creates a pending refund of a merchant's
// successful payment, with the job that will process it and its
// refund.created event, as a batch of one (createManyTx). The payment row
// stays locked until tx ends, so concurrent refunds of one payment are
// checked against the limit one after the other.
func (s *Service) CreateTx(ctx context.Context, tx pgx.Tx, merchantID uuid.UUID, paymentID string, in Input) (Refund, error) {
	if verr := in.validate(); verr != nil {
		return Refund{}, verr
	}
	res, err := s.createManyTx(ctx, tx, []creation{{merchantID: merchantID, paymentID: paymentID, in: in}})
	if err != nil {
		return Refund{}, err
	}
	return res[0].r, res[0].err
}

// createManyTx creates the refunds of cs that their payments allow, each
// with its processing job and refund.created event, and answers each
// creation at its index (package doc above); it claims the keys of those
// with one first, and writes their answers.
func (s *Service) createManyTx(ctx context.Context, tx pgx.Tx, cs []creation) ([]created, error) {
	claimed, err := idempotency.ClaimAllTx(ctx, tx, cs, nil)
	if err != nil {
		return nil, err
	}
	res := make([]created, len(cs))
	var todo []int // the indexes in cs of those without a key, or with a key claimed
	for i, c := range cs {
		if c.claim == nil || claimed[i] {
			todo = append(todo, i)
		}
	}
	left, err := refundableTx(ctx, tx, cs, todo)
	if err != nil {
		return nil, err
	}
	var made []Refund
	var jobs []river.InsertManyParams
	at := make(map[string]int, len(todo)) // a refund's index in cs
	for _, i := range todo {
		c := cs[i]
		p, found := left[c.payment()]
		if !found {
			res[i].err = web.NotFound("Payment")
			continue
		}
		if !p.ok {
			res[i].err = web.Errorf(web.CodeBadRequest, "Payment not in refundable state")
			continue
		}
		amount, verr := c.in.amount(p.left)
		if verr != nil {
			res[i].err = verr
			continue
		}
		p.left -= amount
		id := db.NewID("rfnd_")
		at[id] = i
		made = append(made, Refund{ID: id, PaymentID: c.paymentID, MerchantID: c.merchantID, Amount: amount,
			Reason: c.in.Reason, Status: StatusPending})
		// Available now, snoozing until ProcessAt (see db.SnoozeUntil).
		jobs = append(jobs, river.InsertManyParams{Args: ProcessArgs{RefundID: id, MerchantID: c.merchantID,
			ProcessAt: time.Now().Add(s.Delay())}})
	}
	inserted, err := insertRefundsTx(ctx, tx, made, jobs)
	if err != nil {
		return nil, err
	}
	events := make([]webhooks.Event, len(inserted))
	for j, r := range inserted {
		i, ok := at[r.ID]
		if !ok || res[i].ok {
			return nil, fmt.Errorf("refunds: inserted %s, not asked for or twice", r.ID)
		}
		res[i] = created{r: r, ok: true}
		events[j] = refundEvent(r, webhooks.EventRefundCreated)
	}
	if err := idempotency.SettleCreatedTx(ctx, tx, cs, claimed, func(i int) (any, bool) { return res[i].r, res[i].ok }); err != nil {
		return nil, err
	}
	return res, s.emitTx(ctx, tx, events...)
}

// refundable is what a payment's refunds leave of it; a payment that is not
// successful is not refundable (ok false).
type refundable struct {
	ok   bool
	left int64
}

// refundableTx locks the rows of the payments of the creations at todo
// (cs's indexes) until tx ends, and returns what each that exists leaves
// to refund. A malformed payment id names no payment, and is not sent.
func refundableTx(ctx context.Context, tx pgx.Tx, cs []creation, todo []int) (map[paymentKey]*refundable, error) {
	var merchantIDs []uuid.UUID
	var ids []string
	seen := make(map[paymentKey]bool, len(todo))
	for _, i := range todo {
		k := cs[i].payment()
		if !seen[k] && db.IsID("pay_", k.id) {
			seen[k] = true
			merchantIDs, ids = append(merchantIDs, k.merchantID), append(ids, k.id)
		}
	}
	left := make(map[paymentKey]*refundable, len(ids))
	if len(ids) == 0 {
		return left, nil
	}
	locked, err := payments.LockManyTx(ctx, tx, merchantIDs, ids)
	if err != nil {
		return nil, err
	}
	merchantIDs, ids = merchantIDs[:0], ids[:0]
	for _, p := range locked {
		k := paymentKey{p.MerchantID, p.ID}
		left[k] = &refundable{ok: p.Status == payments.StatusSuccess, left: p.Amount}
		if !left[k].ok {
			continue
		}
		merchantIDs, ids = append(merchantIDs, p.MerchantID), append(ids, p.ID)
	}
	if len(ids) == 0 {
		return left, nil
	}
	refunded, err := refundedManyTx(ctx, tx, merchantIDs, ids)
	if err != nil {
		return nil, err
	}
	for k, sum := range refunded {
		left[k].left -= sum
	}
	return left, nil
}
