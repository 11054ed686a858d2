package app_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"paygate/app"
	"paygate/app/apptest"
	"paygate/db/dbtest"
	"paygate/payments"
	"paygate/web"
)

// start builds and starts a gateway of role on cfg, stopped when the test
// ends; ctx is the context Start gets (serve's is cancelled by SIGTERM).
func start(t *testing.T, ctx context.Context, cfg app.Config, role app.Role) *app.App {
	t.Helper()
	a, err := app.New(context.Background(), cfg, role, apptest.Logger())
	require.NoError(t, err)
	t.Cleanup(func() { a.Close(context.Background()) })
	require.NoError(t, a.Start(ctx))
	return a
}

func TestReady(t *testing.T) {
	t.Parallel()
	cfg := apptest.Config(t)
	all := start(t, context.Background(), cfg, app.RoleAll)
	api := start(t, context.Background(), cfg, app.RoleAPI)
	worker := start(t, context.Background(), cfg, app.RoleWorker)
	for role, a := range map[string]*app.App{"all": all, "api": api, "worker": worker} {
		rec := apptest.Do(t, a.Echo, http.MethodGet, "/ready", "", nil)
		require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
		require.JSONEq(t, `{"status":"ready","role":"`+role+`"}`, rec.Body.String())
	}

	// From the first moment of a stop.
	all.Drain()
	rec := apptest.Do(t, all.Echo, http.MethodGet, "/ready", "", nil)
	require.Equal(t, http.StatusServiceUnavailable, rec.Code)
	require.JSONEq(t, `{"status":"draining"}`, rec.Body.String())

	// A stopped worker cannot do its role's work.
	worker.Close(context.Background())
	rec = apptest.Do(t, worker.Echo, http.MethodGet, "/ready", "", nil)
	require.Equal(t, http.StatusServiceUnavailable, rec.Code)

	// Without its database no role can.
	dropDatabase(t, cfg.DatabaseURL)
	rec = apptest.Do(t, api.Echo, http.MethodGet, "/ready", "", nil)
	require.Equal(t, http.StatusServiceUnavailable, rec.Code, rec.Body.String())
	require.JSONEq(t, `{"status":"unavailable"}`, rec.Body.String())
}

func dropDatabase(t *testing.T, dbURL string) {
	t.Helper()
	u, err := url.Parse(dbURL)
	require.NoError(t, err)
	name := strings.TrimPrefix(u.Path, "/")
	u.Path = "/postgres"
	admin, err := pgx.Connect(context.Background(), u.String())
	require.NoError(t, err)
	defer admin.Close(context.Background())
	_, err = admin.Exec(context.Background(), fmt.Sprintf(`DROP DATABASE %q WITH (FORCE)`, name))
	require.NoError(t, err)
}

// A worker serves what operators probe and nothing of the API; an api
// process inserts jobs and works none, so its payments wait for a worker.
func TestRoles(t *testing.T) {
	t.Parallel()
	cfg := apptest.Config(t)
	worker := start(t, context.Background(), cfg, app.RoleWorker)
	for _, path := range []string{"/health", "/ready", "/metrics"} {
		rec := apptest.Do(t, worker.Echo, http.MethodGet, path, "", nil)
		require.NotEqual(t, http.StatusNotFound, rec.Code, path)
	}
	for _, r := range []struct{ method, path string }{
		{http.MethodPost, "/api/v1/orders"}, {http.MethodGet, "/api/v1/orders"},
		{http.MethodGet, "/api/v1/test/jobs/status"}, {http.MethodGet, "/api/v1/test/merchant"},
		{http.MethodGet, "/api/v1/webhooks"},
	} {
		rec := apptest.Do(t, worker.Echo, r.method, r.path, `{"amount":50000}`, apptest.TestMerchant())
		require.Equal(t, http.StatusNotFound, rec.Code, "%s %s: %s", r.method, r.path, rec.Body.String())
		require.Equal(t, web.CodeNotFound, errorBody(t, rec.Body.Bytes()).Code)
	}
	worker.Close(context.Background())

	api := start(t, context.Background(), cfg, app.RoleAPI)
	h := apptest.TestMerchant()
	id := apptest.Pay(t, api, h)["id"].(string)
	// Long enough for many fetch polls (20 ms here) of a client that works
	// jobs; the api process has none.
	time.Sleep(500 * time.Millisecond)
	var state string
	require.NoError(t, api.Pool.QueryRow(context.Background(),
		`SELECT state::text FROM river_job WHERE args->>'payment_id' = $1`, id).Scan(&state))
	require.Equal(t, "available", state)
	status, p := apptest.Call(t, api, http.MethodGet, "/api/v1/payments/"+id, "", h)
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, payments.StatusPending, p["status"])

	// A worker on the same database works it.
	start(t, context.Background(), cfg, app.RoleWorker)
	require.Equal(t, payments.StatusSuccess, apptest.WaitPayment(t, api, h, id)["status"])
}

