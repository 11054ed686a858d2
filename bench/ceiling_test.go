package main

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"paygate/db"
	"paygate/db/dbtest"
)

func TestMain(m *testing.M) { dbtest.Main(m) }

// flushStats has every connection's commits reported before it returns. A
// backend reports by itself at most once a second, so the commits made
// here, just after each connection's first report, would be missing from a
// snapshot taken at once without it.
func TestFlushStatsReportsEveryConnectionsCommits(t *testing.T) {
	ctx := context.Background()
	url := dbtest.New(t)
	pool, err := db.Open(ctx, url, 4)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	observer, err := pgx.Connect(ctx, url)
	require.NoError(t, err)
	t.Cleanup(func() { observer.Close(ctx) })
	commits := func() int64 {
		t.Helper()
		var n int64
		require.NoError(t, observer.QueryRow(ctx,
			`SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()`).Scan(&n))
		return n
	}

	var version int
	require.NoError(t, observer.QueryRow(ctx, `SELECT current_setting('server_version_num')::int`).Scan(&version))
	require.Equal(t, version >= 150000, serverAtLeast15(observer), "the flush's way read from the server's version")

	conns := make([]*pgxpool.Conn, 4)
	for i := range conns {
		conns[i], err = pool.Acquire(ctx)
		require.NoError(t, err)
		_, err = conns[i].Exec(ctx, `SELECT 1`) // its first report, which is not held back
		require.NoError(t, err)
	}
	before := commits()
	const each = 25
	for _, c := range conns {
		for range each {
			_, err := c.Exec(ctx, `SELECT 1`) // a transaction, and so a commit, of its own
			require.NoError(t, err)
		}
		c.Release()
	}
	flushed := flushStats(ctx, pool)
	require.Equal(t, len(conns), flushed)
	require.GreaterOrEqual(t, commits()-before, int64(len(conns)*each+flushed),
		"every connection's commits reported, the flush's own included")
}
