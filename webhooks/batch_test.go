package webhooks

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"paygate/db"
	"paygate/db/dbtest"
)

// batchFixture is a fresh database with two merchants and logs of each.
func batchFixture(t *testing.T) (*pgxpool.Pool, [2]uuid.UUID) {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), dbtest.New(t))
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	var merchants [2]uuid.UUID
	for i := range merchants {
		merchants[i] = uuid.New()
		_, err := pool.Exec(context.Background(), `
			INSERT INTO merchants (id, name, email, api_key, api_secret_hash, webhook_url, webhook_secret)
			VALUES ($1, 'm', $2 || '@example.com', $2, decode(repeat('ab', 32), 'hex'), 'https://example.com/' || $2, 'whsec_x')`,
			merchants[i], merchants[i].String())
		require.NoError(t, err)
	}
	return pool, merchants
}

func insertTestLog(t *testing.T, pool *pgxpool.Pool, merchantID uuid.UUID, payload string) uuid.UUID {
	t.Helper()
	id := uuid.New()
	_, err := pool.Exec(context.Background(), `
		INSERT INTO webhook_logs (id, merchant_id, event, payload, next_retry_at) VALUES ($1, $2, 'payment.success', $3, now())`,
		id, merchantID, []byte(payload))
	require.NoError(t, err)
	return id
}

// One statement reads many jobs' deliveries, each answered at its index;
// a log of another merchant, or one that is gone, is not found.
func TestDeliveriesOfReadsManyAtOnce(t *testing.T) {
	t.Parallel()
	pool, m := batchFixture(t)
	a := insertTestLog(t, pool, m[0], `{"a":1}`)
	b := insertTestLog(t, pool, m[1], `{"b":2}`)
	keys := []logKey{{m[0], a}, {m[1], b}, {m[1], a}, {m[0], uuid.New()}, {m[0], a}}
	got, err := deliveriesOf(context.Background(), pool, keys)
	require.NoError(t, err)
	require.Len(t, got, len(keys))
	require.True(t, got[0].ok)
	require.Equal(t, `{"a":1}`, string(got[0].payload))
	require.Equal(t, "https://example.com/"+m[0].String(), got[0].URL)
	require.Equal(t, StatusPending, got[0].status)
	require.True(t, got[1].ok)
	require.Equal(t, `{"b":2}`, string(got[1].payload))
	require.Equal(t, "https://example.com/"+m[1].String(), got[1].URL)
	require.False(t, got[2].ok, "another merchant's log")
	require.False(t, got[3].ok, "a log that is gone")
	require.Equal(t, got[0], got[4], "a key asked twice")
}

