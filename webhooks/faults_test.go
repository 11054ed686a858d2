package webhooks_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"paygate/app"
	"paygate/app/apptest"
	"paygate/db"
	"paygate/merchants"
	"paygate/webhooks"
)

// attemptRow is one attempt as stored, at full precision.
type attemptRow struct {
	Run          int
	Attempt      int
	AttemptedAt  time.Time
	DurationMS   int64
	ResponseCode *int
	Error        *string
	BodyLen      int
}

func history(t *testing.T, a *app.App, id uuid.UUID) []attemptRow {
	t.Helper()
	rows, err := a.Pool.Query(context.Background(), `
		SELECT run, attempt, attempted_at, duration_ms, response_code, error, octet_length(response_body) AS body_len
		FROM webhook_attempts WHERE log_id = $1 ORDER BY id`, id)
	require.NoError(t, err)
	h, err := pgx.CollectRows(rows, pgx.RowToStructByPos[attemptRow])
	require.NoError(t, err)
	return h
}

// liveJobs counts the jobs of a log's run that River will still run.
func liveJobs(t *testing.T, a *app.App, id uuid.UUID, run int) int {
	return count(t, a, `SELECT count(*) FROM river_job WHERE kind = 'deliver_webhook'
		AND args @> jsonb_build_object('log_id', $1::uuid, 'run', $2::int)
		AND state IN ('available', 'pending', 'running', 'retryable', 'scheduled')`, id, run)
}

// checkRun checks a finished run of a log: its attempts are the history, in
// order, each made no earlier than the schedule (counted from the start of
// the attempt before) or the Retry-After asked for; the log is not pending
// and no job of it is left alive, none discarded.
func checkRun(t *testing.T, a *app.App, id uuid.UUID, status string, attempts int, schedule []time.Duration, retryAfter time.Duration) []attemptRow {
	t.Helper()
	v := waitStatus(t, a, apptest.TestMerchant(), id, status)
	require.Equal(t, attempts, v.Attempts)
	require.Nil(t, v.NextRetryAt)
	h := history(t, a, id)
	require.Len(t, h, attempts, "every attempt made is in the history")
	require.Len(t, v.AttemptHistory, attempts)
	for i, at := range h {
		require.Equal(t, 0, at.Run)
		require.Equal(t, i+1, at.Attempt)
		if i > 0 {
			wait := max(schedule[i-1], retryAfter)
			require.GreaterOrEqual(t, at.AttemptedAt.Sub(h[i-1].AttemptedAt), wait, "attempt %d came before its time", i+1)
		}
	}
	// The final record commits on its own; River completes its job after
	// it. Nothing else of the run is left, and nothing was discarded.
	eventually(t, "the last job's completion", func() bool {
		return count(t, a, `SELECT count(*) FROM river_job WHERE kind = 'deliver_webhook'
			AND args @> jsonb_build_object('log_id', $1::uuid) AND state::text <> 'completed'`, id) == 0
	})
	require.Equal(t, attempts, count(t, a, `SELECT count(*) FROM river_job WHERE kind = 'deliver_webhook'
		AND args @> jsonb_build_object('log_id', $1::uuid)`, id), "one job per attempt")
	return h
}

