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
// the job for River to fetch (an update of the job's row, with its index
// entries), read, and complete (another): a delete replaces both, and the
// claim reads the deliveries, one statement for a batch. River's job rows
// were the largest part of what a delivery cost the database
// (BENCHMARKS.md).
//
// Invariants:
//   - One claimant per job. River's fetch locks an available job and marks
//     it running; the claim deletes it only while still available: a job
//     River fetched is left to River (the claim waits for River's commit and
//     then finds it running), and a job claimed here is gone before River
//     sees it. A manual retry meanwhile adds no job (RetryTx).
//   - A claimed log's attempt is made and recorded (or given back) within
//     LostAfter of its event's commit: a job is claimed only within
//     maxClaimAge of its creation (the event's transaction, whose time the
//     log's updated_at holds), the claim statement runs within
//     batchTimeout, the attempt waits for its endpoint's bound at most
//     maxFirstWait, its request is bounded by deliveryTimeout, and its
//     record and a give-back by recordTimeout each. So the reconciler never
//     takes a log in flight here for one that lost its job, and resumes one
//     whose claimant died within LostAfter and its period.
//   - Nothing is lost. An event this process cannot take (its queue is
//     full, it is stopping, the claim fails or comes too late) keeps its
//     job, which River delivers. An attempt made here is recorded as a
//     job's is (finishAttemptTx): final, or the next attempt's job inserted
//     with the record. An attempt that cannot be made or recorded here (its
//     endpoint slow or still at its bound after maxFirstWait, the process
//     stopping mid-request, the record failing) is given back as a job of
//     the log's run; should even that fail (the database gone, or a crash
//     after the claim), the log is pending without a job, and the
//     reconciler gives it one.
//   - Deliveries are at least once, as ever: a crash between the request
//     and its record makes the attempt again, under the same webhook-id.
type firstAttempts struct {
	s      *Service
	logger *slog.Logger
	queue  chan firstAttempt
	slots  chan struct{} // one per attempt taken from the queue and not yet done
	// wait replaces maxFirstWait when set (tests).
	wait time.Duration
	// maxWaiting bounds the attempts that wait for the bound of an endpoint
	// none of whose attempts has finished yet: with those its bound has in
	// flight, such an endpoint holds at most a quarter of the claims
	// (claimsFloor).
	maxWaiting int
	// stop is closed when Stop begins: no event is taken after it.
	stop     chan struct{}
	stopOnce sync.Once
	ctx      context.Context // cancelled when Stop gives up waiting
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	// making counts the attempts whose jobs are being claimed or were
	// claimed, until recorded or given back.
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
	// once, per webhook worker: those beyond an endpoint's bound wait for
	// it in memory (a log's payload), where a job left to River would be
	// fetched, snoozed and fetched again. The queue of events waiting for a
	// claim is as long; their jobs stay available meanwhile, so River may
	// deliver some first, and a full queue leaves the rest to River.
	claimsPerWorker = 4
	// claimsFloor: the claims are at least this many times an endpoint's
	// bound, and the attempts waiting for an endpoint none of whose
	// attempts has finished yet at most that fraction of them, so that one
	// that hangs from its first request on holds at most its bound in
	// flight and as many waiting: a quarter of the claims. One that answered
	// fast before and hangs now holds what waits for it until its first
	// requests time out (deliveryTimeout) and show it slow.
	claimsFloor = 8
	// maxFirstWait bounds a claimed attempt's wait for its endpoint's bound,
	// after which it is given back as a job. Only an endpoint whose recent
	// attempts took less than slowEndpoint is waited for (by at most
	// maxWaiting attempts while none has finished): a slow or hanging
	// endpoint's are given back at once (River's workers snooze them), so
	// it cannot hold the claims every other merchant's first attempts need.
	maxFirstWait = 5 * time.Second
	slowEndpoint = time.Second
	// maxClaimAge is how old a job may be when claimed (how long its event
	// waited in the queue); an older one is left to River.
	maxClaimAge = 5 * time.Second
	// firstGrace is how long after its event commits the job of a first
	// attempt this process means to make is left to it: River fetches it
	// only once due (EmitTx), when this process has not claimed it, so
	// that River does not take what this process is about to take. An
	// event this process then leaves (its queue was full, or it stopped)
	// waits that much longer for River.
	firstGrace = time.Second
	// recordTimeout bounds recording a claimed attempt, and giving one back.
	recordTimeout = 5 * time.Second
)

// LostAfter is how long a log stays pending and unchanged without a live
// job of its run before the reconciler takes it for one that lost its job
// (Reconcile), and before a manual retry puts one back (RetryTx): longer
// than a first attempt claimed by its recording process can take, the one
// time a log is pending without a job.
const LostAfter = time.Minute

// StartFirstAttempts makes the events this process records have their first
// attempt made here, up to claimsPerWorker per webhook worker (workers)
// claimed at once, and at least claimsFloor times an endpoint's bound, each
// endpoint within its bound; for the process that works the webhook queue.
// Stop it with StopFirstAttempts.
func (s *Service) StartFirstAttempts(workers int, logger *slog.Logger) {
	s.startFirstAttempts(max(workers*claimsPerWorker, claimsFloor*endpointBound(s.MaxPerEndpoint)), maxFirstWait, logger)
}

