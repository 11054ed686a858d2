package payments

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"

	"paygate/db"
	"paygate/metrics"
)

// First decisions in the recording process. When the process that creates
// a payment also works the payments queue, it decides the payment itself
// at DecideAt, and the payment gets no job: the payment row, pending, is
// the outbox, and the process holds it (with its decision key, generated
// for the INSERT) in memory from the commit to the decision. River's job
// row (its insert, fetch, completion and index entries, its NOTIFY) and the
// worker's read of the payment were most of what a decision cost the
// database besides the decision itself (docs/benchmarks-history.md).
//
// Invariants:
//   - One decider per payment at a time, as with a job: a payment taken here
//     has no job, the reconciler takes a pending payment without a live job
//     only once lostAfter old, and nothing else inserts one. Should two ask
//     nonetheless (a payment given back), they ask under the same decision
//     key, and the record is conditional on the payment still pending.
//   - A taken payment is decided and recorded (or given back) within
//     lostAfter of its creation: it is taken only when its delay,
//     minTurnWait for a turn to ask, the acquirer's timeout (the worker's
//     DecideTimeout) and three recordTimeouts (the record, a give-back, a
//     batch of give-backs ahead of it) fit in it (fits), counted from
//     before its transaction began (on paygate's monotonic clock; the
//     reconciler counts on PostgreSQL's from the transaction's start, so
//     the clocks' offset does not matter); a due payment waits for a
//     decider only while what follows still fits (minTurnWait), and one
//     found with less left (its commit came late, or the deciders were
//     busy) is given back at once. So the reconciler never
//     takes a payment being decided here for a lost one, and resumes one
//     whose process died.
//   - Nothing is lost. A payment is taken only with room held for it before
//     its INSERT, in a transaction whose end this process learns
//     (db.AfterEnd); any other payment gets its job in its INSERT, as
//     before. A taken payment that cannot be decided here (the process
//     stopping before it is asked, or while the acquirer is asked; no turn
//     while enough time is left; the acquirer erring; the record failing) is given
//     back: a ProcessArgs job, which goes on with the attempts left
//     (ProcessArgs.Asked). Should even that fail, or the process die, the
//     payment is pending without a job, and the reconciler gives it one.
type firstDecisions struct {
	w         *Worker
	logger    *slog.Logger
	lostAfter time.Duration
	// ready holds the due payments, in the order they came due, for the
	// deciders: as many goroutines as questions to the acquirer this
	// process asks for its own payments at once (PAYMENTS_WORKERS, besides
	// River's workers of the payments queue, which ask about the payments
	// given back and those of other processes). A backlog waits there, a
	// pointer each, not a goroutine each. Its capacity is
	// maxFirstDecisions: every payment in it is held, so a send never
	// blocks.
	ready chan *heldPayment

	mu       sync.Mutex
	held     int // payments taken, from their INSERT until decided or given back
	deciding int // of them, those whose acquirer is being asked or answer recorded
	stopped  bool
	waiting  map[paymentKey]*heldPayment

	givebacks *db.Batcher[given, bool]

	stop   chan struct{}   // closed when Stop begins, with stopped set
	ctx    context.Context // cancelled when Stop gives up waiting
	cancel context.CancelFunc
	wg     sync.WaitGroup // the payments held after their commit
}

// heldPayment is a taken payment, committed.
type heldPayment struct {
	p     Payment
	key   uuid.UUID // its decision key
	at    time.Time // DecideAt
	by    time.Time // decided, or given back, by then: taken plus lostAfter
	timer *time.Timer
}

const (
	// maxFirstDecisions bounds the payments a process holds to decide
	// itself (a timer and a payment each, about a kilobyte): ten seconds of
	// a thousand payments a second at the longest default delay. The
	// others get jobs.
	maxFirstDecisions = 10_000
	// minTurnWait is the least time a due payment is given to wait for a
	// decider: it waits while what follows (afterTurn) still fits before
	// its deadline (a backlog under load waits in memory, where it costs
	// nothing more), and a decider that finds it with less left gives it
	// back. A decider frees within afterTurn less a recordTimeout (a
	// question and its record, or a give-back), so a payment found too
	// late is given back, within two recordTimeouts, before its deadline
	// while recordTimeout is at most minTurnWait.
	minTurnWait = 5 * time.Second
)

// StartFirstDecisions makes the payments this process creates be decided
// here, asking the acquirer for up to workers of them at once, when each
// can be within lostAfter (the reconciler's threshold); for the process
// that works the payments queue. Stop it with Service.StopFirstDecisions.
func (w *Worker) StartFirstDecisions(workers int, lostAfter time.Duration, logger *slog.Logger) {
	ctx, cancel := context.WithCancel(context.Background())
	f := &firstDecisions{w: w, logger: logger, lostAfter: lostAfter, ready: make(chan *heldPayment, maxFirstDecisions),
		waiting: map[paymentKey]*heldPayment{}, stop: make(chan struct{}),
		ctx: ctx, cancel: cancel}
	f.givebacks = db.NewBatcher(maxBatch, 1, recordTimeout, f.insertGiven).WithLogger(logger)
	for range max(1, workers) {
		go f.decider()
	}
	w.Service.first.Store(f)
}