// hangingReceiver is a merchant endpoint that holds each delivery until
// released, and notes whether the gateway cut a delivery short.
type hangingReceiver struct {
	srv     *httptest.Server
	arrived chan struct{}
	release chan struct{}
	cut     chan struct{}
}

func newHangingReceiver(t *testing.T) *hangingReceiver {
	r := &hangingReceiver{arrived: make(chan struct{}, 10), release: make(chan struct{}), cut: make(chan struct{}, 10)}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		// Reading the body to its end is what lets the server notice a
		// client that goes away (req.Context() is then cancelled).
		_, _ = io.Copy(io.Discard, req.Body)
		r.arrived <- struct{}{}
		select {
		case <-r.release:
		case <-req.Context().Done():
			r.cut <- struct{}{}
		}
	}))
	t.Cleanup(func() {
		select {
		case <-r.release:
		default:
			close(r.release)
		}
		r.srv.Close()
	})
	return r
}

// sendTestWebhook points the test merchant at url and sends a webhook.test;
// it returns the log id.
func sendTestWebhook(t *testing.T, a *app.App, url string) string {
	t.Helper()
	h := apptest.TestMerchant()
	status, body := apptest.Call(t, a, http.MethodPut, "/api/v1/webhooks/config", `{"webhook_url":"`+url+`"}`, h)
	require.Equal(t, http.StatusOK, status, "%v", body)
	status, body = apptest.Call(t, a, http.MethodPost, "/api/v1/webhooks/test", "", h)
	require.Equal(t, http.StatusOK, status, "%v", body)
	return body["webhook_id"].(string)
}

type deliveryState struct {
	JobState  string
	Attempt   int
	Errors    int
	LogStatus string
	Attempts  int
}

func deliveryOf(t *testing.T, dbURL, logID string) deliveryState {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dbURL)
	require.NoError(t, err)
	defer conn.Close(ctx)
	var d deliveryState
	require.NoError(t, conn.QueryRow(ctx, `
		SELECT j.state::text, j.attempt, coalesce(array_length(j.errors, 1), 0), l.status, l.attempts
		FROM webhook_logs l JOIN river_job j ON j.kind = 'deliver_webhook' AND j.args->>'log_id' = l.id::text
		WHERE l.id = $1`, logID).Scan(&d.JobState, &d.Attempt, &d.Errors, &d.LogStatus, &d.Attempts))
	return d
}

// SIGTERM cancels serve's context. That must not reach running jobs: they
// finish during the stop instead of being cut and counted as failed.
func TestStopLetsRunningJobsFinish(t *testing.T) {
	t.Parallel()
	cfg := apptest.Config(t)
	sigterm, cancel := context.WithCancel(context.Background())
	a := start(t, sigterm, cfg, app.RoleAll)
	r := newHangingReceiver(t)
	logID := sendTestWebhook(t, a, r.srv.URL)
	<-r.arrived

	cancel() // what SIGTERM does to serve's context
	closed := make(chan struct{})
	go func() {
		a.Close(context.Background())
		close(closed)
	}()
	// Give a stop that wrongly cancelled the job time to cut the delivery.
	time.Sleep(300 * time.Millisecond)
	close(r.release)
	select {
	case <-closed:
	case <-time.After(30 * time.Second):
		t.Fatal("Close did not return")
	}
	require.Empty(t, r.cut, "the stop cut a running delivery short")
	require.Equal(t, deliveryState{JobState: "completed", Attempt: 1, LogStatus: "success", Attempts: 1},
		deliveryOf(t, cfg.DatabaseURL, logID))
}