// Faulty receivers: each follows the schedule and leaves an accurate
// history.
func TestFaultyReceivers(t *testing.T) {
	t.Parallel()

	t.Run("500s", func(t *testing.T) {
		t.Parallel()
		a, h, _ := setup(t, fast, failing)
		h2 := checkRun(t, a, sendTest(t, a, h), webhooks.StatusFailed, 5, fast, 0)
		for _, at := range h2 {
			require.Equal(t, 500, *at.ResponseCode)
			require.Equal(t, "endpoint answered HTTP 500", *at.Error)
		}
	})

	t.Run("410 Gone", func(t *testing.T) {
		t.Parallel()
		a, h, _ := setup(t, fast, func(_ int, w http.ResponseWriter) { w.WriteHeader(http.StatusGone) })
		for _, at := range checkRun(t, a, sendTest(t, a, h), webhooks.StatusFailed, 5, fast, 0) {
			require.Equal(t, 410, *at.ResponseCode)
		}
	})

	t.Run("connection refused", func(t *testing.T) {
		t.Parallel()
		a, h, _ := setup(t, fast, nil)
		l, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		url := "http://" + l.Addr().String() + "/hook"
		require.NoError(t, l.Close())
		configure(t, a, h, url)
		for _, at := range checkRun(t, a, sendTest(t, a, h), webhooks.StatusFailed, 5, fast, 0) {
			require.Nil(t, at.ResponseCode)
			require.Contains(t, *at.Error, "refused")
		}
	})

	t.Run("hang past the timeout", func(t *testing.T) {
		t.Parallel()
		a, h, r := setup(t, fast, nil)
		r.setRespond(func(n int, w http.ResponseWriter) {
			if n <= 2 {
				time.Sleep(7 * time.Second) // past the 5 s timeout
			}
			w.WriteHeader(http.StatusOK)
		})
		id := sendTest(t, a, h)
		hist := checkRun(t, a, id, webhooks.StatusSuccess, 3, fast, 0)
		// Each attempt's job was due at (args.at), in the order inserted.
		rows, err := a.Pool.Query(context.Background(), `SELECT coalesce((args->>'at')::timestamptz, 'epoch') FROM river_job
			WHERE kind = 'deliver_webhook' AND args @> jsonb_build_object('log_id', $1::uuid) ORDER BY id`, id)
		require.NoError(t, err)
		due, err := pgx.CollectRows(rows, pgx.RowTo[time.Time])
		require.NoError(t, err)
		require.Len(t, due, 3)
		for i, at := range hist[:2] {
			require.Nil(t, at.ResponseCode)
			require.NotNil(t, at.Error)
			require.GreaterOrEqual(t, at.DurationMS, int64(4900), "the timeout cut attempt %d", i+1)
			// The next attempt is counted from this one's start, not from
			// the end of the timeout (when River runs it depends on load).
			require.WithinDuration(t, at.AttemptedAt.Add(fast[i]), due[i+1], time.Millisecond,
				"attempt %d was scheduled from the start of attempt %d", i+2, i+1)
		}
		require.Equal(t, 200, *hist[2].ResponseCode)
	})

	t.Run("429 with Retry-After", func(t *testing.T) {
		t.Parallel()
		a, h, _ := setup(t, fast, func(_ int, w http.ResponseWriter) {
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusTooManyRequests)
		})
		// Retry-After is later than the schedule's waits: it sets the pace,
		// and each answer is a counted attempt.
		for _, at := range checkRun(t, a, sendTest(t, a, h), webhooks.StatusFailed, 5, fast, time.Second) {
			require.Equal(t, 429, *at.ResponseCode)
		}
	})

	t.Run("huge body", func(t *testing.T) {
		t.Parallel()
		huge := strings.Repeat("é", 8<<20) // 16 MiB, and a cut may split a character
		a, h, _ := setup(t, fast, func(n int, w http.ResponseWriter) {
			if n == 1 {
				w.WriteHeader(http.StatusInternalServerError)
			}
			_, _ = w.Write([]byte(huge))
		})
		hist := checkRun(t, a, sendTest(t, a, h), webhooks.StatusSuccess, 2, fast, 0)
		for _, at := range hist {
			require.LessOrEqual(t, at.BodyLen, 1024)
			require.Positive(t, at.BodyLen)
		}
		require.Equal(t, []int{500, 200}, []int{*hist[0].ResponseCode, *hist[1].ResponseCode})
	})
}

// next_retry_at is when the next attempt will be made: the job that makes it
// is due exactly then, counted from the start of the failed attempt.
func TestNextRetryAtIsTheNextJobsTime(t *testing.T) {
	t.Parallel()
	a, h, _ := setup(t, slow, failing)
	id := sendTest(t, a, h)
	eventually(t, "the first failed attempt", func() bool { return get(t, a, h, id).Attempts == 1 })

	var next, at, attempted time.Time
	require.NoError(t, a.Pool.QueryRow(context.Background(), `
		SELECT l.next_retry_at, (j.args->>'at')::timestamptz, a.attempted_at
		FROM webhook_logs l
		JOIN webhook_attempts a ON a.log_id = l.id
		JOIN river_job j ON j.kind = 'deliver_webhook' AND j.args @> jsonb_build_object('log_id', l.id)
		     AND j.state::text = 'scheduled'
		WHERE l.id = $1`, id).Scan(&next, &at, &attempted))
	require.WithinDuration(t, at, next, time.Microsecond, "next_retry_at is when the job is due") // µs rounding

	require.Equal(t, slow[0], next.Sub(attempted))
	require.Equal(t, 1, liveJobs(t, a, id, 0))
}

