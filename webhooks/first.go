package webhooks

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"paygate/db"
	"paygate/metrics"
)

// First attempts in the recording process. An event's first delivery job
// is inserted with its log, as always; but when the process that recorded
// the event also works the webhook queue, it makes that first attempt
// itself, right after the event's transaction committed, instead of leaving
// the job for River to fetch, mark running and complete: three writes of
// the job's row, with their index entries, the largest part of what a
// delivery cost the database (BENCHMARKS.md). The process claims the job
// by deleting it while it is still available, in the statement that reads
// the deliveries, one for a batch.
//
// Invariants:
//   - One claimant per job. River's fetch locks an available job and marks
//     it running; the claim deletes it only while still available: a job
//     River fetched is left to River (the claim waits for River's commit and
//     then finds it running), and a job claimed here is gone before River
//     sees it.
//   - A claimed log's attempt is made and recorded (or given back) well
//     within LostAfter: it waits for its endpoint's bound (MaxPerEndpoint,
//     shared with River's workers) at most maxFirstWait, its request is
//     bounded by deliveryTimeout, and its record and a give-back by
//     recordTimeout each. So the reconciler never takes a log in flight
//     here for one that lost its job, and resumes one whose claimant
//     died soon after LostAfter.
//   - Nothing is lost. An event this process cannot take (the queue is
//     full, the process is stopping, the claim fails) keeps its job, which
//     River delivers. An attempt made here is recorded as a job's is
//     (finishAttemptTx): final, or the next attempt's job inserted with the
//     record. An attempt that cannot be made or recorded here (its endpoint
//     still at its bound after maxFirstWait, the process stopping
//     mid-request, the record failing) is given back as a job of the log's
//     run; should even that fail (the database gone, or a crash after the
//     claim), the log is pending without a job, and the reconciler gives it
//     one within two minutes.
//   - Deliveries are at least once, as ever: a crash between the request
//     and its record makes the attempt again, under the same webhook-id.
type firstAttempts struct {
	s      *Service
	logger *slog.Logger
	queue  chan firstAttempt
	slots  chan struct{} // one per attempt claimed and not yet done
	// wait replaces maxFirstWait when set (tests).
	wait   time.Duration
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	// stopping refuses new events once Stop began; guarded by mu with
	// the queue's sends, so none is sent to a closed queue.
	mu       sync.RWMutex
	stopping bool
	// making counts the claimed attempts not yet recorded or given back.
	making atomic.Int64
}

// firstAttempt is the job of a log's first attempt, to claim.
type firstAttempt struct {
	jobID int64
	key   logKey
	at    time.Time // committed: the job was due from then
}

const (
	// claimsPerWorker is how many first attempts a process has claimed at
	// once, per webhook worker: most of them wait for their endpoint's
	// bound, in memory (a log's payload), where a job left to River would
	// be fetched, snoozed and fetched again. The queue of events waiting
	// for a claim is as long; their jobs stay available meanwhile, so River
	// may deliver some first, and a full queue leaves the rest to River.
	claimsPerWorker = 4
	// maxFirstWait bounds a claimed attempt's wait for its endpoint's bound
	// (a slow or hanging endpoint), after which it is given back as a job.
	maxFirstWait = 10 * time.Second
	// firstGrace is how long after its event commits the job of a first
	// attempt this process means to make is left to it: River fetches it
	// only once due (EmitTx), when this process has not claimed it, so
	// that River does not take what this process is about to take. An
	// event this process then leaves (its queue was full, or it stopped)
	// waits that much longer for River.
	firstGrace = time.Second
)

// StartFirstAttempts makes the events this process records have their first
// attempt made here, by as many at once as workers (the webhook workers'
// number) would make, within each endpoint's bound; for the process that
// works the webhook queue. Stop it with StopFirstAttempts.
func (s *Service) StartFirstAttempts(workers int, logger *slog.Logger) {
	s.startFirstAttempts(workers*claimsPerWorker, maxFirstWait, logger)
}

