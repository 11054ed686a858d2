package db_test

import (
	"context"
	"log/slog"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"paygate/db"
	"paygate/db/dbtest"
)

// A batch runs on kept plans only once each of its tables is as large on
// disk as asked; one that reads no table at once. The
// statements take the mode of the connection they run on.
func TestBatchesKeepPlansOnceTablesHaveGrown(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := dbtest.New(t)
	main, err := db.Open(ctx, url, 4)
	require.NoError(t, err)
	defer main.Close()
	b, err := db.OpenKeptPlans(ctx, url, 2, main, slog.Default())
	require.NoError(t, err)
	defer b.Close()
	b.SetMinBytes(64 << 10)
	_, err = main.Exec(ctx, `CREATE TABLE grows (id int PRIMARY KEY); CREATE TABLE stays (id int PRIMARY KEY);
		INSERT INTO grows SELECT generate_series(1, 100)`)
	require.NoError(t, err)

	require.Same(t, main, b.Measured("grows"), "100 rows: 8 kB")
	require.Same(t, b.Kept(), b.For(nil), "no table")
	_, err = main.Exec(ctx, `INSERT INTO grows SELECT generate_series(101, 3000)`)
	require.NoError(t, err)
	require.Same(t, b.Kept(), b.Measured("grows"), "3,000 rows: 112 kB")
	require.Same(t, main, b.For(nil, "grows", "stays"), "a table still small")
	require.Same(t, main, b.For(nil, "missing"))
	var none *db.KeptPlans
	require.Same(t, main, none.For(main, "grows"), "no pool of kept plans")

	require.Equal(t, db.PlannedEachTime, db.PlanMode(main))
	require.Equal(t, pgx.QueryExecModeCacheStatement, db.PlanMode(b.Kept()))
	require.NoError(t, db.WithTx(ctx, b.Kept(), func(tx pgx.Tx) error {
		require.Equal(t, pgx.QueryExecModeCacheStatement, db.PlanMode(tx))
		var mode string
		require.NoError(t, tx.QueryRow(ctx, `SELECT current_setting('plan_cache_mode')`).Scan(&mode))
		require.Equal(t, "force_generic_plan", mode)
		return nil
	}))
	require.NoError(t, db.WithTx(ctx, main, func(tx pgx.Tx) error {
		require.Equal(t, db.PlannedEachTime, db.PlanMode(tx))
		return nil
	}))
}
