package db_test

import (
	"context"
	"database/sql"
	"errors"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3/lock"
	"github.com/stretchr/testify/require"

	"paygate/db"
	"paygate/db/dbtest"
)

// A database from before 00007 may hold several pending payments of one
// order, or a pending payment beside a success. Upgrading settles them: the
// pending payments of an order that succeeded fail, of the others the oldest
// stays pending; then one live payment per order is enforced.
func TestUpgradeSettlesDuplicatePendingPayments(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, sqlDB := openSQL(t, dbtest.Empty(t))
	require.NoError(t, db.MigrateUpTo(ctx, sqlDB, 6))

	var merchant string
	require.NoError(t, pool.QueryRow(ctx, `INSERT INTO merchants (name, email, api_key, api_secret_hash, webhook_secret)
		VALUES ('m', 'm@example.com', 'key_upgrade', sha256('s'), 'whsec') RETURNING id`).Scan(&merchant))
	order := func() string {
		id := db.NewID("order_")
		_, err := pool.Exec(ctx, `INSERT INTO orders (id, merchant_id, amount, currency) VALUES ($1, $2, 50000, 'INR')`, id, merchant)
		require.NoError(t, err)
		return id
	}
	t0 := time.Now().Add(-time.Hour)
	payment := func(orderID, status string, age int) string {
		id := db.NewID("pay_")
		var code *string
		if status == "failed" {
			c := "PAYMENT_FAILED"
			code = &c
		}
		_, err := pool.Exec(ctx, `INSERT INTO payments (id, order_id, merchant_id, amount, currency, method, vpa, status, error_code, created_at, updated_at)
			VALUES ($1, $2, $3, 50000, 'INR', 'upi', 'user@bank', $4, $5, $6, $6)`,
			id, orderID, merchant, status, code, t0.Add(time.Duration(age)*time.Minute))
		require.NoError(t, err)
		return id
	}
	paid, several, single, retried := order(), order(), order(), order()
	want := map[string]string{
		payment(paid, "pending", 0):    "failed",
		payment(paid, "success", 1):    "success",
		payment(paid, "pending", 2):    "failed",
		payment(several, "pending", 2): "failed",
		payment(several, "pending", 0): "pending", // the oldest
		payment(several, "pending", 1): "failed",
		payment(single, "pending", 0):  "pending",
		payment(retried, "failed", 0):  "failed",
		payment(retried, "pending", 1): "pending",
	}

	_, err := db.Migrate(ctx, sqlDB, slog.Default())
	require.NoError(t, err)

	rows, err := pool.Query(ctx, `SELECT id, status, coalesce(error_code, ''), coalesce(error_description, '') FROM payments`)
	require.NoError(t, err)
	got := map[string]string{}
	for rows.Next() {
		var id, status, code, desc string
		require.NoError(t, rows.Scan(&id, &status, &code, &desc))
		got[id] = status
		if status == "failed" {
			require.Equal(t, "PAYMENT_FAILED", code)
		}
		if status == "failed" && desc != "" {
			require.Equal(t, "Payment processing failed", desc)
		}
	}
	require.NoError(t, rows.Err())
	require.Equal(t, want, got)

	var settled int
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM payments WHERE error_description = 'Payment processing failed' AND updated_at > created_at`).Scan(&settled))
	require.Equal(t, 4, settled, "the settled payments carry the failure's description")
	_, err = pool.Exec(ctx, `INSERT INTO payments (id, order_id, merchant_id, amount, currency, method, vpa)
		VALUES ($1, $2, $3, 50000, 'INR', 'upi', 'user@bank')`, db.NewID("pay_"), single, merchant)
	require.ErrorContains(t, err, "payments_one_live_per_order")
}

// River's reindexer is configured with db.RiverJobIndexes: they must be
// exactly the indexes river_job has once migrated, or it rebuilds none of
// a dropped one's replacements and warns daily of the missing ones. The
// migrations that drop River's indexes keep their SQL down steps working.
func TestRiverJobIndexesAreTheTables(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := dbtest.Pool(t, 2)
	indexes := func() []string {
		var names []string
		require.NoError(t, pool.QueryRow(ctx, `SELECT array_agg(indexname::text ORDER BY indexname) FROM pg_indexes
			WHERE schemaname = current_schema() AND tablename = 'river_job'`).Scan(&names))
		return names
	}
	want := db.RiverJobIndexes()
	slices.Sort(want)
	require.Equal(t, want, indexes())

	sqlDB := stdlib.OpenDBFromPool(pool)
	defer sqlDB.Close()
	require.NoError(t, db.MigrateDownTo(ctx, sqlDB, 16))
	require.Subset(t, indexes(), []string{"river_job_kind", "river_job_args_index", "river_job_metadata_index"})
}

// Payments and refunds reach their merchant through their order's chain of
// foreign keys only (migration 00019): the chain still refuses a payment or
// a refund of another merchant than its order's, and the deletion of a
// merchant that has orders; no key of theirs points at merchants directly.
func TestMerchantChainOfPaymentsAndRefunds(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := dbtest.Pool(t, 2)
	merchant := func(name string) (id string) {
		require.NoError(t, pool.QueryRow(ctx, `INSERT INTO merchants (name, email, api_key, api_secret_hash, webhook_secret)
			VALUES ($1, $1 || '@example.com', 'key_' || $1, sha256($1::bytea), 'whsec') RETURNING id`, name).Scan(&id))
		return id
	}
	a, b := merchant("chain_a"), merchant("chain_b")
	order := db.NewID("order_")
	_, err := pool.Exec(ctx, `INSERT INTO orders (id, merchant_id, amount, currency) VALUES ($1, $2, 50000, 'INR')`, order, a)
	require.NoError(t, err)
	pay := func(id, merchantID string) error {
		_, err := pool.Exec(ctx, `INSERT INTO payments (id, order_id, merchant_id, amount, currency, method, vpa, status, captured)
			VALUES ($1, $2, $3, 50000, 'INR', 'upi', 'user@bank', 'success', true)`, id, order, merchantID)
		return err
	}
	payment := db.NewID("pay_")
	require.True(t, foreignKeyViolation(pay(db.NewID("pay_"), b)), "a payment of another merchant than its order's")
	require.NoError(t, pay(payment, a))
	refund := func(merchantID string) error {
		_, err := pool.Exec(ctx, `INSERT INTO refunds (id, payment_id, merchant_id, amount) VALUES ($1, $2, $3, 100)`,
			db.NewID("rfnd_"), payment, merchantID)
		return err
	}
	require.True(t, foreignKeyViolation(refund(b)), "a refund of another merchant than its payment's")
	require.NoError(t, refund(a))
	_, err = pool.Exec(ctx, `DELETE FROM merchants WHERE id = $1`, a)
	require.True(t, foreignKeyViolation(err), "a merchant with orders was deleted: %v", err)

	// And no check of payments or refunds locks the merchant's row.
	var direct []string
	require.NoError(t, pool.QueryRow(ctx, `SELECT coalesce(array_agg(conname::text), '{}') FROM pg_constraint
		WHERE contype = 'f' AND confrelid = 'merchants'::regclass AND conrelid IN ('payments'::regclass, 'refunds'::regclass)`).Scan(&direct))
	require.Empty(t, direct)
}

func foreignKeyViolation(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "23503"
}

// Migrating down through 00020 gives the previous version what it reads:
// an order paid by its successful payment is marked paid in its own row, at
// the moment of that payment's decision.
func TestMigratingDownMarksPaidOrders(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := dbtest.Pool(t, 2)
	var merchant string
	require.NoError(t, pool.QueryRow(ctx, `INSERT INTO merchants (name, email, api_key, api_secret_hash, webhook_secret)
		VALUES ('down', 'down@example.com', 'key_down', sha256('down'), 'whsec') RETURNING id`).Scan(&merchant))
	paid, open := db.NewID("order_"), db.NewID("order_")
	for _, o := range []string{paid, open} {
		_, err := pool.Exec(ctx, `INSERT INTO orders (id, merchant_id, amount, currency, updated_at)
			VALUES ($1, $2, 50000, 'INR', '2026-11-01T00:00:00Z')`, o, merchant)
		require.NoError(t, err)
	}
	_, err := pool.Exec(ctx, `INSERT INTO payments (id, order_id, merchant_id, amount, currency, method, vpa, status, decided_at)
		VALUES ($1, $2, $3, 50000, 'INR', 'upi', 'user@bank', 'success', '2026-11-02T00:00:00Z'),
		       ($4, $5, $3, 50000, 'INR', 'upi', 'user@bank', 'pending', NULL)`,
		db.NewID("pay_"), paid, merchant, db.NewID("pay_"), open)
	require.NoError(t, err)

	sqlDB := stdlib.OpenDBFromPool(pool)
	defer sqlDB.Close()
	require.NoError(t, db.MigrateDownTo(ctx, sqlDB, 19))
	status := func(id string) (s string, at time.Time) {
		require.NoError(t, pool.QueryRow(ctx, `SELECT status, updated_at FROM orders WHERE id = $1`, id).Scan(&s, &at))
		return s, at
	}
	s, at := status(paid)
	require.Equal(t, "paid", s)
	require.True(t, at.Equal(time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC)), "%v", at)
	s, _ = status(open)
	require.Equal(t, "created", s)
	var column bool
	require.NoError(t, pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM information_schema.columns
		WHERE table_name = 'payments' AND column_name = 'decided_at')`).Scan(&column))
	require.False(t, column)
}

