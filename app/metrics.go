package app

import (
	"context"
	"crypto/subtle"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"paygate/metrics"
	"paygate/web"
)

// metricsHandler serves /metrics: the process-wide families (HTTP, payments,
// refunds, webhooks, job latency, Go runtime) plus this app's collectors of
// the job queue and the two pools. With METRICS_TOKEN set, the API roles answer
// only a request that carries it as a Bearer token; the worker role, which
// serves no API, always answers.
func (a *App) metricsHandler() echo.HandlerFunc {
	own := prometheus.NewRegistry()
	own.MustRegister(metrics.NewJobs(a.Pool, a.Logger), metrics.Pools{"main": a.Pool, "kept_plans": a.KeptPlans.Kept()})
	h := echo.WrapHandler(promhttp.HandlerFor(prometheus.Gatherers{prometheus.DefaultGatherer, own},
		promhttp.HandlerOpts{ErrorLog: nil}))
	token := a.Config.MetricsToken
	return func(c echo.Context) error {
		if token != "" && a.role != RoleWorker && !bearer(c.Request(), token) {
			return web.Errorf(web.CodeUnauthorized, "Missing or wrong METRICS_TOKEN")
		}
		return h(c)
	}
}

// bearer reports whether the request carries "Authorization: Bearer token".
func bearer(r *http.Request, token string) bool {
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return ok && subtle.ConstantTimeCompare([]byte(got), []byte(token)) == 1
}

// riverHooks measure each job's wait between being due and being started.
func riverHooks() []rivertype.Hook {
	return []rivertype.Hook{river.HookWorkBeginFunc(func(_ context.Context, job *rivertype.JobRow) error {
		metrics.JobStarted(job.Queue, job.ScheduledAt, job.AttemptedAt)
		return nil
	})}
}
