package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/labstack/echo/v4"
	"github.com/stretchr/testify/require"

	"paygate/app"
	"paygate/app/apptest"
	"paygate/db"
	"paygate/db/dbtest"
	"paygate/merchants"
	"paygate/web"
)

func TestMain(m *testing.M) { dbtest.Main(m) }

// errorBody decodes the envelope and fails when the body is anything else.
func errorBody(t *testing.T, body []byte) web.Error {
	t.Helper()
	var env struct {
		Error *web.Error `json:"error"`
	}
	require.NoError(t, json.Unmarshal(body, &env), "body: %s", body)
	require.NotNil(t, env.Error, "body: %s", body)
	return *env.Error
}

func TestAuthentication(t *testing.T) {
	t.Parallel()
	a := apptest.New(t)
	// A route behind the real Secret middleware that echoes who it saw.
	a.Echo.GET("/test/whoami", func(c echo.Context) error {
		return c.String(http.StatusOK, merchants.FromContext(c).ID.String())
	}, a.Auth.Secret)
	basic := func(user, pass string) http.Header {
		r, _ := http.NewRequest(http.MethodGet, "/", nil)
		r.SetBasicAuth(user, pass)
		return r.Header
	}
	key, secret := merchants.TestMerchantKey, merchants.TestMerchantSecret
	for _, tc := range []struct {
		name   string
		header http.Header
		ok     bool
	}{
		{"headers", apptest.TestMerchant(), true},
		{"basic", basic(key, secret), true},
		{"wrong secret", http.Header{"X-Api-Key": {key}, "X-Api-Secret": {"secret_test_wrong"}}, false},
		{"basic wrong secret", basic(key, "nope"), false},
		{"unknown key", http.Header{"X-Api-Key": {"key_unknown"}, "X-Api-Secret": {secret}}, false},
		{"missing headers", nil, false},
		{"key only", http.Header{"X-Api-Key": {key}}, false},
		{"secret only", http.Header{"X-Api-Secret": {secret}}, false},
		{"secret of another merchant's key", http.Header{"X-Api-Key": {key}, "X-Api-Secret": {"secret_other"}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Twice: the second answer comes through the credential cache.
			for range 2 {
				rec := apptest.Do(t, a.Echo, http.MethodGet, "/test/whoami", "", tc.header)
				if tc.ok {
					require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
					require.Equal(t, merchants.TestMerchantID.String(), rec.Body.String())
					continue
				}
				require.Equal(t, http.StatusUnauthorized, rec.Code)
				require.JSONEq(t, `{"error":{"code":"UNAUTHORIZED","description":"Invalid API credentials"}}`, rec.Body.String())
			}
		})
	}
}

func TestOtherMerchantAuthenticates(t *testing.T) {
	t.Parallel()
	a := apptest.New(t)
	m, hdr := apptest.NewMerchant(t, a, "other@example.com")
	a.Echo.GET("/test/whoami", func(c echo.Context) error {
		return c.String(http.StatusOK, merchants.FromContext(c).ID.String())
	}, a.Auth.Secret)
	rec := apptest.Do(t, a.Echo, http.MethodGet, "/test/whoami", "", hdr)
	require.Equal(t, http.StatusOK, rec.Code)
	require.Equal(t, m.ID.String(), rec.Body.String())

	// Its secret is stored only as a hash.
	var stored int
	require.NoError(t, a.Pool.QueryRow(context.Background(),
		`SELECT count(*) FROM merchants WHERE position($1::bytea in api_secret_hash) > 0 OR api_key = $2`,
		[]byte(m.APISecret), m.APISecret).Scan(&stored))
	require.Zero(t, stored)
}

