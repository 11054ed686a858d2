package payments

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"

	"paygate/db"
	"paygate/web"
)

// Queue is the River queue of the payment jobs.
const Queue = "payments"

// maxDecideAttempts is how often the acquirer is asked before the payment
// fails: the first time, then once after each wait of DefaultRetry.
const maxDecideAttempts = 6

// DefaultDecideTimeout is how long the acquirer is given to answer: less
// than the job timeout (app.JobTimeout, 30 s), so that an acquirer that
// hangs ends the attempt with an error of its own, and the last attempt can
// still fail the payment, before River cancels the job.
const DefaultDecideTimeout = 25 * time.Second

// recordTimeout bounds recording the decision, which runs even when the
// job's own context has ended: an answer, or the final failure, is kept.
const recordTimeout = 5 * time.Second

// DefaultRetry is the waits between asking the acquirer again after an
// error: a payment is final within about ten minutes even when the acquirer
// is down.
var DefaultRetry = []time.Duration{2 * time.Second, 10 * time.Second, 30 * time.Second, 2 * time.Minute, 5 * time.Minute}

// ProcessArgs is the job that decides one payment at DecideAt.
type ProcessArgs struct {
	PaymentID  string    `json:"payment_id"`
	MerchantID uuid.UUID `json:"merchant_id"`
	DecideAt   time.Time `json:"decide_at"`
	// Asked is how often the acquirer was asked before this job (by the
	// process that created the payment, first.go): the job's attempts go
	// on with the count and the waits from there, its MaxAttempts being
	// what is left of maxDecideAttempts.
	Asked int `json:"asked,omitempty"`
}

func (ProcessArgs) Kind() string { return "process_payment" }

func (ProcessArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{Queue: Queue, MaxAttempts: maxDecideAttempts}
}

// Decide is where a payment is decided: the simulator now, an acquirer
// connector later. key is the payment's decision key, the same on every
// attempt: an acquirer deduplicates on it, so asking again after a lost
// answer does not charge twice. An error is retried; a decline is
// ok == false. ctx ends after Worker.DecideTimeout.
//
// After the last attempt an error, or no answer within DecideTimeout, marks
// the payment failed. The acquirer may nonetheless have charged it (the
// answer was lost, not the charge): a real acquirer connector must, before
// it returns that last error, void or reverse the charge under key, or look
// the decision up by key and answer it. The simulator never errs.
type Decide func(ctx context.Context, p Payment, key uuid.UUID) (ok bool, err error)

// Worker processes ProcessArgs jobs. It holds no worker slot while a payment
// waits: until DecideAt it snoozes, which costs no attempt.
type Worker struct {
	river.WorkerDefaults[ProcessArgs]
	Service *Service
	Decide  Decide
	// Retry is the waits between attempts after an error (nil: DefaultRetry).
	Retry []time.Duration
	// DecideTimeout bounds each question to the acquirer (zero:
	// DefaultDecideTimeout); it must be shorter than the job timeout.
	DecideTimeout time.Duration

	once    sync.Once
	batches *workerBatchers
}

// NextRetry is the schedule: job.Attempt is the attempt that just failed.
func (w *Worker) NextRetry(job *river.Job[ProcessArgs]) time.Time {
	return time.Now().Add(w.retry(job.Args.Asked + job.Attempt))
}

// retry is the wait after the given (1-based) question to the acquirer
// failed.
func (w *Worker) retry(asked int) time.Duration {
	retry := w.Retry
	if len(retry) == 0 {
		retry = DefaultRetry
	}
	return retry[max(0, min(asked-1, len(retry)-1))]
}

// Work asks the acquirer under the payment's decision key, committed before
// the question, and records the answer in one transaction (with the answers
// of the other workers recording at the same time: a batch), conditionally
// on the payment still pending, so a job run again changes nothing. No row
// lock waits on the acquirer: it answers over the network. After the last
// attempt an acquirer that still errs, or hangs past DecideTimeout, fails
// the payment, with its payment.failed event, instead of leaving it pending.
func (w *Worker) Work(ctx context.Context, job *river.Job[ProcessArgs]) error {
	if err := db.SnoozeUntil(ctx, job.Args.DecideAt); err != nil {
		return err
	}
	a := job.Args
	p, key, err := w.startDecision(ctx, a.MerchantID, a.PaymentID)
	var apiErr *web.Error
	if errors.As(err, &apiErr) && apiErr.Code == web.CodeNotFound {
		// Nothing will ever make it appear: retrying would only fail again.
		return river.JobCancel(fmt.Errorf("payment %s of merchant %s not found", a.PaymentID, a.MerchantID))
	}
	if err != nil {
		return err
	}
	if p.Status != StatusPending {
		return nil // decided already (a job run again): nothing to ask or record
	}
	ok, err := w.decide(ctx, p, key)
	if err != nil {
		// Stopping (the job's context cancelled: the attempt is given
		// back), or asked again later. A hanging acquirer ends in
		// DecideTimeout, or at worst in the job's deadline: on the last
		// attempt either fails the payment below.
		if errors.Is(ctx.Err(), context.Canceled) || job.Attempt < job.MaxAttempts {
			return err
		}
		ok = false
	}
	// Recorded even when the job's context has ended meanwhile (its
	// deadline, or stopping after the answer came): the batch runs within
	// recordTimeout of its own, and so long this waits for it. The job is
	// completed by River after Work returns, batched with others
	// (db/jobs.go); decideTx's conditional update makes a rerun harmless,
	// as it does a batch that commits after this stopped waiting.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recordTimeout)
	defer cancel()
	_, err = w.batchers().decisions.Do(rctx, answer{MerchantID: p.MerchantID, PaymentID: p.ID, OK: ok})
	return err
}