// StopFirstDecisions stops taking payments, gives those waiting for their
// DecideAt or for a turn back as jobs, and waits for those being decided
// until ctx ends; those then are cancelled and given back, and it waits for
// that too. A payment whose transaction commits after this began is given
// back by its committer. A second call while one runs returns at once.
func (s *Service) StopFirstDecisions(ctx context.Context) {
	f := s.first.Load()
	if f == nil {
		return
	}
	f.mu.Lock()
	if f.stopped {
		f.mu.Unlock()
		return
	}
	f.stopped = true
	close(f.stop)
	var waiting []*heldPayment
	for k, h := range f.waiting {
		if h.timer.Stop() {
			waiting = append(waiting, h)
			delete(f.waiting, k)
		} // else it fires, finds stopped, and gives itself back
	}
	f.mu.Unlock()
	f.giveBack(0, waiting...)
	for range waiting {
		f.wg.Done()
	}
	// What waits for a decider: nothing is added once stopped is set, and
	// a decider that takes one now gives it back itself.
	var due []*heldPayment
	for len(f.ready) > 0 {
		select {
		case h := <-f.ready:
			due = append(due, h)
		default:
		}
	}
	f.giveBack(0, due...)
	for range due {
		f.wg.Done()
	}
	db.WaitThenCancel(ctx, &f.wg, f.cancel)
	f.cancel()
	s.first.CompareAndSwap(f, nil)
}

