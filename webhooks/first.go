package webhooks

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"

	"paygate/db"
	"paygate/metrics"
)

// First attempts in the recording process. When the process that records
// an event also works the webhook queue, it makes the event's first
// delivery attempt itself, right after the event's transaction commits,
// and the event gets no job at all: the log is the outbox, committed with
// the state change, and the process hands its id from the commit to the
// attempt in memory. River's job row (its insert, fetch, completion and
// index entries, and the NOTIFY) was the largest part of what a delivery
// cost the database (docs/benchmarks-history.md); the attempt reads its
// delivery with others, one statement for a batch.
//
// Invariants:
//   - One attempt maker per log at a time. A log taken here has no job, so
//     no River worker delivers it; the reconciler takes a pending log
//     without a job only once it is LostAfter old, and a manual retry
//     leaves a first run's log that moved within LostAfter alone
//     (RetryTx). Should a job appear for it nonetheless (given back), this
//     process no longer has it.
//   - A taken log's attempt is made and recorded (or given back) within
//     LostAfter of its event's commit: it waits in the queue at most
//     maxClaimAge, its read runs within batchTimeout, it waits for its
//     endpoint's bound at most maxFirstWait, its request is bounded by
//     deliveryTimeout, and its record and a give-back by recordTimeout
//     each. So the reconciler never takes a log in flight here for one that
//     lost its job, and resumes one whose process died within LostAfter and
//     its period.
//   - Nothing is lost. An event is taken only when the queue has room
//     reserved for it before its statement runs (EmitTx), in a transaction
//     whose end this process learns (db.AfterEnd); any other event gets its
//     job, due at once, in its own statement. A taken event that cannot be
//     made here (the process began stopping before its commit or while it
//     was queued, it waited too long, its read failed, its endpoint is
//     slow or still at its bound after maxFirstWait, the process stops
//     mid-request, the record fails) is given back: a job of the log's run,
//     due now. Should even that fail (the database gone, or a crash), the
//     log is pending without a job, and the reconciler gives it one after
//     LostAfter.
//   - Deliveries are at least once, as ever: a crash between the request
//     and its record makes the attempt again, under the same webhook-id.
type firstAttempts struct {
	s      *Service
	logger *slog.Logger
	queue  chan firstAttempt // taken events waiting for a slot
	slots  chan struct{}     // one per attempt read or being made
	// wait replaces maxFirstWait when set (tests).
	wait time.Duration
	// maxWaiting bounds the attempts that wait for the bound of an endpoint
	// none of whose attempts has finished yet: with those its bound has in
	// flight, such an endpoint holds at most a quarter of the slots
	// (claimsFloor).
	maxWaiting int

	mu sync.Mutex
	// reserved is the queue's room held for events whose transactions have
	// not ended: len(queue)+reserved never exceeds its capacity, so a
	// committed event always has its place.
	reserved int
	stopped  bool // no event is taken or queued once set

	// stop is closed when Stop begins, with stopped set.
	stop    chan struct{}
	runDone chan struct{}
	ctx     context.Context // cancelled when Stop gives up waiting
	cancel  context.CancelFunc
	wg      sync.WaitGroup // the senders
	// handoff carries the attempts dispatch gives to waiting senders; idle
	// is how long a sender waits (senderIdle; tests lengthen it).
	handoff chan sending
	idle    time.Duration
	// waiting counts the senders waiting for an attempt that no dispatch
	// has reserved yet (dispatch); senders, those started (tests).
	waiting atomic.Int32
	senders atomic.Int64
	// making counts the taken events, from their commit until recorded or
	// given back.
	making atomic.Int64
}

// sending is an attempt to make: its event and its delivery.
type sending struct {
	j firstAttempt
	d delivery
}

// senderIdle is how long a sender waits for its next attempt before it
// ends (dispatch).
const senderIdle = time.Second

// firstAttempt is a taken event's log, to attempt.
type firstAttempt struct {
	key logKey
	// at is when its transaction began (the log's updated_at), as this
	// process's clock tells it: its age was measured by the database.
	at time.Time
}

