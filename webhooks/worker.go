package webhooks

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"paygate/db"
	"paygate/metrics"
)

// Queue is the River queue of the delivery jobs.
const Queue = "webhooks"

const (
	// maxResponseBody is how much of a response is kept for the merchant.
	maxResponseBody = 1 << 10
	// A Retry-After on a 429 or 503 delays the next attempt to the time it
	// asks for when that is later than the schedule's, by at most
	// maxRetryAfter after the start of the attempt. It never brings an
	// attempt earlier and never adds one.
	maxRetryAfter = time.Hour
	// jobRetries is how often River runs one attempt's job again when the
	// job itself fails (the database went away mid-job), before giving up
	// on it; the reconciler then resumes the log.
	jobRetries = 10
)

// DeliverArgs is the job that makes the next attempt of one log's run, not
// before At. Each attempt is its own job, so a log is pending exactly while
// a job of its current run is alive (or its first attempt is being made by
// its recording process: first.go): an attempt to be retried commits its
// record, the job's completion and the next attempt's job together; a final
// one (delivered, or the last failed) commits its record alone, the log
// leaves pending, and River completes the job just after (finishAttemptTx).
// Run is the log's run: a manual retry starts a new one, and jobs of older
// runs do nothing. A first attempt may instead be made, without a job, by
// the process that recorded the event (first.go).
type DeliverArgs struct {
	LogID      uuid.UUID `json:"log_id" river:"unique"`
	MerchantID uuid.UUID `json:"merchant_id" river:"unique"`
	Run        int       `json:"run" river:"unique"`
	At         time.Time `json:"at,omitzero"`
}

func (DeliverArgs) Kind() string { return "deliver_webhook" }

func (DeliverArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{
		Queue:       Queue,
		MaxAttempts: jobRetries,
		// One live job per (log, run): a retry request that finds one
		// already scheduled or running adds nothing.
		UniqueOpts: river.UniqueOpts{ByArgs: true, ByState: []rivertype.JobState{
			rivertype.JobStateAvailable, rivertype.JobStatePending, rivertype.JobStateRunning,
			rivertype.JobStateRetryable, rivertype.JobStateScheduled,
		}},
	}
}

// firstDeliveryArgs is the job of a new log's first attempt (when the
// recording process does not make it, first.go): DeliverArgs
// in kind and JSON, so DeliverArgs' worker runs it, but without a unique
// key. A log just inserted has no other job to be unique against, so
// River's unique path (a key computed, an index entry, a conflict check)
// would be work for nothing on every event. RetryTx, the one writer that
// may meet this job alive, looks for a live job of the run itself
// (runHasLiveJob); the jobs it and the worker insert stay unique.
type firstDeliveryArgs DeliverArgs

func (firstDeliveryArgs) Kind() string { return DeliverArgs{}.Kind() }

func (firstDeliveryArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{Queue: Queue, MaxAttempts: jobRetries}
}

// insertDeliveryTx schedules the job of a log's attempt at at (zero: now).
// River's scheduler makes a scheduled job available up to 5 s late, so a
// later job is scheduled 5 s early and snoozes the rest (db.SnoozeUntil):
// the attempt is made when next_retry_at says.
func (s *Service) insertDeliveryTx(ctx context.Context, tx pgx.Tx, a DeliverArgs) error {
	var opts *river.InsertOpts
	if early := a.At.Add(-5 * time.Second); time.Until(early) > 0 {
		opts = &river.InsertOpts{ScheduledAt: early}
	}
	_, err := s.River.InsertTx(ctx, tx, a, opts)
	return err
}

// Worker makes one delivery attempt per job.
type Worker struct {
	river.WorkerDefaults[DeliverArgs]
	Service *Service
}

// NextRetry is when River runs a job again after the job itself failed (the
// database was away, not the endpoint): soon, so that the attempt is made
// close to its time once the database is back.
func (w *Worker) NextRetry(job *river.Job[DeliverArgs]) time.Time {
	return time.Now().Add(time.Duration(min(job.Attempt*job.Attempt, 60)) * time.Second)
}

// wait is the pause after the given (1-based) failed attempt, counted from
// that attempt's start.
func (s *Service) wait(attempt int) time.Duration {
	return s.Schedule[max(0, min(attempt-1, len(s.Schedule)-1))]
}

func (w *Worker) Work(ctx context.Context, job *river.Job[DeliverArgs]) error {
	s, a := w.Service, job.Args
	if err := db.SnoozeUntil(ctx, a.At); err != nil {
		return err
	}
	f, err := s.batches.reads.Do(ctx, logKey{a.MerchantID, a.LogID})
	if err != nil {
		return err
	}
	if !f.ok {
		return nil // the log is gone: nothing to deliver
	}
	d := f.delivery
	if d.status != StatusPending || d.run != a.Run {
		return nil // delivered, failed, or superseded by a manual retry
	}
	if job.UniqueKey == nil && d.attempts > 0 {
		// A first run's job (firstDeliveryArgs, the one job without a
		// unique key) that finds the first attempt recorded: given back
		// after its record's COMMIT went unanswered (first.go), it did
		// commit, and with it the next attempt's job, which makes that
		// attempt at its time. Made here, it would come early, or twice.
		return nil
	}
	release, wait, ok := s.limiter.acquire(ctx, d.URL, s.MaxPerEndpoint)
	if !ok {
		// The endpoint has its share of the workers, and is slow or no slot
		// came soon: wait without spending an attempt, so other endpoints'
		// deliveries go first.
		return river.JobSnooze(wait)
	}
	o := s.send(ctx, a.LogID, d)
	release()
	if ctx.Err() != nil {
		// Stopping or timed out mid-request: River gives the job back and
		// the attempt is made again, and recorded, then.
		return ctx.Err()
	}
	return s.finishAttemptTx(ctx, a, job, d.attempts+1, o)
}

