package soak

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
)

// begin starts an all-role gateway on env, points the merchant's webhooks
// at a new receiver and starts twelve merchants who stop after max payments.
func begin(t *testing.T, env map[string]string, max int) (*gateway, *receiver, *load) {
	t.Helper()
	g := startGateway(t, "all", freePort(t), env)
	r := newReceiver(t)
	r.subscribe(t, g.url())
	l := startLoad(g.url(), 12, max)
	t.Cleanup(l.stop)
	return g, r, l
}

// finish lets the load run to its last payment, checks the invariants on
// dbURL counting from since, and stops the gateway with SIGTERM.
func finish(t *testing.T, g *gateway, l *load, r *receiver, dbURL string, since time.Time) {
	// Every scenario that finishes so killed a process or took the
	// database away.
	t.Helper()
	l.waitAccepted(t, l.max)
	l.stop()
	checkInvariants(t, dbURL, l, r, since, true)
	require.NoError(t, g.kill(syscall.SIGTERM, 15*time.Second))
}

// Crash: SIGKILL under load, three times, each time restarted on the same
// DATA_DIR (the new process adopts the killed one's PostgreSQL). Jobs the
// killed process was running are rescued and everything settles.
func TestCrash(t *testing.T) {
	soakOnly(t)
	dir := dataDir(t)
	g, r, l := begin(t, map[string]string{"DATA_DIR": dir}, 2400)
	var restarted time.Time
	for cycle := 1; cycle <= 3; cycle++ {
		l.waitAccepted(t, cycle*600)
		_ = g.kill(syscall.SIGKILL, 10*time.Second)
		g.restart()
		restarted = time.Now()
		t.Logf("cycle %d: killed and restarted; %s", cycle, l)
	}
	finish(t, g, l, r, embeddedURL(dir), restarted)
}

