package app_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"paygate/app"
	"paygate/app/apptest"
	"paygate/web"
)

// scrape returns /metrics as text.
func scrape(t *testing.T, a *app.App, h http.Header) string {
	t.Helper()
	rec := apptest.Do(t, a.Echo, http.MethodGet, "/metrics", "", h)
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	require.Contains(t, rec.Header().Get("Content-Type"), "text/plain")
	return rec.Body.String()
}

var sample = apptest.Sample

// A decided payment, a refund and a failed webhook delivery move their
// counters (counted once committed); the queue and both pools are exported.
// Counters are process-wide and tests run in parallel, so each check is
// "moved by at least this".
func TestMetricsMoveWithPaymentsAndWebhooks(t *testing.T) {
	t.Parallel()
	a := apptest.New(t)
	h := apptest.TestMerchant()
	var hits atomic.Int32
	failing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		hits.Add(1)
		w.WriteHeader(http.StatusInternalServerError)
	}))
	defer failing.Close()
	rec := apptest.Do(t, a.Echo, http.MethodPut, "/api/v1/webhooks/config", `{"webhook_url":"`+failing.URL+`"}`, h)
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())

	before := scrape(t, a, nil)
	const paid = `paygate_payments_total{method="upi",status="success"}`
	const refunded = `paygate_refunds_total{status="processed"}`
	const retried = `paygate_webhook_deliveries_total{outcome="retry"}`

	p := apptest.PaySuccessfully(t, a, h)
	status, r := apptest.Call(t, a, http.MethodPost, "/api/v1/payments/"+p["id"].(string)+"/refunds", `{"amount":100}`, h)
	require.Equal(t, http.StatusCreated, status, "%v", r)
	apptest.Await(t, a, h, "/api/v1/refunds/"+r["id"].(string), func(r map[string]any) bool { return r["status"] == "processed" })
	var after string
	// A counter moves just after its commit, which a GET may see first.
	waitFor(t, func() bool {
		after = scrape(t, a, nil)
		return hits.Load() > 0 && sample(after, retried) >= sample(before, retried)+1 &&
			sample(after, paid) >= sample(before, paid)+1 && sample(after, refunded) >= sample(before, refunded)+1
	})
	require.GreaterOrEqual(t, sample(after, paid), sample(before, paid)+1)
	require.GreaterOrEqual(t, sample(after, refunded), sample(before, refunded)+1)
	require.Greater(t, sample(after, `paygate_job_latency_seconds_count{queue="payments"}`), 0.0)
	// One series a pool, each its own pool's (their sizes differ).
	require.Equal(t, float64(a.Pool.Stat().MaxConns()), sample(after, `paygate_db_pool_max_connections{pool="main"}`))
	require.Equal(t, float64(a.KeptPlans.Kept().Stat().MaxConns()), sample(after, `paygate_db_pool_max_connections{pool="kept_plans"}`))
	require.NotEqual(t, a.Pool.Stat().MaxConns(), a.KeptPlans.Kept().Stat().MaxConns())
	require.True(t, strings.Contains(after, `paygate_http_request_duration_seconds_bucket{method="POST",route="/api/v1/payments",status="201"`))

	// paygate_jobs counts the jobs waiting, running or failed, not the
	// completed ones River keeps for a day (a scan of them at every scrape).
	ctx := context.Background()
	_, err := a.Pool.Exec(ctx, `INSERT INTO river_job (args, kind, queue, max_attempts, priority, state, scheduled_at, finalized_at)
		VALUES ('{}', 'metrics_probe', 'maintenance', 1, 1, 'scheduled', now() + interval '1 hour', NULL),
		       ('{}', 'metrics_probe', 'maintenance', 1, 1, 'discarded', now(), now())`)
	require.NoError(t, err)
	waitFor(t, func() bool {
		var completed bool
		require.NoError(t, a.Pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM river_job WHERE state = 'completed' AND queue = 'refunds')`).Scan(&completed))
		return completed
	})
	var text string
	// The count is cached for a second.
	waitFor(t, func() bool {
		text = scrape(t, a, nil)
		return sample(text, `paygate_jobs{queue="maintenance",state="scheduled"}`) >= 1
	})
	require.GreaterOrEqual(t, sample(text, `paygate_jobs{queue="maintenance",state="discarded"}`), 1.0)
	require.False(t, strings.Contains(text, `state="completed"`), "completed jobs were counted")
}

// Labels stay bounded: an unknown method is OTHER, an unknown path is one
// "unmatched" route, ids never appear.
func TestMetricLabelsAreBounded(t *testing.T) {
	t.Parallel()
	a := apptest.New(t)
	apptest.Do(t, a.Echo, "BREW", "/api/v1/orders", "", nil)
	apptest.Do(t, a.Echo, http.MethodGet, "/no/such/route/zq7x", "", nil)
	apptest.Do(t, a.Echo, http.MethodGet, "/api/v1/orders/order_zq7xzq7xzq7xzq7x", "", apptest.TestMerchant())
	text := scrape(t, a, nil)
	for _, s := range []string{`paygate_http_requests_total{method="OTHER",route="/api/v1/orders",status="405"}`,
		`route="unmatched",status="404"`, `route="/api/v1/orders/:id",status="404"`} {
		require.True(t, strings.Contains(text, s), s)
	}
	require.False(t, strings.Contains(text, "zq7x"), "an id became a label")
	require.False(t, strings.Contains(text, "BREW"), "a method became a label")
}

// With METRICS_TOKEN, the API answers /metrics only to a Bearer of it; the
// worker role always answers.
func TestMetricsToken(t *testing.T) {
	t.Parallel()
	a := apptest.New(t, func(c *app.Config) { c.MetricsToken = "m-token" })
	for _, h := range []http.Header{nil, {"Authorization": {"Bearer wrong"}}, {"Authorization": {"Basic bS10b2tlbg=="}}} {
		rec := apptest.Do(t, a.Echo, http.MethodGet, "/metrics", "", h)
		require.Equal(t, http.StatusUnauthorized, rec.Code)
		require.Equal(t, web.CodeUnauthorized, errorBody(t, rec.Body.Bytes()).Code)
	}
	scrape(t, a, http.Header{"Authorization": {"Bearer m-token"}})

	cfg := apptest.Config(t)
	cfg.MetricsToken = "m-token"
	w, err := app.New(t.Context(), cfg, app.RoleWorker, apptest.Logger())
	require.NoError(t, err)
	defer w.Close(t.Context())
	scrape(t, w, nil)
}