// A job still running when the soft stop runs out is cancelled and goes
// back to the queue without spending an attempt; the next process works it.
func TestStopCancelsLateJobsWithoutSpendingAnAttempt(t *testing.T) {
	t.Parallel()
	cfg := apptest.Config(t)
	// 4 s: the soft stop runs out after 3 s, and River then has 0.5 s to
	// cancel the job and record it given back (stopRiver). With 2 s that
	// was 0.25 s, which a loaded CI machine running the race-detector suite
	// in parallel once missed, leaving the job running.
	cfg.ShutdownTimeout = 4 * time.Second
	a := start(t, context.Background(), cfg, app.RoleAll)
	r := newHangingReceiver(t)
	logID := sendTestWebhook(t, a, r.srv.URL)
	<-r.arrived

	a.Close(context.Background())
	select {
	case <-r.cut:
	case <-time.After(10 * time.Second):
		t.Fatal("the delivery was not cancelled")
	}
	require.Equal(t, deliveryState{JobState: "available", Attempt: 0, Errors: 0, LogStatus: "pending", Attempts: 0},
		deliveryOf(t, cfg.DatabaseURL, logID))

	close(r.release)
	b := start(t, context.Background(), cfg, app.RoleAll)
	apptest.Await(t, b, apptest.TestMerchant(), "/api/v1/webhooks/"+logID, func(l map[string]any) bool {
		return l["status"] == "success"
	})
	// A final attempt commits on its own; River completes its job after.
	d := deliveryOf(t, cfg.DatabaseURL, logID)
	for i := 0; d.JobState == "running"; i++ {
		require.Less(t, i, 1000, "the job was not completed: %+v", d)
		time.Sleep(10 * time.Millisecond)
		d = deliveryOf(t, cfg.DatabaseURL, logID)
	}
	require.Equal(t, deliveryState{JobState: "completed", Attempt: 1, LogStatus: "success", Attempts: 1}, d)
}

func TestShutdownConfig(t *testing.T) {
	t.Parallel()
	env := func(kv ...string) func(string) string {
		return func(k string) string {
			for i := 0; i+1 < len(kv); i += 2 {
				if kv[i] == k {
					return kv[i+1]
				}
			}
			return ""
		}
	}
	cfg, err := app.LoadConfig(env())
	require.NoError(t, err)
	require.Equal(t, 10*time.Second, cfg.ShutdownTimeout)
	require.Equal(t, time.Minute, cfg.JobRescueAfter)
	require.Greater(t, cfg.JobRescueAfter, app.JobTimeout)

	cfg, err = app.LoadConfig(env("SHUTDOWN_TIMEOUT", "3s", "JOB_RESCUE_AFTER", "2m"))
	require.NoError(t, err)
	require.Equal(t, 3*time.Second, cfg.ShutdownTimeout)
	require.Equal(t, 2*time.Minute, cfg.JobRescueAfter)

	_, err = app.LoadConfig(env("JOB_RESCUE_AFTER", "30s"))
	require.ErrorContains(t, err, "longer than the job timeout (30s)")
	for _, kv := range [][]string{
		{"SHUTDOWN_TIMEOUT", "soon"}, {"SHUTDOWN_TIMEOUT", "0s"}, {"SHUTDOWN_TIMEOUT", "10"},
		{"JOB_RESCUE_AFTER", "30s"}, {"JOB_RESCUE_AFTER", "5s"}, {"JOB_RESCUE_AFTER", "-1m"},
	} {
		_, err := app.LoadConfig(env(kv...))
		require.Error(t, err, kv)
		require.Contains(t, err.Error(), kv[0]+`="`+kv[1]+`": must be `)
	}
}

// A stopping worker deletes its heartbeat at once, within the stop's
// deadline: one that has passed (the database away at the stop) does not
// hold up the rest of the stop, and the row then ages out.
func TestHeartbeatStopsWithinItsDeadline(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := dbtest.Pool(t, 2)
	beats := func() (n int) {
		require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM worker_heartbeats`).Scan(&n))
		return n
	}
	stop := app.StartHeartbeat(pool)
	require.Equal(t, 1, beats())
	passed, cancel := context.WithCancel(ctx)
	cancel()
	stop(passed)
	require.Equal(t, 1, beats(), "the deadline had passed: no write")

	stop = app.StartHeartbeat(pool)
	require.Equal(t, 2, beats())
	stop(ctx)
	require.Equal(t, 1, beats(), "deleted at the stop")
}
