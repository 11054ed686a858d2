package webhooks

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/stretchr/testify/require"

	"paygate/db"
)

// firstFixture is a service on a fresh database, with an insert-only River
// client (no worker runs: every delivery made is a first attempt made by
// the service itself), whose two merchants deliver to respond.
func firstFixture(t *testing.T, respond http.HandlerFunc) (*Service, *pgxpool.Pool, [2]uuid.UUID) {
	t.Helper()
	pool, m := batchFixture(t)
	srv := httptest.NewServer(respond)
	t.Cleanup(srv.Close)
	_, err := pool.Exec(context.Background(), `UPDATE merchants SET webhook_url = $1`, srv.URL)
	require.NoError(t, err)
	s := New(pool, true, []time.Duration{time.Hour, time.Hour, time.Hour, time.Hour})
	s.River, err = river.NewClient(riverpgxv5.New(pool), &river.Config{})
	require.NoError(t, err)
	return s, pool, m
}

// holding is an endpoint that tells the arrival of each of its first n
// requests on arrived, and answers once release is closed (or the request
// is given up).
func holding(n int) (hold http.HandlerFunc, arrived, release chan struct{}) {
	arrived, release = make(chan struct{}, n), make(chan struct{})
	return func(_ http.ResponseWriter, r *http.Request) {
		select {
		case arrived <- struct{}{}:
		default:
		}
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}, arrived, release
}

// emit records events of merchant m in one transaction and returns their
// logs' ids.
func emit(t *testing.T, s *Service, pool *pgxpool.Pool, m uuid.UUID, n int) []uuid.UUID {
	t.Helper()
	ctx := context.Background()
	events := make([]Event, n)
	for i := range events {
		events[i] = Event{MerchantID: m, Name: EventPaymentSuccess, Data: map[string]any{"payment": map[string]any{"id": "pay_1"}}}
	}
	before := time.Now().Add(-time.Second)
	require.NoError(t, db.WithTx(ctx, pool, func(tx pgx.Tx) error { return s.EmitTx(ctx, tx, events) }))
	rows, err := pool.Query(ctx, `SELECT id FROM webhook_logs WHERE merchant_id = $1 AND created_at > $2 ORDER BY id DESC LIMIT $3`,
		m, before, n)
	require.NoError(t, err)
	ids, err := pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
	require.NoError(t, err)
	require.Len(t, ids, n)
	return ids
}

func logState(t *testing.T, pool *pgxpool.Pool, id uuid.UUID) (status string, attempts int) {
	t.Helper()
	require.NoError(t, pool.QueryRow(context.Background(), `SELECT status, attempts FROM webhook_logs WHERE id = $1`, id).
		Scan(&status, &attempts))
	return status, attempts
}

func liveJobs(t *testing.T, pool *pgxpool.Pool, id uuid.UUID) int {
	t.Helper()
	var n int
	require.NoError(t, pool.QueryRow(context.Background(), `SELECT count(*) FROM river_job j
		WHERE j.kind = 'deliver_webhook' AND j.args->>'log_id' = $1::text AND j.state IN `+db.LiveJobStates, id).Scan(&n))
	return n
}

// dueLater reports whether the log's job is not yet due for River.
func dueLater(t *testing.T, pool *pgxpool.Pool, id uuid.UUID) bool {
	t.Helper()
	var later bool
	require.NoError(t, pool.QueryRow(context.Background(), `SELECT scheduled_at > now() FROM river_job j
		WHERE j.kind = 'deliver_webhook' AND j.args->>'log_id' = $1::text`, id).Scan(&later))
	return later
}

func allJobs(t *testing.T, pool *pgxpool.Pool) int {
	t.Helper()
	var n int
	require.NoError(t, pool.QueryRow(context.Background(), `SELECT count(*) FROM river_job WHERE kind = 'deliver_webhook'`).Scan(&n))
	return n
}

// The claim takes a job only while it is available and names its log:
// one River has fetched stays River's, and so does one named with another
// merchant or another log.
func TestClaimTakesOnlyAvailableJobs(t *testing.T) {
	t.Parallel()
	pool, m := batchFixture(t)
	ctx := context.Background()
	logs := make([]uuid.UUID, 4)
	jobs := make([]int64, 4)
	for i := range logs {
		logs[i] = insertTestLog(t, pool, m[0], `{"n":1}`)
		rows, err := db.JobRowsOf(firstDelivery(logs[i], m[0]))
		require.NoError(t, err)
		sql, args := rows.Insert()
		require.NoError(t, pool.QueryRow(ctx, sql+` RETURNING id`, args...).Scan(&jobs[i]))
	}
	_, err := pool.Exec(ctx, `UPDATE river_job SET state = 'running', attempt = 1, attempted_at = now() WHERE id = $1`, jobs[1])
	require.NoError(t, err)
	batch := []firstAttempt{
		{jobID: jobs[0], key: logKey{m[0], logs[0]}},
		{jobID: jobs[1], key: logKey{m[0], logs[1]}}, // fetched by River
		{jobID: jobs[2], key: logKey{m[1], logs[2]}}, // another merchant
		{jobID: jobs[3], key: logKey{m[0], logs[2]}}, // another log's job
		{jobID: jobs[3] + 100, key: logKey{m[0], logs[3]}},
	}
	got, err := claimDeliveries(ctx, pool, batch)
	require.NoError(t, err)
	require.Len(t, got, len(batch))
	require.True(t, got[0].ok)
	require.Equal(t, `{"n":1}`, string(got[0].payload))
	require.Equal(t, StatusPending, got[0].status)
	for i := 1; i < len(batch); i++ {
		require.False(t, got[i].ok, "batch[%d] is not claimed", i)
	}
	var states []string
	rows, err := pool.Query(ctx, `SELECT state FROM river_job WHERE kind = 'deliver_webhook' ORDER BY id`)
	require.NoError(t, err)
	states, err = pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	require.Equal(t, []string{"running", "available", "available"}, states, "only the claimed job is gone")
}