// Retrying a log that waits for its next attempt delivers now, in a new run;
// the old run's job, when its time comes, delivers nothing.
func TestRetryOfPendingLogDeliversNow(t *testing.T) {
	t.Parallel()
	a, h, r := setup(t, slow, failing)
	id := sendTest(t, a, h)
	eventually(t, "the first failed attempt", func() bool { return get(t, a, h, id).Attempts == 1 })
	require.Equal(t, webhooks.StatusPending, get(t, a, h, id).Status)

	r.setRespond(nil)
	retry(t, a, h, id)
	v := waitStatus(t, a, h, id, webhooks.StatusSuccess)
	require.Equal(t, 1, v.Attempts, "the retry started the schedule again")
	require.Len(t, r.requests(), 2)
	hist := history(t, a, id)
	require.Equal(t, []int{0, 1}, []int{hist[0].Run, hist[1].Run})

	// Bring the old run's job forward to now: it finds its run superseded.
	ctx := context.Background()
	_, err := a.Pool.Exec(ctx, `UPDATE river_job SET state = 'available', scheduled_at = now(),
		args = jsonb_set(args, '{at}', to_jsonb(now()))
		WHERE kind = 'deliver_webhook' AND args @> jsonb_build_object('log_id', $1::uuid, 'run', 0) AND state = 'scheduled'`, id)
	require.NoError(t, err)
	eventually(t, "the old run's job to finish", func() bool { return liveJobs(t, a, id, 0) == 0 })
	require.Len(t, r.requests(), 2, "the old run's job delivered too")
	require.Equal(t, webhooks.StatusSuccess, get(t, a, h, id).Status)
}

// A log whose job left River some other way (discarded, cancelled, deleted)
// is resumed by the reconciler with the attempts it has left.
func TestReconcilerResumesALogThatLostItsJob(t *testing.T) {
	t.Parallel()
	a, h, r := setup(t, slow, failing)
	ctx := context.Background()
	id := sendTest(t, a, h)
	eventually(t, "the first failed attempt", func() bool { return get(t, a, h, id).Attempts == 1 })

	n, err := a.Webhooks.Reconcile(ctx, 0)
	require.NoError(t, err)
	require.Zero(t, n, "a log with a live job is left alone")

	_, err = a.Pool.Exec(ctx, `DELETE FROM river_job WHERE kind = 'deliver_webhook' AND args @> jsonb_build_object('log_id', $1::uuid)`, id)
	require.NoError(t, err)
	n, err = a.Webhooks.Reconcile(ctx, time.Hour)
	require.NoError(t, err)
	require.Zero(t, n, "a log that moved recently is left alone")

	r.setRespond(nil)
	n, err = a.Webhooks.Reconcile(ctx, 0)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	v := waitStatus(t, a, h, id, webhooks.StatusSuccess)
	require.Equal(t, 2, v.Attempts)
	require.Len(t, history(t, a, id), 2)
}