const (
	// claimsPerWorker is how many first attempts a process reads or makes
	// at once, per webhook worker: those beyond an endpoint's bound wait for
	// it in memory (a log's payload), where a job left to River would be
	// fetched, snoozed and fetched again. The queue of events waiting for a
	// slot is as long; an event emitted while it is full gets its job.
	claimsPerWorker = 4
	// claimsFloor: the slots are at least this many times an endpoint's
	// bound, and the attempts waiting for an endpoint none of whose
	// attempts has finished yet at most that fraction of them, so that one
	// that hangs from its first request on holds at most its bound in
	// flight and as many waiting: a quarter of the slots. One that answered
	// fast before and hangs now holds what waits for it until its first
	// requests time out (deliveryTimeout) and show it slow.
	claimsFloor = 8
	// maxFirstWait bounds a first attempt's wait for its endpoint's bound,
	// after which it is given back as a job. Only an endpoint whose recent
	// attempts took less than slowEndpoint is waited for (by at most
	// maxWaiting attempts while none has finished): a slow or hanging
	// endpoint's are given back at once (River's workers snooze them), so
	// it cannot hold the slots every other merchant's first attempts need.
	maxFirstWait = 5 * time.Second
	slowEndpoint = time.Second
	// maxClaimAge is how long a taken event may wait in the queue for a
	// slot; an older one is given back.
	maxClaimAge = 5 * time.Second
	// recordTimeout bounds recording a first attempt, and giving one back.
	recordTimeout = 5 * time.Second
)

// LostAfter is how long a log stays pending and unchanged without a live
// job of its run before the reconciler takes it for one that lost its job
// (Reconcile), and before a manual retry puts one back (RetryTx): longer
// than a first attempt made by its recording process can take, the one
// time a log is pending without a job.
const LostAfter = time.Minute

// StartFirstAttempts makes the events this process records have their first
// attempt made here, up to claimsPerWorker per webhook worker (workers)
// at once, and at least claimsFloor times an endpoint's bound, each
// endpoint within its bound; for the process that works the webhook queue.
// Stop it with StopFirstAttempts.
func (s *Service) StartFirstAttempts(workers int, logger *slog.Logger) {
	s.startFirstAttempts(max(workers*claimsPerWorker, claimsFloor*endpointBound(s.MaxPerEndpoint)), maxFirstWait, logger)
}

// startFirstAttempts makes up to claims attempts at once, each waiting up
// to wait for its endpoint.
func (s *Service) startFirstAttempts(claims int, wait time.Duration, logger *slog.Logger) {
	ctx, cancel := context.WithCancel(context.Background())
	f := &firstAttempts{s: s, logger: logger, queue: make(chan firstAttempt, claims),
		slots: make(chan struct{}, claims), wait: wait, maxWaiting: max(1, claims/claimsFloor),
		stop: make(chan struct{}), runDone: make(chan struct{}), ctx: ctx, cancel: cancel,
		handoff: make(chan sending, claims), idle: senderIdle}
	go f.run()
	s.first.Store(f)
}

// StopFirstAttempts stops taking events, gives the queued ones back as
// jobs, and waits for the attempts in flight until ctx ends; those still in
// flight then (and a read of deliveries still running) are cancelled and
// given back, and it waits for that too (each give-back within
// recordTimeout). An event whose transaction commits
// after this began is given back by its committer. A second call while one
// runs returns at once.
func (s *Service) StopFirstAttempts(ctx context.Context) {
	f := s.first.Load()
	if f == nil {
		return
	}
	f.mu.Lock()
	if f.stopped {
		f.mu.Unlock()
		return // stopping already
	}
	f.stopped = true
	close(f.stop)
	f.mu.Unlock()
	select {
	case <-f.runDone: // it takes nothing more from the queue
	case <-ctx.Done():
		f.cancel() // its read, and the attempts it started, end
		<-f.runDone
	}
	var queued []firstAttempt
	for len(f.queue) > 0 {
		queued = append(queued, <-f.queue)
	}
	f.giveBack(queued...)
	db.WaitThenCancel(ctx, &f.wg, f.cancel)
	f.cancel()
	s.first.CompareAndSwap(f, nil)
}

// FirstAttemptsInFlight is how many first attempts this process has taken
// and not yet recorded (or given back): events committed without a job,
// whose work is not done.
func (s *Service) FirstAttemptsInFlight() int64 {
	if f := s.first.Load(); f != nil {
		return f.making.Load()
	}
	return 0
}