func TestErrorEnvelope(t *testing.T) {
	t.Parallel()
	a := apptest.New(t)
	type body struct {
		Amount int64  `json:"amount"`
		Name   string `json:"name"`
	}
	a.Echo.POST("/test/bind", func(c echo.Context) error {
		var b body
		if _, err := web.Bind(c, &b); err != nil {
			return err
		}
		return web.JSON(c, http.StatusOK, b)
	})
	a.Echo.GET("/test/boom", func(echo.Context) error { return fmt.Errorf("secret internals: password=hunter2") })

	for _, tc := range []struct {
		name, method, path, body string
		status                   int
		code                     web.Code
		field                    string
		description              string
	}{
		{"unknown route", http.MethodGet, "/api/v1/nothing-here", "", 404, web.CodeNotFound, "", "Route not found"},
		{"wrong method", http.MethodDelete, "/health", "", 405, web.CodeBadRequest, "", "Method not allowed for this route"},
		{"malformed json", http.MethodPost, "/test/bind", `{"amount": `, 400, web.CodeBadRequest, "", ""},
		{"not an object", http.MethodPost, "/test/bind", `[1,2]`, 400, web.CodeBadRequest, "", "Request body must be a JSON object"},
		{"wrong type", http.MethodPost, "/test/bind", `{"amount":"5"}`, 400, web.CodeBadRequest, "amount", "amount must be an integer"},
		{"fraction", http.MethodPost, "/test/bind", `{"amount":5.5}`, 400, web.CodeBadRequest, "amount", "amount must be an integer"},
		{"too large", http.MethodPost, "/test/bind", `{"name":"` + strings.Repeat("x", 70<<10) + `"}`, 413, web.CodeBadRequest, "", "Request body exceeds the limit of 64 KiB"},
		{"unexpected error", http.MethodGet, "/test/boom", "", 500, web.CodeInternal, "", "An unexpected error occurred"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := apptest.Do(t, a.Echo, tc.method, tc.path, tc.body, nil)
			require.Equal(t, tc.status, rec.Code, rec.Body.String())
			require.Equal(t, echo.MIMEApplicationJSON, rec.Header().Get("Content-Type"))
			require.NotEmpty(t, rec.Header().Get(echo.HeaderXRequestID))
			e := errorBody(t, rec.Body.Bytes())
			require.Equal(t, tc.code, e.Code)
			require.Equal(t, tc.field, e.Field)
			if tc.description != "" {
				require.Equal(t, tc.description, e.Description)
			}
			require.NotContains(t, rec.Body.String(), "hunter2")
		})
	}

	// A body over the limit without Content-Length is cut off while reading.
	req := httptest.NewRequest(http.MethodPost, "/test/bind", strings.NewReader(`{"name":"`+strings.Repeat("y", 70<<10)+`"}`))
	req.ContentLength = -1
	resp := httptest.NewRecorder()
	a.Echo.ServeHTTP(resp, req)
	require.Equal(t, http.StatusRequestEntityTooLarge, resp.Code)
	require.Equal(t, web.CodeBadRequest, errorBody(t, resp.Body.Bytes()).Code)
}

// A worker's first heartbeat is written before Start returns: /health is
// healthy from the moment HTTP is served, not 503 (an error line in the log
// and a failed probe) at every start.
func TestHealthAndJobStatus(t *testing.T) {
	t.Parallel()
	a := apptest.New(t)
	var health map[string]any
	rec := apptest.Do(t, a.Echo, http.MethodGet, "/health", "", nil)
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &health))
	require.Equal(t, "healthy", health["status"])
	require.Equal(t, "connected", health["database"])
	require.Equal(t, "running", health["worker"])
	_, err := time.Parse(time.RFC3339, health["timestamp"].(string))
	require.NoError(t, err)

	rec = apptest.Do(t, a.Echo, http.MethodGet, "/api/v1/test/jobs/status", "", nil)
	require.Equal(t, http.StatusOK, rec.Code)
	var status map[string]any
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &status))
	require.Equal(t, "running", status["worker_status"])
	for _, k := range []string{"pending", "processing", "completed", "failed"} {
		require.Contains(t, status, k)
	}
}

