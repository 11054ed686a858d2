// Package apptest runs the whole gateway against a fresh database for one
// test, and sends it requests the way a merchant would.
package apptest

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"paygate/app"
	"paygate/db"
	"paygate/db/dbtest"
	"paygate/idempotency"
	"paygate/merchants"
	"paygate/payments"
)

// Config is the test configuration: test mode on its own fresh database,
// no processing delay, fast polling.
func Config(t testing.TB) app.Config {
	t.Helper()
	cfg, err := app.LoadConfig(func(string) string { return "" })
	require.NoError(t, err)
	cfg.DatabaseURL = dbtest.New(t)
	cfg.TestMode = true
	cfg.TestProcessingDelay = 0
	cfg.WebhookAllowPrivateNetworks = true
	cfg.FetchPollInterval = 20 * time.Millisecond
	return cfg
}

// New starts a gateway (role all) and stops it when the test ends. mutate
// may change the configuration first.
func New(t testing.TB, mutate ...func(*app.Config)) *app.App {
	t.Helper()
	cfg := Config(t)
	for _, m := range mutate {
		m(&cfg)
	}
	a, err := app.New(context.Background(), cfg, app.RoleAll, Logger())
	require.NoError(t, err)
	t.Cleanup(func() { a.Close(context.Background()) })
	require.NoError(t, a.Start(context.Background()))
	return a
}

// Logger is quiet unless PAYGATE_TEST_LOG is set.
func Logger() *slog.Logger {
	if os.Getenv("PAYGATE_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// TestMerchant is the seeded merchant's key and secret as headers.
func TestMerchant() http.Header {
	return http.Header{"X-Api-Key": {merchants.TestMerchantKey}, "X-Api-Secret": {merchants.TestMerchantSecret}}
}

// Do sends one request to the app's handler and returns the recorded answer.
// A nil header sends no credentials.
func Do(t testing.TB, h http.Handler, method, path, body string, header http.Header) *httptest.ResponseRecorder {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, path, r)
	for k, v := range header {
		req.Header[k] = v
	}
	if body != "" && req.Header.Get("Content-Type") == "" {
		req.Header.Set("Content-Type", "application/json")
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	CheckOpenAPI(t, req, body, rec)
	return rec
}

// With returns h plus the given header pairs.
func With(h http.Header, kv ...string) http.Header {
	out := h.Clone()
	if out == nil {
		out = http.Header{}
	}
	for i := 0; i+1 < len(kv); i += 2 {
		out.Set(kv[i], kv[i+1])
	}
	return out
}

// NewMerchant creates another merchant and returns its credentials as headers.
func NewMerchant(t testing.TB, a *app.App, email string) (merchants.Created, http.Header) {
	t.Helper()
	m, err := merchants.Create(context.Background(), a.Pool, "Other "+email, email,
		func() (string, error) { return "whsec_dGVzdHRlc3R0ZXN0dGVzdHRlc3R0ZXN0dGVzdHRlc3Q=", nil })
	require.NoError(t, err)
	return m, http.Header{"X-Api-Key": {m.APIKey}, "X-Api-Secret": {m.APISecret}}
}

// Call sends a request and decodes the JSON answer.
func Call(t testing.TB, a *app.App, method, path, body string, h http.Header) (int, map[string]any) {
	t.Helper()
	rec := Do(t, a.Echo, method, path, body, h)
	var out map[string]any
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &out), "%s %s: %s", method, path, rec.Body.String())
	return rec.Code, out
}

// ErrorOf returns the code and field of an error answer.
func ErrorOf(t testing.TB, body map[string]any) (code, field string) {
	t.Helper()
	e, ok := body["error"].(map[string]any)
	require.True(t, ok, "not an error envelope: %v", body)
	field, _ = e["field"].(string)
	return e["code"].(string), field
}

// CreateOrder creates an order of amount and returns its id.
func CreateOrder(t testing.TB, a *app.App, h http.Header, amount int) string {
	t.Helper()
	status, o := Call(t, a, http.MethodPost, "/api/v1/orders", fmt.Sprintf(`{"amount":%d}`, amount), h)
	require.Equal(t, http.StatusCreated, status, "%v", o)
	return o["id"].(string)
}

