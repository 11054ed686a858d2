package webhooks

import (
	"context"
	"errors"
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
	"github.com/riverqueue/river/rivertype"
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
	s := New(pool, nil, true, []time.Duration{time.Hour, time.Hour, time.Hour, time.Hour}, nil)
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

func allJobs(t *testing.T, pool *pgxpool.Pool) int {
	t.Helper()
	var n int
	require.NoError(t, pool.QueryRow(context.Background(), `SELECT count(*) FROM river_job WHERE kind = 'deliver_webhook'`).Scan(&n))
	return n
}

// oneSlotBusy starts first attempts with one slot and a queue of one, and
// emits one event whose attempt holds the slot (its endpoint answers once
// the test ends).
func oneSlotBusy(t *testing.T) (s *Service, pool *pgxpool.Pool, m [2]uuid.UUID, first uuid.UUID) {
	t.Helper()
	hold, inFlight, release := holding(1)
	s, pool, m = firstFixture(t, hold)
	s.startFirstAttempts(1, maxFirstWait, slog.Default())
	t.Cleanup(func() { s.StopFirstAttempts(context.Background()) })
	t.Cleanup(func() { close(release) }) // first: cleanups run last-in first-out
	first = emit(t, s, pool, m[0], 1)[0]
	<-inFlight
	return s, pool, m, first
}

// An event is taken only with room reserved for it in a transaction whose
// end the process learns: the room is freed when the transaction rolls
// back; an event emitted in a transaction nothing tracks gets its job.
func TestFirstAttemptsTakeOnlyWhatTheyHaveRoomFor(t *testing.T) {
	t.Parallel()
	s, pool, m, first := oneSlotBusy(t) // the queue's one place is free
	require.Zero(t, liveJobs(t, pool, first))

	ctx := context.Background()
	failed := errors.New("rolled back")
	event := []Event{{MerchantID: m[0], Name: EventPaymentSuccess, Data: map[string]any{}}}
	require.ErrorIs(t, db.WithTx(ctx, pool, func(tx pgx.Tx) error {
		require.NoError(t, s.EmitTx(ctx, tx, event))
		require.Equal(t, 1, s.first.Load().reserved)
		return failed
	}), failed)
	require.Zero(t, s.first.Load().reserved, "freed by the rollback")

	tx, err := pool.Begin(ctx)
	require.NoError(t, err)
	require.NoError(t, s.EmitTx(ctx, tx, event))
	require.Zero(t, s.first.Load().reserved, "its end would go unseen: not taken")
	require.NoError(t, tx.Commit(ctx))
	require.Equal(t, 1, allJobs(t, pool), "the untracked transaction's event has its job")

	queued := emit(t, s, pool, m[0], 1)[0]
	require.Zero(t, liveJobs(t, pool, queued), "taken: the queue had room")
	require.EqualValues(t, 2, s.FirstAttemptsInFlight(), "one made, one queued")
}

// The process that records an event makes its first attempt itself, with
// no River worker: the log gets no job, and is delivered.
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
	require.Zero(t, allJobs(t, pool), "no job was inserted")
}