// Batches. The worker's payments are read, and their decisions recorded,
// by batches (db.Batcher): the workers that read, or record, while a batch
// of theirs runs make the next batch, one statement (one transaction of
// three statements and a commit, for decisions) for all of them, where each
// had its own. An idle worker's batch is its request alone, at once.
// maxBatch bounds a batch's statements. One flight each: in the quick
// bench (100 workers) decisions then came in batches of about 30 rather
// than 14 with two flights, for fewer statements and commits per payment
// and no worse latency; and no two decision batches of a process lock
// payments at once. Reads take no locks; one flight made batches of about
// 25, and two no measurable difference.
const (
	maxBatch        = 128
	readFlights     = 1
	decisionFlights = 1
)

// workerBatchers are the batches of one Worker.
type workerBatchers struct {
	reads     *db.Batcher[paymentKey, decisionRead]
	decisions *db.Batcher[answer, bool]
}

// decisionRead is a read payment, or found false.
type decisionRead struct {
	row   decisionRow
	found bool
}

func (w *Worker) batchers() *workerBatchers {
	w.once.Do(func() {
		w.batches = &workerBatchers{
			reads:     db.NewBatcher(maxBatch, readFlights, recordTimeout, w.readBatch).WithLogger(w.Service.Logger),
			decisions: db.NewBatcher(maxBatch, decisionFlights, recordTimeout, w.recordBatch()).WithLogger(w.Service.Logger),
		}
	})
	return w.batches
}

// recordBatch records a batch of answers in one transaction (decideTx).
func (w *Worker) recordBatch() func(context.Context, []answer) ([]bool, error) {
	return func(ctx context.Context, as []answer) ([]bool, error) {
		return db.InTx(w.Service.KeptPlans.For(w.Service.Pool, "payments"), w.Service.decideTx)(ctx, as)
	}
}

// readBatch reads a batch of payments with their decision keys.
func (w *Worker) readBatch(ctx context.Context, keys []paymentKey) ([]decisionRead, error) {
	rows, err := pendingDecisions(ctx, w.Service.Pool, keys)
	if err != nil {
		return nil, err
	}
	byKey := make(map[paymentKey]decisionRow, len(rows))
	for _, r := range rows {
		byKey[paymentKey{MerchantID: r.MerchantID, ID: r.ID}] = r
	}
	out := make([]decisionRead, len(keys))
	for i, k := range keys {
		out[i].row, out[i].found = byKey[k]
	}
	return out, nil
}

// decide asks the acquirer under DecideTimeout.
func (w *Worker) decide(ctx context.Context, p Payment, key uuid.UUID) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, w.decideTimeout())
	defer cancel()
	return w.Decide(ctx, p, key)
}

func (w *Worker) decideTimeout() time.Duration {
	if w.DecideTimeout <= 0 {
		return DefaultDecideTimeout
	}
	return w.DecideTimeout
}

// startDecision returns the payment and, while it is pending, its decision
// key. The key is created with the payment and committed with it
// (insertPaymentTx), so this is a plain read, batched with the other
// workers' reads. A pending payment created before that has none: its key
// is created and committed here, before the acquirer is asked. A decided
// payment comes back with no key; an unknown one is NOT_FOUND.
func (w *Worker) startDecision(ctx context.Context, merchantID uuid.UUID, id string) (Payment, uuid.UUID, error) {
	if !db.IsID("pay_", id) {
		return Payment{}, uuid.Nil, web.NotFound("Payment")
	}
	read, err := w.batchers().reads.Do(ctx, paymentKey{MerchantID: merchantID, ID: id})
	if err == nil && !read.found {
		err = web.NotFound("Payment")
	}
	r := read.row
	if err != nil || r.Status != StatusPending {
		return r.Payment, uuid.Nil, err
	}
	pool := w.Service.Pool
	if r.DecisionKey == nil {
		r, err = createDecisionKey(ctx, pool, merchantID, id)
		if errors.Is(err, pgx.ErrNoRows) {
			p, err := getPayment(ctx, pool, merchantID, id, false) // decided meanwhile
			return p, uuid.Nil, err
		}
		if err != nil {
			return Payment{}, uuid.Nil, err
		}
	}
	return r.Payment, *r.DecisionKey, nil
}

// Simulator stands in for an acquirer (API.md, Test mode): in test mode
// every payment waits TestDelay and ends as TestSuccess; otherwise it waits
// a random delay in [DelayMin, DelayMax] and succeeds at its method's rate.
type Simulator struct {
	TestMode                        bool
	TestDelay                       time.Duration
	TestSuccess                     bool
	DelayMin, DelayMax              time.Duration
	UPISuccessRate, CardSuccessRate float64
}

// Delay is the Service.Delay of the simulator.
func (s Simulator) Delay(string) time.Duration {
	if s.TestMode {
		return s.TestDelay
	}
	return s.DelayMin + rand.N(s.DelayMax-s.DelayMin+1)
}

// Decide is the Worker.Decide of the simulator. Like an acquirer that
// deduplicates, it answers one decision key the same way every time: the
// draw is seeded by the key.
func (s Simulator) Decide(_ context.Context, p Payment, key uuid.UUID) (bool, error) {
	if s.TestMode {
		return s.TestSuccess, nil
	}
	rate := s.UPISuccessRate
	if p.Method == MethodCard {
		rate = s.CardSuccessRate
	}
	draw := rand.New(rand.NewPCG(binary.BigEndian.Uint64(key[:8]), binary.BigEndian.Uint64(key[8:])))
	return draw.Float64() < rate, nil
}