// One merchant's hanging endpoint holds at most its bound of the webhook
// workers: another merchant's webhook is delivered while the first
// merchant's backlog is still hanging.
func TestHangingEndpointDoesNotDelayOthers(t *testing.T) {
	t.Parallel()
	const bound, backlog = 5, 300
	a := apptest.New(t, func(c *app.Config) { c.WebhookSchedule = slow; c.WebhookMaxPerEndpoint = bound })
	ctx := context.Background()

	var mu sync.Mutex
	var arrived, inFlight, maxInFlight int
	release := make(chan struct{})
	hanging := newReceiver(t, func(int, http.ResponseWriter) {
		mu.Lock()
		arrived++
		inFlight++
		maxInFlight = max(maxInFlight, inFlight)
		mu.Unlock()
		<-release
		mu.Lock()
		inFlight--
		mu.Unlock()
	})
	t.Cleanup(func() { close(release) }) // before the receiver closes
	configure(t, a, apptest.TestMerchant(), hanging.URL)

	type snapshot struct{ arrived, inFlight int }
	atB := make(chan snapshot, 1)
	other, hb := apptest.NewMerchant(t, a, "prompt@example.com")
	prompt := newReceiver(t, func(int, http.ResponseWriter) {
		mu.Lock()
		defer mu.Unlock()
		select {
		case atB <- snapshot{arrived, inFlight}:
		default:
		}
	})
	configure(t, a, hb, prompt.URL)

	require.NoError(t, db.WithTx(ctx, a.Pool, func(tx pgx.Tx) error {
		for i := range backlog {
			if err := emitTx(ctx, a, tx, merchants.TestMerchantID, webhooks.EventPaymentSuccess,
				map[string]any{"payment": map[string]any{"id": i}}); err != nil {
				return err
			}
		}
		return nil
	}))
	eventually(t, "the hanging endpoint to hold its bound", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return inFlight >= bound
	})
	emit(t, a, other.ID, webhooks.EventPaymentSuccess, map[string]any{"payment": map[string]any{"id": "other"}})

	var got snapshot
	eventually(t, "the other merchant's webhook", func() bool {
		select {
		case got = <-atB:
			return true
		default:
			return false
		}
	})
	require.Positive(t, got.inFlight, "the hanging endpoint was still hanging")
	require.Less(t, got.arrived, backlog/2, "the other webhook waited for the hanging backlog")
	mu.Lock()
	defer mu.Unlock()
	require.LessOrEqual(t, maxInFlight, bound)
}

// Retries of a log whose first attempt is finishing meet the worker's
// transaction on the log row and the job row: both take the log row first,
// so neither waits on the other in a cycle (a deadlock answered 503).
func TestRetriesDuringAnAttemptDoNotDeadlock(t *testing.T) {
	t.Parallel()
	a, h, r := setup(t, slow, nil)
	release := make(chan struct{})
	r.setRespond(func(_ int, w http.ResponseWriter) {
		<-release
		w.WriteHeader(http.StatusOK)
	})
	id := sendTest(t, a, h)
	eventually(t, "the first attempt to reach the endpoint", func() bool { return len(r.requests()) == 1 })

	// Every retry either finds the run's first attempt pending (and adds a
	// job that is its duplicate) or starts a new run, whose first attempt
	// finishes while the next retries arrive.
	path := "/api/v1/webhooks/" + id.String() + "/retry"
	var mu sync.Mutex
	var bad []string
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 40 {
				rec := apptest.Do(t, a.Echo, http.MethodPost, path, "", h)
				if rec.Code != http.StatusOK {
					mu.Lock()
					bad = append(bad, fmt.Sprintf("%d %s", rec.Code, rec.Body.String()))
					mu.Unlock()
				}
			}
		})
	}
	close(release)
	wg.Wait()
	require.Empty(t, bad)
	waitStatus(t, a, h, id, webhooks.StatusSuccess)
}

// A delivered log's job that runs again (its completion lost to a crash:
// the final record commits before River completes the job) delivers and
// records nothing.
func TestDeliveredLogsJobRunAgainChangesNothing(t *testing.T) {
	t.Parallel()
	a, h, r := setup(t, slow, nil)
	ctx := context.Background()
	id := sendTest(t, a, h)
	waitStatus(t, a, h, id, webhooks.StatusSuccess)
	eventually(t, "the job's completion", func() bool { return liveJobs(t, a, id, 0) == 0 })

	_, err := a.Pool.Exec(ctx, `UPDATE river_job SET state = 'available', finalized_at = NULL, scheduled_at = now()
		WHERE kind = 'deliver_webhook' AND args @> jsonb_build_object('log_id', $1::uuid)`, id)
	require.NoError(t, err)
	eventually(t, "the job run again", func() bool {
		return count(t, a, `SELECT count(*) FROM river_job WHERE kind = 'deliver_webhook'
			AND args @> jsonb_build_object('log_id', $1::uuid) AND state = 'completed' AND attempt = 2`, id) == 1
	})
	require.Len(t, r.requests(), 1)
	require.Len(t, history(t, a, id), 1)
	v := get(t, a, h, id)
	require.Equal(t, webhooks.StatusSuccess, v.Status)
	require.Equal(t, 1, v.Attempts)
}