// startFirstAttempts claims up to claims attempts at once, each waiting up
// to wait for its endpoint.
func (s *Service) startFirstAttempts(claims int, wait time.Duration, logger *slog.Logger) {
	ctx, cancel := context.WithCancel(context.Background())
	f := &firstAttempts{s: s, logger: logger, queue: make(chan firstAttempt, claims),
		slots: make(chan struct{}, claims), wait: wait, maxWaiting: max(1, claims/claimsFloor),
		stop: make(chan struct{}), ctx: ctx, cancel: cancel}
	f.wg.Add(1)
	go f.run()
	s.first.Store(f)
}

// StopFirstAttempts stops taking events (their jobs, and those still
// queued, stay for River) and waits for the attempts in flight until ctx
// ends; those still in flight then are cancelled and given back as jobs,
// and it waits for that too (a claim running then, within batchTimeout,
// and each give-back within recordTimeout). A second call while one runs
// returns at once.
func (s *Service) StopFirstAttempts(ctx context.Context) {
	f := s.first.Load()
	if f == nil {
		return
	}
	first := false
	f.stopOnce.Do(func() { close(f.stop); first = true })
	if !first {
		return // stopping already
	}
	done := make(chan struct{})
	go func() { f.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		f.cancel()
		<-done
	}
	f.cancel()
	s.first.CompareAndSwap(f, nil)
}

func (f *firstAttempts) stopping() bool {
	select {
	case <-f.stop:
		return true
	default:
		return false
	}
}

// FirstAttemptsInFlight is how many first attempts this process is claiming
// or has claimed and not yet recorded (or given back): jobs no longer in
// the queue, or about to leave it, whose work is not done.
func (s *Service) FirstAttemptsInFlight() int64 {
	if f := s.first.Load(); f != nil {
		return f.making.Load()
	}
	return 0
}

// room reports whether n more events would be taken now.
func (f *firstAttempts) room(n int) bool {
	return f != nil && !f.stopping() && cap(f.queue)-len(f.queue) >= n
}

// offer takes the committed events' first attempts, as many as the queue
// has room for; the others are left to River. An event queued as Stop
// begins stays queued, its job River's.
func (f *firstAttempts) offer(jobs []firstAttempt) {
	if f.stopping() {
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

// run claims the queued jobs in batches, as claims free up, and starts
// their attempts.
func (f *firstAttempts) run() {
	defer f.wg.Done()
	for {
		var j firstAttempt
		select {
		case j = <-f.queue:
		case <-f.stop:
			return
		}
		select {
		case f.slots <- struct{}{}:
		case <-f.stop:
		}
		if f.stopping() {
			return // what is left in the queue keeps its jobs
		}
		batch := []firstAttempt{j}
	more:
		for len(batch) < maxBatch {
			select {
			case j := <-f.queue:
				select {
				case f.slots <- struct{}{}:
					batch = append(batch, j)
				default:
					// No claim free for it: its job stays for River, which
					// has workers of its own.
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
// back here or when its attempt ends. The claim runs to its end even while
// stopping, so that jobs it deleted are not taken for left to River.
func (f *firstAttempts) claim(batch []firstAttempt) {
	// Counted from before the claim: a claimed job is gone from the queue.
	f.making.Add(int64(len(batch)))
	ctx, cancel := context.WithTimeout(context.WithoutCancel(f.ctx), batchTimeout)
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
	s, a := f.s, DeliverArgs{LogID: j.key.id, MerchantID: j.key.merchantID, Run: d.run}
	release, ok := s.limiter.acquireWithin(f.ctx, d.URL, s.MaxPerEndpoint, f.wait, slowEndpoint, f.maxWaiting)
	if !ok {
		f.giveBack(a) // River's worker snoozes it while the endpoint is busy
		return
	}
	o := s.send(f.ctx, a.LogID, d)
	release()
	if f.ctx.Err() != nil && !o.delivered() {
		f.giveBack(a) // stopping mid-request: the attempt is made again
		return
	}
	// Recorded even should Stop cancel the attempts meanwhile: it was made.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(f.ctx), recordTimeout)
	defer cancel()
	if err := s.finishAttemptTx(ctx, a, nil, d.attempts+1, o); err != nil {
		f.logger.Warn("webhooks: recording a first attempt failed; it is made again", "log_id", a.LogID, "error", err)
		f.giveBack(a)
	}
}

// giveBack leaves a claimed log's attempt to River: a job of its run, due
// now. It runs even while stopping, within recordTimeout.
func (f *firstAttempts) giveBack(a DeliverArgs) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(f.ctx), recordTimeout)
	defer cancel()
	err := db.WithTx(ctx, f.s.pool, func(tx pgx.Tx) error { return f.s.insertDeliveryTx(ctx, tx, a) })
	if err != nil {
		f.logger.Error("webhooks: a first attempt could not be given back; the reconciler will resume it",
			"log_id", a.LogID, "error", err)
	}
}

// claimDeliveries deletes those of the jobs that are still available and
// at most maxClaimAge old, and returns, at each job's index, the delivery
// of its log when it claimed the job (ok false otherwise: River has it, it
// is too old, or the log is gone).
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
			  AND j.created_at > now() - $4::interval
			RETURNING k.*
		)
		SELECT c.i, `+deliveryColumns+`
		FROM claimed c
		JOIN webhook_logs l ON l.id = c.id AND l.merchant_id = c.merchant_id
		JOIN merchants m ON m.id = l.merchant_id`, db.PlannedEachTime, jobs, ids, merchants, maxClaimAge)
	if err != nil {
		return nil, err
	}
	return scanDeliveries(rows, len(batch))
}
