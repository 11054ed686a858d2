package db_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/stretchr/testify/require"

	"paygate/db"
	"paygate/db/dbtest"
)

// plainArgs names nothing of its own; ownArgs names its queue, attempts
// and priority; uniqueArgs is unique by its own options.
type plainArgs struct {
	N int    `json:"n"`
	S string `json:"s,omitempty"`
}

func (plainArgs) Kind() string { return "test_plain" }

type ownArgs struct {
	At time.Time `json:"at"`
}

func (ownArgs) Kind() string { return "test_own" }
func (ownArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{Queue: "own", MaxAttempts: 7, Priority: 2}
}

type uniqueArgs struct{}

func (uniqueArgs) Kind() string { return "test_unique" }
func (uniqueArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{Queue: "own", MaxAttempts: 7, UniqueOpts: river.UniqueOpts{ByArgs: true}}
}

type jobRow struct {
	Args                   []byte
	Kind, Queue, State     string
	MaxAttempts, Priority  int16
	Attempt                int16
	Tags                   []string
	Metadata               []byte
	Unique                 bool
	ScheduledAtCreatedAtNs int64
}

func jobRows(t *testing.T, pool *pgxpool.Pool, kind string) []jobRow {
	t.Helper()
	rows, err := pool.Query(context.Background(), `
		SELECT args, kind, queue, state::text, max_attempts, priority, attempt, tags, metadata,
			unique_key IS NOT NULL OR unique_states IS NOT NULL,
			(extract(epoch FROM scheduled_at - created_at) * 1e9)::bigint
		FROM river_job WHERE kind = $1 ORDER BY id`, kind)
	require.NoError(t, err)
	out, err := pgx.CollectRows(rows, pgx.RowToStructByPos[jobRow])
	require.NoError(t, err)
	return out
}

// The rows paygate's own statement inserts are the rows River's client
// inserts for the same jobs: kind, JSON args, queue, attempts, priority,
// state, tags, metadata, no unique key, due at once.
func TestInsertedJobsAreRiversOwn(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, dbtest.New(t))
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	client, err := river.NewClient(riverpgxv5.New(pool), &river.Config{}) // insert-only
	require.NoError(t, err)

	at := time.Date(2026, 12, 1, 10, 0, 0, 123456789, time.UTC)
	jobs := []river.InsertManyParams{
		{Args: plainArgs{N: 1, S: "x"}, InsertOpts: &river.InsertOpts{Queue: "given", MaxAttempts: 3}},
		{Args: ownArgs{At: at}},
		{Args: plainArgs{N: 2}, InsertOpts: &river.InsertOpts{Queue: "given", MaxAttempts: 3, Priority: 4}},
		{Args: ownArgs{At: at.Add(time.Hour)}, InsertOpts: &river.InsertOpts{Queue: "given"}},
	}
	require.NoError(t, db.WithTx(ctx, pool, func(tx pgx.Tx) error {
		_, err := client.InsertManyTx(ctx, tx, jobs)
		return err
	}))
	river := append(jobRows(t, pool, "test_plain"), jobRows(t, pool, "test_own")...)
	_, err = pool.Exec(ctx, `DELETE FROM river_job`)
	require.NoError(t, err)

	require.NoError(t, db.WithTx(ctx, pool, func(tx pgx.Tx) error {
		return db.InsertJobsAtCommit(ctx, tx, jobs...)
	}))
	ours := append(jobRows(t, pool, "test_plain"), jobRows(t, pool, "test_own")...)
	require.Len(t, river, 4)
	require.Equal(t, river, ours)
	require.Equal(t, "own", ours[2].Queue, "the args' own options")
	require.Equal(t, int16(1), ours[0].Priority, "River's default priority")
	require.Equal(t, jobRow{Queue: "given", MaxAttempts: 7, Priority: 2}, jobRow{Queue: ours[3].Queue,
		MaxAttempts: ours[3].MaxAttempts, Priority: ours[3].Priority}, "the insert's options first, then the args' own")
}