// reserve holds the queue's room for the events whose logs may be
// candidates, in tx, and reports whether it did: their logs are then
// inserted without jobs, and taken once tx commits (take names those
// inserted, and since when their transaction ran). The room is freed
// should tx not commit; should its outcome be unknown, every candidate is
// given back (a job for a log that was not inserted does nothing). It does
// not while stopping, when the queue is short of room, or when tx's end
// would go unseen.
func (f *firstAttempts) reserve(tx pgx.Tx, candidates []logKey) (take func(logs []logKey, since time.Time), ok bool) {
	if f == nil || !db.Tracked(tx) {
		return nil, false
	}
	n := len(candidates)
	f.mu.Lock()
	ok = !f.stopped && len(f.queue)+f.reserved+n <= cap(f.queue)
	if ok {
		f.reserved += n
	}
	f.mu.Unlock()
	if !ok {
		return nil, false
	}
	var logs []logKey
	var since time.Time
	scanned := false
	db.AfterEnd(tx, func(o db.Outcome) {
		if o != db.RolledBack && !scanned {
			// Which logs were inserted is not known: every candidate
			// goes back.
			logs, since, o = candidates, time.Now(), db.Unknown
		}
		f.taken(n, logs, since, o)
	})
	return func(l []logKey, t time.Time) { logs, since, scanned = l, t, true }, true
}

// taken frees the room reserved for n events and, once their transaction
// committed, queues their logs; should the process have begun stopping
// meanwhile, or the outcome be unknown, it gives them back instead.
func (f *firstAttempts) taken(n int, logs []logKey, since time.Time, o db.Outcome) {
	f.mu.Lock()
	f.reserved -= n
	queue := o == db.Committed && !f.stopped
	if queue {
		f.making.Add(int64(len(logs)))
		for _, k := range logs {
			f.queue <- firstAttempt{key: k, at: since} // room reserved: never blocks
		}
	}
	f.mu.Unlock()
	if !queue && o != db.RolledBack && len(logs) > 0 {
		given := make([]firstAttempt, len(logs))
		for i, k := range logs {
			given[i] = firstAttempt{key: k, at: since}
		}
		f.making.Add(int64(len(logs)))
		f.giveBack(given...)
	}
}

// run takes queued events in batches, as slots free up, and starts their
// attempts. It returns once Stop begins, leaving the queue to it.
func (f *firstAttempts) run() {
	defer close(f.runDone)
	for {
		select {
		case f.slots <- struct{}{}:
		case <-f.stop:
			return
		}
		var batch []firstAttempt
		select {
		case j := <-f.queue:
			batch = append(batch, j)
		case <-f.stop:
			<-f.slots
			return
		}
	more:
		for len(batch) < maxBatch {
			select {
			case f.slots <- struct{}{}:
			default:
				break more // the others wait for a slot
			}
			select {
			case j := <-f.queue:
				batch = append(batch, j)
			default:
				<-f.slots
				break more
			}
		}
		f.start(batch)
	}
}

// start reads the batch's deliveries in one statement, and starts the
// attempt of each still to be made. Each event holds a slot, freed here or
// when its attempt ends. A read cut short by Stop gives the batch back.
func (f *firstAttempts) start(batch []firstAttempt) {
	now := time.Now()
	fresh := batch[:0:0]
	var late []firstAttempt
	for _, j := range batch {
		if now.Sub(j.at) > maxClaimAge {
			late = append(late, j) // queued too long: within LostAfter, River's
		} else {
			fresh = append(fresh, j)
		}
	}
	f.giveBack(late...)
	f.free(len(late))
	if len(fresh) == 0 {
		return
	}
	keys := make([]logKey, len(fresh))
	for i, j := range fresh {
		keys[i] = j.key
	}
	ctx, cancel := context.WithTimeout(f.ctx, batchTimeout)
	found, err := deliveriesOf(ctx, f.s.batchPool(), keys)
	cancel()
	if err != nil {
		f.logger.Warn("webhooks: reading first attempts failed; they are given back", "logs", len(fresh), "error", err)
		f.giveBack(fresh...)
		f.free(len(fresh))
		return
	}
	for i, j := range fresh {
		d := found[i]
		if !d.ok || d.status != StatusPending || d.run != 0 || d.attempts != 0 {
			f.making.Add(-1) // gone, or delivered otherwise: nothing to do
			f.free(1)
			continue
		}
		started := time.Now()
		metrics.JobStarted(Queue, j.at, &started)
		f.dispatch(sending{j, d.delivery})
	}
}

