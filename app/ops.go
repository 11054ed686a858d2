package app

import (
	"context"
	"net/http"
	"time"

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
// asked, then processing.
func (a *App) jobsStatus(c echo.Context) error {
	var pending, processing, completed, failed int64
	var fresh bool
	err := a.Pool.QueryRow(c.Request().Context(), `
		SELECT count(*) FILTER (WHERE state IN ('available', 'scheduled', 'retryable', 'pending')),
		       count(*) FILTER (WHERE state = 'running'),
		       count(*) FILTER (WHERE state = 'completed'),
		       count(*) FILTER (WHERE state IN ('discarded', 'cancelled')),
		       `+workerFresh+`
		FROM river_job`, heartbeatFresh.Seconds()).Scan(&pending, &processing, &completed, &failed, &fresh)
	if err != nil {
		return err
	}
	held, deciding := a.Payments.FirstDecisions()
	pending += int64(held - deciding)
	processing += int64(deciding) + a.Webhooks.FirstAttemptsInFlight()
	status := "stopped"
	if fresh {
		status = "running"
	}
	return web.JSON(c, http.StatusOK, map[string]any{"pending": pending, "processing": processing,
		"completed": completed, "failed": failed, "worker_status": status})
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
