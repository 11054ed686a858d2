package webhooks

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"
)

const (
	// maxResponseBody is how much of a response is kept for the merchant.
	maxResponseBody = 1 << 10
	// A Retry-After is honoured (without spending an attempt) for at most
	// maxRetryAfter, and at most maxSnoozes times per run, so an endpoint
	// that always answers 429 still ends failed eventually.
	maxRetryAfter = time.Hour
	maxSnoozes    = 10
)

// DeliverArgs is the job that delivers one log. Run is the log's run it
// belongs to: a manual retry starts a new run, and jobs of older runs do
// nothing.
type DeliverArgs struct {
	LogID      uuid.UUID `json:"log_id"`
	MerchantID uuid.UUID `json:"merchant_id"`
	Run        int       `json:"run"`
}

func (DeliverArgs) Kind() string { return "deliver_webhook" }

func (DeliverArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{
		Queue:       "webhooks",
		MaxAttempts: maxAttempts,
		// One live job per (log, run): a retry request that finds one
		// already scheduled or running adds nothing.
		UniqueOpts: river.UniqueOpts{ByArgs: true, ByState: []rivertype.JobState{
			rivertype.JobStateAvailable, rivertype.JobStatePending, rivertype.JobStateRunning,
			rivertype.JobStateRetryable, rivertype.JobStateScheduled,
		}},
	}
}

// Worker makes one delivery attempt per job run. River counts the attempts
// and keeps the schedule (NextRetry), so it survives restarts.
type Worker struct {
	river.WorkerDefaults[DeliverArgs]
	Service *Service
}

// NextRetry is the schedule: job.Attempt is the attempt that just failed.
func (w *Worker) NextRetry(job *river.Job[DeliverArgs]) time.Time {
	return time.Now().Add(w.Service.wait(job.Attempt))
}

// wait is the pause after the given (1-based) failed attempt.
func (s *Service) wait(attempt int) time.Duration {
	return s.Schedule[max(0, min(attempt-1, len(s.Schedule)-1))]
}

func (w *Worker) Work(ctx context.Context, job *river.Job[DeliverArgs]) error {
	s, a := w.Service, job.Args
	d, err := deliveryOf(ctx, s.pool, a.MerchantID, a.LogID)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil // the log is gone: nothing to deliver
	}
	if err != nil {
		return err
	}
	if d.status != StatusPending || d.run != a.Run {
		return nil // delivered, failed, or superseded by a manual retry
	}
	o := s.send(ctx, a.LogID, d)
	if ctx.Err() != nil {
		// Stopping or timed out mid-request: River decides; the attempt is
		// made again and recorded then.
		return ctx.Err()
	}

	if o.delivered() {
		return s.recordSuccess(ctx, job, o)
	}
	if o.retryAfter > 0 && snoozes(job) < maxSnoozes {
		// Not an attempt: River gives the attempt back on a snooze, so the
		// log keeps the count it had before this request.
		next := o.at.Add(o.retryAfter)
		if err := s.record(ctx, a, StatusPending, job.Attempt-1, &next, o); err != nil {
			return err
		}
		return river.JobSnooze(o.retryAfter)
	}
	status, next := StatusPending, new(o.at.Add(s.wait(job.Attempt)))
	if job.Attempt >= job.MaxAttempts {
		status, next = StatusFailed, nil
	}
	if err := s.record(ctx, a, status, job.Attempt, next, o); err != nil {
		return err
	}
	// The error makes River retry per NextRetry, or discard after the last.
	return fmt.Errorf("webhook %s attempt %d: %s", a.LogID, job.Attempt, *o.err)
}

// recordSuccess records the delivered attempt. River completes the job
// after Work returns, batched with others (db/jobs.go); a run of the job
// after that commit finds the log delivered and sends nothing.
func (s *Service) recordSuccess(ctx context.Context, job *river.Job[DeliverArgs], o outcome) error {
	return s.record(ctx, job.Args, StatusSuccess, job.Attempt, nil, o)
}

func (s *Service) record(ctx context.Context, a DeliverArgs, status string, attempts int, next *time.Time, o outcome) error {
	_, err := recordAttempt(ctx, s.pool, a, status, attempts, next, o)
	return err
}

func snoozes(job *river.Job[DeliverArgs]) int {
	var m struct {
		Snoozes int `json:"snoozes"`
	}
	_ = json.Unmarshal(job.Metadata, &m) // absent or odd metadata: no snoozes yet
	return m.Snoozes
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