// The lists' indexes are ascending (migration 00022), and the lists,
// newest first, are read by backward scans with no sort; migrating down
// gives the descending ones back, and up again the ascending ones, with no
// index of the rebuilds left over.
func TestListIndexesAscendAndServeNewestFirst(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := dbtest.Pool(t, 2)
	lists := map[string]string{ // index → a list of its shape
		"orders_merchant_created":          `FROM orders WHERE merchant_id = $1`,
		"payments_merchant_created":        `FROM payments WHERE merchant_id = $1`,
		"payments_merchant_status_created": `FROM payments WHERE merchant_id = $1 AND status = 'success'`,
		"payments_merchant_order_created":  `FROM payments WHERE merchant_id = $1 AND order_id = 'order_GGGGGGGGGGGGGGG1'`,
		"webhook_logs_merchant_created":    `FROM webhook_logs WHERE merchant_id = $1`,
		"webhook_logs_merchant_status":     `FROM webhook_logs WHERE merchant_id = $1 AND status = 'pending'`,
	}
	definitions := func() map[string]string {
		rows, _ := pool.Query(ctx, `SELECT c.relname::text, pg_get_indexdef(c.oid) || CASE WHEN i.indisvalid THEN '' ELSE ' INVALID' END
			FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
			WHERE c.relname = ANY ($1) AND c.relnamespace = current_schema()::regnamespace`, slices.Collect(maps.Keys(lists)))
		defs := map[string]string{}
		var name, def string
		_, err := pgx.ForEachRow(rows, []any{&name, &def}, func() error {
			defs[name] = def
			return nil
		})
		require.NoError(t, err)
		return defs
	}
	leftOver := func() {
		t.Helper()
		var n int
		require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM pg_class WHERE relkind = 'i'
			AND (relname LIKE '%\_asc' OR relname LIKE '%\_desc')`).Scan(&n))
		require.Zero(t, n, "indexes of the rebuilds left over")
	}
	ascending := func() {
		t.Helper()
		leftOver()
		defs := definitions()
		require.Len(t, defs, len(lists), "%v", defs)
		for index := range lists {
			require.Contains(t, defs, index)
			require.NotContains(t, defs[index], "DESC")
			require.NotContains(t, defs[index], "INVALID")
			require.Contains(t, defs[index], "created_at, id)")
		}
	}
	ascending()

	merchant := uuid.New()
	_, err := pool.Exec(ctx, `INSERT INTO merchants (id, name, email, api_key, api_secret_hash, webhook_secret)
		VALUES ($1, 'lists', 'lists@example.com', 'key_lists', sha256('lists'), 'whsec')`, merchant)
	require.NoError(t, err)
	dbtest.Grow(t, pool, merchant, 2000)
	_, err = pool.Exec(ctx, `ANALYZE`)
	require.NoError(t, err)
	for index, list := range lists {
		rows, _ := pool.Query(ctx, `EXPLAIN (COSTS OFF) SELECT id `+list+` ORDER BY created_at DESC, id DESC LIMIT 10 OFFSET 20`, merchant)
		lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
		require.NoError(t, err)
		plan := strings.Join(lines, "\n")
		require.Contains(t, plan, "Scan Backward using ", "%s: %s", index, plan)
		require.NotContains(t, plan, "Sort", plan)
	}

	sqlDB := stdlib.OpenDBFromPool(pool)
	defer sqlDB.Close()
	require.NoError(t, db.MigrateDownTo(ctx, sqlDB, 21))
	leftOver()
	descending := definitions()
	require.Len(t, descending, len(lists))
	for index, def := range descending {
		require.Contains(t, def, "created_at DESC, id DESC)", index)
		require.NotContains(t, def, "INVALID", index)
	}
	require.NoError(t, db.MigrateUpTo(ctx, sqlDB, 22))
	ascending()
}

// A process that starts while another migrates waits for the migrations'
// lock as long as its context lasts (goose's own lock gave up after five
// minutes, and the process exited), says in its log that it waits, and
// migrates once the lock is free. Not parallel: it shortens the polls.
func TestMigrateWaitsForTheMigrationsLock(t *testing.T) {
	defer db.SetMigrationLockPolls(10*time.Millisecond, 30*time.Millisecond)()
	ctx := context.Background()
	pool, sqlDB := openSQL(t, dbtest.New(t))
	holder, err := pool.Acquire(ctx)
	require.NoError(t, err)
	defer holder.Release()
	hold := func() {
		_, err := holder.Exec(ctx, `SELECT pg_advisory_lock($1)`, lock.DefaultLockID)
		require.NoError(t, err)
	}
	free := func() {
		var unlocked bool
		require.NoError(t, holder.QueryRow(ctx, `SELECT pg_advisory_unlock($1)`, lock.DefaultLockID).Scan(&unlocked))
		require.True(t, unlocked)
	}

	// goose takes the lock only with a migration pending.
	require.NoError(t, db.MigrateDownTo(ctx, sqlDB, 21))
	hold()
	var logged logBuffer
	done := migrating(ctx, sqlDB, &logged)
	require.Eventually(t, func() bool {
		return strings.Count(logged.String(), "waiting for the migrations' lock: another process is migrating this database") >= 3
	}, 30*time.Second, 5*time.Millisecond, "it waits, and says so again while it does")
	select {
	case r := <-done:
		t.Fatalf("Migrate returned while the lock was held: %v", r.err)
	default:
	}
	free()
	r := <-done
	require.NoError(t, r.err)
	require.Equal(t, []string{"00022_ascending_list_indexes.sql"}, r.applied)
	require.Contains(t, logged.String(), "migrations: took the migrations' lock")

	// A context that ends (a signal, at start-up) ends the wait.
	require.NoError(t, db.MigrateDownTo(ctx, sqlDB, 21))
	hold()
	stopped, cancel := context.WithCancel(ctx)
	defer cancel()
	var waited logBuffer
	go func() {
		for stopped.Err() == nil && !strings.Contains(waited.String(), "waiting for the migrations' lock") {
			time.Sleep(time.Millisecond)
		}
		cancel()
	}()
	_, err = db.Migrate(stopped, sqlDB, slog.New(slog.NewJSONHandler(&waited, nil)))
	require.ErrorIs(t, err, context.Canceled)
	require.ErrorContains(t, err, "the migrations' lock") // while it waits, or tries once more
	free()
}

// A migration that takes a busy table's lock (00020 adds a column to
// payments) gives up after its lock_timeout while a long transaction holds
// the table, so that the table's requests do not queue behind it for as
// long, and runs again until it can. Not parallel: it shortens the retry.
func TestMigrateRetriesALockTimeout(t *testing.T) {
	defer db.SetMigrationLockRetry(10 * time.Millisecond)()
	ctx := context.Background()
	pool, sqlDB := openSQL(t, dbtest.New(t))
	require.NoError(t, db.MigrateDownTo(ctx, sqlDB, 19))

	long, err := pool.Begin(ctx)
	require.NoError(t, err)
	defer long.Rollback(ctx)
	_, err = long.Exec(ctx, `SELECT count(*) FROM payments`) // holds the table until it ends
	require.NoError(t, err)

	var logged logBuffer
	done := migrating(ctx, sqlDB, &logged)
	require.Eventually(t, func() bool {
		return strings.Contains(logged.String(), "could not take a table's lock in time")
	}, time.Minute, 10*time.Millisecond, "it gives up its place in the lock queue, and tries again")
	require.NoError(t, long.Commit(ctx))
	r := <-done
	require.NoError(t, r.err)
	require.Equal(t, []string{"00020_order_paid_by_its_payment.sql", "00021_write_less_per_delivery.sql",
		"00022_ascending_list_indexes.sql"}, r.applied)
}

// openSQL opens a pool on url and database/sql over it, as paygate
// migrates, both closed when the test ends.
func openSQL(t *testing.T, url string) (*pgxpool.Pool, *sql.DB) {
	t.Helper()
	pool, err := db.Open(context.Background(), url, 4)
	require.NoError(t, err)
	sqlDB := stdlib.OpenDBFromPool(pool)
	t.Cleanup(func() {
		sqlDB.Close()
		pool.Close()
	})
	return pool, sqlDB
}

// migrated is what db.Migrate returned.
type migrated struct {
	applied []string
	err     error
}

// migrating runs db.Migrate in the background, logging JSON to logged.
func migrating(ctx context.Context, sqlDB *sql.DB, logged *logBuffer) <-chan migrated {
	done := make(chan migrated, 1)
	go func() {
		applied, err := db.Migrate(ctx, sqlDB, slog.New(slog.NewJSONHandler(logged, nil)))
		done <- migrated{applied, err}
	}()
	return done
}
