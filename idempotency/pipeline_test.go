package idempotency_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/labstack/echo/v4"
	"github.com/stretchr/testify/require"

	"paygate/app/apptest"
	"paygate/db"
	"paygate/db/dbtest"
	"paygate/idempotency"
	"paygate/merchants"
	"paygate/refunds"
	"paygate/web"
)

// A keyed request commits in a pipelined batch that pgx's Tx does not see:
// its connection must go back to the pool idle and be reused, whatever the
// answer (created, remembered business error, replay, refused body, crash).
func TestKeyedRequestsReuseTheirConnection(t *testing.T) {
	t.Parallel()
	b := setup(t)
	cfg, err := pgxpool.ParseConfig(b.a.Config.DatabaseURL)
	require.NoError(t, err)
	cfg.MaxConns = 1
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	b.a.Idempotency = idempotency.New(pool)

	for i := range 5 {
		key := "reuse-" + strconv.Itoa(i)
		require.Equal(t, http.StatusCreated, b.post(t, `{"name":"a"}`, key, nil).Code)
		require.Equal(t, http.StatusCreated, b.post(t, `{"name":"a"}`, key, nil).Code) // replayed
		require.Equal(t, http.StatusUnprocessableEntity, b.post(t, `{"name":"b"}`, key, nil).Code)
		require.Equal(t, http.StatusBadRequest, b.post(t, `{"name":"a","fail":"validation"}`, key+"-v", nil).Code)
		require.Equal(t, http.StatusInternalServerError, b.post(t, `{"name":"a","fail":"crash"}`, key+"-c", nil).Code)
		require.Equal(t, http.StatusCreated, b.post(t, `{"name":"a"}`, "", nil).Code)
		require.Equal(t, http.StatusBadRequest, b.post(t, `{"name":"a","fail":"validation"}`, "", nil).Code)
		require.Equal(t, http.StatusInternalServerError, b.post(t, `{"name":"a","fail":"crash"}`, "", nil).Code)
	}
	require.Equal(t, int64(1), pool.Stat().NewConnsCount(), "every request left its connection idle")
	require.Equal(t, 10, b.widgets(t))
	require.Equal(t, 10, b.keys(t))
}

// The first statement of a transaction carries its BEGIN: a query of many
// rows read to its end, then more statements, all commit together; a
// failure anywhere rolls all of it back; AfterCommit runs only after a
// commit, with or without a key.
func TestPipelinedTransaction(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var committed atomic.Int32
	b.a.Echo.POST("/test/series", func(c echo.Context) error {
		var req struct {
			N      int  `json:"n"`
			Fail   bool `json:"fail"`
			Reject bool `json:"reject"`
		}
		raw, err := web.Bind(c, &req)
		if err != nil {
			return err
		}
		m := merchants.FromContext(c)
		return b.a.Idempotency.Do(c, raw, func(ctx context.Context, tx pgx.Tx) (int, any, error) {
			rows, err := tx.Query(ctx, `SELECT generate_series(1, $1::int)`, req.N)
			if err != nil {
				return 0, nil, err
			}
			var got []int
			for rows.Next() {
				var i int
				if err := rows.Scan(&i); err != nil {
					return 0, nil, err
				}
				got = append(got, i)
			}
			if err := rows.Err(); err != nil {
				return 0, nil, err
			}
			for _, i := range got {
				if _, err := tx.Exec(ctx, `INSERT INTO widgets (merchant_id, name) VALUES ($1, $2)`, m.ID, strconv.Itoa(i)); err != nil {
					return 0, nil, err
				}
			}
			if req.Fail {
				_, err := tx.Exec(ctx, `INSERT INTO widgets (merchant_id, name) VALUES ($1, NULL)`, m.ID)
				return 0, nil, err
			}
			db.AfterCommit(tx, func() { committed.Add(1) })
			if req.Reject {
				// A business answer: the work and its callbacks are undone,
				// the answer is remembered under a key.
				return 0, nil, web.BadField("reject", "rejected")
			}
			return http.StatusCreated, got, nil
		})
	}, b.a.Auth.Secret)
	post := func(body, key string) *httptest.ResponseRecorder {
		h := apptest.TestMerchant()
		if key != "" {
			h = apptest.With(h, idempotency.Header, key)
		}
		return apptest.Do(t, b.a.Echo, http.MethodPost, "/test/series", body, h)
	}
	for _, key := range []string{"", "series"} {
		rec := post(`{"n":3}`, key)
		require.Equal(t, http.StatusCreated, rec.Code, rec.Body.String())
		require.JSONEq(t, `[1,2,3]`, rec.Body.String())
		other := func(suffix string) string { // another key, or none again
			if key == "" {
				return ""
			}
			return key + suffix
		}
		require.Equal(t, http.StatusInternalServerError, post(`{"n":2,"fail":true}`, other("-fail")).Code)
		require.Equal(t, http.StatusBadRequest, post(`{"n":2,"reject":true}`, other("-reject")).Code)
	}
	require.Equal(t, 6, b.widgets(t), "the failed requests left nothing")
	require.Equal(t, int32(2), committed.Load())
	require.Equal(t, 2, b.keys(t), "the keyed success and the keyed rejection are remembered")
}