// With the workers stopped, no heartbeat is fresh: health says so.
func TestHealthWithoutWorker(t *testing.T) {
	t.Parallel()
	cfg := apptest.Config(t)
	a, err := app.New(context.Background(), cfg, app.RoleAPI, apptest.Logger())
	require.NoError(t, err)
	defer a.Close(context.Background())
	require.NoError(t, a.Start(context.Background()))
	rec := apptest.Do(t, a.Echo, http.MethodGet, "/health", "", nil)
	require.Equal(t, http.StatusServiceUnavailable, rec.Code)
	require.JSONEq(t, `"unhealthy"`, mustField(t, rec.Body.Bytes(), "status"))
	require.JSONEq(t, `"stopped"`, mustField(t, rec.Body.Bytes(), "worker"))
	rec = apptest.Do(t, a.Echo, http.MethodGet, "/api/v1/test/jobs/status", "", nil)
	require.JSONEq(t, `"stopped"`, mustField(t, rec.Body.Bytes(), "worker_status"))
}

// When the database disappears, health answers 503 promptly.
func TestHealthWhenDatabaseIsGone(t *testing.T) {
	t.Parallel()
	cfg := apptest.Config(t)
	a, err := app.New(context.Background(), cfg, app.RoleAll, apptest.Logger())
	require.NoError(t, err)
	defer a.Close(context.Background())
	require.NoError(t, a.Start(context.Background()))

	u, err := url.Parse(cfg.DatabaseURL)
	require.NoError(t, err)
	dbName := strings.TrimPrefix(u.Path, "/")
	u.Path = "/postgres"
	admin, err := pgx.Connect(context.Background(), u.String())
	require.NoError(t, err)
	defer admin.Close(context.Background())
	_, err = admin.Exec(context.Background(), fmt.Sprintf(`DROP DATABASE %q WITH (FORCE)`, dbName))
	require.NoError(t, err)

	rec := apptest.Do(t, a.Echo, http.MethodGet, "/health", "", nil)
	require.Equal(t, http.StatusServiceUnavailable, rec.Code, rec.Body.String())
	require.JSONEq(t, `"unhealthy"`, mustField(t, rec.Body.Bytes(), "status"))
	require.JSONEq(t, `"disconnected"`, mustField(t, rec.Body.Bytes(), "database"))

	// An API call answers 503 with the envelope, not a 500.
	a.Echo.GET("/test/query", func(c echo.Context) error {
		_, err := a.Pool.Exec(c.Request().Context(), "SELECT 1")
		return err
	})
	rec = apptest.Do(t, a.Echo, http.MethodGet, "/test/query", "", nil)
	require.Equal(t, http.StatusServiceUnavailable, rec.Code, rec.Body.String())
	require.Equal(t, web.CodeUnavailable, errorBody(t, rec.Body.Bytes()).Code)
}

func TestTestMerchantRoute(t *testing.T) {
	t.Parallel()
	a := apptest.New(t)
	for _, hdr := range []http.Header{nil, apptest.TestMerchant()} {
		rec := apptest.Do(t, a.Echo, http.MethodGet, "/api/v1/test/merchant", "", hdr)
		require.Equal(t, http.StatusOK, rec.Code)
		require.JSONEq(t, `{"id":"550e8400-e29b-41d4-a716-446655440000","email":"test@example.com","api_key":"key_test_abc123","seeded":true}`, rec.Body.String())
	}
	rec := apptest.Do(t, a.Echo, http.MethodGet, "/api/v1/test/merchant", "", apptest.With(apptest.TestMerchant(), "X-Api-Secret", "wrong"))
	require.Equal(t, http.StatusUnauthorized, rec.Code)

	// Outside test mode on an external database nothing is seeded.
	b := apptest.New(t, func(c *app.Config) { c.TestMode = false })
	rec = apptest.Do(t, b.Echo, http.MethodGet, "/api/v1/test/merchant", "", nil)
	require.Equal(t, http.StatusNotFound, rec.Code)
}