// A manual retry right after a delivery, while the delivering job is still
// running (River completes it after the record has committed), starts
// exactly one new run, which delivers once; the old job adds nothing.
func TestRetryRightAfterADeliveryStartsOneRun(t *testing.T) {
	t.Parallel()
	a, h, r := setup(t, slow, nil)
	ctx := context.Background()
	id := sendTest(t, a, h)
	waitStatus(t, a, h, id, webhooks.StatusSuccess)
	eventually(t, "the job's completion", func() bool { return liveJobs(t, a, id, 0) == 0 })
	// Back to running, as between the record's commit and the completion.
	// No producer holds it, and the rescuer leaves it for an hour.
	_, err := a.Pool.Exec(ctx, `UPDATE river_job SET state = 'running', finalized_at = NULL
		WHERE kind = 'deliver_webhook' AND args @> jsonb_build_object('log_id', $1::uuid)`, id)
	require.NoError(t, err)

	retry(t, a, h, id)
	v := waitStatus(t, a, h, id, webhooks.StatusSuccess)
	require.Equal(t, 1, v.Attempts)
	eventually(t, "the new run's job to finish", func() bool { return liveJobs(t, a, id, 1) == 0 })
	require.Equal(t, 1, count(t, a, `SELECT count(*) FROM river_job WHERE kind = 'deliver_webhook'
		AND args @> jsonb_build_object('log_id', $1::uuid, 'run', 1)`, id), "one job for the new run")
	require.Len(t, r.requests(), 2)
	hist := history(t, a, id)
	require.Equal(t, []int{0, 1}, []int{hist[0].Run, hist[1].Run})
}

// A new log's first job is not unique by args (nothing can duplicate it),
// yet the delivery worker runs it; retries of that first attempt while it
// is being made add no job of its run, as River's unique insert would not
// notice it.
func TestFirstDeliveryIsNotUniqueAndRetriesDoNotDuplicateIt(t *testing.T) {
	t.Parallel()
	a, h, r := setup(t, slow, nil)
	release := make(chan struct{})
	var once sync.Once
	done := func() { once.Do(func() { close(release) }) }
	t.Cleanup(done) // before the receiver closes, should the test fail
	r.setRespond(func(_ int, w http.ResponseWriter) {
		<-release
		w.WriteHeader(http.StatusOK)
	})
	id := sendTest(t, a, h)
	require.Equal(t, 1, count(t, a, `SELECT count(*) FROM river_job WHERE kind = 'deliver_webhook'
		AND args @> jsonb_build_object('log_id', $1::uuid, 'run', 0) AND unique_key IS NULL`, id))
	eventually(t, "the first attempt to reach the endpoint", func() bool { return len(r.requests()) == 1 })

	retry(t, a, h, id)
	retry(t, a, h, id)
	require.Equal(t, 1, jobsFor(t, a, id), "the retries found the first attempt's job")
	done()
	v := waitStatus(t, a, h, id, webhooks.StatusSuccess)
	require.Equal(t, 1, v.Attempts)
	eventually(t, "the job's completion", func() bool { return liveJobs(t, a, id, 0) == 0 })
	require.Equal(t, 1, jobsFor(t, a, id))
	require.Len(t, r.requests(), 1)

	// A first job that was lost (deleted) is put back by a retry, once the
	// log has not moved for LostAfter (until then, it may be a first
	// attempt claimed by its recording process, whose job is gone). The
	// endpoint holds its answers meanwhile, so the log stays pending with
	// no attempt whether or not River had fetched the job.
	hold := make(chan struct{})
	var holdOnce sync.Once
	unhold := func() { holdOnce.Do(func() { close(hold) }) }
	t.Cleanup(unhold)
	r.setRespond(func(_ int, w http.ResponseWriter) {
		<-hold
		w.WriteHeader(http.StatusOK)
	})
	id = sendTest(t, a, h)
	_, err := a.Pool.Exec(context.Background(), `DELETE FROM river_job WHERE kind = 'deliver_webhook'
		AND args @> jsonb_build_object('log_id', $1::uuid)`, id)
	require.NoError(t, err)
	retry(t, a, h, id)
	require.Zero(t, jobsFor(t, a, id), "it may be in flight")
	_, err = a.Pool.Exec(context.Background(), `UPDATE webhook_logs SET updated_at = now() - $2::interval WHERE id = $1`,
		id, webhooks.LostAfter+time.Second)
	require.NoError(t, err)
	retry(t, a, h, id)
	require.Equal(t, 1, liveJobs(t, a, id, 0), "put back")
	unhold()
	waitStatus(t, a, h, id, webhooks.StatusSuccess)
}
