package idempotency

import (
	"context"
	"errors"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"paygate/db/dbtest"
)

// A first statement that fails before BEGIN reaches the server (it cannot
// even be prepared) leaves no transaction: nothing after it may run on its
// own, and COMMIT may not report success outside a transaction.
func TestPipelinedBeginFailureClosesTheTransaction(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, dbtest.New(t))
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	_, err = pool.Exec(ctx, `CREATE TABLE things (n int)`)
	require.NoError(t, err)

	tx, err := beginPipelined(ctx, pool)
	require.NoError(t, err)
	_, err = tx.Exec(ctx, `INSERT INTO no_such_table VALUES ($1)`, 1)
	require.Error(t, err)
	_, err = tx.Exec(ctx, `INSERT INTO things VALUES (1)`)
	require.ErrorIs(t, err, pgx.ErrTxClosed)
	require.True(t, errors.Is(tx.Commit(ctx), pgx.ErrTxClosed))
	tx.release(ctx)

	var n int
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM things`).Scan(&n))
	require.Zero(t, n, "nothing ran outside a transaction")
	// The connection went back clean: the next transaction works.
	tx, err = beginPipelined(ctx, pool)
	require.NoError(t, err)
	_, err = tx.Exec(ctx, `INSERT INTO things VALUES (2)`)
	require.NoError(t, err)
	require.NoError(t, tx.Commit(ctx))
	tx.release(ctx)
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM things`).Scan(&n))
	require.Equal(t, 1, n)
}