func TestConfig(t *testing.T) {
	t.Parallel()
	env := envOf
	cfg, err := app.LoadConfig(env())
	require.NoError(t, err)
	require.Equal(t, 8000, cfg.Port)
	require.Equal(t, "./data", cfg.DataDir)
	require.False(t, cfg.TestMode)
	require.False(t, cfg.WebhookAllowPrivateNetworks)
	require.Equal(t, time.Second, cfg.TestProcessingDelay)
	require.Equal(t, 0.90, cfg.UPISuccessRate)
	require.Equal(t, 0.95, cfg.CardSuccessRate)
	require.Equal(t, 30*24*time.Hour, cfg.WebhookLogRetention)
	require.Equal(t, 50*time.Millisecond, cfg.FetchCooldown, "River's 100 ms default caps a queue at workers×10 jobs/s")
	require.Zero(t, cfg.EmbeddedSharedBuffers, "a quarter of the memory (db.DefaultSharedBuffersMiB)")

	cfg, err = app.LoadConfig(env("TEST_MODE", "true", "TEST_PROCESSING_DELAY", "500", "PORT", "9000", "LOG_LEVEL", "debug"))
	require.NoError(t, err)
	require.True(t, cfg.TestMode)
	require.True(t, cfg.WebhookAllowPrivateNetworks, "private networks default to allowed in test mode")
	require.Equal(t, 500*time.Millisecond, cfg.TestProcessingDelay)
	require.Equal(t, 9000, cfg.Port)
	for _, mib := range []int{0, 32, 262_144} {
		cfg, err = app.LoadConfig(env("EMBEDDED_SHARED_BUFFERS", strconv.Itoa(mib)))
		require.NoError(t, err)
		require.Equal(t, mib, cfg.EmbeddedSharedBuffers)
	}

	for _, tc := range []struct{ env []string }{
		{[]string{"PORT", "eighty"}},
		{[]string{"PORT", "70000"}},
		{[]string{"TEST_MODE", "maybe"}},
		{[]string{"TEST_PROCESSING_DELAY", "-5"}},
		{[]string{"UPI_SUCCESS_RATE", "1.5"}},
		{[]string{"CARD_SUCCESS_RATE", "x"}},
		{[]string{"UPI_SUCCESS_RATE", "NaN"}},
		{[]string{"LOG_LEVEL", "loud"}},
		{[]string{"LOG_FORMAT", "xml"}},
		{[]string{"PROCESSING_DELAY_MIN", "9000", "PROCESSING_DELAY_MAX", "100"}},
		{[]string{"REFUND_DELAY_MIN", "9000", "REFUND_DELAY_MAX", "100"}},
		{[]string{"WEBHOOK_ALLOW_PRIVATE_NETWORKS", "yes please"}},
		{[]string{"WEBHOOK_LOG_RETENTION", "a month"}},
		{[]string{"WEBHOOK_LOG_RETENTION", "10m"}},
		{[]string{"DATABASE_URL", "postgres://h:port/db"}},
		{[]string{"PAYMENTS_WORKERS", "0"}},
		{[]string{"WEBHOOK_WORKERS", "many"}},
		{[]string{"REFUND_WORKERS", "-1"}},
		{[]string{"RIVER_FETCH_COOLDOWN", "0"}},
		{[]string{"RIVER_FETCH_POLL_INTERVAL", "2", "RIVER_FETCH_COOLDOWN", "5"}},
		{[]string{"DB_MAX_CONNS", "-3"}},
		{[]string{"CHECKOUT_MAX_FAILED_PAYMENTS", "-1"}},
		{[]string{"CREATE_BATCHES", "0"}},
		{[]string{"CREATE_SPARES", "-1"}},
		{[]string{"CREATE_STALL", "0"}},
		{[]string{"EMBEDDED_SHARED_BUFFERS", "31"}},
		{[]string{"EMBEDDED_SHARED_BUFFERS", "262145"}},
		{[]string{"EMBEDDED_SHARED_BUFFERS", "a lot"}},
	} {
		_, err := app.LoadConfig(env(tc.env...))
		require.Error(t, err, tc.env)
		require.Contains(t, err.Error(), tc.env[0])
		require.Contains(t, err.Error(), "must be")
	}

	// A cooldown set alone above the poll interval's default is named, not
	// the interval the operator never set.
	_, err = app.LoadConfig(env("RIVER_FETCH_COOLDOWN", "200"))
	require.ErrorContains(t, err, `RIVER_FETCH_COOLDOWN="200": must be at most RIVER_FETCH_POLL_INTERVAL (unset: 100 ms)`)
	require.NotContains(t, err.Error(), `RIVER_FETCH_POLL_INTERVAL=""`)

	// The command line stops before touching anything, naming the variable.
	var stderr bytes.Buffer
	code := app.Main([]string{"serve"}, env("PORT", "abc"), &bytes.Buffer{}, &stderr)
	require.Equal(t, 2, code)
	require.Contains(t, stderr.String(), `PORT="abc": must be an integer from 1 to 65535`)
}