// Attempts made one after the other are made by one sender (dispatch),
// whose stack, grown once, serves them all; a sender waiting for its next
// attempt ends when Stop begins, however long it would have waited.
func TestFirstAttemptsReuseTheirSender(t *testing.T) {
	t.Parallel()
	s, pool, m := firstFixture(t, func(http.ResponseWriter, *http.Request) {})
	s.startFirstAttempts(4, maxFirstWait, slog.Default())
	f := s.first.Load()
	f.idle = time.Hour // before any attempt is dispatched
	for range 3 {
		id := emit(t, s, pool, m[0], 1)[0]
		require.Eventually(t, func() bool {
			st, _ := logState(t, pool, id)
			return st == StatusSuccess && f.waiting.Load() == 1
		}, 10*time.Second, 5*time.Millisecond)
	}
	require.EqualValues(t, 1, f.senders.Load(), "one sender made the three attempts")
	s.StopFirstAttempts(context.Background()) // would wait the hour for it otherwise
	require.Zero(t, f.waiting.Load())
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

// A first attempt given back after its record's COMMIT went unanswered,
// though it committed, leaves the log with its first attempt recorded and
// the second's job scheduled, and a first run's job due now besides: that
// job makes no attempt (the scheduled one makes the second at its time).
func TestAGivenBackFirstAttemptKeepsTheSchedule(t *testing.T) {
	t.Parallel()
	var got atomic.Int32
	s, pool, m := firstFixture(t, func(w http.ResponseWriter, _ *http.Request) {
		got.Add(1)
		w.WriteHeader(http.StatusInternalServerError)
	})
	s.StartFirstAttempts(4, slog.Default())
	t.Cleanup(func() { s.StopFirstAttempts(context.Background()) })
	id := emit(t, s, pool, m[0], 1)[0]
	require.Eventually(t, func() bool { _, n := logState(t, pool, id); return n == 1 }, 10*time.Second, 5*time.Millisecond)

	ctx := context.Background()
	require.NoError(t, db.WithTx(ctx, pool, func(tx pgx.Tx) error { return db.InsertJobsAtCommit(ctx, tx, firstDelivery(id, m[0])) }),
		"given back, as first.go does")
	var jobID int64
	require.NoError(t, pool.QueryRow(ctx, `SELECT id FROM river_job WHERE kind = 'deliver_webhook' AND state = 'available'`).Scan(&jobID))
	err := (&Worker{Service: s}).Work(ctx, &river.Job[DeliverArgs]{JobRow: &rivertype.JobRow{ID: jobID},
		Args: DeliverArgs{LogID: id, MerchantID: m[0]}})
	require.NoError(t, err)
	require.EqualValues(t, 1, got.Load(), "no second request")
	var scheduled int
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM river_job WHERE kind = 'deliver_webhook' AND state = 'scheduled'`).Scan(&scheduled))
	require.Equal(t, 1, scheduled, "the second attempt's job")
	_, n := logState(t, pool, id)
	require.Equal(t, 1, n)
}

// What the process cannot take is River's: with the one slot busy and the
// queue's one place taken, the events recorded meanwhile get their jobs;
// on stop the queued event and the attempt in flight (cancelled) are given
// back as jobs, so every log has one.
func TestFirstAttemptsLeaveWhatTheyCannotTake(t *testing.T) {
	t.Parallel()
	s, pool, m, first := oneSlotBusy(t)
	require.Zero(t, liveJobs(t, pool, first), "taken: no job")
	require.EqualValues(t, 1, s.FirstAttemptsInFlight(), "counted while made")
	var rest []uuid.UUID
	for range 10 {
		rest = append(rest, emit(t, s, pool, m[0], 1)...)
	}
	require.Zero(t, liveJobs(t, pool, rest[0]), "queued")
	for _, id := range rest[1:] {
		require.Equal(t, 1, liveJobs(t, pool, id), "no room: the job is inserted with the log")
	}
	require.EqualValues(t, 2, s.FirstAttemptsInFlight(), "one made, one queued")

	ctx := context.Background()
	stopCtx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	f := s.first.Load()
	s.StopFirstAttempts(stopCtx)
	require.Zero(t, f.making.Load(), "the queued event and the attempt in flight were given back")
	require.Nil(t, s.first.Load())
	for _, id := range append(rest, first) {
		st, n := logState(t, pool, id)
		require.Equal(t, StatusPending, st)
		require.Zero(t, n)
		require.Equal(t, 1, liveJobs(t, pool, id), "every log has its job")
	}
	ids := emit(t, s, pool, m[0], 1)
	require.Equal(t, 1, liveJobs(t, pool, ids[0]), "stopped: the job is inserted with the log")
}

// An event taken by a transaction that commits once Stop has begun is
// given back by its committer: its log has a job.
func TestAnEventCommittedAsStopBeginsIsGivenBack(t *testing.T) {
	t.Parallel()
	s, pool, m := firstFixture(t, func(http.ResponseWriter, *http.Request) {})
	s.startFirstAttempts(4, maxFirstWait, slog.Default())
	f := s.first.Load()
	ctx := context.Background()
	require.NoError(t, db.WithTx(ctx, pool, func(tx pgx.Tx) error {
		require.NoError(t, s.EmitTx(ctx, tx, []Event{{MerchantID: m[0], Name: EventPaymentSuccess, Data: map[string]any{}}}))
		require.Equal(t, 1, f.reserved, "taken")
		var jobs int
		require.NoError(t, tx.QueryRow(ctx, `SELECT count(*) FROM river_job`).Scan(&jobs))
		require.Zero(t, jobs, "without a job")
		s.StopFirstAttempts(ctx)
		return nil
	}))
	require.Zero(t, f.reserved)
	require.Zero(t, f.making.Load())
	require.Equal(t, 1, allJobs(t, pool), "given back at its commit")
}

// A transaction whose COMMIT got no answer may have committed or not: its
// taken events are all given back as jobs (a job for a log never inserted
// delivers nothing).
func TestFirstAttemptsOfAnUnknownOutcomeAreGivenBack(t *testing.T) {
	t.Parallel()
	s, pool, m := firstFixture(t, func(http.ResponseWriter, *http.Request) {})
	s.startFirstAttempts(4, maxFirstWait, slog.Default())
	t.Cleanup(func() { s.StopFirstAttempts(context.Background()) })
	ctx := context.Background()
	tx, err := pool.Begin(ctx)
	require.NoError(t, err)
	end := db.Track(tx)
	events := []Event{{MerchantID: m[0], Name: EventPaymentSuccess, Data: map[string]any{}},
		{MerchantID: m[1], Name: EventPaymentSuccess, Data: map[string]any{}}}
	require.NoError(t, s.EmitTx(ctx, tx, events))
	require.Equal(t, 2, s.first.Load().reserved)
	require.NoError(t, tx.Rollback(ctx)) // as it happened; the client cannot tell
	end(db.Unknown)
	require.Zero(t, s.first.Load().reserved)
	require.Equal(t, 2, allJobs(t, pool), "both candidates given back")
	require.Zero(t, s.FirstAttemptsInFlight())
}

// A taken event's age counts from its transaction's start, as its log's
// updated_at does (which the reconciler reads), not from its commit.
func TestFirstAttemptsCountFromTheTransactionStart(t *testing.T) {
	t.Parallel()
	s, pool, m := firstFixture(t, func(http.ResponseWriter, *http.Request) {})
	// A process that takes events and never makes their attempts, so the
	// queued one can be looked at.
	f := &firstAttempts{queue: make(chan firstAttempt, 1), stop: make(chan struct{})}
	s.first.Store(f)
	ctx := context.Background()
	before := time.Now()
	require.NoError(t, db.WithTx(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_sleep(0.3)`); err != nil {
			return err
		}
		return s.EmitTx(ctx, tx, []Event{{MerchantID: m[0], Name: EventPaymentSuccess, Data: map[string]any{}}})
	}))
	j := <-f.queue
	require.True(t, j.at.Before(before.Add(250*time.Millisecond)), "its transaction began 0.3 s before its commit")
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

// A first attempt taken by a process that died before making it leaves
// its log pending without a job: the reconciler resumes it once LostAfter
// has passed, and not before.
func TestReconcilerResumesALostFirstAttempt(t *testing.T) {
	t.Parallel()
	s, pool, m := firstFixture(t, func(http.ResponseWriter, *http.Request) {})
	ctx := context.Background()
	// A process that takes events and never makes their attempts: as one
	// that died after the commit.
	s.first.Store(&firstAttempts{queue: make(chan firstAttempt, 1), stop: make(chan struct{})})
	id := emit(t, s, pool, m[0], 1)[0]
	require.Zero(t, liveJobs(t, pool, id), "taken, and then the process died")

	n, err := s.Reconcile(ctx, LostAfter)
	require.NoError(t, err)
	require.Zero(t, n, "within LostAfter the process may still be making it")

	_, err = pool.Exec(ctx, `UPDATE webhook_logs SET updated_at = now() - $2::interval WHERE id = $1`, id, LostAfter+time.Second)
	require.NoError(t, err)
	n, err = s.Reconcile(ctx, LostAfter)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	require.Equal(t, 1, liveJobs(t, pool, id), "resumed with a job of its run")
}