// One statement records many attempts: each pending log in its run with
// the attempts before it is updated with one history row; a stale, repeated
// or misaddressed one changes nothing; a log named twice is recorded once.
func TestRecordAttemptsRecordsManyAtOnce(t *testing.T) {
	t.Parallel()
	pool, m := batchFixture(t)
	ctx := context.Background()
	var logs [7]uuid.UUID
	for i := range logs {
		logs[i] = insertTestLog(t, pool, m[0], `{}`)
	}
	_, err := pool.Exec(ctx, `UPDATE webhook_logs SET status = 'success', attempts = 1 WHERE id = $1`, logs[3])
	require.NoError(t, err)
	_, err = pool.Exec(ctx, `UPDATE webhook_logs SET run = 1 WHERE id = $1`, logs[6]) // a manual retry's new run
	require.NoError(t, err)
	at := time.Now()
	code, msg := 500, "endpoint answered HTTP 500"
	next := at.Add(time.Minute)
	ok := outcome{at: at, duration: 12 * time.Millisecond, code: new(int), body: "ok"}
	*ok.code = 200
	failed := outcome{at: at, duration: 3 * time.Millisecond, code: &code, body: "no", err: &msg}
	args := func(i, run int) DeliverArgs { return DeliverArgs{LogID: logs[i], MerchantID: m[0], Run: run} }
	batch := []attempt{
		{args: args(0, 0), status: StatusSuccess, n: 1, o: ok},
		{args: args(1, 0), status: StatusFailed, n: 1, o: failed},
		{args: args(2, 0), status: StatusPending, n: 1, next: &next, o: failed},
		{args: args(3, 0), status: StatusSuccess, n: 2, o: ok}, // no longer pending
		{args: args(4, 1), status: StatusSuccess, n: 1, o: ok}, // an older run's job
		{args: args(5, 0), status: StatusSuccess, n: 2, o: ok}, // not the next attempt
		{args: args(0, 0), status: StatusSuccess, n: 1, o: ok}, // the same job twice
		{args: DeliverArgs{LogID: logs[1], MerchantID: m[1]}, status: StatusSuccess, n: 1, o: ok},
		{args: args(6, 0), status: StatusFailed, n: 1, o: failed}, // the old run's job, first
		{args: args(6, 1), status: StatusSuccess, n: 1, o: ok},    // the new run's
	}
	updated, err := recordAttempts(ctx, pool, batch)
	require.NoError(t, err)
	require.Equal(t, []bool{true, true, true, false, false, false, false, false, false, true}, updated)

	type row struct {
		status   string
		attempts int
		code     *int
		next     *time.Time
		history  int
	}
	read := func(id uuid.UUID) row {
		var r row
		require.NoError(t, pool.QueryRow(ctx, `
			SELECT status, attempts, response_code, next_retry_at,
			       (SELECT count(*) FROM webhook_attempts a WHERE a.log_id = l.id)
			FROM webhook_logs l WHERE id = $1`, id).Scan(&r.status, &r.attempts, &r.code, &r.next, &r.history))
		return r
	}
	r := read(logs[0])
	require.Equal(t, StatusSuccess, r.status)
	require.Equal(t, 1, r.attempts)
	require.Equal(t, 200, *r.code)
	require.Nil(t, r.next, "a final attempt leaves no next retry")
	require.Equal(t, 1, r.history, "recorded once though named twice")
	r = read(logs[1])
	require.Equal(t, StatusFailed, r.status)
	require.Equal(t, 500, *r.code)
	require.Equal(t, 1, r.history)
	r = read(logs[2])
	require.Equal(t, StatusPending, r.status)
	require.Equal(t, 1, r.attempts)
	require.WithinDuration(t, next, *r.next, time.Millisecond)
	for _, id := range logs[3:6] {
		require.Zero(t, read(id).history)
	}
	r = read(logs[6])
	require.Equal(t, StatusSuccess, r.status, "the current run's attempt is recorded")
	require.Equal(t, 1, r.history)
	var body, errText string
	var ms int
	require.NoError(t, pool.QueryRow(ctx, `SELECT response_body, error, duration_ms FROM webhook_attempts WHERE log_id = $1`,
		logs[1]).Scan(&body, &errText, &ms))
	require.Equal(t, "no", body)
	require.Equal(t, msg, errText)
	require.Equal(t, 3, ms)
}

// The batched statements are planned for each batch on the main pool,
// never prepared and cached on the connection (db.PlannedEachTime): a plan
// cached while the tables were small would keep scanning them whole as
// they grow. Once the logs have grown, they run on connections of kept
// plans, whose plans look every row up by a unique key (db.KeptPlans).
func TestBatchPlans(t *testing.T) {
	t.Parallel()
	pool, m := batchFixture(t)
	a := insertTestLog(t, pool, m[0], `{}`)
	work := func(ctx context.Context, tx pgx.Tx) error {
		if _, err := deliveriesOf(ctx, tx, []logKey{{m[0], a}}); err != nil {
			return err
		}
		_, err := recordAttempts(ctx, tx, []attempt{{args: DeliverArgs{LogID: a, MerchantID: m[0]}, status: StatusPending,
			n: 99, o: outcome{at: time.Now(), body: "x"}}})
		return err
	}
	dbtest.RunsUnprepared(t, pool, work)
	kept, err := db.OpenKeptPlans(context.Background(), pool.Config().ConnString(), 1, pool, slog.Default())
	require.NoError(t, err)
	t.Cleanup(kept.Close)
	kept.SetMinBytes(64 << 10)
	dbtest.Grow(t, pool, m[0], 1000)
	dbtest.PlansByUniqueKeys(t, kept, []string{"webhook_logs"},
		[]string{"JOIN webhook_logs l ON l.id = k.id", "UPDATE webhook_logs l SET status"}, work)
}