// A job River would insert otherwise (unique, scheduled, tagged, with
// metadata, pending), or whose queue or attempts would come from the
// client's configuration, is refused rather than inserted differently.
func TestInsertJobsRefusesWhatIsNotPlain(t *testing.T) {
	t.Parallel()
	for _, p := range []river.InsertManyParams{
		{Args: plainArgs{}},
		{Args: plainArgs{}, InsertOpts: &river.InsertOpts{Queue: "q"}},
		{Args: plainArgs{}, InsertOpts: &river.InsertOpts{MaxAttempts: 3}},
		{Args: uniqueArgs{}},
	} {
		_, err := db.JobRowsOf(p)
		require.Error(t, err, "%+v", p)
	}
	for _, opts := range []river.InsertOpts{
		{UniqueOpts: river.UniqueOpts{ByArgs: true}},
		{ScheduledAt: time.Now().Add(time.Hour)},
		{Tags: []string{"a"}},
		{Metadata: []byte(`{"a":1}`)},
		{Pending: true},
		{Priority: 5},
	} {
		opts.Queue, opts.MaxAttempts = "q", 3
		_, err := db.JobRowsOf(river.InsertManyParams{Args: plainArgs{}, InsertOpts: &opts})
		require.Error(t, err, "%+v", opts)
	}
}

// A queue is notified of inserts at most once per interval in a process,
// each queue on its own.
func TestInsertNotificationsAreRateLimited(t *testing.T) {
	t.Parallel()
	// Queue names of this test alone: the limiter is the process's.
	at := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	require.Equal(t, []string{"limit_a", "limit_b"}, db.NotifyDue(at, "limit_a", "limit_b", "limit_a"))
	require.Empty(t, db.NotifyDue(at.Add(49*time.Millisecond), "limit_a", "limit_b"), "notified within the interval")
	require.Equal(t, []string{"limit_c"}, db.NotifyDue(at.Add(49*time.Millisecond), "limit_a", "limit_c"))
	require.Equal(t, []string{"limit_a", "limit_b"}, db.NotifyDue(at.Add(50*time.Millisecond), "limit_a", "limit_b"))
}

type wakeArgs struct {
	N int `json:"n"`
}

func (wakeArgs) Kind() string { return "test_wake" }
func (wakeArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{Queue: "wake", MaxAttempts: 1}
}

type wakeWorker struct {
	river.WorkerDefaults[wakeArgs]
	done chan int
}

func (w *wakeWorker) Work(_ context.Context, job *river.Job[wakeArgs]) error {
	w.done <- job.Args.N
	return nil
}

// A job inserted by paygate's own statement wakes River's producers with
// River's insert notification, as River's own insert does: with a poll
// interval of an hour, nothing else would fetch it.
func TestInsertedJobsWakeTheirQueue(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, dbtest.New(t))
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	w := &wakeWorker{done: make(chan int, 2)}
	workers := river.NewWorkers()
	river.AddWorker(workers, w)
	client, err := river.NewClient(riverpgxv5.New(pool), &river.Config{
		Workers: workers,
		// Two: had the first fetch filled every slot, River would fetch
		// again as the first job ended, notification or not.
		Queues:            map[string]river.QueueConfig{"wake": {MaxWorkers: 2}},
		FetchPollInterval: time.Hour,
		FetchCooldown:     time.Millisecond,
	})
	require.NoError(t, err)
	require.NoError(t, client.Start(ctx))
	t.Cleanup(func() { client.Stop(context.Background()) }) //nolint:errcheck // the test is over

	// River's own insert first: once it is worked, the producer has made
	// its first fetch and listens.
	_, err = client.Insert(ctx, wakeArgs{N: 1}, nil)
	require.NoError(t, err)
	require.Equal(t, 1, <-w.done)

	// Let any fetch that River's own notification for it still triggers
	// (it may arrive after the first fetch took the job) happen before the
	// second insert, so that only the second insert's notification can
	// fetch the second job.
	time.Sleep(200 * time.Millisecond)
	// No other test names the queue "wake": this insert is due its
	// notification.
	require.NoError(t, db.WithTx(ctx, pool, func(tx pgx.Tx) error {
		return db.InsertJobsAtCommit(ctx, tx, river.InsertManyParams{Args: wakeArgs{N: 2}})
	}))
	select {
	case n := <-w.done:
		require.Equal(t, 2, n)
	case <-time.After(time.Minute):
		t.Fatal("the job was not fetched: no insert notification reached its queue")
	}
}