// finishAttemptTx records attempt n of the job's run and moves the log on:
// delivered, failed after the last attempt, or pending with the next
// attempt's job scheduled from this attempt's start. A log that moved on
// meanwhile (a manual retry started a new run, or another run of this job
// recorded first) keeps its state; this job just ends.
//
// A final outcome is committed without the job: the log leaves pending, so
// no job of its run need be alive any longer, and River's completer
// completes this job moments later, batched with others. It is recorded in
// a batch with the other workers' final outcomes: one statement for all. Should
// that completion be lost (a crash), the job runs again, finds the log no
// longer pending, and does nothing. Only a retry needs a transaction: the
// log stays pending, so its next job must commit with the record, and this
// job is completed in it first, since the next one is its duplicate by
// args. A first attempt made by the recording process (first.go) has no
// job (nil).
func (s *Service) finishAttemptTx(ctx context.Context, a DeliverArgs, job *river.Job[DeliverArgs], n int, o outcome) error {
	status, next := StatusPending, o.at.Add(max(s.wait(n), o.retryAfter))
	switch {
	case o.delivered():
		status = StatusSuccess
	case n >= maxAttempts:
		status = StatusFailed
	}
	if status != StatusPending {
		updated, err := s.batches.records.Do(ctx, attempt{args: a, status: status, n: n, o: o})
		if updated {
			metrics.WebhookDelivery(status)
		}
		return err
	}
	return db.WithTx(ctx, s.pool, func(tx pgx.Tx) error {
		// The log row first, then the job row: RetryTx locks the log row and
		// then inserts a job unique by the run, which waits on this job's
		// row once this transaction has updated it. Completing the job first
		// would wait on the log row in turn, a deadlock.
		recorded, err := recordAttempts(ctx, tx, []attempt{{args: a, status: status, n: n, next: &next, o: o}})
		if err != nil {
			return err
		}
		updated := recorded[0]
		// Completed before the next job of the run is inserted, which would
		// otherwise be its duplicate. When the job is no longer ours (rescued
		// and run elsewhere) this fails and the attempt is rolled back: the
		// other run of it records. A log that moved on (nothing updated)
		// still has its job completed.
		if job != nil {
			if err := db.CompleteJobTx(ctx, tx, job); err != nil {
				return err
			}
		}
		if !updated {
			return nil
		}
		db.AfterCommit(tx, func() { metrics.WebhookDelivery(status) })
		return s.insertDeliveryTx(ctx, tx, DeliverArgs{LogID: a.LogID, MerchantID: a.MerchantID, Run: a.Run, At: next})
	})
}

// outcome is one request to the merchant's endpoint.
type outcome struct {
	at         time.Time
	duration   time.Duration
	code       *int    // nil when no response came back
	body       string  // at most maxResponseBody bytes of valid UTF-8
	err        *string // nil when delivered
	retryAfter time.Duration
}

func (o outcome) delivered() bool { return o.err == nil }

// send makes one signed POST of the stored bytes. A missing or disabled
// endpoint is a failed attempt that sends nothing: the merchant may fix the
// configuration before the schedule runs out.
func (s *Service) send(ctx context.Context, id uuid.UUID, d delivery) outcome {
	o := outcome{at: time.Now()}
	fail := func(msg string) outcome {
		o.err, o.duration = &msg, time.Since(o.at)
		return o
	}
	switch {
	case d.URL == "":
		return fail("no webhook URL is configured")
	case !d.Enabled:
		return fail("webhook delivery is disabled")
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.URL, bytes.NewReader(d.payload))
	if err != nil {
		return fail(err.Error())
	}
	SignHeaders(req.Header, d.secrets(o.at), id.String(), o.at, d.payload)
	req.Header.Set("User-Agent", "paygate-webhooks/1")
	resp, err := s.client.Do(req)
	if err != nil {
		return fail(err.Error())
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxResponseBody))
	o.duration = time.Since(o.at)
	o.code = &resp.StatusCode
	// A cut may split a character, and text columns refuse NUL and invalid
	// UTF-8: drop what does not fit rather than lose the whole body.
	o.body = strings.ReplaceAll(strings.ToValidUTF8(string(b), ""), "\x00", "")
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return o
	}
	if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable {
		o.retryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), o.at)
	}
	msg := "endpoint answered HTTP " + strconv.Itoa(resp.StatusCode)
	o.err = &msg
	return o
}

// parseRetryAfter reads delay-seconds or an HTTP date, and bounds it to
// [1 s, maxRetryAfter]; 0 means absent or unreadable.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	var d time.Duration
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n < 0 {
			return 0
		}
		d = time.Duration(min(n, int64(maxRetryAfter/time.Second))) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	} else {
		return 0
	}
	return min(max(d, time.Second), maxRetryAfter)
}