// The process that records an event makes its first attempt itself, with
// no River worker: its job is claimed (deleted), never fetched or
// completed, and the log is delivered.
func TestFirstAttemptIsMadeByTheRecordingProcess(t *testing.T) {
	t.Parallel()
	var got, signed atomic.Int32
	s, pool, m := firstFixture(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("webhook-signature") != "" {
			signed.Add(1)
		}
		got.Add(1)
	})
	s.StartFirstAttempts(4, slog.Default())
	t.Cleanup(func() { s.StopFirstAttempts(context.Background()) })
	ids := emit(t, s, pool, m[0], 3)
	for _, id := range ids {
		require.Eventually(t, func() bool { st, _ := logState(t, pool, id); return st == StatusSuccess },
			10*time.Second, 5*time.Millisecond)
		_, attempts := logState(t, pool, id)
		require.Equal(t, 1, attempts)
	}
	require.EqualValues(t, 3, got.Load())
	require.EqualValues(t, 3, signed.Load())
	require.Zero(t, allJobs(t, pool), "the jobs were claimed, not left to River")
}

// A failed first attempt is recorded like a job's: the log stays pending
// with the next attempt's job, of its run, inserted with the record.
func TestFailedFirstAttemptSchedulesTheNext(t *testing.T) {
	t.Parallel()
	s, pool, m := firstFixture(t, func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusInternalServerError) })
	s.StartFirstAttempts(4, slog.Default())
	t.Cleanup(func() { s.StopFirstAttempts(context.Background()) })
	id := emit(t, s, pool, m[0], 1)[0]
	require.Eventually(t, func() bool { _, n := logState(t, pool, id); return n == 1 }, 10*time.Second, 5*time.Millisecond)
	st, _ := logState(t, pool, id)
	require.Equal(t, StatusPending, st)
	require.Equal(t, 1, liveJobs(t, pool, id), "the second attempt's job")
	var state string
	require.NoError(t, pool.QueryRow(context.Background(), `SELECT state FROM river_job WHERE kind = 'deliver_webhook'`).Scan(&state))
	require.Equal(t, "scheduled", state, "due an hour later")
}

// What the process cannot take stays River's: with one send slot busy, the
// events recorded meanwhile keep their jobs; on stop the attempt in flight
// is cancelled and given back as a job, so every log has one.
func TestFirstAttemptsLeaveWhatTheyCannotTake(t *testing.T) {
	t.Parallel()
	hold, inFlight, release := holding(1)
	s, pool, m := firstFixture(t, hold)
	defer close(release)
	s.startFirstAttempts(1, maxFirstWait, slog.Default())
	t.Cleanup(func() { s.StopFirstAttempts(context.Background()) })
	first := emit(t, s, pool, m[0], 1)[0]
	<-inFlight
	require.Zero(t, liveJobs(t, pool, first), "claimed")
	require.EqualValues(t, 1, s.FirstAttemptsInFlight(), "counted while made, its job gone")
	var rest []uuid.UUID
	for range 10 {
		rest = append(rest, emit(t, s, pool, m[0], 1)...)
	}
	later := 0
	for _, id := range rest {
		require.Equal(t, 1, liveJobs(t, pool, id), "no slot: the job stays")
		if dueLater(t, pool, id) {
			later++
		}
	}
	// One claim at once and a queue of one: the first one or two of them
	// are taken (one queued, and one held by the claimer until a claim is
	// free once it has taken it from the queue), due later for River; the
	// others found no room and were River's at once.
	require.True(t, later == 1 || later == 2, "%d due later", later)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	f := s.first.Load()
	s.StopFirstAttempts(ctx)
	require.Zero(t, f.making.Load(), "the attempt in flight was given back")
	require.Nil(t, s.first.Load())
	for _, id := range append(rest, first) {
		st, n := logState(t, pool, id)
		require.Equal(t, StatusPending, st)
		require.Zero(t, n)
		require.Equal(t, 1, liveJobs(t, pool, id), "every log has its job")
	}
	ids := emit(t, s, pool, m[0], 1)
	require.Equal(t, 1, liveJobs(t, pool, ids[0]), "stopped: the job is River's")
	require.False(t, dueLater(t, pool, ids[0]), "and due at once")
}

