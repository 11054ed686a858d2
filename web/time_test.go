package web_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"paygate/db/dbtest"
	"paygate/web"
)

func TestMain(m *testing.M) { dbtest.Main(m) }

func TestTimeScans(t *testing.T) {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dbtest.New(t))
	require.NoError(t, err)
	defer conn.Close(ctx)
	var a web.Time
	var b *web.Time
	require.NoError(t, conn.QueryRow(ctx, `SELECT '2026-11-25 10:31:00.123+05:30'::timestamptz, NULL::timestamptz`).Scan(&a, &b))
	require.Nil(t, b)
	j, _ := web.Marshal(map[string]any{"a": a, "b": b})
	require.Equal(t, `{"a":"2026-11-25T05:01:00Z","b":null}`, string(j))
	var c web.Time
	require.NoError(t, conn.QueryRow(ctx, `SELECT $1::timestamptz`, web.Time(time.Unix(100, 0))).Scan(&c))
	require.Equal(t, int64(100), c.Unix())
}