// A keyed request takes no more round trips than the same request without
// a key: its claim travels with BEGIN and the work's first statement, its
// answer with the work's last statements and COMMIT. A repeat runs the
// work's first statement after the claim finds the key taken, and keeps
// nothing of it, even when that statement fails.
func TestKeyedRequestTakesNoExtraRoundTrip(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	pool, trips := dbtest.TracedPool(t, b.a.Config.DatabaseURL, false)
	b.a.Idempotency = idempotency.New(pool)

	post := func(body, key string) *httptest.ResponseRecorder {
		trips.N.Store(0)
		return b.post(t, body, key, nil)
	}
	// The first of each kind prepares its statements.
	require.Equal(t, http.StatusCreated, post(`{"name":"warm","later":"ok"}`, "").Code)
	require.Equal(t, http.StatusCreated, post(`{"name":"warm","later":"ok"}`, "warm").Code)

	require.Equal(t, http.StatusCreated, post(`{"name":"a","later":"ok"}`, "").Code)
	require.Equal(t, int32(2), trips.N.Load(), "BEGIN + INSERT; INSERT + COMMIT")
	first := post(`{"name":"a","later":"ok"}`, "k")
	require.Equal(t, http.StatusCreated, first.Code)
	require.Equal(t, int32(2), trips.N.Load(), "BEGIN + claim + INSERT; INSERT + answer + COMMIT")

	widgets := b.widgets(t)
	again := post(`{"name":"a","later":"ok"}`, "k")
	require.Equal(t, first.Body.Bytes(), again.Body.Bytes())
	require.Equal(t, "true", again.Header().Get(idempotency.ReplayedHeader))
	require.Equal(t, widgets, b.widgets(t), "the repeat's first statement was rolled back")

	// A repeat whose first statement fails (a unique index the first
	// request's widget now holds) is still answered from memory.
	_, err := b.a.Pool.Exec(ctx, `CREATE UNIQUE INDEX widgets_unique ON widgets (name) WHERE name = 'unique'`)
	require.NoError(t, err)
	created := post(`{"name":"unique"}`, "u")
	require.Equal(t, http.StatusCreated, created.Code)
	replayed := post(`{"name":"unique"}`, "u")
	require.Equal(t, http.StatusCreated, replayed.Code, replayed.Body.String())
	require.Equal(t, created.Body.Bytes(), replayed.Body.Bytes())
	require.Equal(t, 1, b.count(t, `SELECT count(*) FROM widgets WHERE name = 'unique'`))
	require.Equal(t, http.StatusUnprocessableEntity, post(`{"name":"other"}`, "u").Code)

	// A repeat whose first statement would wait on a lock (another
	// transaction's uncommitted widget of the same name) does not wait
	// for it: it is answered from memory.
	_, err = b.a.Pool.Exec(ctx, `CREATE UNIQUE INDEX widgets_held ON widgets (name) WHERE name = 'held'`)
	require.NoError(t, err)
	held := post(`{"name":"held"}`, "h")
	require.Equal(t, http.StatusCreated, held.Code)
	_, err = b.a.Pool.Exec(ctx, `DELETE FROM widgets WHERE name = 'held'`)
	require.NoError(t, err)
	other, err := b.a.Pool.Begin(ctx)
	require.NoError(t, err)
	defer other.Rollback(ctx) //nolint:errcheck // the test is over
	_, err = other.Exec(ctx, `INSERT INTO widgets (merchant_id, name) VALUES ($1, 'held')`, merchants.TestMerchantID)
	require.NoError(t, err)
	replayed = post(`{"name":"held"}`, "h")
	require.Equal(t, http.StatusCreated, replayed.Code, replayed.Body.String())
	require.Equal(t, held.Body.Bytes(), replayed.Body.Bytes())
	require.NoError(t, other.Rollback(ctx))

	// A first statement that begins the transaction on its own (the simple
	// protocol) still carries the claim: the repeat is a replay.
	simple := post(`{"name":"simple","simple":true}`, "s")
	require.Equal(t, http.StatusCreated, simple.Code, simple.Body.String())
	again = post(`{"name":"simple","simple":true}`, "s")
	require.Equal(t, simple.Body.Bytes(), again.Body.Bytes())
	require.Equal(t, "true", again.Header().Get(idempotency.ReplayedHeader))
	require.Equal(t, 1, b.count(t, `SELECT count(*) FROM widgets WHERE name = 'simple'`))
	require.Equal(t, int64(1), pool.Stat().NewConnsCount(), "every request left its connection idle")
}

