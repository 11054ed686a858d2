package app

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/labstack/echo/v4"

	"paygate/merchants"
	"paygate/web"
)

// workerFresh is the SQL condition "some worker beat recently".
const workerFresh = `EXISTS (SELECT 1 FROM worker_heartbeats WHERE beat_at > now() - make_interval(secs => $1))`

func (a *App) health(c echo.Context) error {
	ctx, cancel := context.WithTimeout(c.Request().Context(), 2*time.Second)
	defer cancel()
	body := map[string]any{"status": "healthy", "database": "connected", "worker": "running",
		"timestamp": time.Now().UTC().Format(time.RFC3339)}
	var fresh bool
	if err := a.Pool.QueryRow(ctx, `SELECT `+workerFresh, heartbeatFresh.Seconds()).Scan(&fresh); err != nil {
		a.Logger.Warn("health: database unreachable", "error", err)
		body["status"], body["database"], body["worker"] = "unhealthy", "disconnected", "unknown"
		return web.JSON(c, http.StatusServiceUnavailable, body)
	}
	if !fresh {
		body["status"], body["worker"] = "unhealthy", "stopped"
		return web.JSON(c, http.StatusServiceUnavailable, body)
	}
	return web.JSON(c, http.StatusOK, body)
}

// jobsStatus counts the real queue: River's job table by state, with the
// work this process has taken without a job: the first webhook attempts
// not yet recorded (webhooks/first.go) as processing, the payments it
// decides itself (payments/first.go) as pending until their acquirer is
// asked, then processing. The route needs no credentials (API.md), and
// the completed jobs of a day may be millions: their count runs once at a
// time per process (a.jobCounts), each request answered by a count that
// started after it came.
//
// Work moves between this process's counters and the database both ways
// (a first attempt's record and retry job commit before it leaves the
// counters; a River job's decision starts a first attempt before River
// marks the job completed), so the counters are read before and after the
// count, and the larger of each is added: work is at worst counted twice,
// never nowhere, which a caller polling until nothing is left needs.
func (a *App) jobsStatus(c echo.Context) error {
	held, deciding := a.Payments.FirstDecisions()
	inFlight := a.Webhooks.FirstAttemptsInFlight()
	n, err := a.jobCounts.get(c.Request().Context())
	if err != nil {
		return err
	}
	heldAfter, decidingAfter := a.Payments.FirstDecisions()
	held, deciding = max(held, heldAfter), max(deciding, decidingAfter)
	inFlight = max(inFlight, a.Webhooks.FirstAttemptsInFlight())
	n.pending += int64(max(0, held-deciding))
	n.processing += int64(deciding) + inFlight
	status := "stopped"
	if n.fresh {
		status = "running"
	}
	return web.JSON(c, http.StatusOK, map[string]any{"pending": n.pending, "processing": n.processing,
		"completed": n.completed, "failed": n.failed, "worker_status": status})
}

type jobTotals struct {
	pending, processing, completed, failed int64
	fresh                                  bool // a worker's heartbeat is fresh
}

// countJobs counts river_job through its indexes: the live and failed
// states through the fetching index (state first), the completed through
// River's (state, finalized_at) index, an index-only scan (1.5 million
// completed jobs: 0.13 s, against 0.6 s for a scan of the table), in one
// backend (no parallel workers) and within 5 s: a statement_timeout, which
// stops the scan in the server (a deadline alone would close the socket and
// leave it running), answered 503 like a database too slow to answer.
func (a *App) countJobs(ctx context.Context) (jobTotals, error) {
	var n jobTotals
	ctx, cancel := context.WithTimeout(ctx, 6*time.Second)
	defer cancel()
	err := pgx.BeginFunc(ctx, a.Pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SET LOCAL statement_timeout = '5s'; SET LOCAL max_parallel_workers_per_gather = 0`); err != nil {
			return err
		}
		return tx.QueryRow(ctx, `
			SELECT live.pending, live.running, live.failed,
			       (SELECT count(*) FROM river_job WHERE state = 'completed' AND finalized_at IS NOT NULL),
			       `+workerFresh+`
			FROM (SELECT count(*) FILTER (WHERE state IN ('available', 'scheduled', 'retryable', 'pending')) AS pending,
			             count(*) FILTER (WHERE state = 'running') AS running,
			             count(*) FILTER (WHERE state IN ('discarded', 'cancelled')) AS failed
			      FROM river_job
			      WHERE state IN ('available', 'scheduled', 'retryable', 'pending', 'running', 'discarded', 'cancelled')) live`,
			heartbeatFresh.Seconds()).Scan(&n.pending, &n.processing, &n.failed, &n.completed, &n.fresh)
	})
	if pgErr := (*pgconn.PgError)(nil); errors.As(err, &pgErr) && pgErr.Code == pgerrcode.QueryCanceled {
		return n, web.Errorf(web.CodeUnavailable, "The job queue could not be counted in time, try again shortly")
	}
	return n, err
}

// testMerchant answers the seeded test merchant. Credentials are optional,
// but wrong ones are refused like everywhere else.
func (a *App) testMerchant(c echo.Context) error {
	if !a.seeded {
		return web.Errorf(web.CodeNotFound, "Route not found")
	}
	return web.JSON(c, http.StatusOK, map[string]any{"id": merchants.TestMerchantID, "email": merchants.TestMerchantEmail,
		"api_key": merchants.TestMerchantKey, "seeded": true})
}