// Shutdown: SIGTERM under load. A request in flight is answered (a refund
// whose batch waits on a payment row this test locks until the gateway
// drains), the process exits within SHUTDOWN_TIMEOUT, and no job spent an
// attempt on being stopped.
func TestShutdown(t *testing.T) {
	soakOnly(t)
	ctx := context.Background()
	dir := dataDir(t)
	g, r, l := begin(t, map[string]string{"DATA_DIR": dir}, 1500)
	l.waitAccepted(t, 600)

	conn, err := pgx.Connect(ctx, embeddedURL(dir))
	require.NoError(t, err)
	defer conn.Close(ctx)
	// A payment of the test's own, so that no refund of the load queues on
	// its row: a session that waits on the lock below is the test refund's
	// batch. (Refunds are created in batches: a second refund sent now
	// could wait in the process, behind the first's, where the test could
	// not see it arrive before the SIGTERM.)
	const amount = 40_000
	code, order := l.post(ctx, "/api/v1/orders", fmt.Sprintf(`{"amount":%d}`, amount))
	require.Equal(t, http.StatusCreated, code)
	code, p := l.post(ctx, "/api/v1/payments", fmt.Sprintf(`{"order_id":%q,"method":"upi","vpa":"held@paytm"}`, order["id"]))
	require.Equal(t, http.StatusCreated, code)
	payID := p["id"].(string)
	l.record(&l.payments, payID)
	require.True(t, waitUntil(time.Now().Add(time.Minute), func() bool {
		var status string
		require.NoError(t, conn.QueryRow(ctx, `SELECT status FROM payments WHERE id = $1`, payID).Scan(&status))
		return status == "success"
	}), "the test's payment was not decided")
	tx, err := conn.Begin(ctx)
	require.NoError(t, err)
	_, err = tx.Exec(ctx, `SELECT 1 FROM payments WHERE id = $1 FOR UPDATE`, payID)
	require.NoError(t, err)
	var holder int
	require.NoError(t, tx.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&holder))

	var refunded int
	answered := make(chan struct{})
	go func() {
		defer close(answered)
		var body map[string]any
		refunded, body = l.post(ctx, "/api/v1/payments/"+payID+"/refunds", fmt.Sprintf(`{"amount":%d}`, amount/4))
		if refunded == http.StatusCreated {
			l.record(&l.refunds, body["id"].(string))
		}
	}()
	require.True(t, waitUntil(time.Now().Add(30*time.Second), func() bool {
		var waiting int
		require.NoError(t, conn.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))`,
			holder).Scan(&waiting))
		return waiting == 1
	}), "the refund never waited on the locked payment")

	g.signal(syscall.SIGTERM)
	require.True(t, waitUntil(time.Now().Add(10*time.Second), func() bool {
		resp, err := http.Get(g.url() + "/ready")
		if err != nil {
			return true
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusServiceUnavailable
	}), "/ready did not turn 503 after SIGTERM")
	require.NoError(t, tx.Commit(ctx))
	require.NoError(t, g.waitExit(10*time.Second+5*time.Second), "paygate exited with an error")
	<-answered
	require.Equal(t, http.StatusCreated, refunded, "the in-flight refund not answered")
	l.stop()
	log := tailOf(g.log, 200)
	for _, step := range []string{"shutdown: signal received", "shutdown: /ready answers 503 draining", "shutdown: http stopped",
		"shutdown: river", "shutdown: closing the database pool", "shutdown: stopping embedded postgres", "shutdown: done"} {
		require.Contains(t, log, step)
	}

	g.restart()
	restarted := time.Now()
	checkInvariants(t, embeddedURL(dir), l, r, restarted, false)
	conn2, err := pgx.Connect(ctx, embeddedURL(dir))
	require.NoError(t, err)
	defer conn2.Close(ctx)
	var spent int
	require.NoError(t, conn2.QueryRow(ctx, `SELECT count(*) FROM river_job WHERE errors::text LIKE '%context canceled%'`).Scan(&spent))
	require.Zero(t, spent, "jobs spent an attempt on being stopped")
	require.NoError(t, g.kill(syscall.SIGTERM, 15*time.Second))
}

// Replicas: an api process and two workers on one external database; one
// worker is killed mid-run and the other takes over its jobs.
func TestReplicas(t *testing.T) {
	soakOnly(t)
	x := startExternal(t)
	env := map[string]string{"DATABASE_URL": x.url()}
	api := startGateway(t, "api", freePort(t), env)
	w1 := startGateway(t, "worker", freePort(t), env)
	w2 := startGateway(t, "worker", freePort(t), env)
	resp, err := http.Post(w1.url()+"/api/v1/orders", "application/json", strings.NewReader(`{"amount":1000}`))
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusNotFound, resp.StatusCode, "a worker serves no API")

	r := newReceiver(t)
	r.subscribe(t, api.url())
	l := startLoad(api.url(), 12, 1500)
	t.Cleanup(l.stop)
	l.waitAccepted(t, 500)
	_ = w1.kill(syscall.SIGKILL, 10*time.Second)
	killed := time.Now()
	finish(t, api, l, r, x.url(), killed)
	require.NoError(t, w2.kill(syscall.SIGTERM, 15*time.Second))
}

// Outage of the embedded database: its postmaster is killed under load;
// paygate's supervisor starts it again and everything settles.
func TestOutageEmbedded(t *testing.T) {
	soakOnly(t)
	dir := dataDir(t)
	g, r, l := begin(t, map[string]string{"DATA_DIR": dir}, 1500)
	l.waitAccepted(t, 500)
	old := postmasterPID(dir)
	require.NotZero(t, old)
	require.NoError(t, syscall.Kill(old, syscall.SIGKILL))
	require.True(t, waitUntil(time.Now().Add(90*time.Second), func() bool {
		pid := postmasterPID(dir)
		return pid != 0 && pid != old
	}), "paygate did not restart its postgres")
	g.waitReady()
	back := time.Now()
	t.Logf("postgres restarted; %s", l)
	finish(t, g, l, r, embeddedURL(dir), back)
}

// Outage of an external database: stopped for ten seconds under load, then
// started again. Meanwhile requests are answered 503, never 500.
func TestOutageExternal(t *testing.T) {
	soakOnly(t)
	x := startExternal(t)
	g, r, l := begin(t, map[string]string{"DATABASE_URL": x.url()}, 1500)
	l.waitAccepted(t, 500)
	before := l.answered(http.StatusServiceUnavailable)
	x.stop()
	time.Sleep(10 * time.Second) // the outage
	during := l.answered(http.StatusServiceUnavailable) - before
	x.start()
	g.waitReady()
	back := time.Now()
	t.Logf("database back after %d answers 503; %s", during, l)
	require.Positive(t, during, "no request was answered 503 during the outage")
	finish(t, g, l, r, x.url(), back)
}