// A batch's keys take no round trip of their own on a connection of kept
// plans: their claim, with its lock timeout's set and reset, travels with
// BEGIN and the work's first statement (idempotency.Work), and their
// answers with COMMIT, as the work's last statements would. On the main
// pool, where the work's statement and the answers' are planned each time
// (db.PlannedEachTime), neither can go in a batch: BEGIN still travels with
// the claim.
func TestABatchsKeysTakeNoRoundTripOfTheirOwn(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	kept, keptTrips := dbtest.TracedPool(t, b.a.Config.DatabaseURL, true)
	main, mainTrips := dbtest.TracedPool(t, b.a.Config.DatabaseURL, false)

	batches := 0
	batch := func(pool *pgxpool.Pool, keyed bool) {
		t.Helper()
		batches++
		var claims []*idempotency.Claim
		var settled []idempotency.Settled
		for i := range 2 {
			if keyed {
				c := apptest.Claim("POST /test/batch", strconv.Itoa(batches)+"-"+strconv.Itoa(i), time.Now())
				claims, settled = append(claims, c), append(settled, idempotency.Settled{Claim: c, Status: 201, Body: []byte(`{}`)})
			}
		}
		require.NoError(t, db.WithPipelinedTx(ctx, pool, func(tx pgx.Tx) error {
			claimed, err := idempotency.ClaimTx(ctx, tx, claims, func([]bool) (string, []any, func(pgx.Rows) error) {
				return `INSERT INTO widgets (merchant_id, name) SELECT $1, unnest($2::text[])`,
					[]any{db.PlanMode(tx), merchants.TestMerchantID, []string{"a", "b"}},
					func(rows pgx.Rows) error { rows.Close(); return rows.Err() }
			})
			if err != nil {
				return err
			}
			require.NotContains(t, claimed, false)
			return idempotency.SettleTx(ctx, tx, settled)
		}))
	}
	counted := func(pool *pgxpool.Pool, trips *dbtest.RoundTrips, keyed bool) int32 {
		batch(pool, keyed) // the first prepares its statements
		trips.N.Store(0)
		batch(pool, keyed)
		return trips.N.Load()
	}
	require.Equal(t, int32(2), counted(kept, keptTrips, true), "BEGIN + lock timeout + claim + reset + INSERT; answers + COMMIT")
	require.Equal(t, int32(2), counted(kept, keptTrips, false), "BEGIN + INSERT; COMMIT")
	require.Equal(t, int32(4), counted(main, mainTrips, true), "BEGIN + lock timeout + claim + reset; INSERT; answers; COMMIT")
	require.Equal(t, 12, b.widgets(t))
	require.Equal(t, 8, b.count(t, `SELECT count(*) FROM idempotency_keys WHERE route = 'POST /test/batch' AND status_code = 201`))
}

// A keyed refund its batch does not make (here: more than the payment has
// left, an error remembered under its key) runs alone, and sends its
// payment's lock with the key's claim, as any keyed request sends its
// first statement: BEGIN + claim + the lock; the sum of the payment's
// refunds; the rollback of the work to the claim's savepoint; the answer +
// COMMIT.
func TestAKeyedRefundRunAloneTakesNoExtraRoundTrip(t *testing.T) {
	t.Parallel()
	b := setup(t)
	pool, trips := dbtest.TracedPool(t, b.a.Config.DatabaseURL, false)
	alone := &refunds.HTTP{Service: b.a.Refunds, Keys: idempotency.New(pool)}
	b.a.Echo.POST("/test/payments/:id/refunds", alone.Create, b.a.Auth.Secret)

	h := apptest.TestMerchant()
	path := "/test/payments/" + apptest.PaySuccessfully(t, b.a, h)["id"].(string) + "/refunds"
	post := func(key string) *httptest.ResponseRecorder {
		trips.N.Store(0)
		return apptest.Do(t, b.a.Echo, http.MethodPost, path, `{"amount":50001}`, apptest.With(h, idempotency.Header, key))
	}
	require.Equal(t, http.StatusBadRequest, post("warm").Code, "the first prepares its statements")
	rec := post("counted")
	require.Equal(t, http.StatusBadRequest, rec.Code, rec.Body.String())
	require.Equal(t, int32(4), trips.N.Load(), "BEGIN + claim + lock; sum; rollback to the savepoint; answer + COMMIT")
	again := post("counted")
	require.Equal(t, rec.Body.String(), again.Body.String())
	require.Equal(t, "true", again.Header().Get(idempotency.ReplayedHeader))
}
