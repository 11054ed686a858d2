package db_test

import (
	"context"
	"errors"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"paygate/db"
	"paygate/db/dbtest"
)

// thingsPool is a pool on a fresh database with a table things (n int
// PRIMARY KEY).
func thingsPool(t *testing.T) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), dbtest.New(t))
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	_, err = pool.Exec(context.Background(), `CREATE TABLE things (n int PRIMARY KEY)`)
	require.NoError(t, err)
	return pool
}

// A first statement that fails before BEGIN reaches the server (it cannot
// even be prepared) leaves no transaction: nothing after it may run on its
// own, and COMMIT may not report success outside a transaction.
func TestPipelinedBeginFailureClosesTheTransaction(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := thingsPool(t)

	tx, err := db.BeginPipelined(ctx, pool)
	require.NoError(t, err)
	_, err = tx.Exec(ctx, `INSERT INTO no_such_table VALUES ($1)`, 1)
	require.Error(t, err)
	_, err = tx.Exec(ctx, `INSERT INTO things VALUES (1)`)
	require.ErrorIs(t, err, pgx.ErrTxClosed)
	require.True(t, errors.Is(tx.Commit(ctx), pgx.ErrTxClosed))
	tx.Release(ctx)

	var n int
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM things`).Scan(&n))
	require.Zero(t, n, "nothing ran outside a transaction")
	// The connection went back clean: the next transaction works.
	tx, err = db.BeginPipelined(ctx, pool)
	require.NoError(t, err)
	_, err = tx.Exec(ctx, `INSERT INTO things VALUES (2)`)
	require.NoError(t, err)
	require.NoError(t, tx.Commit(ctx))
	tx.Release(ctx)
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM things`).Scan(&n))
	require.Equal(t, 1, n)
}

// Statements given to ExecAtCommit travel with the COMMIT and commit with
// the transaction; should something else be sent first, they go before it;
// one that fails fails the commit, and nothing of the transaction is kept;
// a rollback never sends them.
func TestPipelinedExecAtCommit(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := thingsPool(t)
	count := func() (n int) {
		require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM things`).Scan(&n))
		return n
	}
	run := func(work func(tx *db.PipelinedTx) error) error {
		tx, err := db.BeginPipelined(ctx, pool)
		require.NoError(t, err)
		defer tx.Release(ctx)
		if err := work(tx); err != nil {
			return err
		}
		return tx.Commit(ctx)
	}

	// Queued, then committed with the COMMIT.
	require.NoError(t, run(func(tx *db.PipelinedTx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO things VALUES (1)`); err != nil {
			return err
		}
		tx.ExecAtCommit(`INSERT INTO things VALUES ($1)`, 2)
		require.True(t, tx.Queued(), "not sent before the commit")
		return nil
	}))
	require.Equal(t, 2, count())

	// A later statement sees what was queued before it.
	require.NoError(t, run(func(tx *db.PipelinedTx) error {
		tx.ExecAtCommit(`INSERT INTO things VALUES ($1)`, 3)
		var n int
		require.NoError(t, tx.QueryRow(ctx, `SELECT count(*) FROM things`).Scan(&n))
		require.Equal(t, 3, n)
		return nil
	}))
	require.Equal(t, 3, count())

	// A queued statement that fails: the commit fails, the transaction's
	// other write is not kept, and the connection goes back clean.
	err := run(func(tx *db.PipelinedTx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO things VALUES (4)`); err != nil {
			return err
		}
		tx.ExecAtCommit(`INSERT INTO things VALUES ($1)`, 1) // a duplicate key
		return nil
	})
	require.Error(t, err)
	require.Equal(t, 3, count(), "nothing of the failed transaction was kept")

	// Sent before an Exec too, in order.
	require.NoError(t, run(func(tx *db.PipelinedTx) error {
		tx.ExecAtCommit(`INSERT INTO things VALUES ($1)`, 5)
		tag, err := tx.Exec(ctx, `DELETE FROM things WHERE n = 5`)
		require.Equal(t, int64(1), tag.RowsAffected())
		return err
	}))
	require.Equal(t, 3, count())

	// Only queued statements: BEGIN travels with them and the COMMIT.
	require.NoError(t, run(func(tx *db.PipelinedTx) error {
		tx.ExecAtCommit(`INSERT INTO things VALUES ($1)`, 7)
		return nil
	}))
	require.Equal(t, 4, count())
}

// A statement given to db.QueryAtCommit travels with the COMMIT, and its
// rows are read when they come, before Commit returns; in a plain pgx
// transaction it runs at once.
func TestQueryAtCommit(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := thingsPool(t)
	var got []int
	scan := func(rows pgx.Rows) error {
		var n int
		_, err := pgx.ForEachRow(rows, []any{&n}, func() error { got = append(got, n); return nil })
		return err
	}

	tx, err := db.BeginPipelined(ctx, pool)
	require.NoError(t, err)
	require.NoError(t, db.QueryAtCommit(ctx, tx, scan, `INSERT INTO things SELECT generate_series(1, $1) RETURNING n`, 2))
	require.Nil(t, got, "not sent before the commit")
	require.NoError(t, tx.Commit(ctx))
	tx.Release(ctx)
	require.Equal(t, []int{1, 2}, got)

	got = nil
	tx, err = db.BeginPipelined(ctx, pool)
	require.NoError(t, err)
	require.NoError(t, db.QueryAtCommit(ctx, tx, scan, `INSERT INTO things VALUES ($1) RETURNING n`, 1)) // a duplicate key
	require.Error(t, tx.Commit(ctx))
	tx.Release(ctx)
	require.Nil(t, got)

	plain, err := pool.Begin(ctx)
	require.NoError(t, err)
	require.NoError(t, db.QueryAtCommit(ctx, plain, scan, `INSERT INTO things VALUES (3) RETURNING n`))
	require.Equal(t, []int{3}, got, "run at once")
	require.NoError(t, plain.Commit(ctx))
}

// A statement that asks to be planned each time (db.PlannedEachTime, as on
// the main pool) cannot go in a batch, which pgx runs in the connection's
// mode: it is sent at once, unprepared. One that asks for its plan to be
// kept (as on a connection of kept plans) travels with the COMMIT,
// prepared.
func TestPipelinedAtCommitByPlanMode(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := thingsPool(t)
	tx, err := db.BeginPipelined(ctx, pool)
	require.NoError(t, err)
	defer tx.Release(ctx)
	require.NoError(t, db.ExecAtCommit(ctx, tx, `INSERT INTO things VALUES ($1) -- each time`, db.PlannedEachTime, 1))
	require.False(t, tx.Queued(), "sent at once")
	require.NoError(t, db.ExecAtCommit(ctx, tx, `INSERT INTO things VALUES ($1) -- kept`, pgx.QueryExecModeCacheStatement, 2))
	require.True(t, tx.Queued(), "to go with the COMMIT")
	prepared := func(mark string) (n int) {
		require.NoError(t, tx.QueryRow(ctx, `SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE '%' || $1`, mark).Scan(&n))
		return n
	}
	require.Equal(t, 0, prepared("-- each time"))
	require.Equal(t, 1, prepared("-- kept"), "sent before the query, as a batch sends it")
	require.NoError(t, tx.Commit(ctx))
	var n int
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM things`).Scan(&n))
	require.Equal(t, 2, n)
}