// FirstDecisions is how many payments this process has taken to decide
// itself and not yet decided (or given back), and of them how many are
// being decided (asked or recorded): payments without a job, whose work is
// not done.
func (s *Service) FirstDecisions() (held, deciding int) {
	f := s.first.Load()
	if f == nil {
		return 0, 0
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.held, f.deciding
}

// afterTurn is the longest a payment takes here once it has its turn: the
// acquirer's question, the record, and a give-back, which may wait for a
// batch of give-backs ahead of its own.
func (w *Worker) afterTurn() time.Duration {
	return w.decideTimeout() + 3*recordTimeout
}

// fits reports whether a payment decided after delay is decided and
// recorded (or given back) within lostAfter of its creation.
func (f *firstDecisions) fits(delay time.Duration) bool { return f.w.DecidesHere(delay, f.lostAfter) }

// DecidesHere reports whether a payment due after delay is decided by the
// process that creates it, when that process decides its payments within
// lostAfter (StartFirstDecisions): whether its delay, a turn, the
// acquirer's question, the record and a give-back fit in lostAfter.
func (w *Worker) DecidesHere(delay, lostAfter time.Duration) bool {
	return delay+minTurnWait+w.afterTurn() < lostAfter
}

// reserve holds room for payments of tx due after delays, and reports for
// each whether it did: a payment taken is then inserted without a job and,
// once tx commits, decided here (take names it by its index in delays). The
// room reserved for a payment that take was not called for (one not
// inserted) is freed when tx ends, and all of it should tx not commit;
// should its outcome be unknown, the
// payments taken are given back (a job for a payment that was not inserted
// is cancelled by its worker), in one statement. It does not take one
// while stopping, when full, when the payment would not be decided within
// lostAfter, or when tx's end would go unseen. Their time counts from
// start, a moment before the transaction's first statement, so before the
// payments' created_at, from which the reconciler counts.
func (f *firstDecisions) reserve(tx pgx.Tx, start time.Time, delays ...time.Duration) (take func(i int, p Payment, key uuid.UUID, at time.Time), taken []bool) {
	taken = make([]bool, len(delays))
	if f == nil || !db.Tracked(tx) {
		return nil, taken
	}
	n := 0
	f.mu.Lock()
	for i, delay := range delays {
		if !f.stopped && f.held < maxFirstDecisions && f.fits(delay) {
			taken[i] = true
			f.held++
			n++
		}
	}
	f.mu.Unlock()
	if n == 0 {
		return nil, taken
	}
	by := start.Add(f.lostAfter)
	held := make([]*heldPayment, len(delays))
	db.AfterEnd(tx, func(o db.Outcome) {
		var hs []*heldPayment
		for _, h := range held {
			if h != nil {
				hs = append(hs, h)
			}
		}
		f.release(n - len(hs)) // no payment was inserted with it
		switch o {
		case db.RolledBack:
			f.release(len(hs))
		case db.Unknown:
			f.giveBack(0, hs...)
		default:
			for _, h := range hs {
				f.schedule(h)
			}
		}
	})
	return func(i int, p Payment, key uuid.UUID, at time.Time) {
		held[i] = &heldPayment{p: p, key: key, at: at, by: by}
	}, taken
}

func (f *firstDecisions) release(n int) {
	f.mu.Lock()
	f.held -= n
	f.mu.Unlock()
}

// schedule decides a committed payment at its DecideAt; should the process
// have begun stopping meanwhile, it gives it back instead.
func (f *firstDecisions) schedule(h *heldPayment) {
	f.mu.Lock()
	if f.stopped {
		f.mu.Unlock()
		f.giveBack(0, h)
		return
	}
	f.wg.Add(1)
	k := paymentKey{MerchantID: h.p.MerchantID, ID: h.p.ID}
	f.waiting[k] = h
	// Under the lock: the timer's function finds its entry.
	h.timer = time.AfterFunc(time.Until(h.at), func() { f.due(k) })
	f.mu.Unlock()
}

// due hands a payment whose DecideAt has come to the deciders; should the
// process have begun stopping, it gives it back instead.
func (f *firstDecisions) due(k paymentKey) {
	f.mu.Lock()
	h, stopped := f.waiting[k], f.stopped
	delete(f.waiting, k)
	if !stopped {
		f.ready <- h // under the lock, so Stop finds it; held: never blocks
	}
	f.mu.Unlock()
	if stopped {
		f.giveBack(0, h)
		f.wg.Done()
	}
}

// decider decides due payments, one at a time, until Stop begins.
func (f *firstDecisions) decider() {
	for {
		select {
		case h := <-f.ready:
			f.decideDue(h)
		case <-f.stop:
			return
		}
	}
}

// decideDue decides a due payment if it still can before its deadline,
// and gives it back otherwise.
func (f *firstDecisions) decideDue(h *heldPayment) {
	defer f.wg.Done()
	f.mu.Lock()
	stopped := f.stopped
	late := time.Until(h.by) < f.w.afterTurn()
	if !stopped && !late {
		f.deciding++
	}
	f.mu.Unlock()
	if stopped || late {
		f.giveBack(0, h) // stopping, or waited (or committed) too late to be decided here in time
		return
	}
	asked, err := f.decide(h)
	f.mu.Lock()
	f.deciding--
	f.mu.Unlock()
	if err != nil {
		f.giveBack(asked, h)
		return
	}
	f.release(1)
}

// decide asks the acquirer about h and records the answer; when it
// cannot, it reports how many questions failed (an answer whose record
// failed is none).
func (f *firstDecisions) decide(h *heldPayment) (asked int, err error) {
	started := time.Now()
	metrics.JobStarted(Queue, h.at, &started)
	ok, err := f.w.decide(f.ctx, h.p, h.key)
	if err != nil {
		if f.ctx.Err() != nil && errors.Is(err, context.Canceled) {
			return 0, err // stopping: the question was cut short, not answered
		}
		f.logger.Warn("payments: the acquirer erred; the decision goes on as a job", "payment_id", h.p.ID, "error", err)
		return 1, err
	}
	// Recorded even should Stop cancel the decisions meanwhile: it was
	// answered.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(f.ctx), recordTimeout)
	defer cancel()
	if _, err := f.w.batchers().decisions.Do(ctx, answer{MerchantID: h.p.MerchantID, PaymentID: h.p.ID, OK: ok}); err != nil {
		f.logger.Warn("payments: recording a decision failed; it is asked again as a job", "payment_id", h.p.ID, "error", err)
		return 0, err // answered: asked again at once, under the same key
	}
	return 0, nil
}

// given is a held payment to give back, after asked questions.
type given struct {
	h     *heldPayment
	asked int
}

// giveBack leaves held payments to River: a ProcessArgs job each, going on
// with the attempts asked left (due at once after a question cut short,
// after the first retry's wait after an error, or at its DecideAt
// otherwise). One payment joins the others being given back at the moment
// (a batch: one statement for all, so that a backlog given back is not a
// transaction each); several go in one statement of their own. It runs
// within recordTimeout even while stopping; the payments are then no
// longer this process's.
func (f *firstDecisions) giveBack(asked int, held ...*heldPayment) {
	if len(held) == 0 {
		return
	}
	defer f.release(len(held))
	ctx, cancel := context.WithTimeout(context.WithoutCancel(f.ctx), recordTimeout)
	defer cancel()
	var err error
	if len(held) == 1 {
		_, err = f.givebacks.Do(ctx, given{held[0], asked})
	} else {
		all := make([]given, len(held))
		for i, h := range held {
			all[i] = given{h, asked}
		}
		_, err = f.insertGiven(ctx, all)
	}
	if err != nil {
		f.logger.Error("payments: decisions could not be given back; the reconciler will resume them",
			"payments", len(held), "error", err)
	}
}

// insertGiven inserts the jobs of payments given back, in one statement.
func (f *firstDecisions) insertGiven(ctx context.Context, all []given) ([]bool, error) {
	jobs := make([]river.InsertManyParams, len(all))
	for i, g := range all {
		a := ProcessArgs{PaymentID: g.h.p.ID, MerchantID: g.h.p.MerchantID, DecideAt: g.h.at, Asked: g.asked}
		if g.asked > 0 {
			a.DecideAt = time.Now().Add(f.w.retry(g.asked))
		}
		jobs[i] = river.InsertManyParams{Args: a, InsertOpts: &river.InsertOpts{MaxAttempts: maxDecideAttempts - g.asked}}
	}
	err := db.WithTx(ctx, f.w.Service.Pool, func(tx pgx.Tx) error { return db.InsertJobsAtCommit(ctx, tx, jobs...) })
	return make([]bool, len(all)), err
}