// startFirstAttempts claims up to claims attempts at once, each waiting up
// to wait for its endpoint.
func (s *Service) startFirstAttempts(claims int, wait time.Duration, logger *slog.Logger) {
	ctx, cancel := context.WithCancel(context.Background())
	f := &firstAttempts{s: s, logger: logger, queue: make(chan firstAttempt, claims),
		slots: make(chan struct{}, claims), wait: wait, ctx: ctx, cancel: cancel}
	f.wg.Add(1)
	go f.run()
	s.first.Store(f)
}

// StopFirstAttempts stops taking events (their jobs stay for River) and
// waits for the attempts in flight until ctx ends; those still in flight
// then are cancelled and given back as jobs.
func (s *Service) StopFirstAttempts(ctx context.Context) {
	f := s.first.Swap(nil)
	if f == nil {
		return
	}
	f.mu.Lock()
	f.stopping = true
	close(f.queue)
	f.mu.Unlock()
	done := make(chan struct{})
	go func() { f.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		f.cancel()
		<-done
	}
	f.cancel()
}

func (f *firstAttempts) isStopping() bool {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.stopping
}

// FirstAttemptsInFlight is how many first attempts this process has
// claimed and not yet recorded (or given back): jobs no longer in the
// queue whose work is not done.
func (s *Service) FirstAttemptsInFlight() int64 {
	if f := s.first.Load(); f != nil {
		return f.making.Load()
	}
	return 0
}

// room reports whether n more events would be taken now.
func (f *firstAttempts) room(n int) bool {
	return f != nil && cap(f.queue)-len(f.queue) >= n
}

// offer takes the committed events' first attempts, as many as the queue
// has room for; the others are left to River.
func (f *firstAttempts) offer(jobs []firstAttempt) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.stopping {
		return
	}
	now := time.Now()
	for _, j := range jobs {
		j.at = now
		select {
		case f.queue <- j:
		default:
			return
		}
	}
}

// run claims the queued jobs in batches, as send slots free up, and starts
// their attempts.
func (f *firstAttempts) run() {
	defer f.wg.Done()
	for {
		j, ok := <-f.queue
		if !ok || f.isStopping() {
			return // what is left in the queue keeps its jobs
		}
		select {
		case f.slots <- struct{}{}:
		case <-f.ctx.Done():
			return
		}
		batch := []firstAttempt{j}
	more:
		for len(batch) < maxBatch {
			select {
			case j, ok := <-f.queue:
				if !ok {
					break more
				}
				select {
				case f.slots <- struct{}{}:
					batch = append(batch, j)
				default:
					// No slot for it: its job stays for River, which has
					// workers of its own.
					break more
				}
			default:
				break more
			}
		}
		f.claim(batch)
	}
}

// claim claims batch's jobs and reads their deliveries in one statement,
// and starts the attempt of each it claimed. Each job holds a slot, given
// back here or when its attempt ends.
func (f *firstAttempts) claim(batch []firstAttempt) {
	// Counted from before the claim: a claimed job is gone from the queue.
	f.making.Add(int64(len(batch)))
	ctx, cancel := context.WithTimeout(f.ctx, batchTimeout)
	found, err := claimDeliveries(ctx, f.s.pool, batch)
	cancel()
	if err != nil {
		// The jobs are still available (or, should the claim have committed
		// unseen, their logs wait for the reconciler).
		f.logger.Warn("webhooks: first attempts left to the queue", "jobs", len(batch), "error", err)
	}
	for i, j := range batch {
		if err != nil || !found[i].ok || found[i].status != StatusPending || found[i].run != 0 {
			f.making.Add(-1)
			<-f.slots // taken by River, or nothing to deliver
			continue
		}
		started := time.Now()
		metrics.JobStarted(Queue, j.at, &started)
		f.wg.Add(1)
		go f.attempt(j, found[i].delivery)
	}
}