// dispatch hands an attempt to a sender waiting for one, or starts a
// sender. A sender makes attempts until none comes for senderIdle, or Stop
// begins: its stack, which net/http's client grows to several times a new
// goroutine's, is then grown once for many attempts. With a goroutine of
// its own each, the copies of the growing stacks took about 6 % of
// paygate's CPU at 64 clients (docs/benchmarks-history.md, session 23).
//
// A waiting sender is reserved before the attempt is handed over (waiting
// taken down by one), and one that stops waiting takes itself off the
// count, or, when every waiting sender is reserved already, takes the
// attempt it was reserved for: no attempt is left in handoff without a
// sender to make it, and handoff (as large as the slots) never blocks.
func (f *firstAttempts) dispatch(a sending) {
	for {
		n := f.waiting.Load()
		if n == 0 {
			f.wg.Add(1)
			f.senders.Add(1)
			go f.sender(a)
			return
		}
		if f.waiting.CompareAndSwap(n, n-1) {
			f.handoff <- a
			return
		}
	}
}

// sender makes a, then the attempts dispatch hands it. It counts itself
// waiting before it frees a's slot, so that the attempt the slot lets in
// finds it.
func (f *firstAttempts) sender(a sending) {
	defer f.wg.Done()
	idle := time.NewTimer(f.idle)
	defer idle.Stop()
	for {
		f.attempt(a.j, a.d)
		a = sending{} // not kept while waiting: its payload
		idle.Reset(f.idle)
		f.waiting.Add(1)
		f.free(1)
		select {
		case a = <-f.handoff:
			continue
		case <-idle.C:
		case <-f.stop: // Stop waits for the senders
		}
		if !f.unwait() {
			a = <-f.handoff // reserved meanwhile: its attempt is on its way
			continue
		}
		return
	}
}

// unwait takes a waiting sender off the count, unless every waiting one is
// reserved already.
func (f *firstAttempts) unwait() bool {
	for {
		n := f.waiting.Load()
		if n == 0 {
			return false
		}
		if f.waiting.CompareAndSwap(n, n-1) {
			return true
		}
	}
}

// free frees n slots.
func (f *firstAttempts) free(n int) {
	for range n {
		<-f.slots
	}
}

// attempt makes a log's first attempt and records it.
// Its slot is freed by its sender.
func (f *firstAttempts) attempt(j firstAttempt, d delivery) {
	s, a := f.s, DeliverArgs{LogID: j.key.id, MerchantID: j.key.merchantID, Run: d.run}
	release, ok := s.limiter.acquireWithin(f.ctx, d.URL, s.MaxPerEndpoint, f.wait, slowEndpoint, f.maxWaiting)
	if !ok {
		f.giveBack(j) // River's worker snoozes it while the endpoint is busy
		return
	}
	o := s.send(f.ctx, a.LogID, d)
	release()
	if f.ctx.Err() != nil && !o.delivered() {
		f.giveBack(j) // stopping mid-request: the attempt is made again
		return
	}
	// Recorded even should Stop cancel the attempts meanwhile: it was made.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(f.ctx), recordTimeout)
	defer cancel()
	if err := s.finishAttemptTx(ctx, a, nil, d.attempts+1, o); err != nil {
		f.logger.Warn("webhooks: recording a first attempt failed; it is made again", "log_id", a.LogID, "error", err)
		f.giveBack(j)
		return
	}
	f.making.Add(-1)
}

// giveBack leaves taken events' attempts to River: each log's first-run
// job (firstDelivery), due now, all in one statement. It runs even while
// stopping, within recordTimeout; each event is then no longer this
// process's.
func (f *firstAttempts) giveBack(given ...firstAttempt) {
	if len(given) == 0 {
		return
	}
	defer f.making.Add(-int64(len(given)))
	jobs := make([]river.InsertManyParams, len(given))
	for i, j := range given {
		jobs[i] = firstDelivery(j.key.id, j.key.merchantID)
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(f.ctx), recordTimeout)
	defer cancel()
	err := db.WithTx(ctx, f.s.pool, func(tx pgx.Tx) error { return db.InsertJobsAtCommit(ctx, tx, jobs...) })
	if err != nil {
		f.logger.Error("webhooks: first attempts could not be given back; the reconciler will resume them",
			"logs", len(given), "error", err)
	}
}
