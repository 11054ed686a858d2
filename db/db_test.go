package db_test

import (
	"context"
	"fmt"
	"log/slog"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/stretchr/testify/require"

	"paygate/db"
	"paygate/db/dbtest"
)

func TestMain(m *testing.M) { dbtest.Main(m) }

// The template is already migrated: applying the migrations again (twice)
// must change nothing and fail nothing.
func TestMigrateTwiceChangesNothing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, sqlDB := openSQL(t, dbtest.New(t))

	schema := func() string {
		var s string
		require.NoError(t, pool.QueryRow(ctx, `SELECT string_agg(table_name || '.' || column_name || ':' || data_type, ',' ORDER BY table_name, column_name)
			FROM information_schema.columns WHERE table_schema = 'public'`).Scan(&s))
		return s
	}
	before := schema()
	for range 2 {
		applied, err := db.Migrate(ctx, sqlDB, slog.Default())
		require.NoError(t, err)
		require.Empty(t, applied)
	}
	require.Equal(t, before, schema())

	var riverVersion int
	require.NoError(t, pool.QueryRow(ctx, `SELECT max(version) FROM river_migration`).Scan(&riverVersion))
	require.Equal(t, 8, riverVersion)
}

func TestIsUnavailable(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, err := db.Open(ctx, "postgres:///nowhere?host=/nonexistent-socket-dir&connect_timeout=1", 1)
	require.NoError(t, err)
	defer pool.Close()
	err = pool.Ping(ctx)
	require.Error(t, err)
	require.True(t, db.IsUnavailable(err), "%v", err)
}

func TestIsID(t *testing.T) {
	t.Parallel()
	for _, prefix := range []string{"order_", "pay_", "rfnd_"} {
		require.True(t, db.IsID(prefix, db.NewID(prefix)), prefix)
	}
	for _, s := range []string{"", "rfnd_", "rfnd_AAAAAAAAAAAAAAA", "rfnd_AAAAAAAAAAAAAAAAA", "pay_AAAAAAAAAAAAAAAA",
		"rfnd_AAAAAAAAAAAAAAA-", "rfnd_AAAAAAAAAAAAAAA\x00", "rfnd_AAAAAAAAAAAAAAAé"} {
		require.False(t, db.IsID("rfnd_", s), "%q", s)
	}
	require.True(t, db.IsID("rfnd_", "rfnd_Az09Az09Az09Az09"))
}

// The pool's connections encode and scan uuid.UUID as PostgreSQL's uuid in
// binary, not through its driver.Valuer and sql.Scanner (a string each way).
func TestPoolEncodesUUIDsInBinary(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := dbtest.Pool(t, 1)
	id := uuid.New()
	var back uuid.UUID
	var null *uuid.UUID
	require.NoError(t, pool.QueryRow(ctx, `SELECT $1::uuid, NULL::uuid`, id).Scan(&back, &null))
	require.Equal(t, id, back)
	require.Nil(t, null)
	c, err := pool.Acquire(ctx)
	require.NoError(t, err)
	defer c.Release()
	plan := c.Conn().TypeMap().PlanEncode(pgtype.UUIDOID, pgtype.BinaryFormatCode, id)
	require.NotNil(t, plan)
	require.NotContains(t, fmt.Sprintf("%T", plan), "DriverValuer")
}
