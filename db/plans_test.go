package db_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"paygate/db"
	"paygate/db/dbtest"
)

// A batch runs on kept plans only once each of its tables is as large on
// disk as asked and has statistics taken at half that size or more (which
// the measure gives a table with rows that has none such); one that reads
// no table at once. The
// statements take the mode of the connection they run on.
func TestBatchesKeepPlansOnceTablesHaveGrown(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := dbtest.New(t)
	main, err := db.Open(ctx, url, 4)
	require.NoError(t, err)
	defer main.Close()
	var logged logBuffer
	b, err := db.OpenKeptPlans(ctx, url, 2, main, slog.New(slog.NewJSONHandler(&logged, nil)))
	require.NoError(t, err)
	defer b.Close()
	b.SetMinBytes(64 << 10)
	// Analyzed by paygate only: autovacuum's would be counted apart.
	_, err = main.Exec(ctx, `CREATE TABLE grows (id int PRIMARY KEY) WITH (autovacuum_enabled = off);
		CREATE TABLE stays (id int PRIMARY KEY) WITH (autovacuum_enabled = off);
		INSERT INTO grows SELECT generate_series(1, 100)`)
	require.NoError(t, err)

	require.Same(t, main, b.Measured("grows"), "100 rows: 8 kB")
	require.True(t, hasStatistics(t, main, "grows"), "a table read with rows and no statistics is analyzed")
	require.Equal(t, 10*time.Second, b.MeasureAge(), "no table awaits statistics")
	require.Same(t, b.Kept(), b.For(nil), "no table")
	_, err = main.Exec(ctx, `INSERT INTO grows SELECT generate_series(101, 3000)`)
	require.NoError(t, err)
	require.Same(t, b.Kept(), b.Measured("grows"), "3,000 rows: 112 kB")
	require.Equal(t, 2, analyses(t, main, "grows"), "its statistics were of 100 rows: analyzed again")
	require.Same(t, main, b.For(nil, "grows", "stays"), "a table still small")
	require.Same(t, main, b.For(nil, "missing"))

	// A table whose only rows are not committed yet (a new install's first
	// batch, say) is analyzed to no statistics, and that is no warning.
	_, err = main.Exec(ctx, `CREATE TABLE inflight (id int PRIMARY KEY) WITH (autovacuum_enabled = off)`)
	require.NoError(t, err)
	writer, err := main.Begin(ctx)
	require.NoError(t, err)
	defer writer.Rollback(ctx)
	_, err = writer.Exec(ctx, `INSERT INTO inflight SELECT generate_series(1, 100)`)
	require.NoError(t, err)
	require.Same(t, main, b.Measured("inflight"))
	require.Equal(t, 1, analyses(t, main, "inflight"))
	require.False(t, hasStatistics(t, main, "inflight"))
	require.NotContains(t, logged.String(), `"level":"WARN"`)
	require.NoError(t, writer.Commit(ctx))

	// Grown, but its rows deleted: ANALYZE finds none and leaves no
	// statistics, so its batches wait on the main pool, and it is analyzed
	// again only once it has doubled.
	_, err = main.Exec(ctx, `CREATE TABLE emptied (id int PRIMARY KEY) WITH (autovacuum_enabled = off);
		INSERT INTO emptied SELECT generate_series(1, 3000); DELETE FROM emptied`)
	require.NoError(t, err)
	require.Same(t, main, b.Measured("emptied"), "112 kB without statistics")
	require.Same(t, main, b.Measured("emptied"))
	require.False(t, hasStatistics(t, main, "emptied"))
	require.Equal(t, 1, analyses(t, main, "emptied"))
	require.Contains(t, logged.String(), `"level":"WARN","msg":"db: analyzed a table, which still has no statistics: its rows are deleted, or paygate's role does not own it (autovacuum's are awaited)","table":"emptied"`,
		"a table of kept plans' size left without statistics is told")
	_, err = main.Exec(ctx, `INSERT INTO emptied SELECT generate_series(1, 6000)`)
	require.NoError(t, err)
	require.Same(t, b.Kept(), b.Measured("emptied"), "doubled, analyzed again")

	// An empty table awaits its statistics: measured every second until
	// it has rows, and analyzed then.
	require.Equal(t, time.Second, b.MeasureAge(), "stays is empty")
	_, err = main.Exec(ctx, `INSERT INTO stays VALUES (1)`)
	require.NoError(t, err)
	b.Measured("stays")
	require.True(t, hasStatistics(t, main, "stays"))
	require.Equal(t, 10*time.Second, b.MeasureAge())
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

// hasStatistics is whether ANALYZE has left statistics of table.
func hasStatistics(t *testing.T, pool *pgxpool.Pool, table string) bool {
	t.Helper()
	var has bool
	require.NoError(t, pool.QueryRow(context.Background(), `SELECT EXISTS (SELECT FROM pg_stats WHERE tablename = $1)`, table).Scan(&has))
	return has
}

// analyses is how many times table has been analyzed.
func analyses(t *testing.T, pool *pgxpool.Pool, table string) int {
	t.Helper()
	var n int
	require.NoError(t, pool.QueryRow(context.Background(), `SELECT analyze_count FROM pg_stat_user_tables WHERE relname = $1`, table).Scan(&n))
	return n
}