// sharedBuffersMiB is the buffer cache of a's database server, in MiB.
func sharedBuffersMiB(t *testing.T, a *app.App) int {
	t.Helper()
	var mib int
	require.NoError(t, a.Pool.QueryRow(context.Background(),
		`SELECT setting::bigint * current_setting('block_size')::bigint / 1048576 FROM pg_settings WHERE name = 'shared_buffers'`).Scan(&mib))
	return mib
}

func maxConnections(t *testing.T, a *app.App) int {
	t.Helper()
	var n int
	require.NoError(t, a.Pool.QueryRow(context.Background(), `SELECT current_setting('max_connections')::int`).Scan(&n))
	return n
}

// The embedded database keeps its data across restarts of the binary, and a
// second command connects to a server that is already running.
func TestEmbeddedDatabaseSurvivesRestart(t *testing.T) {
	t.Parallel()
	dir, err := os.MkdirTemp("", "paygate-embedded-")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	env := func(k string) string {
		return map[string]string{"DATA_DIR": dir, "LOG_LEVEL": "error"}[k]
	}
	// Only serve creates the cluster; start and stop it once.
	cfg, err := app.LoadConfig(env)
	require.NoError(t, err)
	first, err := app.New(context.Background(), cfg, app.RoleAll, apptest.Logger())
	require.NoError(t, err)
	// paygate sizes its server's buffer cache to the memory (a quarter of
	// it, 128 MiB to 1 GiB), not to PostgreSQL's 128 MiB default...
	require.Equal(t, db.DefaultSharedBuffersMiB(), sharedBuffersMiB(t, first))
	require.Equal(t, 200, maxConnections(t, first))
	first.Close(context.Background())

	var out, errOut bytes.Buffer
	code := app.Main([]string{"merchant", "create", "--name", "Acme", "--email", "ops@acme.test"}, env, &out, &errOut)
	require.Equal(t, 0, code, errOut.String())
	key := regexp.MustCompile(`api_key=(\S+)`).FindStringSubmatch(out.String())
	secret := regexp.MustCompile(`api_secret=(\S+)`).FindStringSubmatch(out.String())
	require.Len(t, key, 2)
	require.Len(t, secret, 2)

	// Start the gateway on the same folder: the merchant is there and its
	// credentials work; outside test mode the test merchant is not seeded,
	// even on the embedded database.
	// ... unless EMBEDDED_SHARED_BUFFERS says otherwise.
	// And a DB_MAX_CONNS beyond the server's 200 connections raises them
	// (the kept plans' 11 and 20 for other commands besides).
	cfg.EmbeddedSharedBuffers = 160
	cfg.DBMaxConns = 300
	a, err := app.New(context.Background(), cfg, app.RoleAll, apptest.Logger())
	require.NoError(t, err)
	defer a.Close(context.Background())
	require.Equal(t, 160, sharedBuffersMiB(t, a))
	require.Equal(t, 331, maxConnections(t, a))
	// A process that uses this server and would want more is warned.
	var guestLog bytes.Buffer
	guest, err := db.StartEmbedded(context.Background(), db.EmbeddedOptions{Dir: dir, Connections: 331,
		Logger: slog.New(slog.NewTextHandler(&guestLog, nil))})
	require.NoError(t, err)
	require.False(t, guest.Owned())
	require.NoError(t, guest.Stop(context.Background()))
	require.Contains(t, guestLog.String(), "may not have room")
	require.Contains(t, guestLog.String(), "max_connections=331")
	hdr := http.Header{"X-Api-Key": {key[1]}, "X-Api-Secret": {secret[1]}}
	rec := apptest.Do(t, a.Echo, http.MethodGet, "/api/v1/orders", "", hdr)
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	rec = apptest.Do(t, a.Echo, http.MethodGet, "/api/v1/test/merchant", "", nil)
	require.Equal(t, http.StatusNotFound, rec.Code, rec.Body.String())

	// While it runs, another command uses the same server.
	out.Reset()
	code = app.Main([]string{"merchant", "create", "--name", "Beta", "--email", "ops@beta.test"}, env, &out, &errOut)
	require.Equal(t, 0, code, errOut.String())
	var n int
	require.NoError(t, a.Pool.QueryRow(context.Background(), `SELECT count(*) FROM merchants`).Scan(&n))
	require.Equal(t, 2, n, "Acme and Beta, no test merchant")

	// A duplicate email is refused with a message, not a stack.
	errOut.Reset()
	code = app.Main([]string{"merchant", "create", "--name", "Acme", "--email", "ops@acme.test"}, env, &out, &errOut)
	require.Equal(t, 1, code)
	require.Contains(t, errOut.String(), "already exists")

	// migrate on a migrated database changes nothing.
	require.Equal(t, 0, app.Main([]string{"migrate"}, env, &out, &errOut), errOut.String())
}