// attempt makes a claimed log's first attempt and records it.
func (f *firstAttempts) attempt(j firstAttempt, d delivery) {
	defer f.wg.Done()
	defer func() { f.making.Add(-1); <-f.slots }()
	s, a := f.s, DeliverArgs{LogID: j.key.id, MerchantID: j.key.merchantID}
	release, ok := s.limiter.acquireWithin(f.ctx, d.URL, s.MaxPerEndpoint, f.wait)
	if !ok {
		f.giveBack(a, time.Time{}) // River's worker snoozes it while the endpoint is busy
		return
	}
	o := s.send(f.ctx, a.LogID, d)
	release()
	if f.ctx.Err() != nil {
		f.giveBack(a, time.Time{}) // stopping mid-request: the attempt is made again
		return
	}
	// Recorded even should Stop cancel the attempts meanwhile: it was made.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(f.ctx), recordTimeout)
	defer cancel()
	if err := s.finishAttemptTx(ctx, a, nil, d.attempts+1, o); err != nil {
		f.logger.Warn("webhooks: recording a first attempt failed; it is made again", "log_id", a.LogID, "error", err)
		f.giveBack(a, time.Time{})
	}
}

// giveBack leaves a claimed log's attempt to River: a job of its run, due
// at at (zero: now). It runs even while stopping, within recordTimeout.
func (f *firstAttempts) giveBack(a DeliverArgs, at time.Time) {
	a.At = at
	ctx, cancel := context.WithTimeout(context.Background(), recordTimeout)
	defer cancel()
	err := db.WithTx(ctx, f.s.pool, func(tx pgx.Tx) error { return f.s.insertDeliveryTx(ctx, tx, a) })
	if err != nil {
		f.logger.Error("webhooks: a first attempt could not be given back; the reconciler will resume it",
			"log_id", a.LogID, "error", err)
	}
}

// recordTimeout bounds recording a claimed attempt, and giving one back.
const recordTimeout = 5 * time.Second

// LostAfter is how long a log stays pending and unchanged without a live
// job of its run before the reconciler takes it for one that lost its job
// (Reconcile): longer than a claimed first attempt can take, which is the
// one time a log is pending without a job (maxFirstWait, deliveryTimeout,
// and recordTimeout twice: 25 s).
const LostAfter = 45 * time.Second

// claimDeliveries deletes those of the jobs that are still available and
// returns, at each job's index, the delivery of its log when it claimed the
// job (ok false otherwise: River has it, or the log is gone).
func claimDeliveries(ctx context.Context, q db.Querier, batch []firstAttempt) ([]found, error) {
	jobs := make([]int64, len(batch))
	ids, merchants := make([]uuid.UUID, len(batch)), make([]uuid.UUID, len(batch))
	for i, j := range batch {
		jobs[i], ids[i], merchants[i] = j.jobID, j.key.id, j.key.merchantID
	}
	rows, err := q.Query(ctx, `
		WITH k AS (
			SELECT * FROM unnest($1::bigint[], $2::uuid[], $3::uuid[]) WITH ORDINALITY AS k(job_id, id, merchant_id, i)
		), claimed AS (
			DELETE FROM river_job j USING k
			WHERE j.id = k.job_id AND j.state = 'available' AND j.kind = 'deliver_webhook'
			  AND j.args->>'log_id' = k.id::text AND j.args->>'merchant_id' = k.merchant_id::text
			RETURNING k.*
		)
		SELECT c.i, l.status, l.run, l.attempts, l.payload, `+endpointColumns+`
		FROM claimed c
		JOIN webhook_logs l ON l.id = c.id AND l.merchant_id = c.merchant_id
		JOIN merchants m ON m.id = l.merchant_id`, db.PlannedEachTime, jobs, ids, merchants)
	if err != nil {
		return nil, err
	}
	return scanDeliveries(rows, len(batch))
}