// A claimed attempt to an endpoint at its bound waits for its turn, and is
// given back as a job only when none comes within the wait.
func TestFirstAttemptWaitsForABusyEndpoint(t *testing.T) {
	t.Parallel()
	for _, wait := range []time.Duration{maxFirstWait, 50 * time.Millisecond} {
		hold, inFlight, release := holding(2)
		s, pool, m := firstFixture(t, hold)
		s.MaxPerEndpoint = 1
		s.startFirstAttempts(4, wait, slog.Default())
		ids := emit(t, s, pool, m[0], 2)
		<-inFlight
		if wait == maxFirstWait {
			require.Eventually(t, func() bool { return s.FirstAttemptsInFlight() == 2 }, 10*time.Second, 5*time.Millisecond)
			require.Zero(t, allJobs(t, pool), "both claimed, one waiting")
			close(release)
			for _, id := range ids {
				require.Eventually(t, func() bool { st, _ := logState(t, pool, id); return st == StatusSuccess },
					10*time.Second, 5*time.Millisecond)
			}
			require.Zero(t, allJobs(t, pool), "both made here")
		} else {
			require.Eventually(t, func() bool { return allJobs(t, pool) == 1 }, 10*time.Second, 5*time.Millisecond,
				"the waiting one given back")
			close(release)
			given := 0
			for _, id := range ids {
				if liveJobs(t, pool, id) == 1 {
					given++
					continue
				}
				require.Eventually(t, func() bool { st, _ := logState(t, pool, id); return st == StatusSuccess },
					10*time.Second, 5*time.Millisecond)
			}
			require.Equal(t, 1, given)
		}
		s.StopFirstAttempts(context.Background())
		want := 1 // the second request, besides the first received above
		if wait != maxFirstWait {
			want = 0 // given back: no worker runs its job here
		}
		require.Len(t, inFlight, want, "the endpoint got each event at most once")
	}
}

// The reconciler never takes a claimed first attempt, still within its
// bounds, for a log that lost its job.
func TestLostAfterOutlastsAClaimedAttempt(t *testing.T) {
	require.Greater(t, LostAfter, maxClaimAge+batchTimeout+maxFirstWait+deliveryTimeout+2*recordTimeout)
}

// A manual retry while the recording process makes a log's first attempt
// adds no job: the endpoint gets the event once, and one attempt is
// recorded.
func TestRetryDuringAClaimedFirstAttempt(t *testing.T) {
	t.Parallel()
	hold, inFlight, release := holding(2)
	s, pool, m := firstFixture(t, hold)
	s.startFirstAttempts(4, maxFirstWait, slog.Default())
	t.Cleanup(func() { s.StopFirstAttempts(context.Background()) })
	id := emit(t, s, pool, m[0], 1)[0]
	<-inFlight
	ctx := context.Background()
	for range 2 {
		require.NoError(t, db.WithTx(ctx, pool, func(tx pgx.Tx) error { return s.RetryTx(ctx, tx, m[0], id) }))
	}
	require.Zero(t, liveJobs(t, pool, id), "no job added while the first attempt is made")
	close(release)
	require.Eventually(t, func() bool { st, _ := logState(t, pool, id); return st == StatusSuccess },
		10*time.Second, 5*time.Millisecond)
	_, n := logState(t, pool, id)
	require.Equal(t, 1, n)
	require.Zero(t, allJobs(t, pool))
	require.Empty(t, inFlight, "one request")
}

// A first attempt claimed by a process that died before recording it
// leaves its log pending without a job: the reconciler resumes it once
// LostAfter has passed, and not before.
func TestReconcilerResumesALostClaim(t *testing.T) {
	t.Parallel()
	s, pool, m := firstFixture(t, func(http.ResponseWriter, *http.Request) {})
	ctx := context.Background()
	id := emit(t, s, pool, m[0], 1)[0] // no first attempts started: the job is River's
	var job int64
	require.NoError(t, pool.QueryRow(ctx, `SELECT id FROM river_job WHERE kind = 'deliver_webhook'`).Scan(&job))
	got, err := claimDeliveries(ctx, pool, []firstAttempt{{jobID: job, key: logKey{m[0], id}}})
	require.NoError(t, err)
	require.True(t, got[0].ok, "claimed, and then the claimant died")
	require.Zero(t, liveJobs(t, pool, id))

	n, err := s.Reconcile(ctx, LostAfter)
	require.NoError(t, err)
	require.Zero(t, n, "within LostAfter the claimant may still be making it")

	_, err = pool.Exec(ctx, `UPDATE webhook_logs SET updated_at = now() - $2::interval WHERE id = $1`, id, LostAfter+time.Second)
	require.NoError(t, err)
	n, err = s.Reconcile(ctx, LostAfter)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	require.Equal(t, 1, liveJobs(t, pool, id), "resumed with a job of its run")
}