func mustField(t *testing.T, body []byte, key string) string {
	t.Helper()
	var m map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(body, &m), "body: %s", body)
	require.Contains(t, m, key)
	return string(m[key])
}

// waitFor polls cond until it holds; the bound only stops a broken test.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for range 500 {
		if cond() {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("condition never held")
}

// River's reindexer rebuilds the indexes it is configured with once a day,
// and warns each time of any that does not exist (its default list names
// the ones migrations 00017 and 00018 dropped): it is given exactly the
// indexes river_job has.
func TestRiverReindexesTheIndexesThatExist(t *testing.T) {
	t.Parallel()
	a := apptest.New(t)
	var names []string
	require.NoError(t, a.Pool.QueryRow(context.Background(), `SELECT array_agg(indexname::text ORDER BY indexname)
		FROM pg_indexes WHERE schemaname = current_schema() AND tablename = 'river_job'`).Scan(&names))
	configured := slices.Sorted(slices.Values(app.RiverConfig(a).ReindexerIndexNames))
	require.Equal(t, names, configured)
}

// A job count that the database cannot finish in 5 s (here: the job table
// locked) answers 503, stopped in the server by its statement timeout.
func TestJobCountTooSlowIsUnavailable(t *testing.T) {
	t.Parallel()
	a := apptest.New(t)
	ctx := context.Background()
	tx, err := a.Pool.Begin(ctx)
	require.NoError(t, err)
	defer tx.Rollback(ctx) //nolint:errcheck // it only holds the lock
	_, err = tx.Exec(ctx, `LOCK TABLE river_job IN ACCESS EXCLUSIVE MODE`)
	require.NoError(t, err)
	var e *web.Error
	require.ErrorAs(t, app.CountJobs(ctx, a), &e)
	require.Equal(t, web.CodeUnavailable, e.Code)
}
