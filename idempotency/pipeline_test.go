package idempotency_test

import (
	"context"
	"net/http"
	"strconv"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/labstack/echo/v4"
	"github.com/stretchr/testify/require"

	"paygate/app/apptest"
	"paygate/idempotency"
	"paygate/merchants"
	"paygate/web"
)

// statementRoute adds POST /test/statement, which inserts widgets through
// DoStatement: one, or as many as the body's "n".
func (b *bundle) statementRoute(t *testing.T) {
	t.Helper()
	b.a.Echo.POST("/test/statement", func(c echo.Context) error {
		var req struct {
			Name string `json:"name"`
			N    int    `json:"n"`
		}
		raw, err := web.Bind(c, &req)
		if err != nil {
			return err
		}
		if req.Name == "" {
			return web.BadField("name", "name is required")
		}
		m := merchants.FromContext(c)
		return b.a.Idempotency.DoStatement(c, raw, func(ctx context.Context, tx pgx.Tx) (int, any, error) {
			var id int64
			for range max(req.N, 1) {
				if err := tx.QueryRow(ctx, `INSERT INTO widgets (merchant_id, name) VALUES ($1, $2) RETURNING id`,
					m.ID, req.Name).Scan(&id); err != nil {
					return 0, nil, err
				}
			}
			return http.StatusCreated, map[string]any{"id": id}, nil
		})
	}, b.a.Auth.Secret)
}

// Without a key a one-statement use case runs on its own and commits; a
// second statement never reaches the database; with a key it runs in a
// transaction with the key, like any keyed request.
func TestDoStatement(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.statementRoute(t)
	post := func(body, key string) int {
		h := apptest.TestMerchant()
		if key != "" {
			h = apptest.With(h, idempotency.Header, key)
		}
		return apptest.Do(t, b.a.Echo, http.MethodPost, "/test/statement", body, h).Code
	}
	require.Equal(t, http.StatusCreated, post(`{"name":"one"}`, ""))
	require.Equal(t, 1, b.widgets(t))
	require.Equal(t, 0, b.keys(t))

	require.Equal(t, http.StatusInternalServerError, post(`{"name":"two","n":2}`, ""))
	require.Equal(t, 1, b.count(t, `SELECT count(*) FROM widgets WHERE name = 'two'`), "the second statement was refused")

	require.Equal(t, http.StatusBadRequest, post(`{}`, ""))

	require.Equal(t, http.StatusCreated, post(`{"name":"keyed","n":2}`, "k"))
	require.Equal(t, http.StatusCreated, post(`{"name":"keyed","n":2}`, "k"))
	require.Equal(t, 2, b.count(t, `SELECT count(*) FROM widgets WHERE name = 'keyed'`))
	require.Equal(t, 1, b.keys(t))
}

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
	}
	require.Equal(t, int64(1), pool.Stat().NewConnsCount(), "every request left its connection idle")
	require.Equal(t, 10, b.widgets(t))
	require.Equal(t, 10, b.keys(t))
}