// UPIBody is the body of a UPI payment on an order.
func UPIBody(orderID string) string {
	return fmt.Sprintf(`{"order_id":%q,"method":"upi","vpa":"user@paytm"}`, orderID)
}

// Pay creates a UPI payment on a new order of 50000 and returns the payment.
func Pay(t testing.TB, a *app.App, h http.Header) map[string]any {
	t.Helper()
	status, p := Call(t, a, http.MethodPost, "/api/v1/payments", UPIBody(CreateOrder(t, a, h, 50000)), h)
	require.Equal(t, http.StatusCreated, status, "%v", p)
	return p
}

// PaySuccessfully pays a new order and waits until the payment succeeded.
func PaySuccessfully(t testing.TB, a *app.App, h http.Header) map[string]any {
	t.Helper()
	p := WaitPayment(t, a, h, Pay(t, a, h)["id"].(string))
	require.Equal(t, payments.StatusSuccess, p["status"])
	return p
}

// WaitPayment polls the payment until it leaves pending.
func WaitPayment(t testing.TB, a *app.App, h http.Header, id string) map[string]any {
	t.Helper()
	return Await(t, a, h, "/api/v1/payments/"+id, func(p map[string]any) bool { return p["status"] != payments.StatusPending })
}

// Await polls GET path until done accepts the object, and returns it. The
// loop is bounded by a count, not a deadline assertion: it fails only if the
// object never gets there.
func Await(t testing.TB, a *app.App, h http.Header, path string, done func(map[string]any) bool) map[string]any {
	t.Helper()
	for range 1000 {
		status, v := Call(t, a, http.MethodGet, path, "", h)
		require.Equal(t, http.StatusOK, status, "%v", v)
		if done(v) {
			return v
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%s never got done", path)
	return nil
}

// IDsOf returns the ids of a list envelope's objects, in order.
func IDsOf(list map[string]any) []string {
	out := []string{}
	for _, v := range list["data"].([]any) {
		out = append(out, v.(map[string]any)["id"].(string))
	}
	return out
}

// RerunJob runs a completed job again, as River's retry of a finished job
// does, and waits until it has completed once more. The job is the one of
// kind whose args hold key: value.
func RerunJob(t testing.TB, a *app.App, kind, key, value string) {
	t.Helper()
	ctx := context.Background()
	type jobState struct {
		ID        int64
		State     string
		Finalized time.Time
	}
	job := func() jobState {
		var j jobState
		require.NoError(t, a.Pool.QueryRow(ctx, `SELECT id, state::text, coalesce(finalized_at, 'epoch') FROM river_job
			WHERE kind = $1 AND args->>$2 = $3`, kind, key, value).Scan(&j.ID, &j.State, &j.Finalized))
		return j
	}
	// River completes a job shortly after its work commits (batched), so
	// wait for that first.
	first := job()
	for i := 0; first.State != "completed"; i++ {
		require.Less(t, i, 1000, "the job did not complete: %+v", first)
		time.Sleep(10 * time.Millisecond)
		first = job()
	}
	_, err := a.River.JobRetry(ctx, first.ID)
	require.NoError(t, err)
	for i := 0; ; i++ {
		j := job()
		if j.State == "completed" && !j.Finalized.Equal(first.Finalized) {
			return
		}
		require.Less(t, i, 1000, "the job did not run again: %+v", j)
		time.Sleep(10 * time.Millisecond)
	}
}

// Claim is the test merchant's claim of key on route (a method and path),
// as a request made at at would hand a batch; its body's hash is the key's.
func Claim(route, key string, at time.Time) *idempotency.Claim {
	return &idempotency.Claim{MerchantID: merchants.TestMerchantID, Route: route, Key: key, Hash: []byte(key), At: at}
}

// PastExpiry is a time at which a key answered now has expired: a batch's
// claim made then takes it over. The key is then still live on the
// database's clock, so the idempotency prune (run when an app starts)
// cannot delete it under the batch, which would leave it unclaimed.
func PastExpiry() time.Time { return time.Now().Add(idempotency.TTL + time.Minute) }

// Remember commits claims as a batch that did their work would: claimed,
// and answered 201 with {}.
func Remember(t testing.TB, a *app.App, claims ...*idempotency.Claim) {
	t.Helper()
	ctx := context.Background()
	require.NoError(t, db.WithTx(ctx, a.Pool, func(tx pgx.Tx) error {
		if _, err := idempotency.ClaimTx(ctx, tx, claims, nil); err != nil {
			return err
		}
		settled := make([]idempotency.Settled, len(claims))
		for i, c := range claims {
			settled[i] = idempotency.Settled{Claim: c, Status: http.StatusCreated, Body: []byte(`{}`)}
		}
		return idempotency.SettleTx(ctx, tx, settled)
	}))
}

// Hold runs claims' ClaimTx in a transaction left open until the test ends,
// as a batch or a request still in progress would, and returns what it
// claimed.
func Hold(t testing.TB, a *app.App, claims ...*idempotency.Claim) (claimed []bool) {
	t.Helper()
	ctx := context.Background()
	tx, err := a.Pool.Begin(ctx)
	require.NoError(t, err)
	t.Cleanup(func() { tx.Rollback(ctx) }) //nolint:errcheck // only held
	claimed, err = idempotency.ClaimTx(ctx, tx, claims, nil)
	require.NoError(t, err)
	return claimed
}

// HoldInserts makes inserts into table wait until lock ends, and returns
// lock and a condition that n of those inserts wait.
func HoldInserts(t testing.TB, a *app.App, table string) (lock pgx.Tx, waiting func(n int) func() bool) {
	ctx := context.Background()
	lock, err := a.Pool.Begin(ctx)
	require.NoError(t, err)
	t.Cleanup(func() { lock.Rollback(ctx) }) //nolint:errcheck // released by the test, or now
	_, err = lock.Exec(ctx, `LOCK TABLE `+table+` IN EXCLUSIVE MODE`)
	require.NoError(t, err)
	return lock, func(n int) func() bool {
		return func() bool {
			var waiting int
			require.NoError(t, a.Pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
				WHERE datname = current_database() AND pid <> pg_backend_pid()
				  AND wait_event_type = 'Lock' AND query LIKE '%INSERT INTO `+table+`%'`).Scan(&waiting))
			return waiting == n
		}
	}
}

// Sample is the value of the series name{labels} (labels as exposed, in
// alphabetical order) in the /metrics text, 0 when absent.
func Sample(text, series string) float64 {
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), series+" "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return 0
}

// Metric is the value of series (as for Sample) that a's /metrics shows now.
func Metric(t testing.TB, a *app.App, series string) float64 {
	t.Helper()
	rec := Do(t, a.Echo, http.MethodGet, "/metrics", "", nil)
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	return Sample(rec.Body.String(), series)
}

// NoSpareBatches keeps the app's creation batchers from starting spare
// batches (CREATE_SPARES=0), so that requests queued behind a held batch
// wait for it however long the test takes: for tests that hold a batch and
// fill the next.
func NoSpareBatches(c *app.Config) { c.CreateSpares = 0 }

// LockWaits tells, for require.Eventually, whether n of a's database
// sessions wait on a lock (a batch behind a row another transaction holds).
func LockWaits(t testing.TB, a *app.App, n int) func() bool {
	return func() bool {
		var waiting int
		require.NoError(t, a.Pool.QueryRow(context.Background(), `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&waiting))
		return waiting == n
	}
}

// QueueBehindABatch posts n requests so that the first starts a batch (a
// process runs one at a time), which waits on the lock behind waiting, and
// the others queue (queued) to make the next batch together.
func QueueBehindABatch(t testing.TB, n int, post func(i int), waiting func(n int) func() bool, queued func() int) {
	post(0)
	require.Eventually(t, waiting(1), 10*time.Second, 5*time.Millisecond)
	for i := 1; i < n; i++ {
		post(i)
	}
	require.Eventually(t, func() bool { return queued() == n-1 }, 10*time.Second, 5*time.Millisecond)
}

// Batches is how many of the rows of table named by ids share each
// created_at (a transaction's now()), fewest first: the sizes of the
// batches that made them.
func Batches(t testing.TB, a *app.App, table string, ids []string) []int {
	t.Helper()
	rows, err := a.Pool.Query(context.Background(), `SELECT count(*) FROM `+table+` WHERE id = ANY ($1)
		GROUP BY created_at ORDER BY count(*)`, ids)
	require.NoError(t, err)
	batches, err := pgx.CollectRows(rows, pgx.RowTo[int])
	require.NoError(t, err)
	return batches
}
